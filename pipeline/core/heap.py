"""Handing what a long task freed back to the operating system before the next one.

A process that runs one large task after another (a Dask worker building a state's slice
of X) keeps what each task freed: reference cycles wait for a full collection, and glibc
keeps freed heap pages for reuse. Measured on a worker of the production package under
policyengine-us: 4.57 GiB resident, 3.46 after `malloc_trim`, 2.61 after a collection
(342,621 objects) and another trim. Workers that kept it grew to 9.6 GiB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable


def release() -> None:
    """Collect cycles, then give the heap's free pages back."""
    gc.collect()
    trim()


def trim() -> None:
    """Give the heap's free pages back (glibc's `malloc_trim`; elsewhere nothing)."""
    malloc_trim = _malloc_trim()
    if malloc_trim is not None:
        malloc_trim(0)


def freeze_what_lives() -> None:
    """Move every object alive now out of the collector's sight, for good: call it once a
    large library that lives as long as the process is imported (policyengine-us: ~2.4M
    objects, which every full collection would otherwise walk: 3.4 s against 0.8 s each,
    measured)."""
    gc.collect()
    gc.freeze()


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
