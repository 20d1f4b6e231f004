"""The Tax-Calculator CPS source: counts, uprating, and the person imputation."""

import numpy as np
import pandas as pd
import pytest
import taxcalc

from pipeline.microdata import read_h5, write_h5
from pipeline.source.taxcalc_cps import CPS_PATH, load_source_cps


@pytest.fixture(scope="module")
def md():
    return load_source_cps(2024)


@pytest.fixture(scope="module")
def records_2024():
    records = taxcalc.Records.cps_constructor(data=pd.read_csv(CPS_PATH))
    while records.current_year < 2024:
        records.increment_year()
    return records


def test_counts_and_ids(md):
    assert len(md.tax_unit) == 280_005
    assert len(md.household) == 200_576
    assert md.household["household_id"].is_unique
    assert md.household["state_fips"].between(1, 56).all()
    assert md.household["state_fips"].nunique() == 51
    assert (md.household["county"] == "").all()
    assert (md.household["congressional_district_geoid"] == 0).all()
    # One person per exemption: head, spouse, dependents.
    assert len(md.person) == int(md.tax_unit["XTOT"].sum())


def test_uprated_with_taxcalc_growth_and_weights(md, records_2024):
    weight = md.household["household_weight"].to_numpy()
    pos = pd.Index(md.household["household_id"]).get_indexer(md.tax_unit["household_id"])
    # Mean-of-tax-units household weight preserves Tax-Calculator's weighted unit count.
    assert weight[pos].sum() == pytest.approx(float(records_2024.s006.sum()), rel=1e-12)
    # Whole dollars: each amount within 50 cents of Tax-Calculator's, wages within a dollar
    # (the sum of the rounded head and spouse parts).
    wages = md.tax_unit["e00200"].to_numpy()
    assert np.array_equal(wages, np.round(wages))
    assert np.abs(np.sort(wages) - np.sort(records_2024.e00200)).max() <= 1.0
    assert np.array_equal(wages, md.tax_unit["e00200p"] + md.tax_unit["e00200s"])
    interest = np.sort(md.tax_unit["e00300"].to_numpy())
    assert np.abs(interest - np.sort(records_2024.e00300)).max() <= 0.5
    raw = pd.read_csv(CPS_PATH, usecols=["e00200"])["e00200"].sum()
    assert md.tax_unit["e00200"].sum() / raw > 1.3   # a decade of wage growth


def test_persons(md):
    person, tu = md.person, md.tax_unit
    heads = person[person["is_tax_unit_head"]]
    assert len(heads) == len(tu)
    assert heads["age"].to_numpy() == pytest.approx(tu["age_head"].to_numpy())
    assert heads["employment_income"].to_numpy() == pytest.approx(tu["e00200p"].to_numpy())
    assert person["is_tax_unit_spouse"].sum() == (tu["MARS"] == 2).sum()
    roles = person[["is_tax_unit_head", "is_tax_unit_spouse", "is_tax_unit_dependent"]]
    assert (roles.sum(axis=1) == 1).all()
    total_wages = person["employment_income"].sum()
    assert total_wages == tu["e00200"].sum()  # whole dollars: exact
    # Dependents under 6 match nu06 exactly wherever the brackets fit the dependent count.
    deps = person[person["is_tax_unit_dependent"]]
    under6 = deps[deps["age"] < 6].groupby("tax_unit_id").size()
    got = under6.reindex(tu["tax_unit_id"], fill_value=0).to_numpy()
    assert (got == tu["nu06"].to_numpy()).mean() > 0.995
    assert deps["age"].between(0, 85).all()


def test_takeup_is_drawn_not_constant(md):
    assert md.household["takes_up_snap_if_eligible"].dtype == bool
    assert 0.5 < md.household["takes_up_snap_if_eligible"].mean() < 0.95


def test_h5_roundtrip_of_real_households(md, tmp_path):
    part = md.take_households(np.arange(0, len(md.household), 200))
    write_h5(part, tmp_path / "part.h5")
    back = read_h5(tmp_path / "part.h5")
    pd.testing.assert_frame_equal(back.tax_unit, part.tax_unit)
    pd.testing.assert_frame_equal(back.person, part.person)
    expected = part.household.assign(
        household_weight=part.household["household_weight"].astype(np.float32).astype(float))
    pd.testing.assert_frame_equal(back.household, expected)
