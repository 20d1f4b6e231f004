"""Atomic writes: a reader sees the old file or the complete new one, never half of one.

Every stage writes to a temporary sibling and renames it into place; a crash leaves only
a `.tmp-*` name that no reader picks up. The name carries the writer's pid
(`.tmp-<name>.<pid>-<random>`), so the next run can tell the leftovers of a dead writer
from the files a live one is still writing (`sweep_temps`). A full disk surfaces as
`StorageFull`, naming the file and the fix, whatever library was writing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.core.failpoint import before_rename

TMP_PREFIX = ".tmp-"
_OWNER = re.compile(r"\.(\d+)-[^.]*$")  # the pid in `.tmp-<name>.<pid>-<random>`
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_UMASK = os.umask(0)
os.umask(_UMASK)


class StorageFull(OSError):
    """The disk (or quota) holding an output is full; nothing half-written was kept."""

    def __init__(self, path: Path, cause: OSError):
        super().__init__(
            cause.errno,
            f"no space left on the device holding {path} while writing it; nothing was "
            f"published and the temporary file was removed. Fix: free space under "
            f"{path.parent} (or point CALIBRATION_STORAGE_ROOT at a larger disk) and run again")
        self.path = path


def _temp_prefix(path: Path) -> str:
    return f"{TMP_PREFIX}{path.name}.{os.getpid()}-"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to `path`; rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide published files
    try:
        with _no_space_as(path):
            yield tmp_path
            _fsync_file(tmp_path)
            before_rename(path)
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary directory next to `path`; move it onto `path` on success.

    With `replace=False` an existing `path` is an error (immutable outputs such as releases).
    Replacing takes two renames, so for an instant `path` is absent (never half-written):
    readers treat a missing directory as not built.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not replace:
        raise FileExistsError(f"{path} already exists and is immutable")
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        with _no_space_as(path):
            yield tmp
            before_rename(path)
            if path.exists():
                old = tmp.with_name(f"{tmp.name}-old")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def temp_owner(name: str) -> int | None:
    """The pid that wrote a temporary name, or None for a name without one."""
    match = _OWNER.search(name)
    return int(match.group(1)) if match else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temps(root: str | Path) -> list[Path]:
    """Remove the temporary files and directories of dead writers under `root`.

    A temporary name whose pid still runs on this host is left alone (a live writer's); one
    without a pid predates pid-stamped names and is removed. Call it only while holding the
    storage lock, so no writer of another host can be mid-write here either.
    """
    removed = []
    for parent, dirs, files in os.walk(root):
        for name in [d for d in dirs if d.startswith(TMP_PREFIX)] + [
                f for f in files if f.startswith(TMP_PREFIX)]:
            owner = temp_owner(name)
            if owner is not None and pid_alive(owner):
                continue
            path = Path(parent, name)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
    return sorted(removed)


@contextlib.contextmanager
def _no_space_as(path: Path) -> Iterator[None]:
    try:
        yield
    except StorageFull:
        raise
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise StorageFull(path, exc) from exc
        raise


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
