"""Pool slots held by dead runs, freed before a run waits on a pool.

Dagster frees a step's pool slot when the step ends in a live process. A run killed mid-step
(`kill -9`, the OOM killer) keeps its slot, and under the committed pool limit of 1 every
later run would wait for it without end, saying so only at DEBUG. So before its first step
each run frees the slots of runs that have finished or whose process is dead (each run
records its pid and host in its tags), then waits until every pool its steps use has a free
slot: at INFO, naming the holder, and for a bounded time, after which it fails with
`PoolBusy`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from dagster import DagsterInstance, DagsterRun
from dagster._core.storage.dagster_run import FINISHED_STATUSES

from pipeline.core.atomic import pid_alive
from pipeline.core.errors import InputError

PID_TAG = "calibration/pid"
HOST_TAG = "calibration/host"
WAIT_ENV = "CALIBRATION_POOL_WAIT"  # seconds a run waits for a pool slot before failing
DEFAULT_WAIT_S = 3600.0
POLL_S = 2.0
Log = Callable[[str], object]


class PoolBusy(RuntimeError):
    """A pool the run needs stayed full of live runs' slots for the whole wait."""


@dataclass(frozen=True)
class SlotHolder:
    """A run that holds (or has been assigned) a slot of `pool`, or queues for one."""

    pool: str
    run_id: str
    step_key: str
    assigned: bool
    run: DagsterRun | None

    @property
    def pid(self) -> int | None:
        value = (self.run.tags if self.run else {}).get(PID_TAG)
        return int(value) if value and value.isdigit() else None

    @property
    def host(self) -> str | None:
        return (self.run.tags if self.run else {}).get(HOST_TAG)

    def dead(self) -> bool:
        """Finished, deleted, or its recorded process is gone from this host."""
        if self.run is None or self.run.status in FINISHED_STATUSES:
            return True
        return (self.host == socket.gethostname() and self.pid is not None
                and not pid_alive(self.pid))

    def describe(self) -> str:
        if self.run is None:
            return f"run {self.run_id} (deleted), step {self.step_key}"
        where = f", pid {self.pid} on {self.host}" if self.pid else ""
        return (f"run {self.run_id} (job {self.run.job_name}, step {self.step_key}, "
                f"{self.run.status.value}{where})")


def mark_process(instance: DagsterInstance, run_id: str) -> None:
    """Record this run's process, so the next run can tell whether it died holding a slot."""
    instance.add_run_tags(run_id, {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()})


def holders(instance: DagsterInstance, pool: str) -> list[SlotHolder]:
    info = instance.event_log_storage.get_concurrency_info(pool)
    seen: dict[tuple[str, str], bool] = {}
    for step in info.pending_steps:
        seen[(step.run_id, step.step_key)] = step.assigned_timestamp is not None
    for slot in info.claimed_slots:
        seen[(slot.run_id, slot.step_key)] = True
    runs = {run_id: instance.get_run_by_id(run_id) for run_id, _ in seen}
    return [SlotHolder(pool, run_id, step, assigned, runs[run_id])
            for (run_id, step), assigned in seen.items()]


def free_dead_slots(instance: DagsterInstance, me: str, warn: Log) -> list[SlotHolder]:
    """Free every pool slot and queue place of runs that are finished or dead; an unfinished
    dead run is marked failed first. Returns what was freed."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    freed: list[SlotHolder] = []
    for pool in sorted(storage.get_concurrency_keys()):
        dead = [h for h in holders(instance, pool) if h.run_id != me and h.dead()]
        for run_id in dict.fromkeys(h.run_id for h in dead):
            run = next(h.run for h in dead if h.run_id == run_id)
            if run is not None and run.status not in FINISHED_STATUSES:
                instance.report_run_failed(run, "its process died holding a slot of pool "
                                                f"{pool}; marked failed by run {me}")
            storage.free_concurrency_slots_for_run(run_id)
        freed += dead
    if freed:
        warn("freed the pool slots of dead runs: "
             + "; ".join(f"pool {h.pool}: {h.describe()}" for h in freed))
    return freed


def pools_of(instance: DagsterInstance, run: DagsterRun) -> set[str]:
    """The pools of the steps this run will execute."""
    if run.execution_plan_snapshot_id is None:
        return set()
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    wanted = set(run.step_keys_to_execute) if run.step_keys_to_execute else None
    return {step.pool for step in plan.steps
            if step.pool and (wanted is None or step.key in wanted)}


def wait_for_pools(instance: DagsterInstance, run: DagsterRun, info: Log, warn: Log,
                   timeout_s: float | None = None) -> None:
    """Free dead runs' slots, then wait until each pool this run uses has room."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    timeout_s = wait_seconds() if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    told: set[str] = set()
    for pool in sorted(pools_of(instance, run)):
        while True:
            free_dead_slots(instance, run.run_id, warn)
            busy = _occupants(instance, pool, run.run_id)
            if busy is None:
                break
            said = "; ".join(h.describe() for h in busy)
            if said not in told:
                told.add(said)
                info(f"waiting for a slot of pool {pool}, held by {said}; giving up in "
                     f"{max(deadline - time.monotonic(), 0):.0f} s ({WAIT_ENV})")
            if time.monotonic() >= deadline:
                raise PoolBusy(
                    f"pool {pool} stayed full for {timeout_s:.0f} s, held by {said}, which "
                    "is alive. Fix: wait for that run to finish (or stop it) and run again, "
                    f"or raise {WAIT_ENV}; a run that died would have been freed by itself")
            time.sleep(POLL_S)


def _occupants(instance: DagsterInstance, pool: str, me: str) -> list[SlotHolder] | None:
    """The live runs filling `pool`, or None when it has a slot to spare."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    taken = [h for h in holders(instance, pool) if h.assigned and h.run_id != me]
    if info.slot_count == 0 or info.slot_count > len(taken):
        return None
    return taken


def wait_seconds(environ: dict[str, str] | None = None) -> float:
    raw = (os.environ if environ is None else environ).get(WAIT_ENV)
    if not raw:
        return DEFAULT_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise InputError(None, WAIT_ENV, f"{raw!r} is not a number of seconds",
                         "set it to a finite number of seconds (e.g. 600) or unset it")
    return value

