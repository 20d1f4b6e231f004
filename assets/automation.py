"""Jobs, the weekly rebuild, and the sensors that refit and promote on their own.

Which automations run by default (the daemon of `make ui` / `dagster dev` runs them):
- `target_config_changed`: ON. Editing the target config is how a user asks for a refit; it
  only reads one file's hash every 30 s and launches `refit` when the content changed.
- `automation_sensor`: ON. It only promotes: `promoted_release` once every blocking check
  upstream passed; it never rebuilds anything.
- `weekly_rebuild`: OFF. Its inputs are committed snapshots, so a rebuild of unchanged
  code and data reproduces the last release at hours of compute (production profile);
  turn it on where the snapshots are refreshed.
Each can be switched in the UI (Automation tab) or with `dagster schedule|sensor
start|stop NAME -w workspace.yaml`; `DEFAULT_STATUS` below is the one place to change a
default.
"""

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
    "full_rebuild", selection=AssetSelection.all() - AssetSelection.assets(
        "sparsity_allocation"),
    description="Everything: microdata, targets, package, fit, outputs, gates, release "
                "(not the optional allocation search: the allocation_search job).",
)

refit = define_asset_job(
    "refit",
    # Package validity is re-judged under the new configs; the package is not rebuilt.
    selection=(AssetSelection.assets("target_config", "national_target_config",
                                     "calibration_weights", "national_weights").downstream()
               | AssetSelection.checks(
                   AssetCheckKey(AssetKey("calibration_package"), "package_validity"))),
    description="Both target configs, both fits and everything after them; never rebuilds "
                "the package.",
)

DEFAULT_STATUS = {"weekly_rebuild": False, "automation_sensor": True,
                  "target_config_changed": True}
_TURN = ("Default {state}; turn it {other} in the UI (Automation tab) or with "
         "`dagster {kind} {verb} {name} -w workspace.yaml`.")


def _how(name: str, kind: str) -> str:
    on = DEFAULT_STATUS[name]
    return _TURN.format(state="ON" if on else "OFF", other="off" if on else "on", kind=kind,
                        verb="stop" if on else "start", name=name)


weekly_rebuild = ScheduleDefinition(
    name="weekly_rebuild", job=full_rebuild, cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=(DefaultScheduleStatus.RUNNING if DEFAULT_STATUS["weekly_rebuild"]
                    else DefaultScheduleStatus.STOPPED),
    description="full_rebuild every Monday 03:00 UTC. Its inputs are committed snapshots: "
                "worth running where they are refreshed. " + _how("weekly_rebuild", "schedule"),
)

# Promotion is eager but waits for every upstream blocking check (eager alone would not).
automation_sensor = AutomationConditionSensorDefinition(
    "automation_sensor", target=AssetSelection.all(),
    default_status=(DefaultSensorStatus.RUNNING if DEFAULT_STATUS["automation_sensor"]
                    else DefaultSensorStatus.STOPPED),
    minimum_interval_seconds=30,
    description="Promotes a release once every blocking check upstream of promoted_release "
                "passed; rebuilds nothing. " + _how("automation_sensor", "sensor"),
)


@sensor(job=refit, minimum_interval_seconds=30,
        default_status=(DefaultSensorStatus.RUNNING if DEFAULT_STATUS["target_config_changed"]
                        else DefaultSensorStatus.STOPPED),
        description="Launches refit when either target config file's content changes. "
                    + _how("target_config_changed", "sensor"))
def target_config_changed(
    context: SensorEvaluationContext, target_config_file: TargetConfigResource
):
    watched = {"target_config": Path(target_config_file.path),
               "national_target_config": Path(target_config_file.national_path)}
    missing = [str(p) for p in watched.values() if not p.exists()]
    if missing:
        return SkipReason(f"{', '.join(missing)} does not exist")
    current = {asset: sha256_file(path) for asset, path in watched.items()}
    latest = {}
    for asset in watched:
        records = context.instance.fetch_materializations(AssetKey(asset), limit=1).records
        if not records:
            return SkipReason(f"{asset} was never materialized; run full_rebuild first")
        latest[asset] = records[0]
    changed = [asset for asset, record in latest.items()
               if getattr(record.asset_materialization.metadata.get("config_sha256"), "value",
                          None) != current[asset]]
    if not changed:
        return SkipReason("target configs unchanged since their last materialization")
    both = "-".join(current[a] for a in watched)
    if context.cursor == both:
        return SkipReason("a refit for these configs was already requested")
    context.update_cursor(both)
    # Keyed by content and by the latest config materializations, so that a config going
    # A -> B -> A -> B refits every time (Dagster launches a run key only once).
    stamp = "-".join(str(latest[a].storage_id) for a in watched)
    return RunRequest(run_key=f"{both}-{stamp}",
                      tags={f"{a}_sha256": current[a] for a in changed})
