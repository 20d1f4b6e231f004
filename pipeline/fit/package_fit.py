"""Fit a calibration package directory under a target config, writing the fit's files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.fit_table import LOCAL, Fit, allocated
from pipeline.core.layout import CHECKPOINT, RUN_CONFIG
from pipeline.core.lineage import ALLOCATION, record_parents
from pipeline.fit import training
from pipeline.fit.allocation import load_allocation
from pipeline.fit.frontier import frontier_point, record_frontier
from pipeline.fit.outputs import write_outputs
from pipeline.fit.params import FitParams
from pipeline.fit.training import FitResult, error_summary
from pipeline.microdata import read_h5
from pipeline.package.store import PACKAGE_VERSION, CalibrationPackage, load_selection
from pipeline.targets.split import split_scope


def fit_package(
    package_dir: str | Path,
    target_config_path: str | Path | None,
    out_dir: str | Path,
    params: FitParams,
    resume_from: str | Path | None = None,
    *,
    trust_pickle: bool = False,
    fit: Fit = LOCAL,
    allocation_dir: str | Path | None = None,
) -> FitResult:
    """Load, select targets (never holdout), fit, and write outputs to `out_dir`.

    `fit` (an entry of the fit table) names the artifacts the recorded lineage speaks of.
    With `allocation: learned`, the allocation in `allocation_dir` chooses the records
    kept, and joins the lineage.
    """
    pkg, selected = load_selection(package_dir, target_config_path, trust_pickle=trust_pickle)
    targets = pkg.targets
    out = Path(out_dir)
    lineage = record_parents(fit.weights, {"calibration_package": pkg.path,
                                           fit.config.asset: target_config_path}, (fit,))
    allocation = None
    if params.allocation == "learned":
        if allocation_dir is None:
            raise InputError(None, "allocation", "allocation: learned needs the allocation "
                             "search's output", "pass --allocation DIR (the "
                             "sparsity_allocation directory), or set allocation: budget")
        # Searched on this package, and on this fit's config as the allocated fit's.
        allocation = load_allocation(allocation_dir, pkg.X.shape[1], {
            "calibration_package": lineage["calibration_package"],
            allocated().config.asset: lineage[fit.config.asset]})
        lineage[ALLOCATION] = allocation.sha256  # an optional parent: recorded when kept
    # run_config.json is written last and marks a complete fit: remove the previous one
    # first, so a fit that dies midway never leaves old files looking complete.
    (out / RUN_CONFIG).unlink(missing_ok=True)
    result = training.fit(
        pkg.X, targets["value"].to_numpy(dtype=np.float64), pkg.initial_weights, params,
        selected=selected, target_names=targets["target_name"].astype(str).tolist(),
        checkpoint_path=out / CHECKPOINT, resume_from=resume_from,
        source=Path(package_dir) / "targets.csv",
        design_weights=design_weights(pkg) if params.hybrid_share > 0 else None,
        allocation=allocation,
    )
    result.targets = targets
    scope = split_scope(targets, selected)
    result.error_summaries["validation_split"] = {
        **error_summary(result.estimates[scope], result.y[scope]), "count": int(scope.sum())}
    out.mkdir(parents=True, exist_ok=True)
    result.frontier = record_frontier(out, frontier_point(result, lineage))
    write_outputs(result, out, {
        # What this fit descends from; promotion compares it with what is on disk.
        "lineage": lineage,
        "target_config_path": None if target_config_path is None else str(target_config_path),
        "package_dir": str(package_dir),
        "package_version": pkg.metadata.get("package_version", PACKAGE_VERSION),
        "resumed_from": None if resume_from is None else str(resume_from),
    })
    return result


def design_weights(pkg: CalibrationPackage) -> np.ndarray | None:
    """Each column's survey design weight: its base household's (the stratified sample's
    `household_weight`); None for a package without a base file (a production pickle)."""
    if pkg.path is None:
        return None
    base = read_h5(pkg.base_h5).household["household_weight"].to_numpy(np.float64)
    return np.tile(base, pkg.n_clones)
