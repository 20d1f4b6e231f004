"""Record budgets: reached, repeatable, resumable; the hybrid's sample kept; the frontier."""

import base64
import re

import numpy as np
import pytest
from test_fit import make_package, make_problem

from pipeline.core.errors import InputError
from pipeline.fit import FitParams, fit, fit_package
from pipeline.fit.frontier import frontier_svg
from pipeline.fit.params import PRESETS, NationalFitParams
from pipeline.fit.selection import design_weighted_sample, top_k

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BUDGET = FitParams(records=90, epochs=300, polish_epochs=100, device="cpu", seed=3,
                   log_freq=50, checkpoint_every=50)


def test_budget_is_kept_exactly_and_the_l0_phase_ends_near_it():
    X, y, iw = make_problem()
    result = fit(X, y, iw, BUDGET)
    assert result.kept == 90 and int((result.weights > 0).sum()) == 90
    budget = result.budget
    assert budget["records"] == 90 and len(budget["lambda_l0"]) == 300
    assert abs(budget["expected_open"][-1] / 90 - 1) < 0.05
    # Without a budget, the same preset keeps far more: the controller did the pruning.
    assert fit(X, y, iw, BUDGET.with_(records=None)).kept > 200


def test_budget_fit_is_bit_identical_and_resumes_identically(tmp_path):
    X, y, iw = make_problem()
    full = fit(X, y, iw, BUDGET, checkpoint_path=tmp_path / "c.pt")
    again = fit(X, y, iw, BUDGET)
    assert np.array_equal(full.weights, again.weights)
    assert full.budget == again.budget
    import pipeline.fit.training as core

    saved = {}
    real = core.save_checkpoint

    def keep(path, state):
        real(path, state)
        saved[state["epoch"]] = tmp_path / f"e{state['epoch']}.pt"
        real(saved[state["epoch"]], state)

    core.save_checkpoint = keep
    try:
        fit(X, y, iw, BUDGET, checkpoint_path=tmp_path / "d.pt")
    finally:
        core.save_checkpoint = real
    resumed = fit(X, y, iw, BUDGET, resume_from=saved[150])  # mid-ramp
    assert np.array_equal(full.weights, resumed.weights)
    assert full.budget["lambda_l0"] == resumed.budget["lambda_l0"]


def test_bad_budgets_name_the_field_and_the_fix():
    X, y, iw = make_problem()
    with pytest.raises(InputError, match="fit.records.*exceeds the package's 300 columns"):
        fit(X, y, iw, BUDGET.with_(records=301))
    for bad in (0, -5):
        with pytest.raises(InputError, match="records"):
            BUDGET.with_(records=bad)
    with pytest.raises(InputError, match="hybrid_share is a share of the record budget"):
        BUDGET.with_(records=None, hybrid_share=0.2)


def test_hybrid_keeps_its_design_weighted_sample():
    X, y, iw = make_problem()
    design = np.linspace(1.0, 10.0, X.shape[1])
    params = BUDGET.with_(hybrid_share=0.2)
    drawn = design_weighted_sample(design, 18, params.seed)
    assert len(drawn) == 18 and len(set(drawn)) == 18
    assert np.mean(design[drawn]) > np.mean(design)  # heavier records drawn more often
    result = fit(X, y, iw, params, design_weights=design)
    assert result.kept == 90 and (result.weights[drawn] > 0).all()
    assert np.array_equal(drawn, design_weighted_sample(design, 18, params.seed))


def test_top_k_breaks_ties_by_column():
    assert top_k(np.array([1.0, 3.0, 3.0, 2.0, 3.0]), 2).tolist() == [
        False, True, True, False, False]


def test_presets_are_productions_with_their_source():
    assert PRESETS["local"] == {"lambda_l0": 1e-7, "beta": 0.65, "lambda_l2": 1e-8,
                                "epochs": 1000}
    assert PRESETS["national"]["lambda_l0"] == 2e-2 and PRESETS["national"]["beta"] == 0.65
    national = NationalFitParams()
    assert national.records == 50_000 and national.epochs == 1000
    recorded = national.to_dict()
    assert recorded["from_preset"] == ["beta", "epochs", "lambda_l0", "lambda_l2"]
    assert "raised from the module's 1e-4" in recorded["preset_source"]
    assert FitParams(lambda_l0=1, beta=1, lambda_l2=0, epochs=5).to_dict()[
        "preset_source"] is None  # nothing came from the preset


def test_frontier_collects_one_point_per_setting_and_marks_the_fit(tmp_path):
    pkg = make_package(tmp_path)
    out = tmp_path / "fit"
    first = fit_package(pkg, None, out, BUDGET)
    second = fit_package(pkg, None, out, BUDGET.with_(records=60))
    again = fit_package(pkg, None, out, BUDGET.with_(records=60))  # replaces its point
    assert list(again.frontier["records_kept"]) == [60, 90]
    assert again.frontier["training_error"].tolist()[1] == pytest.approx(
        first.error_summaries["exported"]["mean"])
    assert second.frontier["split_error"].isna().sum() == 0
    svg = frontier_svg(again.frontier, 60, 0.01, 0.02, "national fit")
    assert svg.count('r="8"') == 2 and "this fit" in svg and ">records kept<" in svg
    text = base64.b64encode(svg.encode()).decode()
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", text)
