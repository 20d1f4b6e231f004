"""What goes into a release, and the one way to cut it: behind every gate, of one lineage.

A release holds every fit of the fit table (its record and its config) and the files the
publishing fits made, so the state and district files and `national.h5` are published
together or not at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.fit_table import AREA_FILES, FITS, Fit, configs, published
from pipeline.core.layout import (
    CALIBRATION_LOG,
    DIAGNOSTICS,
    RUN_CONFIG,
    VALIDATION_CSV,
    WEIGHTS,
    Layout,
)
from pipeline.release.verdicts import release_hashes, require_all_passed
from pipeline.release.versions import Release, promote

FIT_RECORD = (WEIGHTS, DIAGNOSTICS, CALIBRATION_LOG, RUN_CONFIG)
AREA_DIRS = ("states", "districts")


def release_path(fit: Fit, name: str) -> str:
    """Where a release keeps a file of the fit's record."""
    return f"{fit.release_dir}/{name}" if fit.release_dir else name


def release_files(layout: Layout, fits: tuple[Fit, ...] = FITS) -> dict[str, Path]:
    """Release-relative name -> source: the published files, each fit's record (under its
    `release_dir`), every config, validation."""
    files = {name: layout.stacked_dir / name for fit in published(fits)
             for name in (AREA_DIRS if fit.publishes == AREA_FILES else (fit.publishes,))}
    for name in FIT_RECORD:
        files.update({release_path(fit, name): layout.fit_dir(fit) / name for fit in fits})
    files[VALIDATION_CSV] = layout.validation_csv
    files.update({c.release_name: layout.target_config(c) for c in configs(fits)})
    return files


def fit_summary(run_config: Path) -> dict[str, Any]:
    run = json.loads(run_config.read_text())
    return {"hyperparameters": run["params"], "error_summary": run["error_summary"],
            "records_kept": run["records_kept"], "validation_split": run["validation_split"]}


def promote_release(layout: Layout, fits: tuple[Fit, ...] = FITS) -> Release:
    verdicts = require_all_passed(layout, fits)
    quality = next(v for v in verdicts if v.gate == "simulation_quality").report
    package_meta = json.loads((layout.package_dir / "metadata.json").read_text())
    lineage = release_hashes(layout, fits)
    return promote(layout.root, files=release_files(layout, fits), manifest_extra={
        "inputs": package_meta["inputs"],
        "profile": package_meta["profile"],
        # The first (local) fit's config: what manifests before the fit table named.
        "target_config_sha256": lineage[fits[0].config.asset],
        "lineage": lineage,
        **{fit.manifest_key: fit_summary(layout.run_config(fit)) for fit in fits},
        "gates": {v.gate: {"passed": v.passed, "summary": v.summary, "inputs": v.inputs,
                           **({"waiver": v.waiver} if v.waiver else {})}
                  for v in verdicts},
        # Rules accepted on record for the run that made these artifacts (waivers.py).
        "waivers": [{"gate": v.gate, **v.waiver} for v in verdicts if v.waiver],
        # Generalization: each fit's held-out groups, median and p90 (gate 2 judged them).
        "heldout": quality["details"]["heldout"],
    })
