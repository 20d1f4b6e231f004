"""Package stage: clones x geography, takeup draws, the sparse matrix X of every target the
engine computes (the engine: the profile's `engine:`, `ENGINE=`, or the launchpad's)."""

from typing import Literal

import pydantic
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.failures import explains
from assets.metadata import column_schema, data_version, readable
from assets.source import stratified_cps
from assets.stages import stage
from assets.targets import target_db
from pipeline.config import Profile
from pipeline.core.lineage import package_content_sha
from pipeline.core.progress import report_to
from pipeline.package.build import build_package
from pipeline.targets.db import TARGETS
from resources import ComputeResource, ProfileResource, StorageResource


def package_asset(loaded: Profile) -> AssetsDefinition:
    """calibration_package, its launchpad showing the engine of the loaded profile."""

    class PackageConfig(Config):
        """The simulation engine that builds X (and, downstream, judges the files)."""

        engine: Literal["builtin", "policyengine"] = pydantic.Field(
            loaded.engine, description="builtin (Tax-Calculator and our SNAP test) or "
            "policyengine (policyengine-us, the engine the files' users run); left as shown "
            "it follows the profile")

    @asset(name="calibration_package", **stage("package"), code_version="2",
           deps=[stratified_cps, target_db],
           description="Clones x geography, takeup draws, sparse X over every active target "
                       "the engine computes; the others are reported out of scope.")
    @explains
    def _package(context: AssetExecutionContext, config: PackageConfig,
                 storage: StorageResource, profile: ProfileResource,
                 compute: ComputeResource) -> MaterializeResult:
        layout, run = storage.layout, profile.load()
        engine = config.engine if config.engine != loaded.engine else run.engine
        with report_to(context.log.info):
            pkg = build_package(layout.base_h5, layout.target_db, layout.package_dir,
                                run.geography, run.package, run.seed, compute.runner(),
                                profile_record=run.as_dict(), engine=engine,
                                cache_dir=layout.engine_cache)
        meta = pkg.metadata
        context.log.info(f"package: {pkg.X.shape[0]} targets x {pkg.X.shape[1]} columns "
                         f"under {meta['engine']['name']}")
        skipped = meta["out_of_scope"]
        return MaterializeResult(
            metadata=readable({
                "targets": pkg.X.shape[0],
                "columns": pkg.X.shape[1],
                "nnz": int(pkg.X.nnz),
                "n_records": meta["n_records"],
                "n_clones": meta["n_clones"],
                "build_seconds": meta["build_seconds"],
                "seconds_per_state": meta["state_seconds"],
                "targets_by_level": meta["targets_by_level"],
                "engine": meta["engine"],
                "out_of_scope_targets": skipped["targets"],
                "out_of_scope": _out_of_scope_table(skipped),
                "path": MetadataValue.path(str(layout.package_dir)),
                **column_schema(TARGETS),  # targets.csv, one row per row of X
            }),
            data_version=data_version(package_content_sha(layout.package_dir)),
        )

    return _package


def _out_of_scope_table(skipped: dict):
    import pandas as pd

    return pd.DataFrame({"engine": [skipped["engine"]], "targets": [skipped["targets"]],
                         "variables": [", ".join(skipped["variables"])]})

