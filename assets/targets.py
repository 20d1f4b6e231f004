"""Targets stage: the target DB of real public statistics, and the user's target config."""

from dagster import MaterializeResult, MetadataValue, asset

from assets.gates import gate_check
from assets.metadata import column_schema, data_version, file_result, markdown_table
from pipeline.core.hashing import sha256_file
from pipeline.targets.config import install_target_config
from pipeline.targets.db import TARGETS, load_targets
from pipeline.targets.etl import build_target_db
from resources import StorageResource, TargetConfigResource

GROUP = "targets"


@asset(group_name=GROUP, code_version="1",
       description="SQLite target DB of real public statistics (production schema).")
def target_db(storage: StorageResource) -> MaterializeResult:
    path = storage.layout.target_db
    build_target_db(path)
    targets = load_targets(path)
    counts = targets.groupby(["geo_level", "variable"]).size().rename("targets").reset_index()
    return file_result(path, {
        "targets": len(targets),
        "held_out": int(targets["holdout"].sum()),
        "by_level_and_variable": MetadataValue.md(markdown_table(counts)),
        **column_schema(TARGETS),
    })


target_db_integrity = gate_check("target_db_integrity")


@asset(group_name=GROUP, code_version="1", deps=[target_db],
       description="Include/exclude YAML deciding which targets reach the optimizer.")
def target_config(
    storage: StorageResource, target_config_file: TargetConfigResource
) -> MaterializeResult:
    layout = storage.layout
    selection = install_target_config(target_config_file.path, layout.target_config,
                                      load_targets(layout.target_db))
    sha = sha256_file(layout.target_config)
    return MaterializeResult(
        metadata={
            "source_file": MetadataValue.path(target_config_file.path),
            "config_sha256": sha,
            "db_targets_selected": int(selection.sum()),
            "db_targets": len(selection),
            "config": MetadataValue.md(f"```yaml\n{layout.target_config.read_text()}\n```"),
        },
        data_version=data_version(sha),
    )
