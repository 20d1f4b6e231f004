"""Hierarchical consistency of the target DB: national vs states vs districts."""

import json

import pandas as pd
import pytest

from pipeline.core.packaged import DEFAULT_NATIONAL_TARGET_CONFIG, DEFAULT_TARGET_CONFIG
from pipeline.targets.db import load_targets, with_provenance
from pipeline.targets.etl import build_target_db
from pipeline.targets.hierarchy import config_hierarchy_report, gap_summary, hierarchy_gaps
from pipeline.targets.target_config import apply_target_config

PERSONS = 393_983_755 / 389_735_172  # Tax-Calculator's population growth 2023 -> 2024


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "targets.db"
    build_target_db(path)
    return load_targets(path)


def _frame(rows):
    """(level, geographic_id, value) rows of one statistic: person_count with age < 18."""
    return with_provenance(pd.DataFrame({
        "target_id": range(len(rows)), "target_name": [f"t{i}" for i in range(len(rows))],
        "variable": "person_count", "geo_level": [r[0] for r in rows],
        "geographic_id": [r[1] for r in rows], "domain_variable": "age",
        "value": [float(r[2]) for r in rows], "period": 2024, "holdout": 0,
        "constraints": json.dumps([["age", "<", 18]])}))


def test_gaps_compare_each_parent_with_the_sum_of_its_children():
    t = _frame([("national", "US", 100), ("state", "10", 30), ("state", "44", 60),
                ("district", "1000", 30), ("district", "4401", 40), ("district", "4402", 26)])
    gaps = hierarchy_gaps(t).set_index(["parent_level", "child_level", "parent_id"])
    assert gaps.loc[("national", "state", "US"), "children_sum"] == 90
    assert gaps.loc[("national", "state", "US"), "gap"] == pytest.approx(-0.10)
    assert gaps.loc[("national", "district", "US"), "gap"] == pytest.approx(-0.04)
    assert gaps.loc[("state", "district", "44"), "gap"] == pytest.approx(6 / 60)
    assert gaps.loc[("state", "district", "44"), "n_children"] == 2
    assert gaps.loc[("state", "district", "10"), "gap"] == 0
    assert gaps.loc[("state", "district", "44"), "domain"] == "[age<18]"
    everything = t["holdout"] == 0
    report = config_hierarchy_report(t, t, everything, tolerance=0.05)
    assert not report.passed and report.metrics["unresolved"] == 2
    assert report.rules[0].failing[0] == "US person_count[age<18] vs states: -10.0%"
    assert (report.rules[0].value, report.rules[0].limit) == (pytest.approx(0.10), 0.05)
    assert config_hierarchy_report(t, t, everything, tolerance=0.11).passed


def test_a_conflict_counts_only_between_levels_the_config_trains():
    """Leaving the states out of training (or a reconcile rule scaling them) resolves the
    national-vs-states conflict; a held-out child still counts in its parent's sum."""
    t = _frame([("national", "US", 100), ("state", "10", 30), ("state", "44", 60)])
    no_states = (t["geo_level"] != "state").to_numpy()
    assert config_hierarchy_report(t, t, no_states, tolerance=0.05).passed
    scaled = t.assign(value=[100.0, 100 / 3, 200 / 3])  # what `method: scale` does
    report = config_hierarchy_report(t, scaled, t["holdout"] == 0, tolerance=0.05)
    assert report.passed and report.metrics["resolved_by_reconcile"] == 1
    one_held_out = (t["target_name"] != "t2").to_numpy()  # state 44 in the split
    assert not config_hierarchy_report(t, t, one_held_out, tolerance=0.05).passed


def test_real_db_snap_states_disagree_with_their_districts(targets):
    gaps = hierarchy_gaps(targets)
    households = gaps[(gaps.variable == "household_count") & (gaps.parent_level == "state")]
    snap = households[households.domain_variable == "snap"]
    de = snap.set_index("parent_id").loc["10"]
    # Delaware: USDA FY2023 59,192 households (uprated to 2024) against ACS 2024's 41,214.
    assert de["parent_value"] == pytest.approx(59_192.25 * PERSONS)
    assert de["children_sum"] == 41_214 and de["n_children"] == 1
    worst = snap.iloc[0]  # Nevada: four districts sum to 54% of the state's count
    assert worst["parent_id"] == "32" and worst["children_sum"] == 45_419 + 25_626 + 31_178 + 44_602
    assert worst["gap"] == pytest.approx(146_825 / (269_676 * PERSONS) - 1)
    summary = gap_summary(gaps).set_index(["variable", "domain_variable", "levels"])
    # ACS age bins add up exactly at every level; SNAP is the largest conflict.
    assert summary.loc[("person_count", "age", "state vs districts"), "max_abs_gap"] == 0
    assert summary.loc[("person_count", "age", "national vs states"), "comparisons"] == 18
    assert summary.index[0] == ("household_count", "snap", "state vs districts")
    assert summary.iloc[0]["comparisons"] == 51 and summary.iloc[0]["worst"] == "32 [snap>0]"
    # ACS S2201 total households: states and the nation are sums of their parts, exactly.
    total = households[households.domain_variable == ""]
    assert len(total) == 51 and (total["gap"] == 0).all()
    for levels in ("state vs districts", "national vs states"):
        assert summary.loc[("household_count", "", levels), "max_abs_gap"] == 0


@pytest.mark.parametrize("config", [DEFAULT_TARGET_CONFIG, DEFAULT_NATIONAL_TARGET_CONFIG])
def test_shipped_configs_leave_one_conflict_their_rules_do_not_resolve(targets, config):
    """The USDA-vs-ACS SNAP conflicts are scaled away by the local config's rule (the
    national config trains no districts); what is left is real: IRS SOI's national count
    of returns with AGI below $1 against the sum of its state tables."""
    configured, selected = apply_target_config(config, targets)
    report = config_hierarchy_report(targets, configured, selected, tolerance=0.05)
    assert report.metrics["unresolved"] == 1
    assert report.rules[0].failing[0].startswith(
        "US tax_unit_count[adjusted_gross_income<1,is_tax_filer==1] vs states: +16.")
    # (46: the state SNAP households the validation split leaves trained, now that the
    # split's household_count x state group also holds the ACS household totals)
    assert report.metrics["resolved_by_reconcile"] == (
        46 if config == DEFAULT_TARGET_CONFIG else 0)
    assert report.summary.startswith("1 conflict no reconcile rule resolves")
