"""One writing run per storage root: refused with the holder named, never blocked by the dead."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from factories import lock_holder

from pipeline.cli import EXIT_BUSY
from pipeline.core.atomic import atomic_path, sweep_temps
from pipeline.core.lock import StorageBusy, storage_lock

# Takes the lock, starts a temporary file and sleeps inside both: a run caught mid-write.
HOLDER = """
import sys, time
from pipeline.core.atomic import atomic_path
from pipeline.core.lock import storage_lock
with storage_lock(sys.argv[1], "test holder", run_id="run-42"):
    with atomic_path(sys.argv[1] + "/stage/out.csv") as tmp:
        tmp.write_text("half")
        print("holding", flush=True)
        time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock on tmp_path/root, mid-write."""
    root = tmp_path / "root"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "holding"
    yield root, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_second_writer_is_refused_naming_the_holder(holder, capsys):
    root, proc = holder
    with pytest.raises(StorageBusy) as info, storage_lock(root, "second"):
        pass
    message = str(info.value)
    assert f"pid {proc.pid} on {socket.gethostname()}" in message
    assert "test holder, Dagster run run-42" in message and "wait for that run" in message
    # The CLI's writing commands say the same and exit 4.
    from pipeline.cli import main

    assert main(["rollback", "--storage", str(root)]) == EXIT_BUSY
    assert f"pid {proc.pid}" in capsys.readouterr().err
    # The live writer's temporary file is never swept.
    assert sweep_temps(root) == [] and len(list((root / "stage").glob(".tmp-out.csv.*"))) == 1


def test_a_killed_holder_never_blocks_and_its_leftovers_go(holder):
    root, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    [leftover] = (root / "stage").glob(".tmp-out.csv.*")
    start = time.monotonic()
    with storage_lock(root, "next run") as lock:
        assert time.monotonic() - start < 1.0
        assert lock.dead_holder.pid == proc.pid and lock.dead_holder.run_id == "run-42"
        assert lock.dead_holder.alive() is False
        assert lock.swept == [leftover] and not leftover.exists()
        assert lock_holder(root).command == "next run"
    assert lock_holder(root) is None  # released cleanly: nothing for the next run to report


def test_reentrant_in_one_process_and_records_the_run_id(tmp_path):
    with storage_lock(tmp_path, "make run") as outer:
        assert outer.dead_holder is None
        with storage_lock(tmp_path, "ignored", run_id="abc") as inner:
            assert inner.swept == [] and lock_holder(tmp_path).run_id == "abc"
        assert lock_holder(tmp_path).command == "make run"
    assert lock_holder(tmp_path) is None


def test_sweep_keeps_live_writers_and_removes_dead_and_unstamped(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    (tmp_path / "releases").mkdir()
    files = {
        "mine": tmp_path / f".tmp-weights.npy.{os.getpid()}-abcd1234",
        "dead_file": tmp_path / f".tmp-calibration_log.csv.{dead_pid}-k2j3h4k5",
        "dead_dir": tmp_path / "releases" / f".tmp-20260101T000000Z-12345678.{dead_pid}-x_y",
        "unstamped": tmp_path / ".tmp-stacked_h5s.w2ltt_mf",
    }
    for name, path in files.items():
        if name.endswith("dir") or name == "unstamped":
            (path / "states").mkdir(parents=True)
            (path / "states" / "DE.h5").write_bytes(b"half")
        else:
            path.write_text("half")
    (tmp_path / "kept.csv").write_text("done")
    removed = sweep_temps(tmp_path)
    assert removed == sorted([files["dead_file"], files["dead_dir"], files["unstamped"]])
    assert files["mine"].exists() and (tmp_path / "kept.csv").exists()


def test_temporary_names_carry_the_writer_pid(tmp_path):
    with atomic_path(tmp_path / "a.csv") as tmp:
        assert tmp.name.startswith(f".tmp-a.csv.{os.getpid()}-")
        tmp.write_text("x")
    assert (tmp_path / "a.csv").read_text() == "x"
