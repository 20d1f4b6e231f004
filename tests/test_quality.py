import numpy as np
import pytest
from factories import validation_frame as _frame

from pipeline.core.errors import InputError
from pipeline.validate.quality import QualityThresholds, heldout_metrics, review_quality

EITC = "eitc_agi_children"
LOCAL_EITC = f"local/{EITC}"  # held-out metrics are per fit


def _rule(review, name):
    return next(r for r in review.rules if r.name == name)


def test_no_baseline_uses_absolute_median_and_reports_heldout_median_and_p90():
    v = _frame([0.02, 0.04, 0.5, 0.9, 0.1, 0.3], training=[True, True, True, False, False, False],
               holdout=["", "", "", EITC, EITC, "validation_split"])
    review = review_quality(v, None)
    assert review.passed
    assert "median training score 0.04" in _rule(review, "absolute").detail
    eitc = review.details["heldout"][LOCAL_EITC]
    assert eitc["count"] == 2 and eitc["median"] == pytest.approx(0.5)
    assert eitc["p90"] == pytest.approx(0.1 + 0.9 * 0.8)
    # t5 is a split target of a group (snap x district) the fit trains: t4's... no, t5's
    # own: the frame's last row is the district, and no district target is trained.
    assert "local/validation_split" not in review.details["heldout"]
    assert review.metrics["heldout_local_eitc_agi_children_median"] == pytest.approx(0.5)
    strict = review_quality(v, None, QualityThresholds(max_median_training_error=0.03))
    assert not strict.passed and not _rule(strict, "absolute").passed


def test_target_and_group_regressions_block():
    base = _frame([0.01, 0.01, 0.01, 0.01])
    same = review_quality(_frame([0.012, 0.01, 0.01, 0.01]), base)
    assert same.passed
    worse = review_quality(_frame([0.2, 0.01, 0.01, 0.01]), base)
    assert not worse.passed
    rule = _rule(worse, "target_regression")
    assert rule.failing == ("local/t0: +0.19 > 0.05 OVER",)  # marked with value and limit
    assert (rule.value, rule.limit) == (pytest.approx(0.19), 0.05)
    assert worse.details["worst_regressions"][0]["target_name"] == "t0"
    assert worse.details["worst_regressions"][0]["increase"] == pytest.approx(0.19)
    assert worse.metrics["largest_score_increase"] == pytest.approx(0.19)
    assert worse.metrics["trained_max_score"] == pytest.approx(0.2)
    assert worse.metrics["failed_rules"] == 2  # the target and its group
    # each target within 0.05 but the state group mean rises by 0.04 > 0.01
    drift = review_quality(_frame([0.05, 0.05, 0.05, 0.01]), base)
    assert _rule(drift, "target_regression").passed
    assert not _rule(drift, "group_regression").passed
    assert "local snap/state: +0.04 > 0.01 OVER" in _rule(drift, "group_regression").detail


def test_sanity_fail_and_nan_block_and_new_targets_do_not_regress():
    base = _frame([0.01, 0.01, 0.01])
    fail = review_quality(_frame([0.01] * 3, sanity=["PASS", "FAIL", "WARN"]), base)
    assert not fail.passed and _rule(fail, "sanity").detail == "1 areas with a sanity FAIL: state 1"
    nan = review_quality(_frame([0.01] * 3, sim=[1.0, np.nan, 1.0]), base)
    assert not _rule(nan, "finite").passed
    assert _rule(nan, "finite").detail.startswith("1 non-finite sim values: ")
    assert _rule(fail, "finite").detail == "0 non-finite sim values"  # no empty list
    grown = _frame([0.01, 0.01, 0.01, 0.9])
    review = review_quality(grown, base)
    assert review.passed
    assert "3 targets compared, 1 new" in _rule(review, "coverage").detail
    with pytest.raises(InputError, match="score"):
        review_quality(grown.drop(columns="score"), None)


def test_untrained_targets_may_drift_and_are_reported():
    base = _frame([0.01, 0.01, 0.01, 0.01])
    # t3 left training (a config edit) and drifted far; t0..t2 held steady.
    review = review_quality(_frame([0.01, 0.01, 0.01, 0.8],
                                   training=[True, True, True, False]), base)
    assert review.passed
    assert review.details["worst_regressions"][0]["target_name"] == "t3"
    assert not review.details["worst_regressions"][0]["in_training"]
    assert review.details["worst_regressions"][0]["increase"] == pytest.approx(0.79)


def test_out_of_scope_targets_are_reported_not_judged():
    base = _frame([0.01, 0.01, 0.01])
    # t1: zero under the statistic's year's law, non-zero under the data year's: out of scope
    v = _frame([0.01, 4e7, 0.01], scope=["in_scope", "out_of_scope", "in_scope"])
    review = review_quality(v, base)
    assert review.passed
    assert review.metrics["out_of_scope_targets"] == 1.0
    assert "2 targets compared" in _rule(review, "coverage").detail
    assert review_quality(v, None).passed


