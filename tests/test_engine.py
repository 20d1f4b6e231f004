"""Engine: hand-computed SNAP (FY2024 rules) and Tax-Calculator sanity on tiny households."""

import numpy as np
import pandas as pd
import pytest

from pipeline.engine import compute_taxes, simulate
from pipeline.engine.snap import max_allotment, snap_monthly_benefit
from pipeline.engine.variables import BUILTIN
from pipeline.microdata import Microdata


def test_max_allotment_reproduces_fy2024_tables():
    sizes = np.arange(1, 10)
    assert max_allotment(sizes, np.zeros(9, int)).tolist() == [
        291, 535, 766, 973, 1155, 1386, 1532, 1751, 1970]
    # Hawaii 1 person, Alaska (urban) 4, Hawaii 9 = 3166 + 396
    assert max_allotment([1, 4, 9], [2, 1, 2]).tolist() == [527, 1248, 3562]


@pytest.mark.parametrize(
    "size, gross, earned, elderly, state, expected",
    [
        (1, 0, 0, False, 1, 291),            # no income: full allotment
        (4, 2000, 2000, False, 1, 555),      # net 2000-400-208=1392; 973-ceil(417.6)
        (2, 1800, 0, False, 1, 54),          # net 1800-198=1602 ≤ 1644; 535-481
        (1, 1500, 0, False, 1, 0),           # net 1302 > 1215: fails net test
        (1, 1700, 1700, True, 1, 23),        # elderly skip gross test; net 1162; minimum
        (1, 1700, 1700, False, 1, 0),        # gross 1700 > 1580
        (3, 2500, 2500, False, 1, 225),      # net 1802; 766-541
        (4, 0, 0, False, 2, 1248),           # Alaska
        (1, 0, 0, False, 15, 527),           # Hawaii
    ],
)
def test_snap_hand_cases(size, gross, earned, elderly, state, expected):
    got = snap_monthly_benefit([size], [gross], [earned], [elderly], [state])
    assert got.tolist() == [expected]


def _md(takes_up: bool = True) -> Microdata:
    hh = pd.DataFrame({
        "household_id": [1, 2], "household_weight": [1.0, 1.0], "state_fips": [6, 6],
        "congressional_district_geoid": [0, 0], "county": ["", ""],
        "takes_up_snap_if_eligible": [takes_up, takes_up]})
    tu = pd.DataFrame({
        "tax_unit_id": [100, 200], "household_id": [1, 2], "takes_up_eitc": [takes_up] * 2,
        "MARS": [4, 1], "XTOT": [3, 1], "EIC": [2, 0], "n24": [2, 0], "nu18": [2, 0],
        "n21": [1, 1], "age_head": [30, 40], "age_spouse": [0, 0],
        "e00200": [20000.0, 50000.0], "e00200p": [20000.0, 50000.0], "e00200s": [0.0, 0.0]})
    person = pd.DataFrame({
        "person_id": [10000, 10001, 10002, 20000], "household_id": [1, 1, 1, 2],
        "tax_unit_id": [100, 100, 100, 200], "age": [30, 5, 8, 40],
        "is_tax_unit_head": [True, False, False, True], "is_tax_unit_spouse": [False] * 4,
        "is_tax_unit_dependent": [False, True, True, False],
        "employment_income": [20000.0, 0.0, 0.0, 50000.0]})
    return Microdata(2024, hh, tu, person).validate()


def test_taxcalc_sanity_2024():
    t = compute_taxes(_md()).tax_unit
    assert t["adjusted_gross_income"].tolist() == [20000.0, 50000.0]
    # Head of household, two children, $20K wages: maximum 2024 EITC for two children.
    assert t["eitc_entitlement"].tolist() == [6960.0, 0.0]
    # Refundable ACTC = 15% × (20000 − 2500); no tax to offset.
    assert t["ctc"].tolist() == [2625.0, 0.0]
    # Single, $50K: (50000 − 14600) taxed 10%/12% → 1160 + 0.12 × 23800.
    assert t["income_tax"].tolist() == [-9585.0, 4016.0]
    assert t["eitc_child_count"].tolist() == [2, 0]
    assert t["is_tax_filer"].tolist() == [True, True]


def test_credits_do_not_depend_on_the_batch():
    """A unit's EITC/CTC is the same alone or beside others (no batch-seeded claim draws)."""
    md = _md()
    together = compute_taxes(md).tax_unit.set_index("tax_unit_id")
    for position in (0, 1):
        alone = compute_taxes(md.take_households(np.array([position]))).tax_unit.iloc[0]
        row = together.loc[alone["tax_unit_id"]]
        assert alone["eitc_entitlement"] == row["eitc_entitlement"]
        assert alone["ctc"] == row["ctc"]
        assert alone["income_tax"] == row["income_tax"]


def test_simulate_applies_takeup_and_snap():
    md = _md()
    taxes = compute_taxes(md)
    sim = simulate(md, taxes)
    for entity in ("person", "tax_unit", "household"):
        frame = getattr(sim, entity)
        assert len(frame) == len(getattr(md, entity))
        assert {v for v, e in BUILTIN.items() if e == entity} <= set(frame.columns)
    # Size 3, $20K wages: gross 1666.67, net 1666.67 − 333.33 − 198; 766 − ceil(0.3 · net).
    assert sim.household["snap"].tolist() == [425.0 * 12, 0.0]
    assert sim.tax_unit["eitc"].tolist() == [6960.0, 0.0]
    off = simulate(_md(takes_up=False), taxes)
    assert off.household["snap"].tolist() == [0.0, 0.0]
    assert off.tax_unit["eitc"].tolist() == [0.0, 0.0]
    assert off.tax_unit["ctc"].tolist() == [2625.0, 0.0]
