"""Validate stage: every target recomputed from the published files, and gate 2."""

import pandas as pd
from dagster import MaterializeResult, MetadataValue, asset

from assets.gates import gate_check
from assets.metadata import column_schema, file_result, markdown_table
from assets.publish import stacked_h5s
from assets.targets import target_config
from pipeline.package.store import load_selection
from pipeline.release.gates import published
from pipeline.release.lineage import parent_hashes, write_lineage
from pipeline.validate.sanity import FAIL
from pipeline.validate.totals import (
    VALIDATION_RESULTS,
    validate_h5s,
    write_validation_csv,
)
from resources import ComputeResource, StorageResource


@asset(group_name="validate", code_version="1", deps=[stacked_h5s, target_config],
       description="Every target recomputed by the engine from the published H5 files.")
def validation_results(storage: StorageResource, compute: ComputeResource) -> MaterializeResult:
    layout = storage.layout
    lineage = parent_hashes(layout, "validation_results")
    pkg, selected = load_selection(layout.package_dir, layout.target_config, matrix=False)
    df = validate_h5s(published(layout, pkg, compute.runner()), pkg.targets, selected)
    write_validation_csv(df, layout.validation_csv)
    write_lineage(layout.validation_lineage, lineage)
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
        **column_schema(VALIDATION_RESULTS),
    })


def _median(values: pd.Series) -> float:
    return float(values.median()) if len(values) else float("nan")


simulation_quality = gate_check("simulation_quality")
