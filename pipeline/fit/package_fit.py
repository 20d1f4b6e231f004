"""Fit a calibration package directory under a target config, writing the fit's files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.hashing import sha256_file
from pipeline.core.layout import CHECKPOINT, RUN_CONFIG
from pipeline.fit.core import FitResult, fit
from pipeline.fit.outputs import write_outputs
from pipeline.fit.params import FitParams
from pipeline.package.store import (
    PACKAGE_VERSION,
    load_selection,
    package_content_sha,
)


def fit_package(
    package_dir: str | Path,
    target_config_path: str | Path | None,
    out_dir: str | Path,
    params: FitParams,
    resume_from: str | Path | None = None,
    *,
    trust_pickle: bool = False,
) -> FitResult:
    """Load, select targets (never holdout), fit, and write outputs to `out_dir`."""
    pkg, selected = load_selection(package_dir, target_config_path, trust_pickle=trust_pickle)
    targets = pkg.targets
    out = Path(out_dir)
    # run_config.json is written last and marks a complete fit: remove the previous one
    # first, so a fit that dies midway never leaves old files looking complete.
    (out / RUN_CONFIG).unlink(missing_ok=True)
    result = fit(
        pkg.X, targets["value"].to_numpy(dtype=np.float64), pkg.initial_weights, params,
        selected=selected, target_names=targets["target_name"].astype(str).tolist(),
        checkpoint_path=out / CHECKPOINT, resume_from=resume_from,
        source=Path(package_dir) / "targets.csv",
    )
    result.targets = targets
    config_sha = None if target_config_path is None else sha256_file(target_config_path)
    package_sha = None if pkg.path is None else package_content_sha(pkg.path)
    write_outputs(result, out, {
        # What this fit descends from; promotion compares it with what is on disk.
        "lineage": {"calibration_package": package_sha, "target_config": config_sha},
        "target_config_path": None if target_config_path is None else str(target_config_path),
        "package_dir": str(package_dir),
        "package_version": pkg.metadata.get("package_version", PACKAGE_VERSION),
        "resumed_from": None if resume_from is None else str(resume_from),
    })
    return result
