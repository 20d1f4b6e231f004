"""The Definitions that `dagster dev`, `make run` and the tests load.

`make_definitions` decides each resource's value when the code location loads: an explicit
argument (tests, `python -m assets.run --profile`), else a `dg.EnvVar` that Dagster
resolves when a run starts, else the default. The profile is read at load too, so the
launchpad shows its fit values and a misspelt profile is refused before any run.
"""

import os
from pathlib import Path

from dagster import Definitions, EnvVar, in_process_executor

from assets.automation import (
    automation_sensor,
    full_rebuild,
    refit,
    target_config_changed,
    weekly_rebuild,
)
from assets.fit import fit_assets, fit_review, national_fit_review
from assets.package import calibration_package, package_validity
from assets.publish import stacked_h5s, structural_sanity, xw_consistency
from assets.release import promoted_release
from assets.source import source_cps, stratified_cps
from assets.sparsity import allocation_search, sparsity_asset
from assets.targets import (
    national_target_config,
    target_config,
    target_db,
    target_db_integrity,
    target_hierarchy,
)
from assets.validate import simulation_quality, validation_results
from pipeline.config import load_profile
from pipeline.core.packaged import DEFAULT_NATIONAL_TARGET_CONFIG, DEFAULT_TARGET_CONFIG
from pipeline.core.parallel import LOCAL
from pipeline.core.parallel import SETTING as DASK_SETTING
from resources import (
    BASELINE_ENV,
    DEFAULT_STORAGE_ROOT,
    DEVICE_ENV,
    STORAGE_ENV,
    ComputeResource,
    ProfileResource,
    StorageResource,
    TargetConfigResource,
)

CHECKS = [target_db_integrity, target_hierarchy, package_validity, fit_review,
          national_fit_review, structural_sanity, xw_consistency, simulation_quality]


def _setting(value: str | None, env: str, default: str) -> str | EnvVar:
    if value is not None:
        return value
    return EnvVar(env) if os.environ.get(env) else default


def make_definitions(
    *, profile: str | None = None, storage_root: str | None = None,
    target_config_path: str | None = None, national_target_config_path: str | None = None,
    device: str | None = None, dask: str | None = None, workers: int | None = None,
    baseline: str | None = None,
) -> Definitions:
    profile_name = profile or os.environ.get("CALIBRATION_PROFILE") or "demo"
    loaded = load_profile(profile_name)
    resources = {
        "storage": StorageResource(
            root=_setting(storage_root, STORAGE_ENV, str(Path(DEFAULT_STORAGE_ROOT).resolve())),
            baseline=_setting(baseline, BASELINE_ENV, "current")),
        "profile": ProfileResource(name=profile_name),
        "compute": ComputeResource(
            device=_setting(device, DEVICE_ENV, "auto"),
            dask=_setting(dask, DASK_SETTING, LOCAL),
            workers=workers if workers is not None else int(
                os.environ.get("CALIBRATION_DASK_WORKERS") or 0)),
        "target_config_file": TargetConfigResource(
            path=_setting(target_config_path, "CALIBRATION_TARGET_CONFIG",
                          str(DEFAULT_TARGET_CONFIG)),
            national_path=_setting(national_target_config_path,
                                   "CALIBRATION_NATIONAL_TARGET_CONFIG",
                                   str(DEFAULT_NATIONAL_TARGET_CONFIG))),
    }
    assets = [source_cps, stratified_cps, target_db, target_config, national_target_config,
              calibration_package, sparsity_asset(loaded), *fit_assets(loaded), stacked_h5s,
              validation_results,
              promoted_release]
    return Definitions(
        assets=assets,
        # One process per run: its imports and Tax-Calculator's compiled code stay warm
        # from step to step (a process per step paid them at every step), and the storage
        # lock its resource takes lives exactly as long as the run. The parallel work
        # inside steps goes to the Dask cluster of the compute resource.
        executor=in_process_executor,
        asset_checks=CHECKS,
        jobs=[full_rebuild, refit, allocation_search],
        schedules=[weekly_rebuild],
        sensors=[target_config_changed, automation_sensor],
        resources=resources,
    )


defs = make_definitions()
