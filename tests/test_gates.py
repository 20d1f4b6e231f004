"""The gate table: verdicts keyed on every input, promotion only on one lineage."""

from dataclasses import replace

import numpy as np
import pytest
from factories import artifact_tree

from pipeline.config import load_profile
from pipeline.core.report import GateReport, Rule
from pipeline.release.gates import GATES, GateContext, GateError, require_all_passed, run_gate
from pipeline.release.lineage import ARTIFACTS, PARENTS


def _judge_all(layout, passed=True, only=None):
    ctx = GateContext(layout, load_profile("ci"))
    for gate in GATES:
        if only is None or gate.name in only:
            stub = replace(gate, judge=lambda _: GateReport.of([Rule("r", passed, "stub")]))
            run_gate(stub, ctx)


def test_every_gate_input_and_parent_is_a_known_artifact():
    for gate in GATES:
        assert set(gate.inputs) <= set(ARTIFACTS) and gate.subject in gate.inputs
    assert all(set(p) <= set(ARTIFACTS) for p in PARENTS.values())
    assert len({g.name for g in GATES}) == len(GATES) == 7


def test_all_passed_on_one_lineage(tmp_path):
    layout = artifact_tree(tmp_path)
    _judge_all(layout)
    assert [v.gate for v in require_all_passed(layout)] == [g.name for g in GATES]


def test_failed_and_missing_verdicts_refuse(tmp_path):
    layout = artifact_tree(tmp_path)
    with pytest.raises(GateError, match="fit_review: never ran"):
        require_all_passed(layout)
    _judge_all(layout)
    _judge_all(layout, passed=False, only={"xw_consistency"})
    with pytest.raises(GateError, match="xw_consistency: FAILED"):
        require_all_passed(layout)


def test_a_refit_after_the_checks_cannot_be_promoted(tmp_path):
    """The mixed-fit release: new weights pass gate 1, but the files and X·w judged the old."""
    layout = artifact_tree(tmp_path)
    _judge_all(layout)
    np.save(layout.weights, np.array([1.0, 0.0, 2.5]))  # a refit with another seed
    _judge_all(layout, only={"fit_review"})
    with pytest.raises(GateError) as info:
        require_all_passed(layout)
    message = str(info.value)
    assert "xw_consistency: judged other calibration_weights" in message
    assert "stacked_h5s was not built from the current calibration_weights" in message
    assert "fit_review" not in message.split("xw_consistency")[0]


def test_a_new_config_makes_every_verdict_on_it_stale(tmp_path):
    layout = artifact_tree(tmp_path)
    _judge_all(layout)
    layout.target_config.write_text("exclude: [{variable: snap}]\n")
    with pytest.raises(GateError) as info:
        require_all_passed(layout)
    for gate in ("package_validity", "fit_review", "xw_consistency", "simulation_quality"):
        assert f"{gate}: judged other" in str(info.value)
    assert "calibration_weights was not built from the current target_config" in str(info.value)


def test_a_national_refit_after_the_checks_cannot_be_promoted(tmp_path):
    """The other fit: national.h5 stacked from the old national weights, a new national fit
    reviewed since. Promotion refuses the mix, naming the national fit."""
    layout = artifact_tree(tmp_path)
    _judge_all(layout)
    np.save(layout.national_weights, np.array([0.0, 4.0, 0.0]))  # a refit with a new budget
    _judge_all(layout, only={"national_fit_review"})
    with pytest.raises(GateError) as info:
        require_all_passed(layout)
    message = str(info.value)
    assert "xw_consistency: judged other national_weights" in message
    assert "stacked_h5s was not built from the current national_weights" in message
    assert "calibration_weights" not in message  # the local fit is not what changed


def test_a_new_national_config_makes_its_verdicts_stale(tmp_path):
    layout = artifact_tree(tmp_path)
    _judge_all(layout)
    layout.national_target_config.write_text("include: [{geo_level: national}]\n")
    with pytest.raises(GateError) as info:
        require_all_passed(layout)
    message = str(info.value)
    for gate in ("package_validity", "national_fit_review", "xw_consistency",
                 "simulation_quality"):
        assert f"{gate}: judged other" in message
    assert "fit_review: judged other" not in message.replace("national_fit_review", "")
    assert "national_weights was not built from the current national_target_config" in message
