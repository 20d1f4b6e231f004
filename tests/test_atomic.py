"""Atomic writes: all or nothing, a full disk named as such, and the fault-injection point."""

import errno
import os
import subprocess
import sys

import pytest

from pipeline.core.atomic import StorageFull, atomic_dir, atomic_path, sweep_temps, temp_owner
from pipeline.core.failpoint import KILL_ENV


def test_a_full_disk_is_storage_full_naming_the_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "weights.npy"
    target.write_text("old")
    with pytest.raises(StorageFull) as info, atomic_path(target) as tmp:
        tmp.write_text("part")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC and str(target) in str(info.value)
    assert "Fix: free space" in str(info.value)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["weights.npy"]
    with pytest.raises(StorageFull), atomic_dir(tmp_path / "stacked") as tmp:
        (tmp / "national.h5").write_bytes(b"x")
        raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert os.listdir(tmp_path) == ["weights.npy"]


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(PermissionError), atomic_path(tmp_path / "a") as _:
        raise PermissionError(errno.EACCES, "denied")


SCRIPT = """
import sys
from pipeline.core.atomic import atomic_dir, atomic_path
with atomic_path(sys.argv[1] + "/a.csv") as tmp:
    tmp.write_text("a")
with atomic_dir(sys.argv[1] + "/stacked") as tmp:
    (tmp / "national.h5").write_bytes(b"n")
print("survived")
"""


@pytest.mark.parametrize("pattern, survivors", [
    ("a.csv", []),  # killed before the first rename
    ("stack*", ["a.csv"]),  # killed with the directory complete but not renamed
    ("nothing", ["a.csv", "stacked"]),
])
def test_the_failpoint_kills_just_before_the_rename(tmp_path, pattern, survivors):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                          text=True, env={**os.environ, KILL_ENV: pattern})
    killed = pattern != "nothing"
    assert done.returncode == (-9 if killed else 0), done.stderr
    names = sorted(os.listdir(tmp_path))
    assert [n for n in names if not n.startswith(".tmp-")] == survivors
    leftovers = [n for n in names if n.startswith(".tmp-")]
    assert len(leftovers) == int(killed)
    if killed:
        assert temp_owner(leftovers[0]) is not None
        assert [p.name for p in sweep_temps(tmp_path)] == leftovers
