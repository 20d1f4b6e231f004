"""The fits under a storage root as validation and the gates see them.

Each fit's view of the package (its targets under its own config, `FitTargets`), the
one (cached) walk over the published files that the checks and the validation results
share, and every fit's validation rows (`validate_fits`).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from pipeline.core.fit_table import FITS, Fit, figures_only, published
from pipeline.core.layout import Layout
from pipeline.core.parallel import Runner
from pipeline.package.store import CalibrationPackage, load_package
from pipeline.targets.target_config import apply_target_config
from pipeline.validate.published import stored_seed
from pipeline.validate.totals import (
    DistrictSample,
    FitTargets,
    Published,
    engine_label,
    validate_h5s,
    validate_matrix,
    walk_published,
)


def load_fits(layout: Layout, fits: tuple[Fit, ...] = FITS, *, matrix: bool = False
              ) -> tuple[CalibrationPackage, list[FitTargets]]:
    """The package (loaded once) and each fit's targets under its own config, selected as
    the fit selected them (`split_trained`)."""
    pkg = load_package(layout.package_dir, matrix=matrix)
    views = []
    for fit in fits:
        targets, selected = apply_target_config(layout.target_config(fit.config), pkg.targets,
                                                pkg.target_vocabulary, pkg.engine,
                                                train_split=split_trained(layout, fit))
        views.append(FitTargets.of(fit, targets, selected))
    return pkg, views


def split_trained(layout: Layout, fit: Fit) -> bool:
    """Whether the fit trained the validation split, as its run config records (a learned
    allocation keeps it out); before the fit has run, as the fit table says."""
    path = layout.run_config(fit)
    recorded = json.loads(path.read_text()).get("trains_split") if path.is_file() else None
    return not fit.holds_out_split if recorded is None else bool(recorded)


def walk_storage(layout: Layout, pkg: CalibrationPackage, views: list[FitTargets],
                 runner: Runner, districts: DistrictSample | None = None) -> Published:
    """The one (cached) walk over the published files, for the checks and validation (the
    profile's `gates.district_sample`, if any, for all three, so they share it)."""
    def seed():  # the builtin engine's warm tax cache, kept on disk; policyengine-us has none
        return (stored_seed(pkg.base_h5, layout.validation_cache)
                if pkg.engine.name == "builtin" else None)
    return walk_published(layout.stacked_dir, views, seed, runner, layout.validation_cache,
                          districts)


def validate_fits(layout: Layout, runner: Runner, fits: tuple[Fit, ...] = FITS,
                  districts: DistrictSample | None = None) -> pd.DataFrame:
    """Every fit's validation rows: the publishing fits' from their files (one walk, over
    the profile's district sample if any), the figures-only fits' from the package's
    matrix and their weights."""
    shown, others = published(fits), figures_only(fits)
    pkg, views = load_fits(layout, shown)
    frames = [validate_h5s(walk_storage(layout, pkg, views, runner, districts), views)]
    if others:
        pkg, extra = load_fits(layout, others, matrix=True)
        engine = engine_label(pkg.metadata.get("engine", {}))
        frames += [validate_matrix(pkg.X, view, np.load(layout.weights(fit),
                                                        allow_pickle=False), engine)
                   for fit, view in zip(others, extra, strict=True)]
    return pd.concat(frames, ignore_index=True)
