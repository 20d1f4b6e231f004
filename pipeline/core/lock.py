"""One writing run at a time per storage root.

The lock is an exclusive `flock` on `<root>/.lock`, held for the whole run. The kernel drops
it when its process dies, however it dies, so a killed run can never leave a lock that
blocks forever. While held, the file names the holder (pid, host, start time, command and
Dagster run id), so a second run is refused with who to wait for; a clean release empties
it, so a record found by the next holder is the record of a run that died. The first holder
after that also removes the temporary files dead writers left (`atomic.sweep_temps`).

Re-entrant within a process: `make run` takes the lock, and the Dagster run it starts in
the same process takes it again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.atomic import pid_alive, sweep_temps

LOCK_FILE = ".lock"


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started_at: str
    command: str
    run_id: str | None = None

    @classmethod
    def me(cls, command: str, run_id: str | None = None) -> Holder:
        return cls(os.getpid(), socket.gethostname(),
                   datetime.now(UTC).isoformat(timespec="seconds"), command, run_id)

    def alive(self) -> bool | None:
        """Whether the holder's process runs; None when it ran on another host."""
        return pid_alive(self.pid) if self.host == socket.gethostname() else None

    def describe(self) -> str:
        run = f", Dagster run {self.run_id}" if self.run_id else ""
        return (f"pid {self.pid} on {self.host} since {self.started_at} "
                f"({self.command}{run})")


class StorageBusy(RuntimeError):
    """Another run holds the storage root's lock."""

    def __init__(self, root: Path, holder: Holder | None):
        self.root, self.holder = root, holder
        if holder is None:
            who = "another process (it has not recorded itself yet)"
        elif holder.alive() is False:
            who = (f"{holder.describe()}, which has exited; a process it started still holds "
                   "the lock")
        else:
            who = holder.describe()
        super().__init__(f"storage root {root} is in use by {who}. Only one writing run at a "
                         "time is allowed per storage root. Fix: wait for that run to finish "
                         "(or stop it), then run again; a killed run releases the lock by "
                         "itself")


@dataclass
class Acquired:
    """What taking the lock found: the record of a holder that died, and its leftovers."""

    path: Path
    dead_holder: Holder | None = None
    swept: list[Path] = field(default_factory=list)


@dataclass
class _Held:
    fd: int
    holder: Holder
    depth: int = 1


_HELD: dict[Path, _Held] = {}


@contextlib.contextmanager
def storage_lock(root: str | Path, command: str | None = None,
                 run_id: str | None = None) -> Iterator[Acquired]:
    """Hold `<root>/.lock` for the block; StorageBusy when another process holds it."""
    root = Path(root).resolve()
    path = root / LOCK_FILE
    held = _HELD.get(path)
    if held is not None:  # re-entered by this process: record the Dagster run id, if new
        held.depth += 1
        if run_id and held.holder.run_id != run_id:
            held.holder = replace(held.holder, run_id=run_id)
            _write(held.fd, held.holder)
        try:
            yield Acquired(path)
        finally:
            held.depth -= 1
        return
    acquired = _acquire(root, path, Holder.me(command or _command_line(), run_id))
    try:
        yield acquired
    finally:
        _release(path)


def _acquire(root: Path, path: Path, me: Holder) -> Acquired:
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _parse(os.pread(fd, 1 << 16, 0))
        os.close(fd)
        raise StorageBusy(root, holder) from None
    dead = _parse(os.pread(fd, 1 << 16, 0))  # a clean release leaves the file empty
    try:
        _write(fd, me)
    except OSError as exc:  # a full disk: the flock still holds; the run reports the disk
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
    _HELD[path] = _Held(fd, me)
    return Acquired(path, dead, sweep_temps(root))


def _release(path: Path) -> None:
    held = _HELD.pop(path)
    try:
        os.ftruncate(held.fd, 0)
    finally:
        fcntl.flock(held.fd, fcntl.LOCK_UN)
        os.close(held.fd)


def _write(fd: int, holder: Holder) -> None:
    data = json.dumps(asdict(holder)).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _parse(data: bytes) -> Holder | None:
    try:
        return Holder(**json.loads(data))
    except (ValueError, TypeError):
        return None  # empty (released cleanly) or cut short mid-write


def _command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200]
