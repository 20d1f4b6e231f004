"""Targets stage: the target DB of real public statistics and the users' target configs
(one asset per config of the fit table), each with a warning check: the conflicts between
levels it trains that none of its reconcile rules resolves."""

from pathlib import Path

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.failures import explains
from assets.metadata import (
    check_result,
    column_schema,
    data_version,
    file_result,
    markdown_table,
    readable,
)
from assets.stages import stage
from pipeline.core.fit_table import Fit, TargetConfig, configs
from pipeline.core.hashing import sha256_file
from pipeline.targets.db import TARGETS, load_targets
from pipeline.targets.etl import build_target_db
from pipeline.targets.hierarchy import config_hierarchy_report, gap_summary, hierarchy_gaps
from pipeline.targets.target_config import apply_target_config, install_target_config
from resources import ProfileResource, StorageResource, TargetConfigResource

STAGE = "targets"


@asset(**stage(STAGE), code_version="2",
       description="SQLite target DB of real public statistics (production schema), uprated "
                   "to the profile's year.")
@explains
def target_db(storage: StorageResource, profile: ProfileResource) -> MaterializeResult:
    path = storage.layout.target_db
    loaded = profile.load()
    summary = build_target_db(path, year=loaded.period, split_share=loaded.validation_split.share,
                              split_seed=loaded.validation_split.seed)
    targets = load_targets(path)
    counts = targets.groupby(["geo_level", "variable"]).size().rename("targets").reset_index()
    gaps = hierarchy_gaps(targets)
    return file_result(path, {
        "targets": len(targets),
        "held_out": int(targets["holdout"].sum()),
        "held_out_by_group": MetadataValue.json(summary["by_holdout_group"]),
        "by_level_and_variable": MetadataValue.md(markdown_table(counts)),
        "uprating": MetadataValue.md(markdown_table(pd.DataFrame(summary["uprating"]))),
        "hierarchy_gaps": MetadataValue.md(markdown_table(gap_summary(gaps))),
        "largest_gaps": MetadataValue.md(markdown_table(gaps.head(15))),
        **column_schema(TARGETS),
    })


def _install(source: str, destination: Path, targets: pd.DataFrame) -> MaterializeResult:
    """Validate a target config against the DB and publish the copy a fit reads."""
    configured, selection = install_target_config(source, destination, targets)
    changed = configured[configured["reconcile_rule"] != ""]
    reconciled = changed.groupby("reconcile_rule")["reconcile_factor"].agg(
        targets="size", min_factor="min", max_factor="max").reset_index()
    sha = sha256_file(destination)
    return MaterializeResult(
        metadata=readable({
            "source_file": MetadataValue.path(source),
            "config_sha256": sha,
            "db_targets_selected": int(selection.sum()),
            "db_targets": len(selection),
            "reconciled": MetadataValue.md(markdown_table(reconciled)),
            "hierarchy_gaps_after": MetadataValue.md(markdown_table(
                gap_summary(hierarchy_gaps(configured)))),
            "config": MetadataValue.md(f"```yaml\n{destination.read_text()}\n```"),
        }),
        data_version=data_version(sha),
    )


def target_config_assets(fits: tuple[Fit, ...]) -> list[AssetsDefinition]:
    """One asset per target config of the fit table: the copy its fits read."""
    return [_config_asset(config, [f for f in fits if f.config == config])
            for config in configs(fits)]


def _config_asset(config: TargetConfig, readers: list[Fit]) -> AssetsDefinition:
    @asset(name=config.asset, **stage(STAGE), code_version="2", deps=[target_db],
           description="Include/exclude/reconcile YAML deciding what reaches the "
                       f"{' and the '.join(f.label for f in readers)}.")
    @explains
    def _installed(storage: StorageResource,
                   target_config_file: TargetConfigResource) -> MaterializeResult:
        layout = storage.layout
        return _install(target_config_file.source(config), layout.target_config(config),
                        load_targets(layout.target_db))

    return _installed


def hierarchy_checks(fits: tuple[Fit, ...]) -> list[AssetChecksDefinition]:
    """One `target_hierarchy` warning per target config of the fit table."""
    return [_hierarchy_check(config) for config in configs(fits)]


def _hierarchy_check(config: TargetConfig) -> AssetChecksDefinition:
    @asset_check(name="target_hierarchy", asset=config.asset, blocking=False,
                 description="Warning: conflicts between levels this config trains (a parent "
                             "target and the sum of its children, beyond "
                             "gates.hierarchy_tolerance) that none of its reconcile rules "
                             "resolves; blocks nothing.")
    def _check(storage: StorageResource, profile: ProfileResource) -> AssetCheckResult:
        layout = storage.layout
        targets = load_targets(layout.target_db)
        configured, selected = apply_target_config(layout.target_config(config), targets)
        return check_result(config_hierarchy_report(
            targets, configured, selected, profile.load().gates.hierarchy_tolerance), warn=True)

    return _check
