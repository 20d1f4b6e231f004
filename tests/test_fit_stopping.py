"""Stopping when converged: the rule, its record, its refusals, and resuming across it."""

import json

import numpy as np
import pytest
from test_fit import make_package, make_problem

from pipeline.config import load_profile
from pipeline.core.errors import InputError
from pipeline.fit import FitParams, fit, fit_package
from pipeline.fit.stopping import L0Stopping, Plateau, PolishSchedule, polish_lr

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = FitParams(lambda_l0=1e-4, epochs=1500, polish_epochs=1000, log_freq=50, device="cpu",
                 seed=7)


def test_plateau_compares_the_best_of_the_window_with_the_best_before():
    rule = Plateau(window=3, tolerance=0.1)
    # 10 → 1, then flat: converged once the window's best (0.95) is not 10% below the
    # best before it (1).
    values = [10, 8, 6, 4, 2, 1, 1.0, 0.95, 0.99, 0.98]
    done = [rule.update(v) for v in values]
    assert done == [False] * 8 + [True, True]
    noisy = Plateau(window=2, tolerance=0.01)
    # One lucky low draw in the window keeps it going; min, not the latest value.
    assert [noisy.update(v) for v in [5, 4, 3, 3.5, 2.0, 3.5]] == [False] * 6


def test_converged_fit_stops_early_records_why_and_matches_the_fixed_schedule(tmp_path):
    X, y, iw = make_problem()
    fixed = fit(X, y, iw, BASE.with_(stopping="fixed"))
    conv = fit(X, y, iw, BASE.with_(stop_window=50))
    assert fixed.stopping["l0"] == {"epochs": 1500, "max_epochs": 1500, "converged_at": None,
                                    "rule": "fixed: 1,500 epochs"}
    assert len(fixed.loss_history["l0"]) == 1500 and len(fixed.loss_history["polish"]) == 1000
    l0, polish = conv.stopping["l0"], conv.stopping["polish"]
    assert 100 <= l0["converged_at"] == l0["epochs"] == len(conv.loss_history["l0"]) < 600
    assert "best loss of the last 50 epochs" in l0["rule"]
    assert polish["epochs"] == len(conv.loss_history["polish"])
    # Within 0.01 percentage points of the fixed schedule's error, in about half the epochs.
    err = conv.error_summaries["exported"]["mean"] - fixed.error_summaries["exported"]["mean"]
    assert abs(err) < 1e-4
    assert l0["epochs"] + polish["epochs"] < 0.6 * (1500 + 1000)
    # The log has the stopping epoch, then the polish's epochs counted on from it.
    assert l0["epochs"] in set(conv.log["epoch"])
    assert conv.log["epoch"].max() == l0["epochs"] + polish["epochs"]


def test_polish_decays_over_three_sevenths_of_the_epochs_it_ran():
    params = BASE.with_(stop_window=5, stop_tolerance=0.5)
    schedule = PolishSchedule(params, 1000)
    losses = [1.0] * 1000
    done = [schedule.update(k, loss) for k, loss in enumerate(losses)]
    assert schedule.stopped_at == 10 and schedule.total == 14 and done.index(True) == 13
    assert [schedule.lr(k) for k in (9, 10, 12, 13)] == pytest.approx(
        [0.15, 0.15, 0.15 * 2 / 4, 0.15 / 4])
    fixed = PolishSchedule(BASE.with_(stopping="fixed"), 200)
    assert [fixed.lr(k) for k in range(200)] == [polish_lr(0.15, k, 200) for k in range(200)]
    assert not any(fixed.update(k, 1.0) for k in range(199)) and fixed.update(199, 1.0)


def test_budget_and_temperature_schedule_hold_the_phase_until_their_ramps_end():
    params = BASE.with_(records=100, stop_window=5, stop_tolerance=0.5)
    rule = L0Stopping(params, ramp_epochs=750)
    # Flat from the start, but only the 2 x 5 epochs after the ramp are compared.
    assert not any(rule.update(e, 1.0, 100.0) for e in range(1, 760))
    assert rule.update(760, 1.0, 100.0) and rule.stopped_at == 760
    # A low loss during the ramp (λ_L0 low for a while) is not the best to beat after it:
    # the loss still falls 10% an epoch there, so the phase goes on.
    ramped = L0Stopping(BASE.with_(records=100, stop_window=5, stop_tolerance=0.01),
                        ramp_epochs=20)
    losses = [10.0] * 10 + [1.0] + [10.0] * 9 + [8.0 * 0.9**k for k in range(10)]
    assert not any(ramped.update(e, v, 100.0) for e, v in enumerate(losses, 1))
    moving = L0Stopping(params, ramp_epochs=10)
    # The loss is flat but the kept count still moves by more than 0.5 x 100 per window.
    assert not any(moving.update(e, 1.0, 1000.0 - 60 * e) for e in range(1, 15))
    annealed = L0Stopping(BASE.with_(temperature_schedule="cosine", anneal_share=0.4,
                                     stop_window=5, stop_tolerance=0.5))
    assert annealed.earliest == 600


def test_resuming_a_converged_checkpoint_does_not_train_on(tmp_path):
    pkg = make_package(tmp_path)
    params = BASE.with_(stop_window=40, polish_epochs=100, checkpoint_every=50)
    first = fit_package(pkg, None, tmp_path / "a", params)
    stopped = first.stopping["l0"]["converged_at"]
    assert stopped is not None and stopped < params.epochs
    again = fit_package(pkg, None, tmp_path / "b", params,
                        resume_from=tmp_path / "a" / "checkpoint.pt")
    assert again.stopping["l0"]["epochs"] == stopped
    assert np.array_equal(again.weights, first.weights)
    record = json.loads((tmp_path / "a" / "run_config.json").read_text())["stopping"]
    assert record["l0"]["converged_at"] == stopped and record["polish"]["max_epochs"] == 100
    # The rule belongs to the trajectory: another one cannot resume this checkpoint.
    with pytest.raises(InputError, match="stop_window: checkpoint 40, now 60"):
        fit_package(pkg, None, tmp_path / "c", params.with_(stop_window=60),
                    resume_from=tmp_path / "a" / "checkpoint.pt")


@pytest.mark.parametrize("field, value, message", [
    ("stop_window", 0, "Input should be greater than 0"),
    ("stop_window", -3, "Input should be greater than 0"),
    ("stop_tolerance", 0, "Input should be greater than 0"),
    ("stop_tolerance", -0.1, "Input should be greater than 0"),
    ("stop_tolerance", ".nan", "Input should be a finite number"),
    ("stop_window", ".nan", "Input should be a finite number"),
])
def test_a_window_or_tolerance_that_is_not_positive_is_refused_by_name(tmp_path, field,
                                                                      value, message):
    path = tmp_path / "profile.yaml"
    path.write_text(f"name: mine\nfit:\n  {field}: {value}\n")
    with pytest.raises(InputError, match=f"field 'fit.{field}': {message}"):
        load_profile(str(path))
