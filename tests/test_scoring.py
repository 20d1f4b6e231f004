"""Robust scores: relative for large targets, absolute near zero, law-change cells out of scope."""

import numpy as np
import pandas as pd
import pytest

from pipeline.validate.scoring import domain_of, score_errors

EITC = "nation/tax_unit_count/[adjusted_gross_income>={lo},adjusted_gross_income<{hi},eitc>0]"


def _cells(target, sim, names=None, area="US"):
    n = len(target)
    return pd.DataFrame({
        "target_name": names or [EITC.format(lo=i, hi=i + 1) for i in range(n)],
        "variable": "tax_unit_count", "area_type": "national", "area_id": area,
        "target_value": np.asarray(target, dtype=float), "sim_value": np.asarray(sim, float)})


def test_near_zero_targets_are_scored_against_one_percent_of_their_table():
    # a table of four cells: the largest 1,000,000, so the floor is 10,000
    v = _cells([1_000_000, 200_000, 4_170, 0], [900_000, 210_000, 11_191, 50_000])
    s = score_errors(v, v["target_value"].to_numpy(), np.full(4, 2024), 2024)
    assert s["error_floor"].tolist() == [10_000.0] * 4
    assert s["error_rule"].tolist() == ["relative", "relative", "absolute", "absolute"]
    assert s["score"].tolist() == pytest.approx([0.1, 0.05, (11_191 - 4_170) / 10_000, 5.0])
    assert (s["scope"] == "in_scope").all()  # the zero is of the data's own year


def test_tables_are_per_area_and_domain_and_floor_is_at_least_one():
    names = ["cd_101/person_count/[age<5]", "cd_101/person_count/[age>=5]",
             "cd_102/person_count/[age<5]", "cd_101/person_count"]
    v = _cells([300, 50_000, 0.5, 2], [300, 50_000, 1.5, 3], names).assign(
        variable="person_count", area_type="district",
        area_id=["101", "101", "102", "101"])
    s = score_errors(v, v["target_value"].to_numpy(), np.full(4, 2024), 2024)
    assert s["error_floor"].tolist() == [500.0, 500.0, 1.0, 1.0]
    assert s["error_rule"].tolist() == ["absolute", "relative", "absolute", "relative"]
    assert s["score"].tolist() == pytest.approx([0.0, 0.0, 1.0, 0.5])


def test_zero_under_an_earlier_law_and_nonzero_now_is_out_of_scope():
    # TY2022: no EITC with one child and AGI >= $50K; 2024 law reaches $56K for couples.
    v = _cells([500_000, 0, 0], [480_000, 320_000, 0])
    s = score_errors(v, np.array([500_000, 0, 0]), np.full(3, 2022), np.full(3, 2024))
    assert s["scope"].tolist() == ["in_scope", "out_of_scope", "in_scope"]
    same_year = score_errors(v, np.array([500_000, 0, 0]), np.full(3, 2024), 2024)
    assert (same_year["scope"] == "in_scope").all()


def test_domain_of_reads_constraint_variables_from_names():
    names = pd.Series(["cd_101/person_count/[age>=0,age<5]", "state_1/snap",
                       "nation/eitc/[adjusted_gross_income<1,eitc>0,eitc_child_count==1]",
                       "x/y/[a!=1]"])
    assert domain_of(names).tolist() == ["age", "", "adjusted_gross_income,eitc,eitc_child_count",
                                         "a"]
