"""The Definitions object that `dagster dev`, the CLI runner and the tests load."""

from dagster import Definitions

from assets.automation import (
    automation_sensor,
    full_rebuild,
    refit,
    target_config_changed,
    weekly_rebuild,
)
from assets.fit import calibration_weights, fit_review
from assets.inputs import (
    calibration_package,
    package_validity,
    source_cps,
    stratified_cps,
    target_config,
    target_db,
    target_db_integrity,
)
from assets.outputs import (
    promoted_release,
    simulation_quality,
    stacked_h5s,
    structural_sanity,
    validation_results,
    xw_consistency,
)
from resources import (
    ComputeResource,
    EngineResource,
    ProfileResource,
    StorageResource,
    TargetDatabaseResource,
)

ASSETS = [
    source_cps, stratified_cps, target_db, target_config, calibration_package,
    calibration_weights, stacked_h5s, validation_results, promoted_release,
]
CHECKS = [
    target_db_integrity, package_validity, fit_review, structural_sanity,
    xw_consistency, simulation_quality,
]


def make_definitions(**resource_overrides: object) -> Definitions:
    """The whole project; tests override resources (storage root, profile, target config)."""
    resources = {
        "storage": StorageResource(),
        "compute": ComputeResource(),
        "engine": EngineResource(),
        "targets_resource": TargetDatabaseResource(),
        "profile": ProfileResource(),
        **resource_overrides,
    }
    return Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[full_rebuild, refit],
        schedules=[weekly_rebuild],
        sensors=[target_config_changed, automation_sensor],
        resources=resources,
    )


defs = make_definitions()
