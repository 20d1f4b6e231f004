"""Stratified base sample: size, tail kept whole, weighted totals preserved, deterministic."""

import numpy as np
import pandas as pd
import pytest

from pipeline.engine import compute_taxes
from pipeline.source.stratify import household_agi, stratify
from pipeline.source.taxcalc_cps import load_source_cps


@pytest.fixture(scope="module")
def source():
    md = load_source_cps(2024)
    # A cheap income proxy keeps the test fast; the engine path is tested below on a subset.
    tu = md.tax_unit
    income = tu[["e00200", "e00900", "e00300", "e00600", "e01500", "e02300"]].sum(axis=1)
    pos = pd.Index(md.household["household_id"]).get_indexer(tu["household_id"])
    return md, np.bincount(pos, weights=income.to_numpy(), minlength=len(md.household))


def test_size_weights_and_tail(source):
    md, agi = source
    sample = stratify(md, target_households=12_000, seed=0, top_agi_quantile=0.99, agi=agi)
    hh = sample.household
    assert len(hh) == 12_000
    total = md.household["household_weight"].sum()
    assert hh["household_weight"].sum() == pytest.approx(total, rel=1e-9)
    # Every tail household is present with its original weight.
    w = md.household["household_weight"].to_numpy()
    order = np.argsort(agi)
    cum = np.cumsum(w[order])
    threshold = agi[order][np.searchsorted(cum, 0.99 * cum[-1])]
    tail_ids = md.household["household_id"][agi >= threshold]
    kept = hh.set_index("household_id")["household_weight"]
    assert tail_ids.isin(kept.index).all()
    assert kept[tail_ids].to_numpy() == pytest.approx(w[agi >= threshold])
    # State totals are preserved (strata nest in states).
    by_state = hh.groupby("state_fips")["household_weight"].sum()
    orig = md.household.groupby("state_fips")["household_weight"].sum()
    assert by_state.to_numpy() == pytest.approx(orig.to_numpy(), rel=1e-9)
    # Members travel with their households.
    assert set(sample.tax_unit["household_id"]) == set(hh["household_id"])
    assert len(sample.person) == sample.tax_unit["XTOT"].sum()


def test_deterministic_given_seed(source):
    md, agi = source
    a = stratify(md, target_households=3_000, seed=4, agi=agi).household
    b = stratify(md, target_households=3_000, seed=4, agi=agi).household
    c = stratify(md, target_households=3_000, seed=5, agi=agi).household
    pd.testing.assert_frame_equal(a, b)
    assert not a["household_id"].equals(c["household_id"])


def test_engine_agi_path_on_subset(source):
    md, _ = source
    part = md.take_households(np.arange(0, len(md.household), 100))
    taxes = compute_taxes(part).tax_unit
    agi = household_agi(part)
    assert agi.sum() == pytest.approx(taxes["adjusted_gross_income"].sum())
    assert (agi > 0).mean() > 0.8
    sample = stratify(part, target_households=500, seed=0, agi=agi)
    assert len(sample.household) == 500
    assert sample.household["household_weight"].sum() == pytest.approx(
        part.household["household_weight"].sum(), rel=1e-9)
