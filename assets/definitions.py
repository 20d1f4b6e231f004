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
    config_sensor,
    full_rebuild,
    refit_job,
    weekly_rebuild,
)
from assets.fit import fit_assets
from assets.gates import gate_checks
from assets.package import package_asset
from assets.publish import stacked_asset
from assets.release import release_asset
from assets.source import source_cps, stratified_cps
from assets.sparsity import allocation_search, sparsity_asset
from assets.targets import hierarchy_checks, target_config_assets, target_db
from assets.validate import validation_asset
from pipeline.core.fit_table import FITS, LOCAL_CONFIG, NATIONAL_CONFIG, Fit
from pipeline.core.packaged import packaged
from pipeline.core.parallel import LOCAL
from pipeline.core.parallel import SETTING as DASK_SETTING
from resources import (
    BASELINE_ENV,
    DEFAULT_STORAGE_ROOT,
    DEVICE_ENV,
    ENGINE_ENV,
    STORAGE_ENV,
    ComputeResource,
    ProfileResource,
    StorageResource,
    TargetConfigResource,
    profile_with_engine,
)
from resources.waiver import WaiverResource


def _setting(value: str | None, env: str, default: str) -> str | EnvVar:
    if value is not None:
        return value
    return EnvVar(env) if os.environ.get(env) else default


def make_definitions(
    *, profile: str | None = None, storage_root: str | None = None,
    target_config_path: str | None = None, national_target_config_path: str | None = None,
    device: str | None = None, dask: str | None = None, workers: int | None = None,
    baseline: str | None = None, fits: tuple[Fit, ...] = FITS, engine: str | None = None,
) -> Definitions:
    """`fits` is the fit table the assets, checks and release are generated from; `engine`
    (else `CALIBRATION_ENGINE`) overrides the profile's."""
    profile_name = profile or os.environ.get("CALIBRATION_PROFILE") or "demo"
    loaded = profile_with_engine(profile_name, engine or os.environ.get(ENGINE_ENV, ""))
    profile_resource = ProfileResource(name=profile_name,
                                       engine=_setting(engine, ENGINE_ENV, ""))
    resources = {
        "storage": StorageResource(
            root=_setting(storage_root, STORAGE_ENV, str(Path(DEFAULT_STORAGE_ROOT).resolve())),
            baseline=_setting(baseline, BASELINE_ENV, "current"), profile=profile_resource),
        "profile": profile_resource,
        "compute": ComputeResource(
            device=_setting(device, DEVICE_ENV, "auto"),
            dask=_setting(dask, DASK_SETTING, LOCAL),
            workers=workers if workers is not None else int(
                os.environ.get("CALIBRATION_DASK_WORKERS") or 0)),
        # Empty unless the launchpad (or `make run ACCEPT=...`) accepts gate rules for a run.
        "waiver": WaiverResource.configure_at_launch(),
        "target_config_file": TargetConfigResource(**{
            config.source_field: _setting(given, config.env,
                                          str(packaged("config", config.default)))
            for config, given in ((LOCAL_CONFIG, target_config_path),
                                  (NATIONAL_CONFIG, national_target_config_path))}),
    }
    assets = [source_cps, stratified_cps, target_db, *target_config_assets(fits),
              package_asset(loaded), sparsity_asset(loaded, fits), *fit_assets(loaded, fits),
              stacked_asset(fits), validation_asset(fits), release_asset(fits)]
    refit = refit_job(fits, loaded)
    return Definitions(
        assets=assets,
        # One process per run: its imports and Tax-Calculator's compiled code stay warm
        # from step to step (a process per step paid them at every step), and the storage
        # lock its resource takes lives exactly as long as the run. The parallel work
        # inside steps goes to the Dask cluster of the compute resource.
        executor=in_process_executor,
        asset_checks=[*hierarchy_checks(fits), *gate_checks(fits)],
        jobs=[full_rebuild, refit, allocation_search],
        schedules=[weekly_rebuild],
        sensors=[config_sensor(fits, refit), automation_sensor],
        resources=resources,
    )


defs = make_definitions()
