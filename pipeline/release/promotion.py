"""What goes into a release, and the one way to cut it: behind every gate, of one lineage."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.layout import (
    CALIBRATION_LOG,
    DIAGNOSTICS,
    RUN_CONFIG,
    VALIDATION_CSV,
    WEIGHTS,
    Layout,
)
from pipeline.release.gates import require_all_passed
from pipeline.release.lineage import ARTIFACTS, artifact_hashes
from pipeline.release.releases import Release, promote


def release_files(layout: Layout) -> dict[str, Path]:
    """Release-relative name -> source: the published files, the fit's record, the config."""
    files = {name: layout.stacked_dir / name for name in ("states", "districts", "national.h5")}
    for name in (WEIGHTS, DIAGNOSTICS, CALIBRATION_LOG, RUN_CONFIG):
        files[name] = layout.fit_dir / name
    files[VALIDATION_CSV] = layout.validation_csv
    files["target_config.yaml"] = layout.target_config
    return files


def promote_release(layout: Layout) -> Release:
    verdicts = require_all_passed(layout)
    quality = next(v for v in verdicts if v.gate == "simulation_quality").report
    run = json.loads(layout.run_config.read_text())
    package_meta = json.loads((layout.package_dir / "metadata.json").read_text())
    lineage = artifact_hashes(layout, ARTIFACTS)
    return promote(layout.root, files=release_files(layout), manifest_extra={
        "inputs": package_meta["inputs"],
        "profile": package_meta["profile"],
        "target_config_sha256": lineage["target_config"],
        "lineage": lineage,
        "fit": {"hyperparameters": run["params"], "error_summary": run["error_summary"],
                "records_kept": run["records_kept"]},
        "gates": {v.gate: {"passed": v.passed, "summary": v.summary, "inputs": v.inputs}
                  for v in verdicts},
        # Generalization: each held-out group's median and p90 score (gate 2 judged them).
        "heldout": quality["details"]["heldout"],
    })
