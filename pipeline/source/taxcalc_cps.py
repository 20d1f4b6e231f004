"""Tax-Calculator's public-domain CPS file (`cps.csv.gz`) as household microdata.

The file holds 280,005 tax units from three pooled CPS ASEC years (FLPDYR 2012–2014);
a household is one (FLPDYR, h_seq) pair.

Uprating: Tax-Calculator's own `Records.cps_constructor` (its growth factors and its
`cps_weights.csv.gz`), advanced with `increment_year` to `year`; we read back every uprated
input array and that year's weight `s006`. Ages are not aged (Tax-Calculator does not).

Documented choices and imputations:
- ids: `household_id = FLPDYR·10⁶ + h_seq`; tax units are ordered within their household by
  CPS line number of their head (`a_lineno`), `tax_unit_id = household_id·100 + ordinal`;
  `person_id = tax_unit_id·100 + slot` (head 0, spouse 1, dependents next).
- `household_weight` = the mean `s006` of the household's tax units, so that the weighted
  count of tax units equals Tax-Calculator's total exactly.
- `state_fips` = the `fips` of the household's first tax unit; no county or district yet
  (`county` "", `congressional_district_geoid` 0).
- persons: a head, a spouse when MARS = 2, and XTOT − 1 − [MARS = 2] dependents. Dependent
  ages come from the file's brackets, with the head and spouse removed from the brackets
  that count them (nu18, n1820, n21): under 6 (nu06), 6–12 (nu13 − nu06), 13–17
  (nu18 − nu13), 18–20 (n1820), 65–85 (elderly_dependents), 21–64 (the rest of n21). When
  the brackets hold more people than the dependent count, the brackets are filled in the
  order listed (21–64 last) and the rest dropped; when
  fewer (0.4% of units), the missing dependents are 21–64. The age within a bracket is
  uniform, drawn from a SplitMix64 stream keyed by (household_id, tax-unit ordinal, slot)
  (`pipeline.engine.takeup.stream_seeds`), so it is the same in every process.
- amounts in whole dollars: Tax-Calculator's file holds whole dollars and its uprating
  makes fractions; rounding them back (and each total the sum of its rounded head and
  spouse parts, `e00200 = e00200p + e00200s`) keeps every sum and difference the
  policyengine-us vocabulary takes exact, so the published files map back losslessly.
- `employment_income`: head `e00200p`, spouse `e00200s`, dependents 0.
- takeup: clone 0's draws from `pipeline.engine.takeup.draw_takeup` (see `draw_takeups`).
- Tax-unit columns: every input column Tax-Calculator reads, except the ones that the
  engine sets itself (`RECID`, `FLPDYR`) or that live on the household (`s006` → household
  weight, `fips` → `state_fips`, `h_seq` and FLPDYR → `h_seq`, `source_year`).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import taxcalc

from pipeline.engine.takeup import draw_takeup, stream_seeds, stream_uniform
from pipeline.microdata import Microdata

CPS_PATH = os.path.join(os.path.dirname(taxcalc.__file__), "cps.csv.gz")
_NOT_TAX_UNIT = ("RECID", "FLPDYR", "s006", "fips", "h_seq")
_SPLIT_TOTALS = ("e00200", "e00900", "e02100")  # each with head (p) and spouse (s) parts
# (low age, high age) of each dependent bracket, in the order kept when truncating.
_BRACKETS = ((0, 5), (6, 12), (13, 17), (18, 20), (65, 85), (21, 64))


def load_source_cps(year: int = 2024, *, draw_takeups: bool = True) -> Microdata:
    """The whole CPS file uprated to `year` (see module docstring for every imputation).

    `draw_takeups=False` marks every unit as taking up: only for measuring eligibility, as
    `scripts/derive_takeup_rates.py` does before any rate exists.
    """
    raw = pd.read_csv(CPS_PATH)
    records = taxcalc.Records.cps_constructor(data=raw)
    while records.current_year < year:
        records.increment_year()
    uprated = pd.DataFrame({c: np.asarray(getattr(records, c)) for c in raw.columns})
    amounts = [c for c in raw.columns if uprated[c].dtype.kind == "f"]
    uprated[amounts] = np.round(uprated[amounts]) + 0.0  # + 0.0: no negative zeros
    for total in _SPLIT_TOTALS:
        uprated[total] = uprated[f"{total}p"] + uprated[f"{total}s"]
    uprated["s006"] = np.asarray(records.s006, dtype=np.float64)
    uprated["FLPDYR"] = raw["FLPDYR"].to_numpy()

    order = np.lexsort((uprated["RECID"], uprated["a_lineno"], uprated["h_seq"],
                        uprated["FLPDYR"]))
    tu = uprated.iloc[order].reset_index(drop=True)
    hh_key = tu["FLPDYR"].to_numpy(np.int64) * 1_000_000 + tu["h_seq"].to_numpy(np.int64)
    new_hh = np.r_[True, hh_key[1:] != hh_key[:-1]]
    hh_start = np.flatnonzero(new_hh)
    hh_index = np.cumsum(new_hh) - 1
    ordinal = np.arange(len(tu)) - hh_start[hh_index]
    tax_unit_id = hh_key * 100 + ordinal

    n_tu = np.bincount(hh_index)
    household = pd.DataFrame({
        "household_id": hh_key[hh_start],
        "household_weight": np.bincount(hh_index, weights=tu["s006"].to_numpy()) / n_tu,
        "state_fips": tu["fips"].to_numpy(np.int64)[hh_start],
        "congressional_district_geoid": np.zeros(len(hh_start), dtype=np.int64),
        "county": np.full(len(hh_start), "", dtype=object),
        "source_year": tu["FLPDYR"].to_numpy(np.int64)[hh_start],
        "h_seq": tu["h_seq"].to_numpy(np.int64)[hh_start],
    })
    tax_unit = pd.DataFrame({"tax_unit_id": tax_unit_id, "household_id": hh_key})
    for col in raw.columns:
        if col not in _NOT_TAX_UNIT:
            tax_unit[col] = tu[col].to_numpy()

    if draw_takeups:
        snap, eitc = draw_takeup(household["household_id"].to_numpy(), hh_key, 0,
                                 household["state_fips"].to_numpy())
    else:
        snap, eitc = np.ones(len(household), bool), np.ones(len(tax_unit), bool)
    household["takes_up_snap_if_eligible"] = snap
    tax_unit["takes_up_eitc"] = eitc
    person = _persons(tu, hh_key, ordinal, tax_unit_id)
    return Microdata(year, household, tax_unit, person).validate(CPS_PATH)


def _dependent_brackets(tu: pd.DataFrame) -> np.ndarray:
    """Dependents per age bracket (columns follow `_BRACKETS`), summing to the dependent count."""
    married = tu["MARS"].to_numpy() == 2
    ages = [tu["age_head"].to_numpy()]
    adults_u18 = (ages[0] < 18).astype(int)
    adults_1820 = ((ages[0] >= 18) & (ages[0] <= 20)).astype(int)
    adults_21 = (ages[0] >= 21).astype(int)
    spouse_age = tu["age_spouse"].to_numpy()
    adults_u18 += married & (spouse_age < 18)
    adults_1820 += married & (spouse_age >= 18) & (spouse_age <= 20)
    adults_21 += married & (spouse_age >= 21)
    nu06, nu13, nu18 = (tu[c].to_numpy() for c in ("nu06", "nu13", "nu18"))
    elderly = tu["elderly_dependents"].to_numpy()
    n21 = np.maximum(tu["n21"].to_numpy() - adults_21, 0)
    raw = np.stack([
        nu06,
        nu13 - nu06,
        np.maximum(nu18 - nu13 - adults_u18, 0),
        np.maximum(tu["n1820"].to_numpy() - adults_1820, 0),
        np.minimum(elderly, n21),
        np.maximum(n21 - elderly, 0),
    ], axis=1).astype(np.int64)
    remaining = np.maximum(tu["XTOT"].to_numpy() - 1 - married, 0).astype(np.int64)
    counts = np.zeros_like(raw)
    for k in range(raw.shape[1]):
        counts[:, k] = np.minimum(raw[:, k], remaining)
        remaining -= counts[:, k]
    counts[:, -1] += remaining
    return counts


def _persons(tu: pd.DataFrame, hh_id: np.ndarray, ordinal: np.ndarray,
             tax_unit_id: np.ndarray) -> pd.DataFrame:
    n = len(tu)
    married = tu["MARS"].to_numpy() == 2
    counts = _dependent_brackets(tu)
    n_dep = counts.sum(axis=1)

    dep_tu = np.repeat(np.repeat(np.arange(n), counts.shape[1]), counts.ravel())
    dep_bracket = np.repeat(np.tile(np.arange(counts.shape[1]), n), counts.ravel())
    dep_start = np.cumsum(n_dep) - n_dep
    dep_slot = 1 + married[dep_tu] + (np.arange(len(dep_tu)) - dep_start[dep_tu])
    lo = np.array([b[0] for b in _BRACKETS])[dep_bracket]
    hi = np.array([b[1] for b in _BRACKETS])[dep_bracket]
    u = stream_uniform(stream_seeds("cps_dependent_age", hh_id[dep_tu], ordinal[dep_tu],
                                    dep_slot))
    dep_age = lo + np.floor(u * (hi - lo + 1)).astype(np.int64)

    spouse_tu = np.flatnonzero(married)
    tu_idx = np.concatenate([np.arange(n), spouse_tu, dep_tu])
    slot = np.concatenate([np.zeros(n, np.int64), np.ones(len(spouse_tu), np.int64), dep_slot])
    age = np.concatenate([tu["age_head"].to_numpy(np.int64),
                          tu["age_spouse"].to_numpy(np.int64)[spouse_tu], dep_age])
    wages = np.concatenate([tu["e00200p"].to_numpy(float), tu["e00200s"].to_numpy(float)[spouse_tu],
                            np.zeros(len(dep_tu))])
    role = np.concatenate([np.zeros(n, np.int8), np.ones(len(spouse_tu), np.int8),
                           np.full(len(dep_tu), 2, np.int8)])
    order = np.lexsort((slot, tu_idx))
    tu_idx, slot, age, wages, role = (a[order] for a in (tu_idx, slot, age, wages, role))
    return pd.DataFrame({
        "person_id": tax_unit_id[tu_idx] * 100 + slot,
        "household_id": hh_id[tu_idx],
        "tax_unit_id": tax_unit_id[tu_idx],
        "age": age,
        "is_tax_unit_head": role == 0,
        "is_tax_unit_spouse": role == 1,
        "is_tax_unit_dependent": role == 2,
        "employment_income": wages,
    })