def test_heldout_group_regression_against_current_blocks():
    training = [True, True, False, False, False, False]
    holdout = ["", "", EITC, EITC, EITC, EITC]
    base = _frame([0.01, 0.01, 0.2, 0.3, 0.4, 0.5], training=training, holdout=holdout)
    slightly = _frame([0.01, 0.01, 0.21, 0.31, 0.41, 0.51], training=training, holdout=holdout)
    assert review_quality(slightly, base).passed
    worse = _frame([0.01, 0.01, 0.2, 0.3, 0.5, 0.6], training=training, holdout=holdout)
    review = review_quality(worse, base)  # median 0.35 -> 0.4
    assert not review.passed
    rule = _rule(review, "heldout_regression")
    # Each pair over the tolerance is marked with its rise and the limit.
    assert rule.failing == (f"{LOCAL_EITC} median 0.35 -> 0.4 (+0.05 > 0.02 OVER)",
                            f"{LOCAL_EITC} p90 0.47 -> 0.57 (+0.1 > 0.02 OVER)")
    assert (rule.value, rule.limit) == (pytest.approx(0.1), 0.02)
    within = _rule(review_quality(slightly, base), "heldout_regression")
    assert "OVER" not in within.detail and "(+0.01 <= 0.02)" in within.detail
    assert review.details["heldout"][LOCAL_EITC]["baseline_median"] == pytest.approx(0.35)
    loose = QualityThresholds(heldout_regression=0.1)
    assert review_quality(worse, base, loose).passed
    # A fit whose record budget changed is reported, not judged, on its held-out groups.
    rebudgeted = review_quality(worse, base, rebudgeted=frozenset({"local"}))
    assert rebudgeted.passed
    assert (f"{LOCAL_EITC} median 0.35 -> 0.4 (record budget changed: not judged)"
            in _rule(rebudgeted, "heldout_regression").detail)
    assert not review_quality(worse, base, rebudgeted=frozenset({"national"})).passed


def test_heldout_groups_compare_only_targets_both_runs_held_out():
    """A CURRENT from before the split trained today's split targets: no regression there."""
    holdout = ["", "", "validation_split", "validation_split"]
    base = _frame([0.01, 0.01, 0.001, 0.001])  # every target trained, split ones nearly exact
    now = _frame([0.01, 0.01, 0.3, 0.4], training=[True, True, False, False], holdout=holdout)
    review = review_quality(now, base)
    assert review.passed
    assert "no held-out target in both runs" in _rule(review, "heldout_regression").detail
    held_before = _frame([0.01, 0.01, 0.001, 0.001], training=[True, True, False, False],
                         holdout=holdout)
    assert not _rule(review_quality(now, held_before), "heldout_regression").passed


def test_current_is_rescored_against_this_runs_targets():
    """A target DB change moves a target: CURRENT's old total is judged against the new value."""
    base = _frame([0.01, 0.01, 0.01, 0.01])  # CURRENT simulated 1.01 for every target
    moved = _frame([0.06, 0.01, 0.01, 0.01])
    moved.loc[0, "target_value"] = 1.2  # t0 uprated; this run's sim 1.128 is 6% off it
    moved.loc[0, "sim_value"] = 1.2 * 1.06
    review = review_quality(moved, base)
    assert review.passed  # CURRENT's 1.01 is 15.8% off the new target: no regression
    assert review.details["worst_regressions"][-1]["target_name"] == "t0"
    assert review.details["worst_regressions"][-1]["baseline_score"] == pytest.approx(0.19 / 1.2)
    kept_own = review_quality(moved, base.drop(columns="sim_value"))
    assert not kept_own.passed  # an old CSV without sim_value keeps its own 0.01


def test_legacy_baseline_without_score_is_judged_by_rel_abs_error():
    base = _frame([0.01, 0.01, 0.01, 0.01]).drop(
        columns=["holdout_group", "original_value", "original_period", "uprating_factor",
                 "reconcile_rule", "reconcile_factor", "error_rule", "error_floor", "score",
                 "scope"])
    assert review_quality(_frame([0.012, 0.01, 0.01, 0.01]), base).passed
    assert not review_quality(_frame([0.2, 0.01, 0.01, 0.01]), base).passed


def test_heldout_metrics_ignore_trained_and_out_of_scope_rows():
    v = _frame([0.1, 0.2, 0.3, 9.0], training=[True, False, False, False],
               holdout=["", EITC, EITC, EITC], scope=["in_scope"] * 3 + ["out_of_scope"])
    assert heldout_metrics(v) == {LOCAL_EITC: {"count": 2.0, "median": pytest.approx(0.25),
                                               "p90": pytest.approx(0.29)}}


def test_a_trained_split_target_counts_in_no_heldout_metric():
    """A published fit trains the validation split: those rows measure nothing held out
    (its held-out twin's rows do)."""
    v = _frame([0.1, 0.2, 0.3, 0.4], training=[True, True, False, False],
               holdout=["", "validation_split", "validation_split", EITC])
    assert set(heldout_metrics(v)) == {"local/validation_split", LOCAL_EITC}
    assert heldout_metrics(v)["local/validation_split"]["count"] == 1.0
