"""The gate table: every blocking check, defined once.

A gate names the asset it reviews, every artifact its verdict depends on, and the function
that judges them. Dagster's checks are generated from this table and promotion loops over
it. A verdict records the hash of every input it judged; promotion accepts it only while
each of those hashes is still the one on disk, and only while every artifact descends from
the others (`lineage`). So no release can be cut from an artifact no gate has seen, or from
artifacts of two different runs, whether a schedule, automation or a person launches it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Profile
from pipeline.core.atomic import write_json
from pipeline.core.layout import NATIONAL_FIT, RUN_CONFIG, Layout
from pipeline.core.parallel import InProcess, Runner
from pipeline.core.report import GateReport, Rule, combine
from pipeline.engine import VARIABLES
from pipeline.fit.review import review_fit
from pipeline.microdata import read_h5
from pipeline.package.store import CalibrationPackage
from pipeline.package.validity import validate_package
from pipeline.release.fits import load_fits, release_fits
from pipeline.release.lineage import ARTIFACTS, artifact_hashes, lineage_problems
from pipeline.release.releases import current_release, load_current_validation
from pipeline.targets.db import check_target_db
from pipeline.validate.consistency import xw_consistency
from pipeline.validate.published import seed_cache
from pipeline.validate.quality import review_quality
from pipeline.validate.sanity import sanity_report
from pipeline.validate.totals import (
    FitTargets,
    Published,
    read_validation_csv,
    validate_h5s,
    walk_published,
)


class GateError(RuntimeError):
    """Promotion was asked for without every blocking gate passed on the current artifacts."""


@dataclass(frozen=True)
class GateContext:
    layout: Layout
    profile: Profile
    runner: Runner = field(default_factory=InProcess)  # where per-file work runs


@dataclass(frozen=True)
class Gate:
    name: str
    subject: str  # the asset the check is attached to
    inputs: tuple[str, ...]  # every artifact (lineage.ARTIFACTS) the verdict depends on
    description: str
    judge: Callable[[GateContext], GateReport]

    @property
    def upstream_assets(self) -> tuple[str, ...]:
        """Inputs other than the subject that are assets (for the check's dependencies)."""
        return tuple(i for i in self.inputs if i != self.subject and i != "current_release")


def _target_db_integrity(ctx: GateContext) -> GateReport:
    problems = check_target_db(ctx.layout.target_db, VARIABLES)
    rule = Rule("integrity", not problems, f"{len(problems)} integrity problems",
                tuple(problems[:50]))
    return GateReport.of([rule], {"problems": float(len(problems))}, summary=rule.detail)


def _package_validity(ctx: GateContext) -> GateReport:
    """Both fits' configs: neither may select a target no record can reach."""
    pkg, views = load_fits(ctx.layout, matrix=True)
    return combine({v.fit: validate_package(replace(pkg, targets=v.targets), v.selected)
                    .gate_report() for v in views})


def _fit_review(ctx: GateContext) -> GateReport:
    release = current_release(ctx.layout.root)
    baseline = release.path / RUN_CONFIG if release else None
    return review_fit(ctx.layout.fit_dir, ctx.profile.gates.fit, production_run_config=baseline)


def _national_fit_review(ctx: GateContext) -> GateReport:
    """Gate 1 for the national fit, against CURRENT's national fit where it has one."""
    release = current_release(ctx.layout.root)
    baseline = release.path / NATIONAL_FIT / RUN_CONFIG if release else None
    return review_fit(ctx.layout.national_fit_dir, ctx.profile.gates.fit,
                      production_run_config=baseline if baseline and baseline.is_file()
                      else None)


def published(layout: Layout, pkg: CalibrationPackage, views: list[FitTargets],
              runner: Runner) -> Published:
    """The one (cached) walk over the published files, for the checks and validation."""
    return walk_published(layout.stacked_dir, views,
                          lambda: seed_cache(read_h5(pkg.base_h5)), runner,
                          layout.validation_cache)


def _structural_sanity(ctx: GateContext) -> GateReport:
    pkg, views = load_fits(ctx.layout)
    return sanity_report(published(ctx.layout, pkg, views, ctx.runner).walk.sanity)


def _xw_consistency(ctx: GateContext) -> GateReport:
    """Each fit's X·w against the totals computed from its own files."""
    layout = ctx.layout
    pkg, views = load_fits(layout, matrix=True)
    totals = validate_h5s(published(layout, pkg, views, ctx.runner), views)
    reports = {}
    for fit, view in zip(release_fits(layout), views, strict=True):
        weights = np.load(fit.weights, allow_pickle=False)
        reports[fit.name] = xw_consistency(
            pkg, weights, totals[totals["fit"] == fit.name], view.selected,
            tolerance=ctx.profile.gates.consistency_tolerance).gate_report()
    return combine(reports)


def rebudgeted(layout: Layout) -> frozenset[str]:
    """The fits whose record budget differs from CURRENT's (a choice, not a regression)."""
    release = current_release(layout.root)
    if release is None:
        return frozenset()
    changed = set()
    for fit, theirs in zip(release_fits(layout), (release.path / RUN_CONFIG,
                                                  release.path / NATIONAL_FIT / RUN_CONFIG),
                           strict=True):
        if not theirs.is_file() or not fit.run_config.is_file():
            continue
        budgets = [json.loads(p.read_text())["params"].get("records")
                   for p in (theirs, fit.run_config)]
        if budgets[0] != budgets[1]:
            changed.add(fit.name)
    return frozenset(changed)


def _simulation_quality(ctx: GateContext) -> GateReport:
    baseline = load_current_validation(ctx.layout.root)
    report = review_quality(read_validation_csv(ctx.layout.validation_csv), baseline,
                            ctx.profile.gates.quality, rebudgeted(ctx.layout))
    against = ("the CURRENT release" if baseline is not None
               else "absolute tolerances (no release yet)")
    return GateReport(report.passed, f"judged against {against}: {report.summary}",
                      report.rules, report.metrics, report.details)


CONFIGS = ("target_config", "national_target_config")
GATES: tuple[Gate, ...] = (
    Gate("target_db_integrity", "target_db", ("target_db",),
         "Schema, NaN, signs, districts inside their states, every variable computable.",
         _target_db_integrity),
    Gate("package_validity", "calibration_package", ("calibration_package", *CONFIGS),
         "No target either fit's config selects is impossible; strict-ratio report.",
         _package_validity),
    Gate("fit_review", "calibration_weights",
         ("calibration_package", "target_config", "calibration_weights", "current_release"),
         "Gate 1: finite weights, converged loss, no late divergence, no worse than CURRENT.",
         _fit_review),
    Gate("national_fit_review", "national_weights",
         ("calibration_package", "national_target_config", "national_weights",
          "current_release"),
         "Gate 1 for the national fit: as fit_review, and its record budget reached.",
         _national_fit_review),
    Gate("structural_sanity", "stacked_h5s", ("stacked_h5s",),
         "Production's sanity list on every published file.", _structural_sanity),
    Gate("xw_consistency", "stacked_h5s",
         ("calibration_package", *CONFIGS, "calibration_weights", "national_weights",
          "stacked_h5s"),
         "Each fit's X·w from the matrix equals the totals the engine computes from its "
         "H5 files.", _xw_consistency),
    Gate("simulation_quality", "validation_results",
         (*CONFIGS, "stacked_h5s", "validation_results", "current_release"),
         "Gate 2: no regression against the CURRENT release; no sanity FAIL; both fits.",
         _simulation_quality),
)
GATE_BY_NAME = {g.name: g for g in GATES}


@dataclass(frozen=True)
class Verdict:
    gate: str
    passed: bool
    summary: str
    inputs: dict[str, str]  # artifact -> hash it had when judged
    report: dict[str, Any]
    recorded_at: str


def run_gate(gate: Gate, ctx: GateContext) -> tuple[GateReport, Verdict]:
    """Judge, and record the verdict with the hashes of everything judged.

    Hashes are taken before judging: an input replaced meanwhile leaves a stale verdict
    that promotion refuses, never a passed verdict about bytes nobody judged.
    """
    inputs = artifact_hashes(ctx.layout, gate.inputs)
    report = gate.judge(ctx)
    verdict = Verdict(gate.name, report.passed, report.summary, inputs, report.as_dict(),
                      datetime.now(UTC).isoformat(timespec="seconds"))
    write_json(ctx.layout.gates_dir / f"{gate.name}.json", asdict(verdict))
    return report, verdict


def read_verdict(gates_dir: str | Path, gate: str) -> Verdict | None:
    path = Path(gates_dir) / f"{gate}.json"
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    if set(raw) != {f for f in Verdict.__dataclass_fields__}:
        return None  # written by an older version: judge again
    return Verdict(**raw)


def require_all_passed(layout: Layout) -> list[Verdict]:
    """Every gate passed on exactly the artifacts on disk, all of one lineage; else GateError."""
    current = artifact_hashes(layout, ARTIFACTS)
    problems, verdicts = [], []
    for gate in GATES:
        verdict = read_verdict(layout.gates_dir, gate.name)
        if verdict is None:
            problems.append(f"{gate.name}: never ran")
            continue
        stale = sorted(k for k in gate.inputs if verdict.inputs.get(k) != current[k])
        if not verdict.passed:
            problems.append(f"{gate.name}: FAILED ({verdict.summary})")
        elif stale:
            problems.append(f"{gate.name}: judged other {', '.join(stale)} than the ones on "
                            "disk; run its check again")
        else:
            verdicts.append(verdict)
    problems += lineage_problems(layout, current)
    if problems:
        raise GateError("promotion refused: " + "; ".join(problems))
    return verdicts
