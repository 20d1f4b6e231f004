"""What goes into a release, and the one way to cut it: behind every gate, of one lineage.

A release holds every fit of the fit table (its record and its config) and the files the
publishing fits made (with their sidecars and the stacking manifest), so the state and
district files and `national.h5` are published together or not at all. A release never
mixes engines: the package, the stacked files and validation must name one engine identity,
which the release manifest records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.core.errors import InputError
from pipeline.core.fit_table import AREA_FILES, FITS, Fit, configs, published
from pipeline.core.layout import VALIDATION_CSV, Layout
from pipeline.publish.stacking import SIDECAR, load_manifest
from pipeline.release.evidence import FIT_RECORD
from pipeline.release.thresholds import GateSettings
from pipeline.release.verdicts import release_hashes, require_all_passed, verdict_path
from pipeline.release.versions import Release, expand_files, promote
from pipeline.validate.totals import engine_label

AREA_DIRS = ("states", "districts")
STACKED_MANIFEST = "stacked_manifest.json"  # the stacking's: files, row offsets, engine
VERDICTS_DIR = "gates"  # where a release keeps the verdicts that judged it


def release_path(fit: Fit, name: str) -> str:
    """Where a release keeps a file of the fit's record."""
    return f"{fit.release_dir}/{name}" if fit.release_dir else name


def release_files(layout: Layout, fits: tuple[Fit, ...] = FITS) -> dict[str, Path]:
    """Release-relative name -> source: the published files, each fit's record (under its
    `release_dir`), every config, validation."""
    files = {name: layout.stacked_dir / name for fit in published(fits)
             for name in (AREA_DIRS if fit.publishes == AREA_FILES else (fit.publishes,))}
    files[SIDECAR] = layout.stacked_dir / SIDECAR
    files[STACKED_MANIFEST] = layout.stacked_manifest
    for name in FIT_RECORD:
        files.update({release_path(fit, name): layout.fit_dir(fit) / name for fit in fits})
    files[VALIDATION_CSV] = layout.validation_csv
    files.update({c.release_name: layout.target_config(c) for c in configs(fits)})
    return files


def fit_summary(run_config: Path) -> dict[str, Any]:
    run = json.loads(run_config.read_text())
    return {"hyperparameters": run["params"], "error_summary": run["error_summary"],
            "records_kept": run["records_kept"], "validation_split": run["validation_split"]}


def release_engine(layout: Layout, package_meta: dict[str, Any]) -> dict[str, str]:
    """The one engine identity of the package, the stacked files and validation; refused
    when they differ (a release never mixes engines)."""
    engine = package_meta.get("engine", {})
    stacked = load_manifest(layout.stacked_dir).get("engine", {})
    names = {"calibration_package": engine, "stacked_h5s": stacked}
    problems = [f"{name} was built with {other or 'an unnamed engine'}" for name, other in
                names.items() if other != engine]
    validated = pd.read_csv(layout.validation_csv, usecols=lambda c: c == "engine")
    labels = set(validated["engine"].dropna()) if "engine" in validated else set()
    expected = engine_label(engine)
    if labels != {expected}:
        problems.append(f"validation_results names {sorted(labels) or 'no engine'}")
    if problems:
        raise InputError(layout.validation_csv, "engine", f"a release never mixes engines: "
                         f"the package is {expected}, but " + "; ".join(problems),
                         "materialize the stages after calibration_package again "
                         "(full_rebuild)")
    return engine


def promote_release(layout: Layout, fits: tuple[Fit, ...] = FITS, *,
                    thresholds: GateSettings | None = None, profile: str | None = None,
                    recorded: Mapping[str, str | None] | None = None) -> Release:
    """Cut a release of exactly the bytes the gates judged (and the verdicts that judged
    them), re-hashing each as it is copied; see `require_all_passed` for the arguments."""
    judged = require_all_passed(layout, fits, thresholds=thresholds, profile=profile,
                                recorded=recorded)
    verdicts = judged.verdicts
    quality = next(v for v in verdicts if v.gate == "simulation_quality").report
    package_meta = json.loads((layout.package_dir / "metadata.json").read_text())
    engine = release_engine(layout, package_meta)
    lineage = release_hashes(layout, fits)
    files = release_files(layout, fits)
    expected = {rel: judged.files[str(src.relative_to(layout.root))]
                for rel, src in expand_files(files).items()
                if str(src.relative_to(layout.root)) in judged.files}
    for gate, sha in judged.verdict_files.items():
        files[f"{VERDICTS_DIR}/{gate}.json"] = verdict_path(layout, gate)
        expected[f"{VERDICTS_DIR}/{gate}.json"] = sha
    return promote(layout.root, files=files, expected=expected, manifest_extra={
        "inputs": package_meta["inputs"],
        "profile": package_meta["profile"],
        "engine": engine,
        # Targets the engine does not compute: left out of the package, reported here.
        "out_of_scope": package_meta.get("out_of_scope", {}),
        # The first (local) fit's config: what manifests before the fit table named.
        "target_config_sha256": lineage[fits[0].config.asset],
        "lineage": lineage,
        **{fit.manifest_key: fit_summary(layout.run_config(fit)) for fit in fits},
        "gates": {v.gate: {"passed": v.passed, "summary": v.summary, "inputs": v.inputs,
                           "judged_with": v.judged_with, "files_judged": len(v.files),
                           "verdict_sha256": judged.verdict_files[v.gate],
                           **({"waiver": v.waiver} if v.waiver else {})}
                  for v in verdicts},
        # Rules accepted on record for the run that made these artifacts (waivers.py).
        "waivers": [{"gate": v.gate, **v.waiver} for v in verdicts if v.waiver],
        # Generalization: each fit's held-out groups, median and p90 (gate 2 judged them).
        "heldout": quality["details"]["heldout"],
    })
