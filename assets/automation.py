"""Jobs, the weekly rebuild, and the sensor that refits when the target config file changes."""

from pathlib import Path

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from pipeline.core.hashing import sha256_file
from resources import TargetConfigResource

full_rebuild = define_asset_job(
    "full_rebuild", selection=AssetSelection.all(),
    description="Everything: microdata, targets, package, fit, outputs, gates, release.",
)

refit = define_asset_job(
    "refit",
    # Package validity is re-judged under the new config; the package itself is not rebuilt.
    selection=(AssetSelection.assets("target_config", "calibration_weights").downstream()
               | AssetSelection.checks(
                   AssetCheckKey(AssetKey("calibration_package"), "package_validity"))),
    description="The target config and everything after it; never rebuilds the package.",
)

weekly_rebuild = ScheduleDefinition(
    name="weekly_rebuild", job=full_rebuild, cron_schedule="0 3 * * 1",
    execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING,
)

# Promotion is eager but waits for every upstream blocking check (eager alone would not).
automation_sensor = AutomationConditionSensorDefinition(
    "automation_sensor", target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
)


@sensor(job=refit, minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING,
        description="Refits when the target config file's content changes.")
def target_config_changed(
    context: SensorEvaluationContext, target_config_file: TargetConfigResource
):
    path = Path(target_config_file.path)
    if not path.exists():
        return SkipReason(f"{path} does not exist")
    current = sha256_file(path)
    records = context.instance.fetch_materializations(AssetKey("target_config"), limit=1).records
    if not records:
        return SkipReason("target_config was never materialized; run full_rebuild first")
    latest = records[0]
    entry = latest.asset_materialization.metadata.get("config_sha256")
    if entry is not None and entry.value == current:
        return SkipReason("target config unchanged since its last materialization")
    if context.cursor == current:
        return SkipReason("a refit for this config was already requested")
    context.update_cursor(current)
    # Keyed by content and by the latest target_config materialization, so that a config
    # going A -> B -> A -> B refits every time (Dagster launches a run key only once).
    return RunRequest(run_key=f"{current}-{latest.storage_id}",
                      tags={"target_config_sha256": current})
