"""The allocation search's calibration environment, its agents and its files, on a small
synthetic package (3 states × 6 strata), plus the fit that keeps a learned allocation."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from gymnasium.utils.env_checker import check_env

from pipeline.core.errors import InputError
from pipeline.core.parallel import InProcess
from pipeline.fit.allocation import load_allocation, save_allocation
from pipeline.fit.params import FitParams
from pipeline.fit.training import fit, identity_digest, input_identity
from pipeline.sparsity.autoencoder import AreaAutoencoder
from pipeline.sparsity.envs import CompressionEnv, GroupEnv, Reward
from pipeline.sparsity.problems.calibration import (
    MIN_STEP,
    CalibrationData,
    CalibrationProblem,
    siblings,
    train_profiles,
)
from pipeline.sparsity.protocol import FEATURES, KEEP, PRUNE, QUANTIZE, SHUFFLE, Score
from pipeline.sparsity.search import SearchConfig, search

N_LAYERS, N_GROUPS, PER_CELL, N_PROFILE = 3, 6, 40, 4


def synthetic_data(seed: int = 0) -> CalibrationData:
    """Columns in 18 cells of 40; 30 training, 10 reward and 10 report targets; record r's
    clones are columns r, r + 360 …, spread over two districts of each state."""
    rng = np.random.default_rng(seed)
    n = N_LAYERS * N_GROUPS * PER_CELL
    layer = np.repeat(np.arange(N_LAYERS), N_GROUPS * PER_CELL)
    group = np.tile(np.repeat(np.arange(N_GROUPS), PER_CELL), N_LAYERS)
    record = np.arange(n) % (n // 4)
    district = layer * 100 + (np.arange(n) // (n // 4)) % 2

    def block(rows: int) -> sp.csc_matrix:
        m = sp.random(rows, n, density=0.3, random_state=rng, format="csc")
        return (m * 10.0).tocsc()

    X_train, X_reward, X_report = block(30), block(10), block(10)  # noqa: N806
    truth = rng.uniform(0.5, 2.0, n)
    profile = rng.integers(0, N_PROFILE, n)
    full = truth
    ae = AreaAutoencoder(train_profiles(full, layer, profile, N_LAYERS, N_PROFILE, 10, seed),
                         hidden=4, code=2, seed=seed)
    return CalibrationData(
        X_train=X_train, y_train=X_train @ truth, X_reward=X_reward, y_reward=X_reward @ truth,
        X_report=X_report, y_report=X_report @ truth, log_alpha=rng.normal(0, 1, n),
        start_weight=np.full(n, 1.0), gate_prob=rng.uniform(0, 1, n), layer=layer,
        group=group, profile=profile, sibling=siblings(record, layer, district),
        layer_names=["A", "B", "C"], n_groups=N_GROUPS, n_profile=N_PROFILE, autoencoder=ae)


@pytest.fixture(scope="module")
def data():
    return synthetic_data()


def _fresh(data: CalibrationData, density: float = 0.5) -> CalibrationProblem:
    problem = CalibrationProblem(data)
    problem.reset(density)
    return problem


def test_reset_is_the_budget_methods_keep_set_polished(data):
    problem = _fresh(data)
    kept = problem.weights > 0
    assert kept.sum() == round(0.5 * data.n_columns)
    assert (data.log_alpha[kept].min() >= data.log_alpha[~kept].max())  # the top-k by logit
    start = CalibrationProblem(data)
    start.weights = np.where(kept, data.start_weight, 0.0)
    start._sync()
    assert problem.score().error < start.score().error  # the polish fitted something


def test_each_operation_acts_on_its_group_only(data):
    problem = _fresh(data)
    cells = data.layer * N_GROUPS + data.group
    before = problem.weights.copy()
    problem.apply(1, 2, PRUNE)
    changed = np.flatnonzero(problem.weights != before)
    assert set(cells[changed]) == {1 * N_GROUPS + 2}
    assert (before[changed] > 0).all() and (problem.weights[changed] == 0).all()
    assert len(changed) == max(MIN_STEP, int(np.ceil(0.25 * (before[cells == 8] > 0).sum())))

    before = problem.weights.copy()
    problem.apply(0, 3, KEEP)
    changed = np.flatnonzero(problem.weights != before)
    assert set(cells[changed]) == {3} and (before[changed] == 0).all()
    assert problem.locked[0, 3]
    problem.apply(0, 3, PRUNE)  # a kept (locked) group is never pruned
    assert (problem.weights[cells == 3] > 0).sum() == (before[cells == 3] > 0).sum() + len(changed)

    problem.apply(2, 0, QUANTIZE)
    w = problem.weights[(cells == 12) & (problem.weights > 0)]
    assert np.array_equal(w, np.round(w)) and (w >= 1).all()


def test_shuffle_moves_weight_to_a_clone_in_another_district(data):
    problem = _fresh(data)
    cells = data.layer * N_GROUPS + data.group
    before = problem.weights.copy()
    problem.apply(1, 4, SHUFFLE)
    gone = np.flatnonzero((before > 0) & (problem.weights == 0))
    assert len(gone) > 0 and set(cells[gone]) == {1 * N_GROUPS + 4}
    dst = data.sibling[gone]
    assert np.array_equal(problem.weights[dst], before[gone])  # the same weight, moved
    assert (data.layer[dst] == 1).all()
    assert np.isclose(problem.weights.sum(), before.sum())


def test_estimates_stay_equal_to_a_fresh_product(data):
    problem = _fresh(data)
    for layer, group, op in [(0, 1, PRUNE), (1, 1, KEEP), (2, 5, QUANTIZE), (0, 2, SHUFFLE)]:
        problem.apply(layer, group, op)
        problem.fine_tune(layer)
    assert np.allclose(problem.yhat_train, data.X_train @ problem.weights)
    assert np.allclose(problem.yhat_reward, data.X_reward @ problem.weights)
    assert np.allclose(problem.yhat_report, data.X_report @ problem.weights)


def test_the_reward_never_reads_training_targets(data):
    problem = _fresh(data)
    expected = np.mean(np.abs(problem.yhat_reward - data.y_reward) / (data.y_reward + 1))
    assert problem.score().error == pytest.approx(expected)
    fooled = CalibrationData(**{**data.__dict__, "y_train": data.y_train * 100, "cells": {}})
    other = CalibrationProblem(fooled)
    other.weights = problem.weights.copy()
    other._sync()
    assert other.score().error == problem.score().error


def test_enforce_prunes_to_the_budget_least_likely_unlocked_first(data):
    problem = _fresh(data, 0.6)
    problem.apply(0, 0, KEEP)
    locked = (data.layer == 0) & (data.group == 0) & (problem.weights > 0)
    problem.enforce(0.4)
    assert (problem.weights > 0).sum() == round(0.4 * data.n_columns)
    assert (problem.weights[locked] > 0).all()


def test_features_are_finite_and_shaped_by_the_protocol(data):
    problem = _fresh(data, 0.1)
    for group in range(N_GROUPS):  # empty a whole state
        for _ in range(6):
            problem.apply(2, group, PRUNE)
    f = problem.features()
    assert f.shape == (N_LAYERS, N_GROUPS, len(FEATURES)) and np.isfinite(f).all()
    assert (f[2, :, FEATURES.index("zero_share")] == 1).all()


def test_the_autoencoder_is_zero_for_the_full_model_and_grows_with_compression(data):
    problem = CalibrationProblem(data)
    full = np.where(data.gate_prob > 0.5, data.start_weight, 0.0)
    problem.weights = full.copy()
    problem._sync()
    assert problem.score().reconstruction == pytest.approx(0.0, abs=1e-9)
    problem.reset(0.2)
    assert problem.score().reconstruction > 0.01


def test_both_envs_pass_gymnasiums_checker(data):
    reward = Reward(budget=0.4)
    check_env(CompressionEnv(CalibrationProblem(data), reward, steps=4), skip_render_check=True)
    check_env(GroupEnv(CalibrationProblem(data), reward, steps=4, ops_per_layer=2),
              skip_render_check=True)


def test_an_episode_ends_within_its_budget_and_returns_its_improvement(data):
    env = GroupEnv(CalibrationProblem(data), Reward(budget=0.3), steps=6, ops_per_layer=2)
    obs, info = env.reset(seed=0, options={"density": 0.5})
    start = Reward(0.3).objective(env.episode.score, info["error0"], 0.5)
    total, done = 0.0, False
    while not done:
        obs, r, done, _, info = env.step(KEEP)  # keep everywhere: over budget until the end
        total += r
    assert info["density"] <= 0.5 + 1e-9
    final = Reward(0.3).objective(env.episode.score, info["error0"], 0.5)
    assert total == pytest.approx(final - start)


class _Factory:
    def __init__(self, data):
        self.data = data

    def __call__(self):
        return CalibrationProblem(self.data)


CONFIG = SearchConfig(budget=0.3, episodes=4, parallel=2, steps=4, ops_per_layer=2,
                      curriculum_start=0.6, seed=3)


def test_search_is_seeded(data):
    a = search(_Factory(data), "a", CONFIG, runner=InProcess())
    b = search(_Factory(data), "b", CONFIG, runner=InProcess())
    assert np.array_equal(a.allocation["keep"], b.allocation["keep"])
    assert a.history.equals(b.history)
    assert list(a.history["budget"]) == [0.6, 0.6, 0.3, 0.3]  # the curriculum
    assert a.allocation["keep"].sum() <= round(0.3 * data.n_columns)
    other = search(_Factory(data), "c", SearchConfig(**{**CONFIG.__dict__, "seed": 4}))
    assert not other.history.equals(a.history)


def test_an_interrupted_search_resumes_from_its_last_round(data, tmp_path):
    whole = search(_Factory(data), "w", CONFIG)

    def stop(round_index):
        if round_index == 0:
            raise KeyboardInterrupt

    checkpoint = tmp_path / "search.pt"
    with pytest.raises(KeyboardInterrupt):
        search(_Factory(data), "r", CONFIG, checkpoint=checkpoint, on_round=stop)
    elsewhere = tmp_path / "other.pt"
    elsewhere.write_bytes(checkpoint.read_bytes())
    fresh = search(_Factory(data), "other-key", CONFIG, checkpoint=elsewhere)
    assert fresh.resumed_from_round == 0  # other inputs: nothing to resume, started afresh
    resumed = search(_Factory(data), "r", CONFIG, checkpoint=checkpoint)
    assert resumed.resumed_from_round == 1
    assert np.array_equal(resumed.allocation["keep"], whole.allocation["keep"])
    assert resumed.history.equals(whole.history)
    checkpoint.write_bytes(b"torn")
    with pytest.raises(InputError, match="unreadable search checkpoint"):
        search(_Factory(data), "r", CONFIG, checkpoint=checkpoint)


def test_the_flat_agent_searches_too(data):
    flat = search(_Factory(data), "f", SearchConfig(**{**CONFIG.__dict__, "hierarchy": False}))
    assert flat.allocation["keep"].sum() <= round(0.3 * data.n_columns)


class _NaN(CalibrationProblem):
    def score(self) -> Score:
        return Score(float("nan"), 0.5, 0.0)


def test_a_nan_reward_is_a_clear_error(data):
    env = CompressionEnv(_NaN(data), Reward(0.3), steps=2)
    with pytest.raises(FloatingPointError, match="non-finite reward"):
        env.reset(seed=0)


def test_bad_settings_name_the_field():
    with pytest.raises(InputError, match="allocation.budget"):
        SearchConfig(budget=0.0)
    with pytest.raises(InputError, match="allocation.curriculum_start"):
        SearchConfig(budget=0.5, curriculum_start=0.2)


def test_a_fit_keeps_exactly_the_allocation_and_rounds_its_integer_columns(tmp_path):
    rng = np.random.default_rng(1)
    X = sp.random(12, 60, density=0.5, random_state=rng, format="csr") * 5  # noqa: N806
    y = X @ rng.uniform(1, 3, 60)
    params = FitParams(preset="national", records=20, epochs=60, polish_epochs=60,
                       device="cpu", allocation="learned")
    identity = input_identity(sp.csr_matrix(X, dtype=np.float32), y, np.ones(60),
                              np.ones(12, bool), params)
    keep = np.zeros(60, bool)
    keep[::3] = True
    integer = keep & (np.arange(60) % 2 == 0)
    save_allocation(tmp_path, {"keep": keep, "integer": integer,
                               "cell_records": np.array([[20]])},
                    pd.DataFrame({"records": [20]}),
                    {"lineage": {"calibration_package": "p", "national_target_config": "c",
                                 "trained_model": identity_digest(identity)}})
    allocation = load_allocation(tmp_path, 60, {"calibration_package": "p"})
    result = fit(X, y, np.ones(60), params, allocation=allocation)
    assert np.array_equal(result.weights > 0, keep)
    whole = result.weights[integer]
    assert np.array_equal(whole, np.round(whole)) and (whole >= 1).all()
    assert not np.array_equal(result.weights[keep & ~integer],
                              np.round(result.weights[keep & ~integer]))
    with pytest.raises(InputError, match="another L0 phase"):
        fit(X, y, np.ones(60), params.with_(seed=1), allocation=allocation)


def test_a_changed_or_foreign_allocation_is_refused(tmp_path):
    keep = np.ones(10, bool)
    save_allocation(tmp_path, {"keep": keep, "integer": ~keep}, pd.DataFrame(),
                    {"lineage": {"calibration_package": "p"}})
    with pytest.raises(InputError, match="lineage.calibration_package"):
        load_allocation(tmp_path, 10, {"calibration_package": "q"})
    with pytest.raises(InputError, match="columns"):
        load_allocation(tmp_path, 11, {"calibration_package": "p"})
    (tmp_path / "allocation.npz").write_bytes(b"tampered")
    with pytest.raises(InputError, match="changed since the search"):
        load_allocation(tmp_path, 10, {})
    meta = tmp_path / "allocation.json"
    meta.unlink()
    with pytest.raises(InputError, match="no complete allocation"):
        load_allocation(tmp_path, 10, {})


@pytest.mark.slow
def test_two_dask_workers_find_the_same_allocation(data):
    from pipeline.core.parallel import connect

    here = search(_Factory(data), "h", CONFIG, runner=InProcess())
    runner = connect(None, 2)
    try:
        there = search(_Factory(data), "d", CONFIG, runner=runner)
    finally:
        runner.close()
    assert np.array_equal(here.allocation["keep"], there.allocation["keep"])
    assert here.history.equals(there.history)


@pytest.mark.e2e
def test_calibrate_allocate_then_fit_with_it(built_world, tmp_path, capsys):
    from pipeline.cli import main as calibrate

    package = str(built_world.root / "calibration_package")
    out = tmp_path / "alloc"
    assert calibrate(["allocate", "--package", package, "--profile", "ci", "--dask",
                      "inprocess", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    meta = json.loads((out / "allocation.json").read_text())
    assert f"allocate: {meta['records']:,} of 4,000 records (budget 1,000)" in said
    assert not (out / "search.pt").exists()  # complete: nothing left to resume
    budgets = pd.read_csv(out / "budgets.csv")
    assert budgets["records"].sum() == meta["records"] and len(budgets) == 4 * 6
    fit_out = tmp_path / "fit"
    code = calibrate(["fit", "--package", package, "--profile", "ci", "--national",
                      "--target-config", str(built_world.root / "national_target_config" /
                                              "targets_national.yaml"),
                      "--allocation", "learned", "--allocation-from", str(out),
                      "--out", str(fit_out)])
    assert code == 0, capsys.readouterr()
    weights = np.load(fit_out / "weights.npy")
    with np.load(out / "allocation.npz") as arrays:
        assert np.array_equal(weights > 0, arrays["keep"])

    assert calibrate(["allocate", "--package", package, "--profile", "ci", "--dask",
                      "inprocess", "--records", "5000", "--out", str(tmp_path / "x")]) == 1
    assert "fit.records" in capsys.readouterr().err  # unreachable: more than the columns
