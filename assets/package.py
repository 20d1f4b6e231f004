"""Package stage: clones x geography, takeup draws, the sparse matrix X of every target."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.failures import explains
from assets.metadata import column_schema, data_version, readable
from assets.source import stratified_cps
from assets.stages import stage
from assets.targets import target_db
from pipeline.core.lineage import package_content_sha
from pipeline.core.progress import report_to
from pipeline.package.build import build_package
from pipeline.targets.db import TARGETS
from resources import ComputeResource, ProfileResource, StorageResource


@asset(**stage("package"), code_version="1", deps=[stratified_cps, target_db],
       description="Clones x geography, takeup draws, sparse X over ALL active targets.")
@explains
def calibration_package(
    context: AssetExecutionContext, storage: StorageResource, profile: ProfileResource,
    compute: ComputeResource,
) -> MaterializeResult:
    layout, loaded = storage.layout, profile.load()
    with report_to(context.log.info):
        pkg = build_package(layout.base_h5, layout.target_db, layout.package_dir,
                            loaded.geography, loaded.package, loaded.seed, compute.runner(),
                            profile_record=loaded.as_dict())
    meta = pkg.metadata
    context.log.info(f"package: {pkg.X.shape[0]} targets x {pkg.X.shape[1]} columns")
    return MaterializeResult(
        metadata=readable({
            "targets": pkg.X.shape[0],
            "columns": pkg.X.shape[1],
            "nnz": int(pkg.X.nnz),
            "n_records": meta["n_records"],
            "n_clones": meta["n_clones"],
            "build_seconds": meta["build_seconds"],
            "targets_by_level": MetadataValue.json(meta["targets_by_level"]),
            "engine": MetadataValue.json(meta["engine"]),
            "path": MetadataValue.path(str(layout.package_dir)),
            **column_schema(TARGETS),  # targets.csv, one row per row of X
        }),
        data_version=data_version(package_content_sha(layout.package_dir)),
    )

