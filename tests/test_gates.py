"""Promotion reads every gate's verdict about the current artifact."""

import pytest

from pipeline.core.errors import InputError
from pipeline.fit import FitThresholds
from pipeline.release.gates import GateError, record_verdict, require_all_passed, thresholds_from


def test_all_passed_on_current_artifacts(tmp_path):
    record_verdict(tmp_path, "fit_review", True, "aaa", "ok")
    record_verdict(tmp_path, "xw_consistency", True, "bbb", "ok")
    verdicts = require_all_passed(tmp_path, {"fit_review": "aaa", "xw_consistency": "bbb"})
    assert [v.gate for v in verdicts] == ["fit_review", "xw_consistency"]


@pytest.mark.parametrize("setup, message", [
    (lambda d: record_verdict(d, "fit_review", False, "aaa", "loss diverged"),
     "fit_review: FAILED \\(loss diverged\\)"),
    (lambda d: record_verdict(d, "fit_review", True, "old", "ok"), "judged an older artifact"),
    (lambda d: None, "fit_review: never ran"),
])
def test_promotion_refused(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(GateError, match=message):
        require_all_passed(tmp_path, {"fit_review": "aaa"})


def test_thresholds_from_a_profile_section():
    t = thresholds_from(FitThresholds, {"loss_tolerance": 0.2}, "p.yaml", "fit")
    assert t.loss_tolerance == 0.2
    assert t.divergence_tolerance == FitThresholds().divergence_tolerance
    with pytest.raises(InputError, match="gates.fit.loss_tolerence.*loss_tolerance"):
        thresholds_from(FitThresholds, {"loss_tolerence": 0.2}, "p.yaml", "fit")
