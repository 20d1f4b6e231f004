"""The two fits a release publishes together: where each one's config, weights and record
live, and the package's targets as each config sees them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.layout import RUN_CONFIG, Layout
from pipeline.package.store import CalibrationPackage, load_package
from pipeline.targets.config import apply_target_config
from pipeline.validate.totals import LOCAL, NATIONAL, FitTargets


@dataclass(frozen=True)
class ReleaseFit:
    name: str  # the validation results' `fit`
    weights_artifact: str  # lineage.ARTIFACTS names
    config_artifact: str
    fit_dir: Path
    weights: Path
    target_config: Path

    @property
    def run_config(self) -> Path:
        return self.fit_dir / RUN_CONFIG


def release_fits(layout: Layout) -> tuple[ReleaseFit, ReleaseFit]:
    """The local-area fit (state and district files), then the national fit (national.h5)."""
    return (
        ReleaseFit(LOCAL, "calibration_weights", "target_config", layout.fit_dir,
                   layout.weights, layout.target_config),
        ReleaseFit(NATIONAL, "national_weights", "national_target_config",
                   layout.national_fit_dir, layout.national_weights,
                   layout.national_target_config),
    )


def load_fits(layout: Layout, *, matrix: bool = False
              ) -> tuple[CalibrationPackage, list[FitTargets]]:
    """The package (loaded once) and each fit's targets under its own config."""
    pkg = load_package(layout.package_dir, matrix=matrix)
    views = []
    for fit in release_fits(layout):
        targets, selected = apply_target_config(fit.target_config, pkg.targets,
                                                pkg.target_vocabulary)
        views.append(FitTargets.of(fit.name, targets, selected))
    return pkg, views
