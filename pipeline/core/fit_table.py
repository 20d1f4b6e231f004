"""The fit table: every fit a release publishes, described once.

A release publishes two fits of one package, as production does: the local-area fit (most
records, for the state and district files) and the national fit under a record budget (for
`national.h5`). Everything that differs between them is a field here; the assets and their
launchpad configs, the gate-1 checks, the lineage's parents, the release's files and its
manifest are generated from this table, so a third fit is one more entry (plus, if it has
settings of its own, its profile section). The names are the public ones: asset names,
directories, release paths and manifest keys stay what releases already hold.

The published fits train on every trusted target, the validation split included. How well
a fit's settings generalize is measured by its held-out twin: the same package, config and
settings (the twin's, as that fit ran), with the split held out; it publishes no files, its
figures are validated on the package's matrix and judged by gate 2 like the others.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

AREA_FILES = "areas"  # `states/<AB>.h5` and `districts/<geoid>.h5`, one file per area
NATIONAL_FILE = "national.h5"


@dataclass(frozen=True)
class TargetConfig:
    """A target config: the YAML a user edits, installed as an asset that fits read."""

    asset: str  # the asset, and its directory under the storage root
    file: str  # its file name there
    release_name: str  # its file name in a release
    source_field: str  # the TargetConfigResource field naming the user's file
    env: str  # the environment variable that sets that field
    default: str  # the shipped default, under pipeline/config/


@dataclass(frozen=True)
class Fit:
    name: str  # "local": the validation results' `fit`, held-out keys, messages
    weights: str  # its asset, and its directory under the storage root
    config: TargetConfig
    section: str  # the profile section holding its FitParams
    preset: str  # the FitParams preset that section defaults to
    records: int | None  # the record budget that section defaults to
    review: str  # its gate-1 check
    release_dir: str  # where a release keeps its record ("" is the release's top level)
    manifest_key: str  # its summary in the release manifest
    publishes: str | None  # AREA_FILES, a single file (NATIONAL_FILE), or None: figures only
    allocation: bool  # whether a learned allocation (sparsity_allocation) may choose its records
    description: str
    holds_out_split: bool = False  # never trains the validation split (a held-out fit)
    twin: str | None = None  # the fit whose settings and config it reruns (its `name`)

    @property
    def label(self) -> str:
        return f"{self.name} fit"


LOCAL_CONFIG = TargetConfig("target_config", "targets.yaml", "target_config.yaml", "path",
                            "CALIBRATION_TARGET_CONFIG", "targets.yaml")
NATIONAL_CONFIG = TargetConfig("national_target_config", "targets_national.yaml",
                               "targets_national.yaml", "national_path",
                               "CALIBRATION_NATIONAL_TARGET_CONFIG", "targets_national.yaml")

LOCAL = Fit(
    name="local", weights="calibration_weights", config=LOCAL_CONFIG, section="fit",
    preset="local", records=None, review="fit_review", release_dir="", manifest_key="fit",
    publishes=AREA_FILES, allocation=False,
    description="The local-area L0 fit (state and district files).")
NATIONAL = Fit(
    name="national", weights="national_weights", config=NATIONAL_CONFIG,
    section="national_fit", preset="national", records=50_000, review="national_fit_review",
    release_dir="national_weights", manifest_key="national_fit", publishes=NATIONAL_FILE,
    allocation=True,
    description="The national L0 fit under a record budget (national.h5); national and "
                "state targets. With allocation: learned, sparsity_allocation chooses the "
                "records.")


def heldout_twin(fit: Fit) -> Fit:
    """`fit`'s held-out twin: its package, config and settings, the validation split held
    out; figures only, under names derived from the fit's."""
    twin = f"{fit.name}_heldout"
    return replace(
        fit, name=twin, weights=f"{twin}_weights", review=f"{twin}_fit_review",
        release_dir=f"heldout/{fit.name}", manifest_key=f"{twin}_fit", publishes=None,
        allocation=False, holds_out_split=True, twin=fit.name,
        description=f"The {fit.name} fit's held-out twin: its package, config and settings, "
                    f"the validation split held out; figures only (the {fit.name} fit's "
                    "generalization).")


LOCAL_HELDOUT = heldout_twin(LOCAL)
NATIONAL_HELDOUT = heldout_twin(NATIONAL)
FITS: tuple[Fit, ...] = (LOCAL, NATIONAL, LOCAL_HELDOUT, NATIONAL_HELDOUT)


def configs(fits: tuple[Fit, ...] = FITS) -> tuple[TargetConfig, ...]:
    """Each target config once, in table order (fits may share one)."""
    return tuple(dict.fromkeys(f.config for f in fits))


def published(fits: tuple[Fit, ...] = FITS) -> tuple[Fit, ...]:
    """The fits whose weights make published files."""
    return tuple(f for f in fits if f.publishes is not None)


def figures_only(fits: tuple[Fit, ...] = FITS) -> tuple[Fit, ...]:
    """The fits that publish no files: validated on the package's matrix."""
    return tuple(f for f in fits if f.publishes is None)


def publisher(kind: str, fits: tuple[Fit, ...] = FITS) -> Fit:
    """The one fit that publishes `kind` (AREA_FILES or a file name)."""
    [fit] = [f for f in fits if f.publishes == kind]
    return fit


def twin_of(fit: Fit, fits: tuple[Fit, ...] = FITS) -> Fit | None:
    """The fit whose settings a held-out fit reruns (None for a fit of its own)."""
    if fit.twin is None:
        return None
    found = [f for f in fits if f.name == fit.twin]
    if not found:
        raise ValueError(f"{fit.name}'s twin {fit.twin!r} is not in the fit table given")
    return found[0]


def allocated(fits: tuple[Fit, ...] = FITS) -> Fit:
    """The fit whose record budget the learned allocation spends."""
    [fit] = [f for f in fits if f.allocation]
    return fit
