"""The gate table: verdicts keyed on every input, promotion only on one lineage."""

import re
from dataclasses import replace

import numpy as np
import pytest
from factories import artifact_tree

from pipeline.config import load_profile
from pipeline.core.fit_table import FITS
from pipeline.core.lineage import artifacts, parents
from pipeline.core.report import GateReport, Rule
from pipeline.release.gates import CURRENT_RELEASE, GATES
from pipeline.release.judges import GateContext
from pipeline.release.verdicts import GateError, require_all_passed, run_gate

FIT_IDS = [fit.name for fit in FITS]


def _judge_all(layout, passed=True, only=None):
    ctx = GateContext(layout, load_profile("ci").gates)
    for gate in GATES:
        if only is None or gate.name in only:
            stub = replace(gate, judge=lambda _: GateReport.of([Rule("r", passed, "stub")]))
            run_gate(stub, ctx)


def test_every_gate_input_and_parent_is_a_known_artifact():
    known = {*artifacts(), CURRENT_RELEASE}
    for gate in GATES:
        assert set(gate.inputs) <= known and gate.subject in gate.inputs
    assert all(set(p) <= known for p in parents().values())
    assert len({g.name for g in GATES}) == len(GATES) == 5 + len(FITS)


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


@pytest.mark.parametrize("fit", FITS, ids=FIT_IDS)
def test_a_refit_after_the_checks_cannot_be_promoted(tmp_path, fit):
    """The mixed-fit release: a fit's new weights pass its gate 1, but the files and X·w
    judged the old ones. Promotion refuses the mix, naming that fit and no other."""
    layout = artifact_tree(tmp_path)
    _judge_all(layout)
    np.save(layout.weights(fit), np.array([0.0, 4.0, 2.5]))  # a refit with another seed
    _judge_all(layout, only={fit.review})
    with pytest.raises(GateError) as info:
        require_all_passed(layout)
    message = str(info.value)
    assert f"xw_consistency: judged other {fit.weights}" in message
    assert f"stacked_h5s was not built from the current {fit.weights}" in message
    assert f"{fit.review}:" not in message
    assert not any(other.weights in message for other in FITS if other != fit)


@pytest.mark.parametrize("fit", FITS, ids=FIT_IDS)
def test_a_new_config_makes_every_verdict_on_it_stale(tmp_path, fit):
    layout = artifact_tree(tmp_path)
    _judge_all(layout)
    layout.target_config(fit.config).write_text("exclude: [{variable: snap}]\n")
    with pytest.raises(GateError) as info:
        require_all_passed(layout)
    message = str(info.value)
    for gate in ("package_validity", fit.review, "xw_consistency", "simulation_quality"):
        assert re.search(rf"(refused: |; ){gate}: judged other", message), gate
    for other in FITS:
        if other != fit:
            assert not re.search(rf"(refused: |; ){other.review}: judged other", message)
    assert f"{fit.weights} was not built from the current {fit.config.asset}" in message
