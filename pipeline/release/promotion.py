"""What goes into a release, and the one way to cut it: behind every gate, of one lineage.

A release holds both fits' files, so the state and district files and `national.h5` are
published together or not at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.layout import (
    CALIBRATION_LOG,
    DIAGNOSTICS,
    NATIONAL_FIT,
    NATIONAL_TARGET_CONFIG,
    RUN_CONFIG,
    VALIDATION_CSV,
    WEIGHTS,
    Layout,
)
from pipeline.release.gates import require_all_passed
from pipeline.release.lineage import ARTIFACTS, artifact_hashes
from pipeline.release.releases import Release, promote

FIT_RECORD = (WEIGHTS, DIAGNOSTICS, CALIBRATION_LOG, RUN_CONFIG)


def release_files(layout: Layout) -> dict[str, Path]:
    """Release-relative name -> source: the published files, each fit's record (the
    national fit's under `national_weights/`), both configs, validation."""
    files = {name: layout.stacked_dir / name for name in ("states", "districts", "national.h5")}
    for name in FIT_RECORD:
        files[name] = layout.fit_dir / name
        files[f"{NATIONAL_FIT}/{name}"] = layout.national_fit_dir / name
    files[VALIDATION_CSV] = layout.validation_csv
    files["target_config.yaml"] = layout.target_config
    files[NATIONAL_TARGET_CONFIG] = layout.national_target_config
    return files


def fit_summary(run_config: Path) -> dict[str, Any]:
    run = json.loads(run_config.read_text())
    return {"hyperparameters": run["params"], "error_summary": run["error_summary"],
            "records_kept": run["records_kept"], "validation_split": run["validation_split"]}


def promote_release(layout: Layout) -> Release:
    verdicts = require_all_passed(layout)
    quality = next(v for v in verdicts if v.gate == "simulation_quality").report
    package_meta = json.loads((layout.package_dir / "metadata.json").read_text())
    lineage = artifact_hashes(layout, ARTIFACTS)
    return promote(layout.root, files=release_files(layout), manifest_extra={
        "inputs": package_meta["inputs"],
        "profile": package_meta["profile"],
        "target_config_sha256": lineage["target_config"],
        "lineage": lineage,
        "fit": fit_summary(layout.run_config),
        "national_fit": fit_summary(layout.national_run_config),
        "gates": {v.gate: {"passed": v.passed, "summary": v.summary, "inputs": v.inputs}
                  for v in verdicts},
        # Generalization: each fit's held-out groups, median and p90 (gate 2 judged them).
        "heldout": quality["details"]["heldout"],
    })
