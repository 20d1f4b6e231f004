"""After the fit, memory follows a block of households, not how many records were kept."""

import tracemalloc

import numpy as np
import pytest
from factories import base_microdata, local_view, make_package

from pipeline.publish import stacking
from pipeline.publish.stacking import stack_h5s
from pipeline.validate.published import seed_cache
from pipeline.validate.totals import walk_published

pytestmark = pytest.mark.slow


def _peak_mib(tmp_path, n_clones: int) -> tuple[float, int]:
    """Peak traced memory of stacking then walking every published file."""
    pkg = make_package(tmp_path, n_clones=n_clones)
    weights = np.linspace(1.0, 2.0, 3 * n_clones)
    seed = seed_cache(base_microdata())  # outside the trace: the engine's one-off state
    tracemalloc.start()
    result = stack_h5s(pkg, weights, tmp_path / "stacked")
    walk_published(tmp_path / "stacked", [local_view(pkg.targets)], lambda: seed)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20, result.n_households


def test_peak_memory_does_not_grow_with_kept_records(tmp_path, monkeypatch):
    monkeypatch.setattr(stacking, "BLOCK_HOUSEHOLDS", 2_000)
    small, n_small = _peak_mib(tmp_path / "small", 2_000)
    large, n_large = _peak_mib(tmp_path / "large", 16_000)
    assert (n_small, n_large) == (6_000, 48_000)
    # 8x the households. A block's tables cost over 1 KiB a household; what may grow is
    # only a few arrays of one entry per column or person (weights, the ids of the
    # uniqueness check): under 120 bytes a household here.
    assert large - small < (n_large - n_small) * 120 / 2**20, (small, large)
