"""A ~12K-household base sample that keeps the high-income tail whole.

Calibration can reweight but not invent records: the rare high-AGI households carry most of
income tax and AGI targets, so all of them stay, at their original weight. The rest are
sampled without replacement within state × household-AGI band strata, with a common
sampling fraction (largest-remainder rounding, at least one household per stratum); each
sampled household's weight is scaled so its stratum's weighted total is exactly preserved.
Household AGI is the sum of the engine's per-tax-unit AGI (Tax-Calculator c00100). The
tail is the households at or above the weighted `top_agi_quantile` of household AGI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from pipeline.core.hashing import stable_seed
from pipeline.core.settings import Settings
from pipeline.engine import compute_taxes
from pipeline.microdata import Microdata

AGI_BANDS = (0.0, 25_000.0, 50_000.0, 100_000.0, 200_000.0)


class SampleSettings(Settings):
    households: int = Field(12_000, ge=100, description="stratified base sample size")
    top_agi_quantile: float = Field(0.99, gt=0, lt=1, description="households at or above "
                                    "this weighted AGI quantile are kept whole")


def household_agi(md: Microdata) -> np.ndarray:
    taxes = compute_taxes(md).tax_unit
    pos = pd.Index(md.household["household_id"]).get_indexer(taxes["household_id"])
    return np.bincount(pos, weights=taxes["adjusted_gross_income"], minlength=len(md.household))


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, q * cum[-1])])


def _allocate(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Proportional allocation by largest remainder, ≥ 1 per non-empty stratum."""
    quota = sizes * budget / sizes.sum()
    take = np.minimum(np.maximum(np.floor(quota).astype(np.int64), 1), sizes)
    short = budget - take.sum()
    if short > 0:
        room = take < sizes
        order = np.lexsort((np.arange(len(sizes)), -(quota - np.floor(quota))))
        order = order[room[order]][:short]
        take[order] += 1
    return take


def stratify(
    md: Microdata,
    target_households: int = 12_000,
    seed: int = 0,
    top_agi_quantile: float = 0.99,
    agi: np.ndarray | None = None,
) -> Microdata:
    """The stratified sample with design weights in `household_weight`.

    `agi` (household AGI, row-aligned) skips the Tax-Calculator run when the caller has it.
    """
    hh = md.household
    weight = hh["household_weight"].to_numpy(float)
    agi = household_agi(md) if agi is None else np.asarray(agi, dtype=float)
    tail = agi >= _weighted_quantile(agi, weight, top_agi_quantile)
    budget = target_households - int(tail.sum())
    if budget <= 0:
        raise ValueError(
            f"the AGI tail alone has {int(tail.sum())} households, more than "
            f"target_households={target_households}; raise top_agi_quantile"
        )
    band = np.searchsorted(np.asarray(AGI_BANDS), agi, side="right")
    stratum = hh["state_fips"].to_numpy(np.int64) * 10 + band
    rest = np.flatnonzero(~tail)
    keys, inverse = np.unique(stratum[rest], return_inverse=True)
    sizes = np.bincount(inverse)
    take = _allocate(sizes, budget)

    rng = np.random.Generator(np.random.PCG64(stable_seed("stratify", seed)))
    u = rng.random(len(rest))
    order = np.lexsort((u, inverse))
    rank = np.empty(len(rest), dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    rank[order] = np.arange(len(rest)) - starts[inverse[order]]
    chosen = rank < take[inverse]

    total = np.bincount(inverse, weights=weight[rest], minlength=len(keys))
    kept = np.bincount(inverse, weights=weight[rest] * chosen, minlength=len(keys))
    new_weight = weight.copy()
    new_weight[rest] = weight[rest] * (total / kept)[inverse]

    keep = tail.copy()
    keep[rest[chosen]] = True
    positions = np.flatnonzero(keep)
    out = md.take_households(positions)
    household = out.household.copy()
    household["household_weight"] = new_weight[positions]
    return Microdata(out.period, household, out.tax_unit, out.person).validate()
