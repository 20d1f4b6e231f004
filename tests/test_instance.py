"""The project's Dagster instance (dagster.yaml): one run at a time, dead runs marked failed."""

import shutil
from pathlib import Path

from dagster import DagsterInstance

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
