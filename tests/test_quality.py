import numpy as np
import pytest
from factories import validation_frame as _frame

from pipeline.core.errors import InputError
from pipeline.validate.quality import QualityThresholds, review_quality


def _rule(review, name):
    return next(r for r in review.rules if r.name == name)


def test_no_baseline_uses_absolute_median_and_reports_holdout():
    v = _frame([0.02, 0.04, 0.5, 0.9], training=[True, True, True, False])
    review = review_quality(v, None)
    assert review.passed
    assert "median training rel_abs_error 0.04" in _rule(review, "absolute").detail
    assert review.details["holdout"] == {"count": 1.0, "median_rel_abs_error": 0.9,
                              "mean_rel_abs_error": 0.9, "max_rel_abs_error": 0.9}
    strict = review_quality(v, None, QualityThresholds(max_median_training_error=0.03))
    assert not strict.passed and not _rule(strict, "absolute").passed


def test_target_and_group_regressions_block():
    base = _frame([0.01, 0.01, 0.01, 0.01])
    same = review_quality(_frame([0.012, 0.01, 0.01, 0.01]), base)
    assert same.passed
    worse = review_quality(_frame([0.2, 0.01, 0.01, 0.01]), base)
    assert not worse.passed
    assert not _rule(worse, "target_regression").passed
    assert "['t0']" in _rule(worse, "target_regression").detail
    assert worse.details["worst_regressions"][0]["target_name"] == "t0"
    assert worse.details["worst_regressions"][0]["increase"] == pytest.approx(0.19)
    # each target within 0.05 but the state group mean rises by 0.04 > 0.01
    drift = review_quality(_frame([0.05, 0.05, 0.05, 0.01]), base)
    assert _rule(drift, "target_regression").passed
    assert not _rule(drift, "group_regression").passed
    assert "snap/state: +0.04" in _rule(drift, "group_regression").detail


def test_sanity_fail_and_nan_block_and_new_targets_do_not_regress():
    base = _frame([0.01, 0.01, 0.01])
    fail = review_quality(_frame([0.01] * 3, sanity=["PASS", "FAIL", "WARN"]), base)
    assert not fail.passed and "('state', '1')" in _rule(fail, "sanity").detail
    nan = review_quality(_frame([0.01] * 3, sim=[1.0, np.nan, 1.0]), base)
    assert not _rule(nan, "finite").passed
    grown = _frame([0.01, 0.01, 0.01, 0.9])
    review = review_quality(grown, base)
    assert review.passed
    assert "3 targets compared, 1 new" in _rule(review, "coverage").detail
    with pytest.raises(InputError, match="rel_abs_error"):
        review_quality(grown.drop(columns="rel_abs_error"), None)


def test_untrained_targets_may_drift_and_are_reported():
    base = _frame([0.01, 0.01, 0.01, 0.01])
    # t3 left training (a config edit or a holdout) and drifted far; t0..t2 held steady.
    review = review_quality(_frame([0.01, 0.01, 0.01, 0.8],
                                   training=[True, True, True, False]), base)
    assert review.passed
    assert review.details["worst_regressions"][0]["target_name"] == "t3"
    assert not review.details["worst_regressions"][0]["in_training"]
    assert review.details["worst_regressions"][0]["increase"] == pytest.approx(0.79)
