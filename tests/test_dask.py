"""The Dask runner: same bits as in-process, retries a dead worker's task, clear errors."""

import os
import time

import numpy as np
import pytest
from factories import W, base_microdata, local_view, make_package

from pipeline.core.errors import InputError
from pipeline.core.parallel import SETTING, DaskRunner, InProcess, connect, make_runner
from pipeline.publish.stacking import stack_h5s
from pipeline.validate.published import seed_cache
from pipeline.validate.totals import walk_published

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    runner = connect(workers=2)
    yield runner
    runner.close()


def _first_to_claim(marker: str) -> bool:
    """Whether this call created `marker`: atomic (O_EXCL), so exactly one caller wins."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _die_once(item: int, marker: str) -> int:
    """Kill this worker process the first time any task runs; succeed when retried: one
    worker dies, once."""
    if _first_to_claim(marker):
        os._exit(1)
    return item * item


def _each_dies_once(item: int, folder: str, shared: np.ndarray) -> float:
    """The first two tasks kill their workers (each once): both workers die holding the
    shared data, as when the nanny restarts each at its memory limit in turn."""
    if item < 2:
        time.sleep(0.5)  # both have fetched `shared` by now
        if _first_to_claim(os.path.join(folder, f"died-{item}")):
            os._exit(1)
    return float(shared.sum()) * item


def _fail_fast_or_write_late(item: int, folder: str) -> int:
    if item == 0:
        raise ValueError("the first task fails at once")
    time.sleep(1.0)
    open(os.path.join(folder, f"late-{item}"), "w").close()
    return item


def test_a_failure_propagates_only_after_every_task_ended(cluster, tmp_path):
    """Callers remove their temporary directory on a failure: no task may still write there."""
    with pytest.raises(ValueError, match="fails at once"):
        cluster.map(_fail_fast_or_write_late, [0, 1, 2], str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late-1", "late-2"]


def test_two_workers_give_the_same_bits(cluster, tmp_path):
    pkg = make_package(tmp_path, n_clones=3)
    here = stack_h5s(pkg, W, tmp_path / "here", runner=InProcess())
    there = stack_h5s(pkg, W, tmp_path / "there", runner=cluster)
    assert cluster.workers == 2
    assert here.manifest["files"] == there.manifest["files"]  # every file's sha256
    seed = seed_cache(base_microdata())
    walks = [walk_published(tmp_path / d, [local_view(pkg.targets)], lambda: seed, runner).walk
             for d, runner in (("here", InProcess()), ("there", cluster))]
    assert walks[0].sanity.equals(walks[1].sanity)
    assert all(np.array_equal(walks[0].totals[f], walks[1].totals[f]) for f in walks[0].totals)


def test_a_task_whose_worker_dies_is_retried(cluster, tmp_path):
    assert cluster.map(_die_once, [1, 2, 3], str(tmp_path / "died")) == [1, 4, 9]
    assert (tmp_path / "died").exists()


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_a_map_where_no_task_ends_for_too_long_fails_instead_of_waiting(cluster):
    stalled = DaskRunner(cluster.client, stall_s=1.0)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"stuck: no task ended in 1 s \([23] of 3 still"):
        stalled.map(_sleep, [0.0, 10.0, 10.0], desc="stuck")
    assert time.monotonic() - started < 8.0  # not the 10 s the sleeping tasks take
    assert cluster.map(_sleep, [0.0]) == [0.0]  # the cluster itself is fine


def _busy(depth: int) -> int:
    """A deep stack for a while: what the workers' profiler would sample and keep."""
    if depth:
        return _busy(depth - 1)
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass
    return 0


def test_workers_keep_no_profile_of_what_they_ran(cluster):
    """The profiler keeps every distinct stack it sampled: policyengine-us's deep stacks grew
    each production worker by ~0.25 GiB a state."""
    cluster.client.wait_for_workers(2, timeout=120)  # one may still restart after a test
    assert cluster.map(_busy, [40, 60]) == [0, 0]
    kept = cluster.client.run(lambda dask_worker: len(dask_worker.profile_keys)
                              + dask_worker.profile_recent["count"])
    assert list(kept.values()) == [0, 0]


def test_workers_start_without_dask_malloc_trim_threshold(cluster):
    """Dask's MALLOC_TRIM_THRESHOLD_ pins glibc's mmap threshold: a policyengine-us
    simulation ran 1.5-1.8x slower under it. Its other worker settings stay."""
    cluster.client.wait_for_workers(2, timeout=120)
    environ = cluster.client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                                          os.environ.get("OMP_NUM_THREADS")))
    assert list(environ.values()) == [(None, "1"), (None, "1")]


def test_the_run_survives_every_worker_dying(cluster, tmp_path):
    """Shared data that died with every worker holding it is made again, not lost (the
    production package's gather was cancelled when the second worker was restarted)."""
    shared = np.arange(1_000, dtype=np.float64)
    out = cluster.map(_each_dies_once, list(range(4)), str(tmp_path), shared)
    assert out == [0.0, 499_500.0, 999_000.0, 1_498_500.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["died-0", "died-1"]


def _held_after_a_while(item: int, shared: np.ndarray) -> tuple[int, np.ndarray]:
    """How many results this worker holds (besides `shared`), once the client has had time
    to take the previous task's."""
    from distributed import get_worker

    time.sleep(0.5)
    return len(get_worker().data) - 1, shared + item


def test_a_worker_lets_each_result_go_once_taken(cluster):
    """A worker held every result it made until the end: 1.4 GB a worker in the production
    package's gather."""
    out = cluster.map(_held_after_a_while, list(range(10)), np.zeros(100_000))
    assert [float(values[0]) for _, values in out] == list(range(10))
    assert max(held for held, _ in out) <= 1  # old: up to 4 on each of 2 workers


def test_unreachable_scheduler_names_the_setting_and_fix():
    with pytest.raises(InputError) as info:
        connect("tcp://127.0.0.1:9")
    assert info.value.field == SETTING and "dask scheduler" in info.value.fix
    with pytest.raises(InputError, match="neither 'local'"):
        make_runner("somewhere")
