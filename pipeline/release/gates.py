"""The gate table: every blocking check, defined once.

A gate names the asset it reviews, every artifact its verdict depends on, and the function
that judges them (`judges.py`). Dagster's checks are generated from this table and
promotion loops over it (`verdicts.py`): a verdict records the hash of every input it
judged, and promotion accepts it only while each of those hashes is still the one on disk,
and only while every artifact descends from the others (`pipeline.core.lineage`). So no
release can be cut from an artifact no gate has seen, or from artifacts of two different
runs, whether a schedule, automation or a person launches it. Each fit of the fit table
brings its own gate 1; the other gates judge every fit, or every publishing one.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.fit_table import FITS, Fit, configs, figures_only, published
from pipeline.release import judges
from pipeline.release.judges import Judge

# Not a file: the regression gates judge against CURRENT, so a moved CURRENT makes their
# verdicts stale.
CURRENT_RELEASE = "current_release"
# What a waiver may accept: a judgement of quality, never one of integrity (finite
# weights and fits, the absolute floor, a sanity FAIL, inputs intact) nor any rule of an
# integrity gate (target DB, package validity, structural sanity, X·w).
FIT_REVIEW_WAIVABLE = ("loss_converged", "no_group_diverging", "not_worse_than_production",
                       "record_budget")
QUALITY_WAIVABLE = ("absolute", "target_regression", "group_regression",
                    "heldout_regression")


@dataclass(frozen=True)
class Gate:
    name: str
    subject: str  # the asset the check is attached to
    inputs: tuple[str, ...]  # every artifact (core.lineage.artifacts, or CURRENT_RELEASE) judged
    description: str
    judge: Judge
    waivable: tuple[str, ...] = ()  # rules a waiver may accept (`waivers.py`); none: integrity

    @property
    def upstream_assets(self) -> tuple[str, ...]:
        """Inputs other than the subject that are assets (for the check's dependencies)."""
        return tuple(i for i in self.inputs if i not in (self.subject, CURRENT_RELEASE))


def gate_table(fits: tuple[Fit, ...] = FITS) -> tuple[Gate, ...]:
    every_config = tuple(c.asset for c in configs(fits))
    shown = published(fits)
    shown_configs = tuple(c.asset for c in configs(shown))
    return (
        Gate("target_db_integrity", "target_db", ("target_db",),
             "Schema, NaN, signs, districts inside their states, every variable computable.",
             judges.target_db_integrity),
        Gate("package_validity", "calibration_package", ("calibration_package", *every_config),
             "No target any fit's config selects is impossible; strict-ratio report.",
             judges.package_validity),
        *(Gate(fit.review, fit.weights,
               ("calibration_package", fit.config.asset, fit.weights, CURRENT_RELEASE),
               f"Gate 1 for the {fit.label}: finite weights, converged loss, no late "
               "divergence, no worse than CURRENT's, its record budget (if any) reached.",
               judges.fit_review(fit), waivable=FIT_REVIEW_WAIVABLE)
          for fit in fits),
        Gate("structural_sanity", "stacked_h5s", ("stacked_h5s",),
             "Production's sanity list on every published file.", judges.structural_sanity),
        Gate("xw_consistency", "stacked_h5s",
             ("calibration_package", *shown_configs, *(f.weights for f in shown),
              "stacked_h5s"),
             "Each fit's X·w from the matrix equals the totals the engine computes from its "
             "H5 files.", judges.consistency),
        Gate("simulation_quality", "validation_results",
             (*every_config, "stacked_h5s", *(f.weights for f in figures_only(fits)),
              "validation_results", CURRENT_RELEASE),
             "Gate 2: no regression against the CURRENT release; no sanity FAIL; every "
             "fit (a held-out fit's figures on the matrix).", judges.simulation_quality,
             waivable=QUALITY_WAIVABLE),
    )


GATES = gate_table()
