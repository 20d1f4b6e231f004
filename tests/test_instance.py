"""The project's Dagster instance (dagster.yaml): one run at a time, dead runs marked failed,
and no run waits for ever on a pool slot a dead run holds."""

import shutil
import socket
import subprocess
import sys
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus

from resources.pools import HOST_TAG, PID_TAG

ROOT = Path(__file__).resolve().parents[1]


def test_one_queued_run_at_a_time_and_run_monitoring(tmp_path, monkeypatch):
    shutil.copy(ROOT / "dagster.yaml", tmp_path)
    monkeypatch.chdir(tmp_path)  # its storage paths are relative to the repository root
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 180
    finally:
        instance.dispose()


def _pool_instance(tmp_path: Path) -> DagsterInstance:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home)
    return DagsterInstance.from_config(str(home))


def _pool_job(tmp_path: Path):
    """One op in the `gpu` pool under the storage resource, as the fits are."""
    from dagster import job, op

    from resources import ProfileResource, StorageResource

    @op(pool="gpu")
    def fit(storage: StorageResource) -> None:
        assert storage.layout.root.is_dir()

    @job(resource_defs={"storage": StorageResource(root=str(tmp_path / "storage"),
                                                   profile=ProfileResource(name="ci"))})
    def tiny():
        fit()

    return tiny


def test_a_live_holder_of_the_pool_slot_is_waited_for_then_named_and_a_dead_one_freed(
        tmp_path, monkeypatch):
    """Another run holds the only `gpu` slot: while its process lives, a run waits at most
    CALIBRATION_POOL_WAIT seconds and fails naming it; once it is dead, the slot is freed
    and the run proceeds (it was a wait without end at DEBUG)."""
    instance = _pool_instance(tmp_path)
    job_def = _pool_job(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        holder = instance.create_run_for_job(job_def, status=DagsterRunStatus.STARTED, tags={
            PID_TAG: str(sleeper.pid), HOST_TAG: socket.gethostname()})
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default("gpu")
        assert storage.claim_concurrency_slot("gpu", holder.run_id, "fit").is_claimed

        monkeypatch.setenv("CALIBRATION_POOL_WAIT", "1")
        blocked = job_def.execute_in_process(instance=instance, raise_on_error=False)
        assert not blocked.success
        error = str(next(e for e in blocked.all_events if e.is_run_failure)
                    .event_specific_data.error)
        assert "pool gpu stayed full for 1 s" in error
        assert f"run {holder.run_id} (job tiny, step fit" in error
        assert f"pid {sleeper.pid}" in error
        logs = [e.message for e in instance.all_logs(blocked.run_id)]
        assert any(m.startswith("waiting for a slot of pool gpu, held by run "
                                f"{holder.run_id}") for m in logs)
    finally:
        sleeper.kill()
        sleeper.wait()
    done = job_def.execute_in_process(instance=instance, raise_on_error=False)
    assert done.success
    assert instance.get_run_by_id(holder.run_id).status == DagsterRunStatus.FAILURE
    assert storage.get_concurrency_info("gpu").claimed_slots == []
    instance.dispose()
