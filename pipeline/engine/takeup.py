"""Takeup draws shared by the matrix builder and the stacking path.

Both paths must give a household the same draw, in any process, in any order, so draws are a
pure function of (variable, household id, clone index) — never of row position or of a
global generator's state.

Scheme (a documented deviation from one `PCG64` per household, which costs ~20 µs each and
would take minutes for 5M cloned households; this is fully vectorised):

- `key = stable_seed("takeup/<variable>")` (sha256, fixed per variable);
- the household's stream seed is `s = mix(mix(key ^ household_id) ^ clone_index)`, where
  `mix` is the SplitMix64 finaliser (a bijection on 64-bit integers);
- the stream is SplitMix64 seeded with `s`: draw k (k = 0, 1, …) is
  `mix(s + (k + 1) · 0x9E3779B97F4A7C15)`, mapped to [0, 1) by its top 53 bits.

SNAP uses draw 0 of the household's stream; EITC uses draw k for the household's k-th tax
unit (in the order given). A unit takes up when its draw < its state's rate.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipeline.core.contracts import check_table
from pipeline.core.errors import InputError
from pipeline.core.hashing import stable_seed
from pipeline.core.packaged import TAKEUP_RATES

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return z


def stream_seeds(name: str, *keys: np.ndarray | int) -> np.ndarray:
    """Per-element stream seeds from a name and integer keys, chained through `mix64`."""
    state = np.uint64(stable_seed(name))
    for key in keys:
        state = mix64(state ^ np.asarray(key, dtype=np.int64).astype(np.uint64))
    return np.asarray(state, dtype=np.uint64)


def stream_uniform(seeds: np.ndarray, k: np.ndarray | int = 0) -> np.ndarray:
    """Draw k (0-based) of each SplitMix64 stream, as float64 in [0, 1)."""
    with np.errstate(over="ignore"):
        step = (np.asarray(k, dtype=np.uint64) + np.uint64(1)) * _GOLDEN
        z = mix64(np.asarray(seeds, dtype=np.uint64) + step)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


_RATE = pa.Column(float, [pa.Check.ge(0), pa.Check.le(1)], nullable=False)
TAKEUP_RATE_TABLE = pa.DataFrameSchema({
    "state_fips": pa.Column("int64", unique=True), "snap_rate": _RATE, "eitc_rate": _RATE,
}, name="takeup_rates")


@functools.lru_cache(maxsize=4)
def load_takeup_rates(path: str | Path = TAKEUP_RATES) -> pd.DataFrame:
    """State takeup rates indexed by state FIPS (columns snap_rate, eitc_rate)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "takeup rate file is missing",
                         "run scripts/derive_takeup_rates.py")
    df = check_table(TAKEUP_RATE_TABLE, pd.read_csv(path, comment="#"), path,
                     "regenerate it with scripts/derive_takeup_rates.py", csv=True)
    return df.set_index("state_fips")[["snap_rate", "eitc_rate"]]


def _state_rates(state_fips: np.ndarray, column: str) -> np.ndarray:
    table = load_takeup_rates()
    idx = table.index.get_indexer(np.asarray(state_fips, dtype=np.int64))
    if (idx < 0).any():
        bad = sorted(set(np.asarray(state_fips)[idx < 0].tolist()))
        raise InputError(TAKEUP_RATES, "state_fips", f"no takeup rate for state FIPS {bad[:5]}",
                         "use a state FIPS listed in the rate file")
    return table[column].to_numpy()[idx]


def draw_takeup(
    household_ids: np.ndarray,
    tax_unit_household_ids: np.ndarray,
    clone_index: int | np.ndarray,
    state_fips_of_household: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(takes_up_snap_if_eligible per household, takes_up_eitc per tax unit).

    `clone_index` is one int or one per household; tax units take their household's clone
    and state. Household ids must be unique.
    """
    hh = np.asarray(household_ids, dtype=np.int64)
    index = pd.Index(hh)
    if not index.is_unique:
        raise ValueError("household_ids must be unique")
    pos = index.get_indexer(np.asarray(tax_unit_household_ids, dtype=np.int64))
    if (pos < 0).any():
        raise ValueError("a tax unit names a household that is not in household_ids")
    return draw_takeup_at(hh, pos, clone_index, state_fips_of_household)


def draw_takeup_at(
    household_ids: np.ndarray,
    tax_unit_household: np.ndarray,
    clone_index: int | np.ndarray,
    state_fips_of_household: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """`draw_takeup` with each tax unit's household given by row position.

    Stacking needs this form: a block holds the same base household in several clones, so
    base ids repeat; the draw is still keyed by (base household id, clone).
    """
    hh = np.asarray(household_ids, dtype=np.int64)
    pos = np.asarray(tax_unit_household, dtype=np.int64)
    clone = np.broadcast_to(np.asarray(clone_index, dtype=np.int64), hh.shape)
    state = np.asarray(state_fips_of_household)
    snap_u = stream_uniform(stream_seeds("takeup/snap", hh, clone))
    snap = snap_u < _state_rates(state, "snap_rate")

    order = np.argsort(pos, kind="stable")
    sorted_pos = pos[order]
    first = np.searchsorted(sorted_pos, sorted_pos, side="left")
    ordinal = np.empty_like(pos)
    ordinal[order] = np.arange(len(pos)) - first
    eitc_u = stream_uniform(stream_seeds("takeup/eitc", hh[pos], clone[pos]), ordinal)
    eitc = eitc_u < _state_rates(state, "eitc_rate")[pos]
    return snap, eitc
