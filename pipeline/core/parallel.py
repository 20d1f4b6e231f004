"""Where the naturally parallel work runs: in this process, or on a Dask cluster.

Every stage hands independent tasks (one published file, one batch of clones, one fit of a
sweep) to a `Runner` and gets the results back in submission order, so what it assembles
from them is bit-identical for any number of workers. Dask (`dask.distributed`) schedules,
retries a task whose worker died (up to `ALLOWED_FAILURES` times) and moves data; we never
write a scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from pipeline.core.errors import InputError
from pipeline.core.progress import Progress

ALLOWED_FAILURES = 3  # a task is retried on another worker this often, then the run fails
# A map none of whose tasks ends for this long is stuck (ours end in minutes; the longest, a
# large state's policyengine-us values computed cold, in about a quarter of an hour).
STALL_S = 3600.0
POLL_S = 0.05  # how often a map looks for finished tasks
SETTING = "CALIBRATION_DASK"  # local | inprocess | tcp://host:8786
LOCAL, IN_PROCESS = "local", "inprocess"
PRE_SPAWN = "distributed.nanny.pre-spawn-environ"  # what Dask sets in each new worker
MALLOC_TRIM = "MALLOC_TRIM_THRESHOLD_"


class Runner(Protocol):
    workers: int

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *shared: Any,
            desc: str | None = None) -> list[Any]:
        """[fn(item, *shared) for item in items], in order; `shared` is sent once. With
        `desc`, progress ticks once per finished task (`pipeline.core.progress`)."""
        ...


class InProcess:
    """Run tasks one after another here: tests, and machines without a cluster."""

    workers = 1

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *shared: Any,
            desc: str | None = None) -> list[Any]:
        out = []
        with _progress(desc, len(items)) as progress:
            for item in items:
                out.append(fn(item, *shared))
                progress.update()
        return out


class DaskRunner:
    """Tasks on a `dask.distributed` cluster; results gathered in submission order."""

    def __init__(self, client: Any, stall_s: float = STALL_S):
        self.client, self.stall_s = client, stall_s

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *shared: Any,
            desc: str | None = None) -> list[Any]:
        if not items:
            return []
        # Everything stays in the task graph, which the scheduler keeps: a task whose worker
        # died is run again elsewhere, and shared data whose every copy died with its
        # workers is made again (scattered data would be lost, cancelling the run). Shared
        # data is one task each, fetched once by each worker that needs it.
        with warnings.catch_warnings():
            # Keeping the data in the graph is the point (see above); Dask warns past 10 MB.
            warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
            made = [self.client.submit(_same, s, pure=False) for s in shared]
            futures = self.client.map(fn, list(items), *[[s] * len(items) for s in made],
                                      pure=False)
        # A result comes here as soon as its task ends and the worker lets it go, so a
        # worker holds one task's result at a time, not all of its tasks'. Every task ends
        # before a failure propagates: a task still running could write into a temporary
        # directory that the caller removes on the way out.
        position = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        failed = []
        with _progress(desc, len(futures)) as progress:
            for future in self._as_completed(futures, desc):
                if future.status == "finished":
                    results[position[future.key]] = future.result()
                    future.release()
                else:
                    failed.append(future)
                progress.update()
        for future in sorted(failed, key=lambda f: position[f.key]):
            future.result()  # raises the task's error, with its traceback
        return results

    def _as_completed(self, futures: list[Any], desc: str | None) -> Iterator[Any]:
        """The futures as they end. When none ends for `stall_s` the map fails instead of
        waiting forever (a starved box once left a map whose worker was killed waiting for
        40 minutes after its work was done). Nothing more is asked of a stuck scheduler:
        closing the runner stops a cluster it started."""
        from distributed import as_completed

        completed = as_completed(futures)
        left, last = len(futures), time.monotonic()
        while not completed.is_empty():
            batch = completed.next_batch(block=False)
            if batch:
                left, last = left - len(batch), time.monotonic()
                yield from batch
            elif time.monotonic() - last > self.stall_s:
                raise RuntimeError(
                    f"{desc or 'a parallel stage'}: no task ended in {self.stall_s:.0f} s "
                    f"({left} of {len(futures)} still pending); the Dask cluster is stuck: "
                    "restart it (or its workers) and run again")
            else:
                time.sleep(POLL_S)

    def close(self) -> None:
        """Close the client, and the cluster when this runner started it. Every task has
        ended and its result is gathered by then, so a worker process still shutting down
        after the nanny's 4 s is killed with nothing to lose: that warning is not shown."""
        cluster = getattr(self.client, "cluster", None)
        self.client.close()
        if cluster is not None:
            nanny = logging.getLogger("distributed.nanny")
            level = nanny.level
            nanny.setLevel(logging.ERROR)
            try:
                cluster.close()
            finally:
                nanny.setLevel(level)


