"""The gate table: verdicts keyed on every input, promotion only on one lineage."""

import json
import os
import re
from dataclasses import replace

import numpy as np
import pytest
from factories import artifact_tree

from pipeline.config import load_profile
from pipeline.core.fit_table import FITS, LOCAL, NATIONAL
from pipeline.core.hashing import sha256_file
from pipeline.core.layout import RUN_CONFIG
from pipeline.core.lineage import artifacts, parents
from pipeline.core.report import GateReport, Rule
from pipeline.release.gates import CURRENT_RELEASE, GATES
from pipeline.release.judges import GateContext
from pipeline.release.promotion import release_path
from pipeline.release.verdicts import GateError, require_all_passed, run_gate, verdict_path
from pipeline.release.versions import promote

GATE_BY_NAME = {g.name: g for g in GATES}

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
    assert [v.gate for v in require_all_passed(layout).verdicts] == [g.name for g in GATES]


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


# --- a verdict binds every byte it judged ----------------------------------------------------

def test_a_fit_record_edited_after_the_checks_is_refused_naming_the_file(tmp_path):
    """Gate 1 read run_config.json and diagnostics.csv, but its verdict bound only
    weights.npy: forged numbers reached the promoted manifest."""
    layout = artifact_tree(tmp_path)
    _judge_all(layout)
    record = json.loads(layout.run_config(LOCAL).read_text())
    layout.run_config(LOCAL).write_text(json.dumps({**record, "records_kept": 10**6}))
    (layout.fit_dir(NATIONAL) / "diagnostics.csv").write_text("target,abs_rel_error\nt,0\n")
    with pytest.raises(GateError) as info:
        require_all_passed(layout)
    message = str(info.value)
    assert ("calibration_weights/run_config.json: changed since fit_review, xw_consistency "
            "judged it") in message
    assert "national_weights/diagnostics.csv: changed since national_fit_review" in message


def test_a_file_nobody_judged_is_refused_at_judging_and_at_promotion(tmp_path):
    layout = artifact_tree(tmp_path)
    _judge_all(layout)
    stray = layout.stacked_dir / "states" / "CA.h5"
    stray.parent.mkdir()
    stray.write_bytes(b"copied in after the checks")
    with pytest.raises(GateError, match="stacked_h5s/states/CA.h5: in the stacked directory "
                       "but no check judged it"):
        require_all_passed(layout)
    ctx = GateContext(layout, load_profile("ci").gates)
    report, verdict = run_gate(GATE_BY_NAME["structural_sanity"], ctx)
    assert not report.passed and report.rules[0].name == "inputs_intact"
    assert "stacked_h5s/states/CA.h5: in the stacked directory but not in its manifest" in (
        verdict.summary)


def test_thresholds_judged_with_must_be_the_ones_promoted_under(tmp_path):
    """Judge with one profile, promote with another: refused, both named."""
    layout = artifact_tree(tmp_path)
    ci = load_profile("ci").gates
    for gate in GATES:
        stub = replace(gate, judge=lambda _: GateReport.of([Rule("r", True, "stub")]))
        run_gate(stub, GateContext(layout, ci.model_copy(update={
            "consistency_tolerance": 0.5}), profile="loose.yaml"))
    with pytest.raises(GateError) as info:
        require_all_passed(layout, thresholds=ci, profile="ci")
    assert ("xw_consistency: judged with the thresholds of profile 'loose.yaml', not those "
            "of 'ci'") in str(info.value)
    _judge_all(layout)
    assert require_all_passed(layout, thresholds=ci, profile="ci").verdicts


def test_a_verdict_edited_by_hand_is_not_the_one_its_check_recorded(tmp_path):
    layout = artifact_tree(tmp_path)
    _judge_all(layout)
    recorded = {g.name: sha256_file(verdict_path(layout, g.name)) for g in GATES}
    assert require_all_passed(layout, recorded=recorded).verdicts
    path = verdict_path(layout, "xw_consistency")
    path.write_text(path.read_text().replace('"stub"', '"looked fine to me"'))
    with pytest.raises(GateError, match="xw_consistency: its verdict file is not the one its "
                       "check recorded \\(edited since\\)"):
        require_all_passed(layout, recorded=recorded)
    with pytest.raises(GateError, match="fit_review: its verdict file is not the one its "
                       "check recorded \\(no evaluation recorded\\)"):
        require_all_passed(layout, recorded={**recorded, "fit_review": None})


def _baseline(layout):
    files = {"validation_results.csv": layout.validation_csv,
             **{release_path(fit, RUN_CONFIG): layout.run_config(fit) for fit in FITS}}
    return promote(layout.root, files, {"note": "the baseline"})


def test_a_baseline_that_fails_its_manifest_is_refused_by_the_gates_that_use_it(tmp_path):
    """Gate 1 and gate 2 compare against CURRENT: a tampered CURRENT is no baseline."""
    layout = artifact_tree(tmp_path)
    release = _baseline(layout)
    _judge_all(layout)
    assert require_all_passed(layout).verdicts
    forged = release.path / "validation_results.csv"
    os.chmod(release.path, 0o755)
    os.chmod(forged, 0o644)
    forged.write_text("target_name\nforged\n")
    with pytest.raises(GateError) as info:
        require_all_passed(layout)
    assert (f"releases/{release.version}/validation_results.csv: changed since fit_review, "
            "national_fit_review, simulation_quality judged it") in str(info.value)
    ctx = GateContext(layout, load_profile("ci").gates)
    for name in ("simulation_quality", "fit_review"):
        report, _ = run_gate(GATE_BY_NAME[name], ctx)
        assert not report.passed and report.rules[0].name == "inputs_intact"
        assert (f"baseline release {release.version}: validation_results.csv: changed since "
                "it was released") in report.rules[0].detail


@pytest.mark.parametrize("text", ["{not json", '{"gate": "xw_consistency", "passed": true}',
                                  "[]"])
def test_a_verdict_no_check_wrote_counts_as_never_judged(tmp_path, text):
    layout = artifact_tree(tmp_path)
    _judge_all(layout)
    verdict_path(layout, "xw_consistency").write_text(text)
    with pytest.raises(GateError, match="xw_consistency: never ran"):
        require_all_passed(layout)
