"""Validate stage: every target recomputed from each publishing fit's files, and each
figures-only fit's on the matrix (gate 2, its check, comes from the gate table)."""

import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from assets.failures import explains
from assets.metadata import column_schema, file_result, markdown_table
from assets.stages import stage
from pipeline.core.fit_table import Fit, configs, figures_only
from pipeline.core.layout import Layout
from pipeline.core.lineage import parent_hashes, write_lineage
from pipeline.core.progress import report_to
from pipeline.validate.fit_views import validate_fits
from pipeline.validate.quality import heldout_metrics
from pipeline.validate.sanity import FAIL
from pipeline.validate.scoring import ABSOLUTE, IN_SCOPE, OUT_OF_SCOPE
from pipeline.validate.totals import VALIDATION_RESULTS, write_validation_csv
from resources import ComputeResource, ProfileResource, StorageResource


def validation_asset(fits: tuple[Fit, ...]) -> AssetsDefinition:
    @asset(name="validation_results", **stage("validate"), code_version="4",
           deps=["stacked_h5s", *(c.asset for c in configs(fits)),
                 *(f.weights for f in figures_only(fits))],
           description="Every target recomputed by the engine from each fit's published H5 "
                       "files (a fit that publishes none, such as a held-out fit: X·w on "
                       "the package's matrix), scored relative (or absolute near zero), "
                       "with its provenance.")
    @explains
    def _validation(context: AssetExecutionContext, storage: StorageResource,
                    profile: ProfileResource, compute: ComputeResource) -> MaterializeResult:
        layout = storage.layout
        lineage = parent_hashes(layout, "validation_results", fits)
        sample = profile.load().gates.district_sample  # the checks walk the same files
        with report_to(context.log.info):
            df = validate_fits(layout, compute.runner(), fits, sample)
        write_validation_csv(df, layout.validation_csv)
        write_lineage(layout.validation_lineage, lineage)
        return _metadata(df, layout)

    return _validation


def _metadata(df: pd.DataFrame, layout: Layout) -> MaterializeResult:
    scored = df[df["scope"] == IN_SCOPE]
    trained = scored[scored["in_training"]]
    heldout = pd.DataFrame(heldout_metrics(df)).T.rename_axis("holdout_group").reset_index()
    worst = scored.sort_values("score", ascending=False).head(15)
    by_group = (scored.groupby(["fit", "area_type", "variable", "in_training"])["score"]
                .agg(["count", "mean", "median"]).reset_index())
    columns = ["fit", "target_name", "target_value", "sim_value", "error_rule", "score",
               "original_value", "original_period", "reconcile_rule"]
    return file_result(layout.validation_csv, {
        "rows": len(df),
        **{f"training_median_score_{fit}": _median(rows["score"])
           for fit, rows in trained.groupby("fit")},
        **{f"heldout_{r.holdout_group.replace('/', '_')}_{k}": float(getattr(r, k))
           for r in heldout.itertuples() for k in ("median", "p90")},
        "absolute_rule_rows": int((df["error_rule"] == ABSOLUTE).sum()),
        "out_of_scope_rows": int((df["scope"] == OUT_OF_SCOPE).sum()),
        "uprated_rows": int((df["uprating_factor"] != 1).sum()),
        "reconciled_rows": int((df["reconcile_rule"] != "").sum()),
        "sanity_fail_rows": int((df["sanity_check"] == FAIL).sum()),
        "heldout": MetadataValue.md(markdown_table(heldout)),
        "by_group": MetadataValue.md(markdown_table(by_group)),
        "worst_targets": MetadataValue.md(markdown_table(worst[columns])),
        "out_of_scope": MetadataValue.md(markdown_table(
            df.loc[df["scope"] == OUT_OF_SCOPE, columns])),
        **column_schema(VALIDATION_RESULTS),
    })


def _median(values: pd.Series) -> float:
    return float(values.median()) if len(values) else float("nan")

