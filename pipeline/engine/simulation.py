"""The engine's one entry point: every `VARIABLES` entry per entity, row-aligned with `md`.

SNAP income counts every tax unit of the household (the household is the SNAP unit), from
Tax-Calculator's input columns, annual ÷ 12:
- earned: wages e00200 + positive self-employment e00900 + positive farm e02100;
- unearned: interest e00300 + e00400, dividends e00600, alimony e00800, IRA distributions
  e01400, pensions e01500, unemployment e02300, Social Security e02400, SSI ssi_ben,
  TANF tanf_ben, veterans' benefits vet_ben.
An absent column counts as zero, as it does in Tax-Calculator.

Tax units also carry the IRS SOI income items the CPS holds as inputs (`SOI_INPUTS`,
policyengine-us's names, each the tax unit's total: policyengine-us holds most of them
per person) beside the ones Tax-Calculator computes (`taxes.SOI_ITEMS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.engine.snap import snap_monthly_benefit
from pipeline.engine.taxes import SOI_ITEMS, TaxResults, compute_taxes
from pipeline.microdata import Microdata

_EARNED = ("e00200",)
_EARNED_POSITIVE = ("e00900", "e02100")
_UNEARNED = ("e00300", "e00400", "e00600", "e00800", "e01400", "e01500", "e02300", "e02400",
             "ssi_ben", "tanf_ben", "vet_ben")
_ELDERLY_AGE = 60
# policyengine-us name -> the Tax-Calculator input holding the tax unit's total.
SOI_INPUTS = {
    "irs_employment_income": "e00200",  # wages net of elective deferrals (W-2 box 1)
    "taxable_interest_income": "e00300",
    "tax_exempt_interest_income": "e00400",
    "dividend_income": "e00600",  # ordinary dividends, qualified ones included
    "qualified_dividend_income": "e00650",
    "self_employment_income": "e00900",  # Schedule C net profit or loss
    "taxable_ira_distributions": "e01400",
    "pension_income": "e01500",
    "taxable_pension_income": "e01700",
    "social_security": "e02400",
    "unemployment_compensation": "e02300",
}


@dataclass(frozen=True)
class Simulation:
    person: pd.DataFrame
    tax_unit: pd.DataFrame
    household: pd.DataFrame


def _column(table: pd.DataFrame, name: str) -> np.ndarray:
    return table[name].to_numpy(float) if name in table.columns else np.zeros(len(table))


def simulate(md: Microdata, taxes: TaxResults | None = None) -> Simulation:
    """Apply takeup and state rules to federal tax results (computed here when not given)."""
    if taxes is None:
        taxes = compute_taxes(md)
    tu, hh, person = md.tax_unit, md.household, md.person
    if not np.array_equal(taxes.tax_unit["tax_unit_id"].to_numpy(), tu["tax_unit_id"].to_numpy()):
        raise ValueError("taxes were computed for different tax units than md holds")
    hh_ids = pd.Index(hh["household_id"].to_numpy())
    tu_hh = hh_ids.get_indexer(tu["household_id"].to_numpy())
    person_hh = hh_ids.get_indexer(person["household_id"].to_numpy())
    n_hh = len(hh)

    earned = sum(_column(tu, c) for c in _EARNED) + sum(
        np.maximum(_column(tu, c), 0.0) for c in _EARNED_POSITIVE
    )
    unearned = sum(_column(tu, c) for c in _UNEARNED)
    earned_hh = np.bincount(tu_hh, weights=earned, minlength=n_hh) / 12
    gross_hh = earned_hh + np.bincount(tu_hh, weights=unearned, minlength=n_hh) / 12
    size = np.bincount(person_hh, minlength=n_hh)
    elderly = np.bincount(person_hh, weights=person["age"].to_numpy() >= _ELDERLY_AGE,
                          minlength=n_hh) > 0
    disabled = np.bincount(tu_hh, weights=_column(tu, "ssi_ben") > 0, minlength=n_hh) > 0
    monthly = snap_monthly_benefit(size, gross_hh, earned_hh, elderly | disabled,
                                   hh["state_fips"].to_numpy())
    snap = monthly * 12 * hh["takes_up_snap_if_eligible"].to_numpy(bool)

    t = taxes.tax_unit
    return Simulation(
        person=pd.DataFrame({
            "person_id": person["person_id"].to_numpy(),
            "household_id": person["household_id"].to_numpy(),
            "tax_unit_id": person["tax_unit_id"].to_numpy(),
            "person_count": np.ones(len(person)),
            "age": person["age"].to_numpy(),
        }),
        tax_unit=pd.DataFrame({
            "tax_unit_id": tu["tax_unit_id"].to_numpy(),
            "household_id": tu["household_id"].to_numpy(),
            "tax_unit_count": np.ones(len(tu)),
            "adjusted_gross_income": t["adjusted_gross_income"].to_numpy(),
            "income_tax": t["income_tax"].to_numpy(),
            "eitc": t["eitc_entitlement"].to_numpy() * tu["takes_up_eitc"].to_numpy(bool),
            "eitc_child_count": t["eitc_child_count"].to_numpy(),
            "ctc": t["ctc"].to_numpy(),
            **{name: _column(tu, col) for name, col in SOI_INPUTS.items()},
            **{name: t[name].to_numpy() for name in SOI_ITEMS},
            "is_tax_filer": t["is_tax_filer"].to_numpy(bool),
        }),
        household=pd.DataFrame({
            "household_id": hh["household_id"].to_numpy(),
            "household_count": np.ones(n_hh),
            "snap": snap,
            "state_fips": hh["state_fips"].to_numpy(),
            "congressional_district_geoid": hh["congressional_district_geoid"].to_numpy(),
        }),
    )
