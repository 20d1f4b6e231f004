"""Handing freed memory back between long tasks (`pipeline.core.heap`)."""

import json
import subprocess
import sys

import pytest

from pipeline.core.heap import _malloc_trim

_FRAGMENTED = """
import gc, json, psutil
from pipeline.core import heap
rss = lambda: psutil.Process().memory_info().rss / 2**20
gc.disable()
class Node:
    def __init__(self):
        self.me = self  # a cycle: only the collector frees it
        self.payload = bytearray(2048)
nodes = [Node() for _ in range(100_000)]
kept = nodes[::16]  # what stays alive between the freed ones: the heap cannot shrink
full = rss()
del nodes
freed = rss()
heap.{call}()
print(json.dumps({{"full": full, "freed": freed, "after": rss(),
                   "frozen": gc.get_freeze_count()}}))
"""


def _measure(call: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _FRAGMENTED.format(call=call)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(_malloc_trim() is None, reason="glibc's malloc_trim only")
def test_release_frees_cycles_and_gives_the_pages_back():
    m = _measure("release")
    assert m["full"] - m["freed"] < 20  # dropped but not freed: cycles, collector off
    assert m["freed"] - m["after"] > 120  # ~190 MiB of the 200 freed, trimmed


@pytest.mark.skipif(_malloc_trim() is None, reason="glibc's malloc_trim only")
def test_trim_alone_leaves_cycles_to_the_collector():
    m = _measure("trim")
    assert m["freed"] - m["after"] < 20


def test_only_what_lives_is_frozen():
    """Frozen objects are never collected: the dropped cycles must be freed first."""
    m = _measure("freeze_what_lives")
    assert 6_250 * 2 <= m["frozen"] < 50_000  # the kept nodes and their dicts, not the rest
