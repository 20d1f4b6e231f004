"""The fits under a storage root as validation and the gates see them.

Each fit's view of the package (its targets under its own config, `FitTargets`), and the
one (cached) walk over the published files that the checks and the validation results
share.
"""

from __future__ import annotations

from pipeline.core.fit_table import FITS, Fit
from pipeline.core.layout import Layout
from pipeline.core.parallel import Runner
from pipeline.package.store import CalibrationPackage, load_package
from pipeline.targets.target_config import apply_target_config
from pipeline.validate.published import stored_seed
from pipeline.validate.totals import DistrictSample, FitTargets, Published, walk_published


def load_fits(layout: Layout, fits: tuple[Fit, ...] = FITS, *, matrix: bool = False
              ) -> tuple[CalibrationPackage, list[FitTargets]]:
    """The package (loaded once) and each fit's targets under its own config."""
    pkg = load_package(layout.package_dir, matrix=matrix)
    views = []
    for fit in fits:
        targets, selected = apply_target_config(layout.target_config(fit.config), pkg.targets,
                                                pkg.target_vocabulary, pkg.engine)
        views.append(FitTargets.of(fit, targets, selected))
    return pkg, views


def walk_storage(layout: Layout, pkg: CalibrationPackage, views: list[FitTargets],
                 runner: Runner, districts: DistrictSample | None = None) -> Published:
    """The one (cached) walk over the published files, for the checks and validation (the
    profile's `gates.district_sample`, if any, for all three, so they share it)."""
    def seed():  # the builtin engine's warm tax cache, kept on disk; policyengine-us has none
        return (stored_seed(pkg.base_h5, layout.validation_cache)
                if pkg.engine.name == "builtin" else None)
    return walk_published(layout.stacked_dir, views, seed, runner, layout.validation_cache,
                          districts)
