"""Takeup draws shared by the matrix builder and the stacking path.

Both paths must give a unit the same draw, in any process, in any order, so draws are a
pure function of (takeup variable, household id, clone index, the unit's ordinal in its
household) — never of row position or of a global generator's state.

Scheme (a documented deviation from one `PCG64` per household, which costs ~20 µs each and
would take minutes for 5M cloned households; this is fully vectorised):

- `key = stable_seed(<stream>)` (sha256, fixed per takeup variable, e.g. "takeup/snap");
- the household's stream seed is `s = mix(mix(key ^ household_id) ^ clone_index)`, where
  `mix` is the SplitMix64 finaliser (a bijection on 64-bit integers);
- the stream is SplitMix64 seeded with `s`: draw k (k = 0, 1, …) is
  `mix(s + (k + 1) · 0x9E3779B97F4A7C15)`, mapped to [0, 1) by its top 53 bits.

A unit uses draw k for the household's k-th unit of its entity (a household-level takeup:
draw 0), and takes up when its draw < its state's rate. Each engine declares its takeups
(`Takeup`): the input variable a file carries, its entity, the variables it gates (zero
unless it is True) and its rate file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Takeup:
    """A takeup input drawn per household and clone, and what it gates."""

    variable: str  # the input's name in the files (policyengine-us's)
    entity: str  # household | tax_unit | person: the table that holds it
    gates: tuple[str, ...]  # variables that are zero unless the unit takes up
    stream: str  # the draws' stream name
    column: str  # the rate column of `rates`
    rates: Path = TAKEUP_RATES


_RATE = pa.Column(float, [pa.Check.ge(0), pa.Check.le(1)], nullable=False)


@functools.lru_cache(maxsize=8)
def load_rates(path: str | Path = TAKEUP_RATES) -> pd.DataFrame:
    """State takeup rates indexed by state FIPS (one column per takeup)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "takeup rate file is missing",
                         "run scripts/derive_takeup_rates.py")
    raw = pd.read_csv(path, comment="#")
    rate_columns = [c for c in raw.columns if c.endswith("_rate")]
    schema = pa.DataFrameSchema({"state_fips": pa.Column("int64", unique=True),
                                 **dict.fromkeys(rate_columns, _RATE)}, name="takeup_rates")
    df = check_table(schema, raw, path, "regenerate it with scripts/derive_takeup_rates.py",
                     csv=True)
    return df.set_index("state_fips")[rate_columns]


def state_rates(takeup: Takeup, state_fips: np.ndarray) -> np.ndarray:
    """The takeup's rate in each unit's state."""
    table = load_rates(takeup.rates)
    if takeup.column not in table.columns:
        raise InputError(takeup.rates, takeup.column, "rate column is missing",
                         "regenerate the rate file with scripts/derive_takeup_rates.py")
    idx = table.index.get_indexer(np.asarray(state_fips, dtype=np.int64))
    if (idx < 0).any():
        bad = sorted(set(np.asarray(state_fips)[idx < 0].tolist()))
        raise InputError(takeup.rates, "state_fips", f"no takeup rate for state FIPS {bad[:5]}",
                         "use a state FIPS listed in the rate file")
    return table[takeup.column].to_numpy()[idx]


def unit_ordinals(unit_household: np.ndarray) -> np.ndarray:
    """Each unit's 0-based position among its household's units, in row order."""
    pos = np.asarray(unit_household, dtype=np.int64)
    order = np.argsort(pos, kind="stable")
    sorted_pos = pos[order]
    first = np.searchsorted(sorted_pos, sorted_pos, side="left")
    ordinal = np.empty_like(pos)
    ordinal[order] = np.arange(len(pos)) - first
    return ordinal


def unit_uniforms(stream: str, household_ids: np.ndarray, unit_household: np.ndarray,
                  clone_index: int | np.ndarray, per_household: bool = False) -> np.ndarray:
    """Each unit's uniform draw: `unit_household` is each unit's household row; the draw is
    keyed by (stream, base household id, clone, the unit's ordinal in its household; 0 for a
    household-level draw), never by row, so households may repeat (a block of a published
    file holds one base household in several clones)."""
    hh = np.asarray(household_ids, dtype=np.int64)
    pos = np.asarray(unit_household, dtype=np.int64)
    clone = np.broadcast_to(np.asarray(clone_index, dtype=np.int64), hh.shape)
    ordinal = 0 if per_household else unit_ordinals(pos)
    return stream_uniform(stream_seeds(stream, hh[pos], clone[pos]), ordinal)


def draw_units(takeup: Takeup, household_ids: np.ndarray, unit_household: np.ndarray,
               clone_index: int | np.ndarray, state_fips: np.ndarray) -> np.ndarray:
    """Whether each unit takes up, at its state's rate: `unit_household` is each unit's
    household row (for a household-level takeup, every row); clone and state are given per
    household."""
    u = unit_uniforms(takeup.stream, household_ids, unit_household, clone_index,
                      takeup.entity == "household")
    return u < state_rates(takeup, state_fips)[np.asarray(unit_household, dtype=np.int64)]


SNAP = Takeup("takes_up_snap_if_eligible", "household", ("snap",), "takeup/snap", "snap_rate")
EITC = Takeup("takes_up_eitc", "tax_unit", ("eitc",), "takeup/eitc", "eitc_rate")


def draw_takeup(household_ids: np.ndarray, tax_unit_household_ids: np.ndarray,
                clone_index: int | np.ndarray, state_fips_of_household: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray]:
    """(takes_up_snap_if_eligible per household, takes_up_eitc per tax unit) at the builtin
    engine's rates: the draws the source file carries (clone 0). Household ids unique."""
    hh = np.asarray(household_ids, dtype=np.int64)
    index = pd.Index(hh)
    if not index.is_unique:
        raise ValueError("household_ids must be unique")
    pos = index.get_indexer(np.asarray(tax_unit_household_ids, dtype=np.int64))
    if (pos < 0).any():
        raise ValueError("a tax unit names a household that is not in household_ids")
    rows = np.arange(len(hh))
    return (draw_units(SNAP, hh, rows, clone_index, state_fips_of_household),
            draw_units(EITC, hh, pos, clone_index, state_fips_of_household))
