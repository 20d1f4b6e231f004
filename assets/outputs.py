"""Output assets: stacked H5s, validation from the published files, gated promotion."""

import json

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.fit import calibration_weights
from assets.inputs import calibration_package, package_selection_sha, target_config
from assets.metadata import data_version, file_result, gate_result, markdown_table
from pipeline.core.hashing import sha256_file
from pipeline.core.layout import Layout
from pipeline.package.store import load_package
from pipeline.publish.stacking import stack_h5s
from pipeline.release.gates import require_all_passed, thresholds_from
from pipeline.release.releases import load_current_validation, promote
from pipeline.targets.config import apply_target_config
from pipeline.validate import consistency
from pipeline.validate.quality import QualityThresholds, review_quality
from pipeline.validate.sanity import FAIL, WARN, sanity_check_dir
from pipeline.validate.totals import (
    read_validation_csv,
    validate_h5s_cached,
    write_validation_csv,
)
from resources import ProfileResource, StorageResource

OUTPUTS = "outputs"


def _stacked_sha(layout: Layout) -> str:
    """The stacked manifest lists every file with its sha256, so its hash covers them all."""
    return sha256_file(layout.stacked_dir / "manifest.json")


def _weights(layout: Layout) -> np.ndarray:
    return np.load(layout.fit_dir / "weights.npy", allow_pickle=False)


@asset(group_name=OUTPUTS, code_version="1", deps=[calibration_weights, calibration_package],
       description="One H5 per state, per district and a national file; weight > 0 records.")
def stacked_h5s(storage: StorageResource) -> MaterializeResult:
    layout = storage.layout
    result = stack_h5s(load_package(layout.package_dir), _weights(layout), layout.stacked_dir)
    files = result.manifest["files"]
    per_state = pd.DataFrame(
        [(rel, f["households"], f["persons"], f["weight_total"])
         for rel, f in files.items() if rel.startswith("states/")],
        columns=["file", "households", "persons", "weighted households"],
    )
    return MaterializeResult(
        metadata={
            "households": result.n_households,
            "persons": int(result.manifest["persons"]),
            "weighted_households": result.weight_total,
            "state_files": len(per_state),
            "district_files": sum(rel.startswith("districts/") for rel in files),
            "empty_districts": MetadataValue.json(result.empty_districts),
            "empty_states": MetadataValue.json(result.empty_states),
            "bytes": sum((layout.stacked_dir / rel).stat().st_size for rel in files),
            "states": MetadataValue.md(markdown_table(per_state)),
            "path": MetadataValue.path(str(layout.stacked_dir)),
        },
        data_version=data_version(_stacked_sha(layout)),
    )


@asset_check(asset=stacked_h5s, blocking=True,
             description="Production's sanity list on every published file.")
def structural_sanity(storage: StorageResource) -> AssetCheckResult:
    layout = storage.layout
    results = sanity_check_dir(layout.stacked_dir)
    failures = results[results["status"] == FAIL]
    warnings = results[results["status"] == WARN]
    return gate_result(
        layout.gates_dir, "structural_sanity", failures.empty, _stacked_sha(layout),
        f"{len(failures)} FAIL, {len(warnings)} WARN over {results['file'].nunique()} files",
        {"failures": failures.head(20).to_dict("records"),
         "warnings": warnings.head(20).to_dict("records")},
    )


@asset_check(asset=stacked_h5s, blocking=True, additional_deps=[target_config],
             description="X·w from the matrix equals the totals computed from the H5 files.")
def xw_consistency(storage: StorageResource, profile: ProfileResource) -> AssetCheckResult:
    layout = storage.layout
    pkg = load_package(layout.package_dir)
    selected = apply_target_config(layout.target_config, pkg.targets, pkg.target_vocabulary)
    totals = validate_h5s_cached(layout.stacked_dir, pkg.targets, selected,
                                 layout.validation_cache)
    report = consistency.xw_consistency(pkg, _weights(layout), totals, selected,
                            tolerance=profile.load().gates.get("consistency_tolerance", 0.01))
    summary = (f"{report.n_targets} selected targets: max relative deviation "
               f"{report.max_rel_deviation:.3g}, mean {report.mean_rel_deviation:.3g} "
               f"(tolerance {report.tolerance:g}); {len(report.missing)} missing from the files")
    return gate_result(
        layout.gates_dir, "xw_consistency", report.passed, _stacked_sha(layout),
        summary, report.as_dict(),
    )