def _same(value: Any) -> Any:
    return value


class _Silent:
    def update(self, n: int = 1) -> None:
        pass


@contextlib.contextmanager
def _progress(desc: str | None, total: int) -> Iterator[Progress | _Silent]:
    if desc is None:
        yield _Silent()
        return
    with Progress(desc, total, "task") as progress:
        yield progress


def worker_environ(environ: dict[str, Any]) -> dict[str, Any]:
    """Dask's environment for new worker processes without `MALLOC_TRIM_THRESHOLD_`.

    Dask sets it to 64 KiB so that workers hand freed memory back at once; setting it also
    pins glibc's mmap threshold at 128 KiB, so every array above that (a 20,000-household
    column is 160 KiB) is mapped, faulted in page by page and unmapped again. It made a
    policyengine-us simulation 1.5-1.8x slower (benchmarks/results/engine_production.txt).
    Our tasks hand memory back themselves between blocks (`pipeline.core.heap.release`).
    """
    return {k: v for k, v in environ.items() if k != MALLOC_TRIM}


def local_workers() -> int:
    """One single-threaded worker process per core: the work is numpy and HDF5 per file."""
    return max(1, os.cpu_count() or 1)


def connect(address: str | None = None, workers: int | None = None,
            memory_limit: str = "auto") -> DaskRunner:
    """A client of the cluster at `address`, or of a new LocalCluster of `workers` processes.

    On SLURM or Kubernetes, start the cluster with dask-jobqueue or dask-kubernetes and pass
    its scheduler address; every worker must see the storage root at the same path, and
    should run with `DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False` and without
    `MALLOC_TRIM_THRESHOLD_` (see below).
    """
    import dask
    from distributed import Client, LocalCluster

    dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                     # The workers' statistical profiler keeps every distinct stack it has
                     # sampled, forever: policyengine-us's deep formula stacks made a worker
                     # grow without bound (part of the production package's 11 GiB
                     # workers) and cost ~15% of its CPU.
                     "distributed.worker.profile.enabled": False,
                     PRE_SPAWN: worker_environ(dask.config.get(PRE_SPAWN, {}))})
    if address:
        try:
            return DaskRunner(Client(address, timeout="10s"))
        except (OSError, TimeoutError) as exc:
            raise InputError(None, SETTING,
                             f"no Dask scheduler answers at {address!r} ({exc})",
                             "start the scheduler (`dask scheduler`) and its workers, fix the "
                             "address, or unset it to use a local cluster") from None
    cluster = LocalCluster(n_workers=workers or local_workers(), threads_per_worker=1,
                           processes=True, memory_limit=memory_limit, dashboard_address=":0")
    return DaskRunner(Client(cluster))


def make_runner(setting: str, workers: int = 0) -> Runner:
    """`inprocess`, `local` (a LocalCluster of `workers` processes, 0 = one per core), or the
    address of an existing scheduler."""
    if setting == IN_PROCESS:
        return InProcess()
    if setting == LOCAL:
        return connect(None, workers or None)
    if "://" not in setting:
        raise InputError(None, SETTING, f"{setting!r} is neither {LOCAL!r}, {IN_PROCESS!r} nor "
                         "a scheduler address", "use local, inprocess or tcp://host:8786")
    return connect(setting)


def batches(items: Iterable[Any], size: int) -> list[list[Any]]:
    """`items` in consecutive batches of `size`: a fixed cut, never one that depends on the
    number of workers, so what is assembled from the batches is the same bits anyway."""
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), max(1, size))]
