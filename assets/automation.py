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
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from pipeline.config import Profile
from pipeline.core.fit_table import Fit, configs
from pipeline.core.hashing import sha256_file
from resources import TargetConfigResource

if TYPE_CHECKING:  # what define_asset_job returns; not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

full_rebuild = define_asset_job(
    "full_rebuild", selection=AssetSelection.all() - AssetSelection.assets(
        "sparsity_allocation"),
    description="Everything: microdata, targets, package, fit, outputs, gates, release "
                "(not the optional allocation search: the allocation_search job).",
)



def refit_job(fits: tuple[Fit, ...], loaded: Profile) -> "UnresolvedAssetJobDefinition":
    """Everything a config or fit change touches, and nothing it does not use: the
    allocation search runs only when the loaded profile fits with `allocation: learned`
    (a launchpad asking for it uses the allocation on disk, which the launch check
    requires)."""
    selection = (AssetSelection.assets(*(c.asset for c in configs(fits)),
                                       *(f.weights for f in fits)).downstream()
                 # Package validity is re-judged under the new configs; no package rebuild.
                 | AssetSelection.checks(
                     AssetCheckKey(AssetKey("calibration_package"), "package_validity")))
    searched = any(f.allocation and loaded.fit_params(f).allocation == "learned" for f in fits)
    if not searched:
        selection -= AssetSelection.assets("sparsity_allocation")
    return define_asset_job(
        "refit", selection=selection,
        description="Every target config, every fit and everything after them; never "
                    "rebuilds the package" + ("." if searched else
                                              ", nor searches an allocation no fit uses."),
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


def config_sensor(fits: tuple[Fit, ...], job: "UnresolvedAssetJobDefinition"
                  ) -> SensorDefinition:
    """target_config_changed: launches `job` (refit) when a config file's content changes."""
    @sensor(name="target_config_changed", job=job, minimum_interval_seconds=30,
            default_status=(DefaultSensorStatus.RUNNING
                            if DEFAULT_STATUS["target_config_changed"]
                            else DefaultSensorStatus.STOPPED),
            description="Launches refit when a target config file's content changes. "
                        + _how("target_config_changed", "sensor"))
    def _changed(context: SensorEvaluationContext, target_config_file: TargetConfigResource):
        watched = {c.asset: Path(target_config_file.source(c)) for c in configs(fits)}
        return _refit_request(context, watched)

    return _changed


def _refit_request(context: SensorEvaluationContext, watched: dict[str, Path]):
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
    contents = "-".join(current[a] for a in watched)
    if context.cursor == contents:
        return SkipReason("a refit for these configs was already requested")
    context.update_cursor(contents)
    # Keyed by content and by the latest config materializations, so that a config going
    # A -> B -> A -> B refits every time (Dagster launches a run key only once).
    stamp = "-".join(str(latest[a].storage_id) for a in watched)
    return RunRequest(run_key=f"{contents}-{stamp}",
                      tags={f"{a}_sha256": current[a] for a in changed})

