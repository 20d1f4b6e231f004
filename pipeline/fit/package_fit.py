"""Fit a calibration package directory under a target config, writing the fit's files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.hashing import sha256_file
from pipeline.fit.core import FitResult, fit
from pipeline.fit.outputs import CHECKPOINT, RUN_CONFIG, write_outputs
from pipeline.fit.params import FitParams
from pipeline.package.store import PACKAGE_VERSION, load_package
from pipeline.targets.config import apply_target_config


def fit_package(
    package_dir: str | Path,
    target_config_path: str | Path | None,
    out_dir: str | Path,
    params: FitParams,
    resume_from: str | Path | None = None,
) -> FitResult:
    """Load, select targets (never holdout), fit, and write outputs to `out_dir`."""
    pkg = load_package(package_dir)
    targets = pkg.targets
    if target_config_path is None:  # every target but the held-out ones
        selected = targets["holdout"].astype(int).to_numpy() == 0
        config_hash = None
    else:
        selected = apply_target_config(target_config_path, targets, pkg.target_vocabulary)
        config_hash = sha256_file(target_config_path)
    values = targets["value"].to_numpy(dtype=np.float64)
    out = Path(out_dir)
    # run_config.json is written last and marks a complete fit: remove the previous one
    # first, so a fit that dies midway never leaves old files looking complete.
    (out / RUN_CONFIG).unlink(missing_ok=True)
    result = fit(
        pkg.X, values, pkg.initial_weights, params, selected=selected,
        target_names=targets["target_name"].astype(str).tolist(),
        checkpoint_path=out / CHECKPOINT, resume_from=resume_from,
        source=Path(package_dir) / "targets.csv",
    )
    result.targets = targets
    hashes = {"package_metadata": pkg.metadata, "target_config": config_hash,
              "target_config_path": None if target_config_path is None
              else str(target_config_path)}
    for name in ("X.npz", "targets.csv", "initial_weights.npy", "metadata.json"):
        hashes[name] = sha256_file(Path(package_dir) / name)
    write_outputs(result, out, {
        "input_hashes": hashes,
        "package_dir": str(package_dir),
        "package_version": pkg.metadata.get("package_version", PACKAGE_VERSION),
        "resumed_from": None if resume_from is None else str(resume_from),
    })
    return result
