"""Gate 1 passes a good fit and names the rule (and groups) that fail on purpose-made cases."""

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.fit import FitParams, FitThresholds, fit_package, review_fit
from pipeline.package.store import CalibrationPackage, save_package
from pipeline.targets.db import with_provenance

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_T, N_REC = 18, 200
# 200 polish epochs: the tail of a 150-epoch polish is still settling for some seeds.
PARAMS = FitParams(lambda_l0=1e-6, epochs=150, polish_epochs=200, log_freq=10, device="cpu")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    import scipy.sparse as sp

    tmp = tmp_path_factory.mktemp("review")
    rng = np.random.default_rng(3)
    X = sp.random(N_T, N_REC, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    X.data[:] = rng.integers(1, 4, X.nnz)
    y = X @ rng.gamma(2.0, 50.0, N_REC)
    levels = ["state", "district"]
    targets = with_provenance(pd.DataFrame({
        "target_id": np.arange(N_T), "target_name": [f"t{i}" for i in range(N_T)],
        "variable": ["snap" if i < 9 else "age" for i in range(N_T)],
        "geo_level": [levels[i % 2] for i in range(N_T)], "geographic_id": "US",
        "domain_variable": "", "value": y, "period": 2024, "holdout": 0, "constraints": "[]",
    }))
    pkg = CalibrationPackage(X=X, targets=targets, initial_weights=np.full(N_REC, 100.0),
                             cd_geoid=np.zeros(N_REC), county_index=np.zeros(N_REC, np.int32),
                             counties=np.array([""]),
                             metadata={"n_records": N_REC, "n_clones": 1})
    (tmp / "b.h5").write_bytes(b"x")
    path = save_package(pkg, tmp / "pkg", tmp / "b.h5")
    fit_package(path, None, tmp / "out", PARAMS)
    return tmp / "out"


def test_good_fit_passes_from_directory(fitted):
    review = review_fit(fitted)
    assert review.passed, review.rules
    assert [r.name for r in review.rules] == ["weights_valid", "loss_converged",
                                             "no_group_diverging", "not_worse_than_production",
                                             "record_budget", "fit_finite", "absolute_floor"]
    assert "skipped" in review.rule("not_worse_than_production").detail
    assert review.rule("record_budget").detail == "no record budget"
    # The numbers the UI plots: what each rule judged.
    run = json.loads((fitted / "run_config.json").read_text())
    m = review.metrics
    assert m["failed_rules"] == 0 and m["targets_trained"] == N_T
    assert m["final_loss_per_target"] == pytest.approx(run["final_loss"] / N_T)
    assert m["records_kept"] == run["records_kept"]
    polish = run["loss_history"]["polish"]
    start = polish[int(len(polish) * 0.8) - 1]  # the last 20% (tail_fraction)
    assert m["tail_loss_change"] == pytest.approx(abs(polish[-1] - start) / start)
    assert m["worst_group_rise"] <= FitThresholds().divergence_tolerance
    assert m["weights_negative"] == m["weights_non_finite"] == 0


def test_a_budget_the_epochs_cannot_reach_fails_saying_how_far_off(fitted, tmp_path):
    """The keep set is cut to the budget anyway; gate 1 says the L0 phase never got there."""
    pkg = fitted.parent / "pkg"
    review = review_fit(fit_package(pkg, None, tmp_path / "short",
                                    PARAMS.with_(records=50, epochs=5, polish_epochs=200)))
    rule = review.rule("record_budget")
    assert not review.passed and not rule.passed
    assert rule.detail.startswith("50 records kept for a budget of 50 (+0.0%")
    assert "the L0 phase ended with 200 gates expected open (+299.9%, tolerance ±5%)" in \
        rule.detail and "give more epochs" in rule.detail
    reached = review_fit(fit_package(pkg, None, tmp_path / "long",
                                     PARAMS.with_(records=50, epochs=600)))
    assert reached.rule("record_budget").passed, reached.rule("record_budget").detail
    assert json.loads((tmp_path / "long" / "run_config.json").read_text())[
        "records_kept"] == 50


def test_production_comparison(fitted):
    run = json.loads((fitted / "run_config.json").read_text())
    ours, n = run["final_loss"], run["n_selected"]
    same = {"final_loss": ours, "n_selected": n}
    assert review_fit(fitted, production_run_config=same).passed
    worse = review_fit(fitted, production_run_config={"final_loss": ours / 2, "n_selected": n})
    assert not worse.passed
    assert [r.name for r in worse.rules if not r.passed] == ["not_worse_than_production"]
    assert worse.metrics["loss_vs_production"] == pytest.approx(2.0)
    assert worse.metrics["failed_rules"] == 1
    # Per trained target: production's loss over twice the targets is the same fit quality.
    assert review_fit(fitted, production_run_config={"final_loss": 2 * ours,
                                                     "n_selected": 2 * n}).passed
    # Another record budget is another trade-off: not compared (gate 2 judges the errors).
    other = review_fit(fitted, production_run_config={"final_loss": ours / 2, "n_selected": n,
                                                      "params": {"records": 30}})
    assert other.passed and other.rule("not_worse_than_production").detail == (
        "skipped: the record budget changed (30 in the production run, None here)")


def test_negative_or_nan_weights_fail(fitted, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(fitted, bad)
    w = np.load(bad / "weights.npy")
    w[0], w[1] = -1.0, np.nan
    np.save(bad / "weights.npy", w)
    rule = review_fit(bad).rule("weights_valid")
    assert not rule.passed and rule.detail.startswith("1 non-finite, 1 negative")


def test_unconverged_loss_fails(fitted, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(fitted, bad)
    cfg = json.loads((bad / "run_config.json").read_text())
    cfg["loss_history"]["polish"] = list(np.linspace(10.0, 5.0, 100))
    (bad / "run_config.json").write_text(json.dumps(cfg))
    review = review_fit(bad)
    assert not review.passed
    assert [r.name for r in review.rules if not r.passed] == ["loss_converged"]
    assert review_fit(bad, FitThresholds(loss_tolerance=0.2)).passed


def test_late_diverging_group_is_named(fitted, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(fitted, bad)
    log = pd.read_csv(bad / "calibration_log.csv")
    last = log["epoch"].max()
    # snap × district targets are t1, t3, t5, t7: their error jumps at the last log point.
    hit = (log["epoch"] == last) & log["target_name"].isin(["t1", "t3", "t5", "t7"])
    log.loc[hit, "rel_abs_error"] += 0.05
    log.to_csv(bad / "calibration_log.csv", index=False)
    rule = review_fit(bad).rule("no_group_diverging")
    assert not rule.passed
    assert rule.failing == ("snap × district",)
    assert review_fit(bad).metrics["worst_group_rise"] == pytest.approx(0.05, abs=1e-4)
    assert review_fit(bad, FitThresholds(divergence_tolerance=0.06)).passed


def test_review_accepts_fit_result(fitted, tmp_path):
    result = fit_package(fitted.parent / "pkg", None, tmp_path / "again", PARAMS)
    review = review_fit(result)
    assert review.passed
    assert np.array_equal(result.weights, np.load(fitted / "weights.npy"))


def test_a_learned_allocation_may_spend_less_than_the_budget_never_more():
    from pipeline.fit.review import _budget_rule

    t = FitThresholds()
    learned = {"records": 100, "expected_open": [100.0], "kept": 90, "allocation_records": 90}
    rule, _ = _budget_rule(learned, t)
    assert rule.passed and "the learned allocation's 90, for a budget of 100" in rule.detail
    assert not _budget_rule({**learned, "kept": 103, "allocation_records": 103}, t)[0].passed
    assert not _budget_rule({**learned, "allocation_records": 91}, t)[0].passed
    assert not _budget_rule({**learned, "allocation_records": None}, t)[0].passed  # -10%


def test_losses_below_the_noise_floor_are_never_worse_than_production(fitted):
    ours = json.loads((fitted / "run_config.json").read_text())
    n = ours["n_selected"]
    tiny = {"final_loss": 1e-9 * n, "n_selected": n, "params": ours["params"]}
    floor = ours["final_loss"] / n * 1.5  # ours just under it, production far below
    review = review_fit(fitted, FitThresholds(loss_floor=floor), production_run_config=tiny)
    rule = review.rule("not_worse_than_production")
    assert rule.passed and f"noise floor {floor:g}" in rule.detail
    above = review_fit(fitted, FitThresholds(loss_floor=floor / 2), production_run_config=tiny)
    assert not above.rule("not_worse_than_production").passed
