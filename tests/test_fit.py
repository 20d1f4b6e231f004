"""The L0 fit: reproducible, resumable bit for bit, exported weights are the trained model."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from pipeline.core.errors import InputError
from pipeline.fit import FitParams, fit, fit_package
from pipeline.package.store import CalibrationPackage, save_package
from pipeline.targets.db import with_provenance

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_T, N_REC, N_CLONES = 24, 150, 2
PARAMS = FitParams(lambda_l0=1e-4, epochs=60, polish_epochs=60, log_freq=20,
                   checkpoint_every=20, device="cpu", seed=7)


def make_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_c = N_REC * N_CLONES
    X = sp.random(N_T, n_c, density=0.15, format="csr", random_state=rng, dtype=np.float32)
    X.data[:] = rng.integers(1, 5, X.nnz)
    truth = rng.gamma(2.0, 60.0, n_c) * (rng.random(n_c) < 0.5)
    return X, X @ truth, np.full(n_c, 100.0)


def make_package(tmp_path: Path, holdout=(), y_override=None) -> Path:
    X, y, iw = make_problem()
    if y_override is not None:
        y = y_override
    levels = ["national", "state", "district"]
    targets = with_provenance(pd.DataFrame({
        "target_id": np.arange(N_T), "target_name": [f"t{i}" for i in range(N_T)],
        "variable": ["person_count" if i % 2 else "snap" for i in range(N_T)],
        "geo_level": [levels[i % 3] for i in range(N_T)],
        "geographic_id": ["US"] * N_T, "domain_variable": [""] * N_T, "value": y,
        "period": 2024, "holdout": [int(i in holdout) for i in range(N_T)],
        "constraints": ["[]"] * N_T,
    }))
    n_c = X.shape[1]
    pkg = CalibrationPackage(
        X=X, targets=targets, initial_weights=iw, cd_geoid=np.full(n_c, 3701),
        county_index=np.zeros(n_c, dtype=np.int32), counties=np.array(["c"]),
        metadata={"n_records": N_REC, "n_clones": N_CLONES, "seed": 1},
    )
    base = tmp_path / "base.h5"
    base.write_bytes(b"tiny base")
    return save_package(pkg, tmp_path / "pkg", base)


def test_same_seed_bit_identical_and_other_seed_differs():
    X, y, iw = make_problem()
    a = fit(X, y, iw, PARAMS)
    b = fit(X, y, iw, PARAMS)
    c = fit(X, y, iw, PARAMS.with_(seed=8))
    assert np.array_equal(a.weights, b.weights)
    assert a.loss_history == b.loss_history
    assert not np.array_equal(a.weights, c.weights)


def test_exported_weights_are_the_model_and_beat_production_export():
    X, y, iw = make_problem()
    r = fit(X, y, iw, PARAMS)
    assert r.weights.dtype == np.float64 and (r.weights >= 0).all()
    np.testing.assert_array_equal(r.estimates, X.astype(np.float64) @ r.weights)
    assert r.kept == int((r.weights > 0).sum()) < len(r.weights)
    s = r.error_summaries
    assert s["exported"]["mean"] < s["production_deterministic_export"]["mean"]
    assert s["exported"]["mean"] < s["sampled_gates"]["mean"]
    assert s["exported"]["mean"] < 0.02
    rel = (r.estimates - y) / (y + 1)
    assert r.final_loss == pytest.approx(float(np.square(rel).sum()), rel=1e-12)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    X, y, iw = make_problem()
    full = fit(X, y, iw, PARAMS)
    ckpt = tmp_path / "ckpt.pt"
    fit(X, y, iw, PARAMS.with_(epochs=40), checkpoint_path=ckpt)
    resumed = fit(X, y, iw, PARAMS, resume_from=ckpt)
    assert np.array_equal(full.weights, resumed.weights)
    assert full.loss_history == resumed.loss_history
    pd.testing.assert_frame_equal(full.log, resumed.log)
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 40 and state["optimizer"]["state"][0]["exp_avg"].shape == (300,)


def test_periodic_checkpoint_resumes_identically(tmp_path, monkeypatch):
    import pipeline.fit.training as core

    X, y, iw = make_problem()
    saved = []
    real_save = core.save_checkpoint

    def keep_copy(path, state):
        real_save(path, state)
        saved.append(state["epoch"])
        real_save(tmp_path / f"epoch{state['epoch']}.pt", state)

    monkeypatch.setattr(core, "save_checkpoint", keep_copy)
    full = fit(X, y, iw, PARAMS.with_(checkpoint_every=25), checkpoint_path=tmp_path / "c.pt")
    assert saved == [25, 50, 60]  # every 25 epochs, then the end of the L0 phase
    resumed = fit(X, y, iw, PARAMS, resume_from=tmp_path / "epoch25.pt")
    assert np.array_equal(full.weights, resumed.weights)
    assert full.loss_history == resumed.loss_history


def test_checkpoint_from_other_config_or_selection_is_refused(tmp_path):
    X, y, iw = make_problem()
    ckpt = tmp_path / "c.pt"
    fit(X, y, iw, PARAMS.with_(epochs=20), checkpoint_path=ckpt)
    with pytest.raises(InputError, match="lambda_l0: checkpoint 0.0001, now 1e-08"):
        fit(X, y, iw, PARAMS.with_(lambda_l0=1e-8), resume_from=ckpt)
    sel = np.ones(N_T, bool)
    sel[3] = False
    with pytest.raises(InputError, match="selection_hash"):
        fit(X, y, iw, PARAMS, selected=sel, resume_from=ckpt)
    with pytest.raises(InputError, match="package_hash"):
        fit(X, y * 1.01, iw, PARAMS, resume_from=ckpt)
    with pytest.raises(InputError, match="beyond the requested 10"):
        fit(X, y, iw, PARAMS.with_(epochs=10), resume_from=ckpt)


def test_bad_input_refused_before_training():
    X, y, iw = make_problem()
    Xn = X.copy()
    Xn.data[0] = np.nan
    with pytest.raises(InputError, match="NaN/inf"):
        fit(Xn, y, iw, PARAMS)
    yn = y.copy()
    yn[2] = -1
    with pytest.raises(InputError, match="negative target for t2"):
        fit(X, yn, iw, PARAMS, target_names=[f"t{i}" for i in range(N_T)])
    Xe = X.tolil()
    Xe[5, :] = 0
    with pytest.raises(InputError, match="no non-zeros: t5"):
        fit(Xe.tocsr(), y, iw, PARAMS, target_names=[f"t{i}" for i in range(N_T)])
    sel = np.ones(N_T, bool)
    sel[5] = False  # the empty row is fine when it is not trained
    assert fit(Xe.tocsr(), y, iw, PARAMS.with_(epochs=2, polish_epochs=1), selected=sel).kept
    with pytest.raises(InputError, match="initial_weights"):
        fit(X, y, iw[:-1], PARAMS)
    with pytest.raises(InputError, match="device.*'tpu'"):
        fit(X, y, iw, PARAMS.with_(device="tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA requested"):
            fit(X, y, iw, PARAMS.with_(device="cuda"))


def test_fit_package_writes_outputs_and_never_trains_holdout(tmp_path):
    pkg = make_package(tmp_path, holdout=(1, 2))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("exclude:\n  - {variable: snap, geo_level: state}\n")
    out = tmp_path / "out"
    r = fit_package(pkg, cfg, out, PARAMS)
    diag = pd.read_csv(out / "diagnostics.csv")
    assert list(diag.columns[:7]) == ["target", "true_value", "estimate", "rel_error",
                                      "abs_rel_error", "achievable", "selected"]
    assert len(diag) == N_T
    excluded = {1, 2} | {i for i in range(N_T) if i % 2 == 0 and i % 3 == 1}
    assert set(np.flatnonzero(~diag["selected"].to_numpy())) == excluded
    weights = np.load(out / "weights.npy")
    assert weights.dtype == np.float64 and np.array_equal(weights, r.weights)
    X = sp.load_npz(pkg / "X.npz").astype(np.float64)
    np.testing.assert_allclose(diag["estimate"], X @ weights, rtol=1e-12)
    log = pd.read_csv(out / "calibration_log.csv")
    assert list(log.columns) == ["target_name", "estimate", "target", "epoch", "error",
                                 "rel_error", "abs_error", "rel_abs_error", "loss", "achievable"]
    assert sorted(log["epoch"].unique()) == [20, 40, 60, 80, 100, 120]
    assert set(log["target_name"]) == {f"t{i}" for i in range(N_T) if i not in excluded}
    cfg_json = json.loads((out / "run_config.json").read_text())
    assert cfg_json["records_kept"] == r.kept == int((weights > 0).sum())
    assert cfg_json["n_selected"] == N_T - len(excluded)
    assert len(cfg_json["loss_history"]["l0"]) == 60
    assert cfg_json["error_summary"]["max"] == pytest.approx(
        diag.loc[diag["selected"], "abs_rel_error"].max())
    assert (out / "checkpoint.pt").is_file()
    assert not list(out.glob(".tmp-*"))


def _assert_same_fit(gpu, cpu):
    """Two engines' fits of one problem: float rounding apart, the same quality and totals."""
    assert abs(gpu.kept - cpu.kept) <= 0.02 * cpu.kept
    assert gpu.error_summaries["exported"]["mean"] == pytest.approx(
        cpu.error_summaries["exported"]["mean"], abs=1e-3)
    np.testing.assert_allclose(gpu.estimates, cpu.estimates, rtol=1e-2)
    assert gpu.stopping["l0"]["epochs"] == pytest.approx(cpu.stopping["l0"]["epochs"], abs=20)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_matches_cpu_up_to_float_tolerance():
    """Both devices draw the same gate noise from the same parameters; they differ in float
    rounding only, so the fit's quality and its totals must agree (results/gpu.txt)."""
    X, y, iw = make_problem()
    params = PARAMS.with_(epochs=300, polish_epochs=200)
    cpu, gpu = fit(X, y, iw, params), fit(X, y, iw, params.with_(device="cuda"))
    assert gpu.device.startswith("cuda:")
    _assert_same_fit(gpu, cpu)


def test_the_cuda_code_path_on_the_cpu_matches_the_fused_kernel(monkeypatch):
    """The CUDA path is the torch backend; run here on the CPU, through the whole fit, it
    must pass what the CUDA test asks of a device."""
    from pipeline.fit import training
    from pipeline.fit.backends import TorchBackend

    X, y, iw = make_problem()
    params = PARAMS.with_(epochs=300, polish_epochs=200)
    fused = fit(X, y, iw, params)
    monkeypatch.setattr(training, "FusedBackend", lambda X, y, lw, la, p, rows: TorchBackend(  # noqa: N803
        X[rows], y, lw, la, p, torch.device("cpu")))
    emulated = fit(X, y, iw, params)
    _assert_same_fit(emulated, fused)
    assert not np.array_equal(emulated.weights, fused.weights)  # it did run the other backend