@asset(group_name=OUTPUTS, code_version="1", deps=[stacked_h5s, target_config],
       description="Every target recomputed by the engine from the published H5 files.")
def validation_results(storage: StorageResource) -> MaterializeResult:
    layout = storage.layout
    pkg = load_package(layout.package_dir)
    selected = apply_target_config(layout.target_config, pkg.targets, pkg.target_vocabulary)
    df = validate_h5s_cached(layout.stacked_dir, pkg.targets, selected, layout.validation_cache)
    write_validation_csv(df, layout.validation_csv)
    trained, held = df[df["in_training"]], df[~df["in_training"]]
    worst = df.sort_values("rel_abs_error", ascending=False).head(15)
    by_group = (df.groupby(["area_type", "variable", "in_training"])["rel_abs_error"]
                .median().rename("median_rel_abs_error").reset_index())
    return file_result(layout.validation_csv, {
        "rows": len(df),
        "training_median_rel_abs_error": _median(trained["rel_abs_error"]),
        "holdout_median_rel_abs_error": _median(held["rel_abs_error"]),
        "sanity_fail_rows": int((df["sanity_check"] == FAIL).sum()),
        "by_group": MetadataValue.md(markdown_table(by_group)),
        "worst_targets": MetadataValue.md(markdown_table(
            worst[["target_name", "target_value", "sim_value", "rel_abs_error"]])),
    })


def _median(values: pd.Series) -> float:
    return float(values.median()) if len(values) else float("nan")


@asset_check(asset=validation_results, blocking=True,
             description="Gate 2: no regression against the CURRENT release; no sanity FAIL.")
def simulation_quality(storage: StorageResource, profile: ProfileResource) -> AssetCheckResult:
    layout = storage.layout
    df = read_validation_csv(layout.validation_csv)
    baseline = load_current_validation(layout.root)
    prof = profile.load()
    thresholds = thresholds_from(QualityThresholds, prof.gates.get("quality", {}), prof.source,
                                 "quality")
    review = review_quality(df, baseline, thresholds)
    failed = [r for r in review.rules if not r.passed]
    against = "the CURRENT release" if baseline is not None else "absolute tolerances"
    summary = (f"judged against {against}: " + ("all rules passed" if not failed else
               "; ".join(f"{r.rule}: {r.detail}" for r in failed)))
    return gate_result(
        layout.gates_dir, "simulation_quality", review.passed, sha256_file(layout.validation_csv),
        summary, review.as_dict(),
    )


@asset(group_name=OUTPUTS, code_version="1", deps=[validation_results],
       automation_condition=(AutomationCondition.eager()
                             & AutomationCondition.all_deps_blocking_checks_passed()),
       description="A versioned, immutable release; CURRENT moves only behind passed gates.")
def promoted_release(context: AssetExecutionContext, storage: StorageResource) -> MaterializeResult:
    layout = storage.layout
    verdicts = require_all_passed(layout.gates_dir, {
        "target_db_integrity": sha256_file(layout.target_db),
        "package_validity": package_selection_sha(layout),
        "fit_review": sha256_file(layout.fit_dir / "weights.npy"),
        "structural_sanity": _stacked_sha(layout),
        "xw_consistency": _stacked_sha(layout),
        "simulation_quality": sha256_file(layout.validation_csv),
    })
    run = json.loads((layout.fit_dir / "run_config.json").read_text())
    package_meta = json.loads((layout.package_dir / "metadata.json").read_text())
    release = promote(layout.root, files=_release_files(layout), manifest_extra={
        "inputs": package_meta["inputs"],
        "profile": package_meta["profile"],
        "target_config_sha256": sha256_file(layout.target_config),
        "fit": {"hyperparameters": run["params"], "error_summary": run["error_summary"],
                "records_kept": run["records_kept"]},
        "gates": {v.gate: {"passed": v.passed, "summary": v.summary} for v in verdicts},
    })
    context.log.info(f"promoted release {release.version}")
    return MaterializeResult(metadata={
        "version": release.version,
        "path": MetadataValue.path(str(release.path)),
        "files": len(release.manifest["files"]),
        "gates": MetadataValue.json(release.manifest["gates"]),
    })


def _release_files(layout: Layout) -> dict:
    files = {name: layout.stacked_dir / name for name in ("states", "districts", "national.h5")}
    for name in ("weights.npy", "diagnostics.csv", "calibration_log.csv", "run_config.json"):
        files[name] = layout.fit_dir / name
    files["validation_results.csv"] = layout.validation_csv
    files["target_config.yaml"] = layout.target_config
    return files
