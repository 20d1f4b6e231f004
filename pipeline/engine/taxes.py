"""Federal income tax per tax unit from Tax-Calculator, at current law.

State does not enter Tax-Calculator's federal calculation, so one run serves every state
assignment and every takeup draw of the same records.

Outputs per tax unit (Tax-Calculator names in brackets):
- `adjusted_gross_income` (c00100), `income_tax` (iitax, net of refundable credits),
- `eitc_entitlement` (eitc: the credit computed for every eligible unit; takeup is applied
  by `simulate`), `eitc_child_count` (the EIC input),
- `ctc` (ctc_total = nonrefundable CTC + additional CTC + credit for other dependents: the
  IRS reports the child credit and the other-dependent credit on one 1040 line),
- `is_tax_filer`: gross income (AGI, or self-employment income ≥ $400) at or above the
  standard deduction for the unit's filing status plus its aged add-ons (the filing
  requirement), or any EITC or additional CTC (units file to claim refundable credits), or
  negative AGI (units file to report, and carry forward, their losses: IRS SOI counts
  millions of "no AGI" returns).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import taxcalc

from pipeline.microdata import Microdata

_SET_BY_ENGINE = ("RECID", "FLPDYR", "s006")
_USABLE = taxcalc.Records(data=None).USABLE_READ_VARS


@dataclass(frozen=True)
class TaxResults:
    """Per-tax-unit federal results, row-aligned with the `Microdata.tax_unit` they came from."""

    period: int
    tax_unit: pd.DataFrame


def _entitlement_policy(year: int) -> taxcalc.Policy:
    """Current law with Tax-Calculator's credit-claiming approximation switched off.

    Tax-Calculator 6.8 drops some EITC and ACTC claims using one uniform draw per record
    from a generator seeded per batch, so a unit's credit would depend on its row position
    and on which other units share the batch. We want entitlements (takeup is ours, drawn
    per household and clone), identical whichever file or clone a unit is computed in;
    a claim-probability scale of 9e99 means every eligible unit claims.
    """
    policy = taxcalc.Policy()
    policy.implement_reform({"eitc_claim_prob_scale": {year: 9e99},
                             "actc_claim_prob_scale": {year: 9e99}})
    return policy


def tax_inputs(tax_unit: pd.DataFrame) -> list[str]:
    """The columns Tax-Calculator reads: a unit's results are a function of these alone."""
    return [c for c in tax_unit.columns if c in _USABLE and c not in _SET_BY_ENGINE]


def compute_taxes(md: Microdata) -> TaxResults:
    """Run Tax-Calculator on `md`'s tax units as they are (no further uprating)."""
    return tax_unit_taxes(md.tax_unit, md.period)


def tax_unit_taxes(tu: pd.DataFrame, period: int) -> TaxResults:
    """`compute_taxes` for a bare tax-unit table (no households or persons needed)."""
    data = {c: tu[c].to_numpy() for c in tax_inputs(tu)}
    n = len(tu)
    data["RECID"] = np.arange(1, n + 1)
    data["FLPDYR"] = np.full(n, period)
    data["s006"] = np.ones(n)
    records = taxcalc.Records(data=pd.DataFrame(data), start_year=period, gfactors=None,
                              weights=None)
    with contextlib.redirect_stdout(io.StringIO()):
        calc = taxcalc.Calculator(policy=_entitlement_policy(period), records=records,
                                  verbose=False)
        calc.calc_all()
    agi = calc.array("c00100")
    eitc = calc.array("eitc")
    mars = calc.array("MARS")
    standard = calc.policy_param("STD")[mars - 1]
    aged = (calc.array("age_head") >= 65).astype(int) + (
        (mars == 2) & (calc.array("age_spouse") >= 65)
    ).astype(int)
    threshold = standard + aged * calc.policy_param("STD_Aged")[mars - 1]
    files = (agi >= threshold) | (agi < 0) | (calc.array("e00900") >= 400) | (eitc > 0) | (
        calc.array("c11070") > 0
    )
    frame = pd.DataFrame({
        "tax_unit_id": tu["tax_unit_id"].to_numpy(),
        "household_id": tu["household_id"].to_numpy(),
        "adjusted_gross_income": agi,
        "income_tax": calc.array("iitax"),
        "eitc_entitlement": eitc,
        "eitc_child_count": calc.array("EIC").astype(np.int64),
        "ctc": calc.array("ctc_total"),
        "is_tax_filer": files,
    })
    return TaxResults(period, frame)
