"""Input assets: real CPS microdata, the stratified base, the target DB and config, the package."""

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.metadata import data_version, file_result, gate_result, markdown_table
from pipeline.core.hashing import sha256_file, sha256_text
from pipeline.core.layout import Layout
from pipeline.engine import VARIABLES
from pipeline.microdata import read_h5, write_h5
from pipeline.package.build import build_package
from pipeline.package.store import load_package, package_content_sha
from pipeline.package.validity import validate_package
from pipeline.source.stratify import stratify
from pipeline.source.taxcalc_cps import load_source_cps
from pipeline.targets.config import apply_target_config, install_target_config
from pipeline.targets.db import check_target_db, load_targets
from pipeline.targets.etl import build_target_db
from resources import (
    EngineResource,
    ProfileResource,
    StorageResource,
    TargetDatabaseResource,
)

INPUTS = "inputs"


def _microdata_metadata(md) -> dict:
    hh = md.household
    return {
        "households": len(hh),
        "tax_units": len(md.tax_unit),
        "persons": len(md.person),
        "weighted_households": float(hh["household_weight"].sum()),
        "weighted_persons": float(
            md.person["household_id"].map(hh.set_index("household_id")["household_weight"]).sum()
        ),
        "preview": MetadataValue.md(markdown_table(hh.head(10))),
    }


@asset(group_name=INPUTS, code_version="1", description="Tax-Calculator's CPS, uprated.")
def source_cps(storage: StorageResource, profile: ProfileResource) -> MaterializeResult:
    path = storage.layout.source_h5
    md = load_source_cps(profile.load().period)
    write_h5(md, path)
    return file_result(path, _microdata_metadata(md))


@asset(group_name=INPUTS, code_version="1", deps=[source_cps],
       description="Stratified ~12K-household base sample (PolicyEngine H5 layout).")
def stratified_cps(storage: StorageResource, profile: ProfileResource) -> MaterializeResult:
    layout, prof = storage.layout, profile.load()
    md = stratify(read_h5(layout.source_h5), target_households=prof.households, seed=prof.seed,
                  top_agi_quantile=prof.top_agi_quantile)
    write_h5(md, layout.base_h5)
    return file_result(layout.base_h5, _microdata_metadata(md))


@asset(group_name=INPUTS, code_version="1",
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
    })


@asset_check(asset=target_db, blocking=True, description="Schema, NaN, signs, nesting, engine.")
def target_db_integrity(storage: StorageResource) -> AssetCheckResult:
    layout = storage.layout
    problems = check_target_db(layout.target_db, VARIABLES)
    return gate_result(
        layout.gates_dir, "target_db_integrity", not problems, sha256_file(layout.target_db),
        f"{len(problems)} integrity problems", {"problems": problems[:50]},
    )


@asset(group_name=INPUTS, code_version="1", deps=[target_db],
       description="Include/exclude YAML deciding which targets reach the optimizer.")
def target_config(
    storage: StorageResource, targets_resource: TargetDatabaseResource
) -> MaterializeResult:
    layout = storage.layout
    selection = install_target_config(targets_resource.target_config, layout.target_config,
                                      load_targets(layout.target_db))
    sha = sha256_file(layout.target_config)
    return MaterializeResult(
        metadata={
            "source_file": MetadataValue.path(targets_resource.target_config),
            "config_sha256": sha,
            "selected_targets": int(selection.sum()),
            "total_targets": len(selection),
            "config": MetadataValue.md(f"```yaml\n{layout.target_config.read_text()}\n```"),
        },
        data_version=data_version(sha),
    )


@asset(group_name=INPUTS, code_version="1", deps=[stratified_cps, target_db],
       description="Clones x geography, takeup draws, sparse X over ALL active targets.")
def calibration_package(
    context: AssetExecutionContext, storage: StorageResource, profile: ProfileResource,
    engine: EngineResource,
) -> MaterializeResult:
    layout = storage.layout
    pkg = build_package(layout.base_h5, layout.target_db, layout.package_dir, profile.load())
    meta = pkg.metadata
    context.log.info(f"package: {pkg.X.shape[0]} targets x {pkg.X.shape[1]} columns")
    return MaterializeResult(
        metadata={
            "targets": pkg.X.shape[0],
            "columns": pkg.X.shape[1],
            "nnz": int(pkg.X.nnz),
            "n_records": meta["n_records"],
            "n_clones": meta["n_clones"],
            "build_seconds": meta["build_seconds"],
            "targets_by_level": MetadataValue.json(meta["targets_by_level"]),
            "engine": MetadataValue.json(engine.describe()),
            "path": MetadataValue.path(str(layout.package_dir)),
        },
        data_version=data_version(package_content_sha(layout.package_dir)),
    )


@asset_check(asset=calibration_package, blocking=True, additional_deps=[target_config],
             description="No target the current config selects is impossible; "
                         "strict-ratio report.")
def package_validity(storage: StorageResource) -> AssetCheckResult:
    layout = storage.layout
    pkg = load_package(layout.package_dir)
    selected = apply_target_config(layout.target_config, pkg.targets, pkg.target_vocabulary)
    report = validate_package(pkg, selected)
    return gate_result(
        layout.gates_dir, "package_validity", report.passed, package_selection_sha(layout),
        report.summary().splitlines()[0],
        {
            "impossible": report.impossible["target_name"].head(50).tolist(),
            "strict_failures": len(report.strict_failures),
            "worst_strict": report.strict_failures.head(10).to_dict("records"),
        },
    )


def package_selection_sha(layout: Layout) -> str:
    """What package validity judges: this package under this target config."""
    return sha256_text(package_content_sha(layout.package_dir) + sha256_file(layout.target_config))
