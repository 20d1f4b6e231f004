"""Takeup draws: deterministic across calls and processes, at the file's rates."""

import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline.core.errors import InputError
from pipeline.engine.takeup import draw_takeup, load_rates, stream_seeds, stream_uniform

RATES = load_rates()
# A state whose SNAP rate is well inside (0, 1), so the rate test means something.
STATE = int((RATES["snap_rate"] - 0.5).abs().idxmin())


def _households(n: int, tu_per_hh: int = 2):
    hh = np.arange(1_000, 1_000 + n, dtype=np.int64) * 7
    return hh, np.repeat(hh, tu_per_hh), np.full(n, STATE)


def test_deterministic_and_rate():
    hh, tu_hh, state = _households(200_000)
    snap, eitc = draw_takeup(hh, tu_hh, 0, state)
    snap2, eitc2 = draw_takeup(hh, tu_hh, 0, state)
    assert np.array_equal(snap, snap2) and np.array_equal(eitc, eitc2)
    assert snap.dtype == bool and eitc.dtype == bool
    assert abs(snap.mean() - RATES.loc[STATE, "snap_rate"]) < 0.005
    assert abs(eitc.mean() - RATES.loc[STATE, "eitc_rate"]) < 0.005


def test_clones_and_tax_units_draw_independently():
    hh, tu_hh, state = _households(100_000)
    rate = RATES.loc[STATE, "snap_rate"]
    a, _ = draw_takeup(hh, tu_hh, 0, state)
    b, _ = draw_takeup(hh, tu_hh, 1, state)
    agree = (a == b).mean()
    assert abs(agree - (rate**2 + (1 - rate) ** 2)) < 0.01
    # An array of clone indices gives each household its own clone's draw.
    clones = np.arange(len(hh)) % 2
    mixed, _ = draw_takeup(hh, tu_hh, clones, state)
    assert np.array_equal(mixed, np.where(clones == 0, a, b))


def test_draw_depends_on_household_not_row_order():
    hh, tu_hh, state = _households(1_000, tu_per_hh=1)
    snap, eitc = draw_takeup(hh, tu_hh, 3, state)
    rev = slice(None, None, -1)
    snap_r, eitc_r = draw_takeup(hh[rev], tu_hh[rev], 3, state[rev])
    assert np.array_equal(snap_r, snap[rev]) and np.array_equal(eitc_r, eitc[rev])


def test_same_draws_in_another_process():
    code = (
        "import numpy as np; from pipeline.engine.takeup import draw_takeup;"
        "hh=np.arange(500, dtype=np.int64); s,e=draw_takeup(hh, np.repeat(hh,3), 5,"
        f" np.full(500, {STATE})); print(''.join('1' if x else '0' for x in np.r_[s,e]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    hh = np.arange(500, dtype=np.int64)
    s, e = draw_takeup(hh, np.repeat(hh, 3), 5, np.full(500, STATE))
    assert out == "".join("1" if x else "0" for x in np.r_[s, e])


def test_fast_enough_for_12k_households():
    hh, tu_hh, _ = _households(12_000)
    state = np.resize(RATES.index.to_numpy(), 12_000)
    start = time.perf_counter()
    draw_takeup(hh, tu_hh, 0, state)
    assert time.perf_counter() - start < 0.25


def test_unknown_state_is_an_input_error():
    with pytest.raises(InputError, match="state FIPS"):
        draw_takeup(np.array([1]), np.array([1]), 0, np.array([99]))


def test_eitc_uses_kth_draw_of_household_stream():
    hh, tu_hh, state = _households(5_000, tu_per_hh=3)
    _, eitc = draw_takeup(hh, tu_hh, 2, state)
    k = np.tile(np.arange(3), len(hh))
    u = stream_uniform(stream_seeds("takeup/eitc", tu_hh, 2), k)
    assert np.array_equal(eitc, u < RATES.loc[STATE, "eitc_rate"])
    # The three units of a household get three different draws.
    assert (np.diff(np.sort(u.reshape(-1, 3), axis=1), axis=1) > 0).all()
