"""The fused CPU epoch is the torch autograd model: same noise, same gradients, same Adam."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pipeline.fit import fused
from pipeline.fit.backends import FusedBackend, TorchBackend
from pipeline.fit.model import gate_noise, initial_parameters
from pipeline.fit.params import FitParams
from pipeline.fit.schedules import BudgetController
from pipeline.fit.selection import PINNED_OPEN
from pipeline.fit.stopping import PolishSchedule


def _problem():
    rng = np.random.default_rng(11)
    X = sp.random(20, 400, density=0.15, format="csr", random_state=rng, dtype=np.float32)
    X.data[:] = rng.integers(1, 5, X.nnz)
    return X, X @ (rng.gamma(2.0, 60.0, 400) * (rng.random(400) < 0.5))


def test_counter_noise_is_identical_in_numba_and_torch_and_uniform():
    u = fused.uniform_noise(np.uint64(fused.noise_key(7, 3)), 200_000)
    assert np.array_equal(u, gate_noise(7, 3, 200_000, torch.device("cpu")).numpy())
    assert u.min() > 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.003 and abs(u.var() * 12 - 1) < 0.01
    assert not np.array_equal(u, fused.uniform_noise(np.uint64(fused.noise_key(7, 4)), 200_000))


def _polish_alike(fe: FusedBackend, te: TorchBackend, p: FitParams):
    """Both backends polish every third column from the fused L0 phase's weights: the same
    losses and weights. Returns (kept, start, fused weights)."""
    kept = np.arange(0, 400, 3)
    start = torch.from_numpy(fe.lw[kept].copy())
    losses_f, losses_t = [], []
    w_f = fe.polish(kept, start, PolishSchedule(p, 15), lambda k, loss, yhat: losses_f.append(loss))
    w_t = te.polish(kept, start, PolishSchedule(p, 15), lambda k, loss, yhat: losses_t.append(loss))
    np.testing.assert_allclose(losses_f, losses_t, rtol=1e-4)
    np.testing.assert_allclose(w_f, w_t, rtol=1e-4)
    return kept, start, w_f


def test_fused_backend_follows_torch_autograd_and_adam():
    torch.set_num_threads(1)
    X, y = _problem()
    p = FitParams(lambda_l0=1e-2, lambda_l2=1e-6, device="cpu", seed=7)
    lw, la = initial_parameters(np.full(400, 100.0), 7)
    fe = FusedBackend(X, y, lw.clone(), la.clone(), p)
    te = TorchBackend(X, y, lw.clone(), la.clone(), p, torch.device("cpu"))
    for epoch in range(25):
        (loss_f, yhat_f, open_f), (loss_t, yhat_t, open_t) = (fe.l0_step(epoch, 1e-2),
                                                              te.l0_step(epoch, 1e-2))
        assert abs(loss_f - loss_t) <= 1e-5 * loss_t and open_f == pytest.approx(open_t)
        np.testing.assert_allclose(yhat_f, yhat_t, rtol=2e-5)
    np.testing.assert_allclose(fe.lw, te.model.log_weight.detach().numpy(), atol=1e-4)
    np.testing.assert_allclose(fe.la, te.model.log_alpha.detach().numpy(), atol=1e-2)
    m_f, m_t = fe.optimizer_state()["state"][0], te.optimizer_state()["state"][0]
    assert float(m_f["step"]) == float(m_t["step"]) == 25
    np.testing.assert_allclose(m_f["exp_avg"], m_t["exp_avg"], rtol=1e-3, atol=1e-6)
    kept, start, w_f = _polish_alike(fe, te, p)
    assert (w_f[np.setdiff1d(np.arange(400), kept)] == 0).all()


def test_fused_results_do_not_depend_on_thread_count():
    """Chunks are cut by the number of columns alone: 1, 2 or 3 threads, the same bits."""
    rng = np.random.default_rng(4)
    n = 40_000
    X = sp.random(30, n, density=0.02, format="csr", random_state=rng, dtype=np.float32)
    y = X @ (rng.gamma(2.0, 60.0, n) * (rng.random(n) < 0.5))
    p = FitParams(lambda_l0=1e-4, device="cpu", seed=3)
    runs = []
    for threads in (1, 2, 3):
        lw, la = initial_parameters(np.full(n, 100.0), 3)
        eng = FusedBackend(X, y, lw, la, p, threads=threads)
        assert eng.runner.n_chunks == 19 and eng.runner.threads == threads
        steps = [eng.l0_step(e, 1e-4) for e in range(6)]
        kept = np.flatnonzero(eng.la > 0)
        w = eng.polish(kept, torch.from_numpy(eng.lw[kept].copy()), PolishSchedule(p, 4),
                       lambda *_: None)
        runs.append(([s[0] for s in steps], [s[1] for s in steps], eng.state.copy(), w))
    for other in runs[1:]:
        assert other[0] == runs[0][0]
        assert all(np.array_equal(a, b) for a, b in zip(other[1], runs[0][1], strict=True))
        assert np.array_equal(other[2], runs[0][2]) and np.array_equal(other[3], runs[0][3])


def test_column_matrix_products_equal_scipy():
    """X by columns with uint16 rows (int32 beyond 65,535 targets); the pass's ŷ is X·w in
    float64, and an empty column or target is no special case."""
    rng = np.random.default_rng(2)
    X = sp.random(50, 9_000, density=0.01, format="csr", random_state=rng, dtype=np.float32)
    keep = np.ones(9_000)
    keep[17] = 0
    X = sp.csr_matrix(X @ sp.diags(keep.astype(np.float32)))
    X.eliminate_zeros()
    cm = fused.ColumnMatrix.from_csr(X)
    assert cm.rows.dtype == np.uint16 and cm.nnz == X.nnz and cm.bytes_per_pass == 6 * X.nnz
    csc = X.tocsc()
    csc.sort_indices()
    assert np.array_equal(cm.indptr, csc.indptr) and np.array_equal(cm.rows, csc.indices)
    assert np.array_equal(cm.vals, csc.data)
    wide = fused.ColumnMatrix.from_csr(sp.csr_matrix(([1.0], ([70_000], [3])),
                                                     shape=(70_001, 5)))
    assert wide.rows.dtype == np.int32 and wide.rows.tolist() == [70_000]
    mask = rng.random(50) < 0.6  # the selected rows, renumbered, without copying X
    part = fused.ColumnMatrix.from_csr(X, mask)
    sub = X[mask].tocsc()
    sub.sort_indices()
    assert part.shape == (mask.sum(), 9_000) and np.array_equal(part.rows, sub.indices)
    assert np.array_equal(part.indptr, sub.indptr) and np.array_equal(part.vals, sub.data)
    p = FitParams(lambda_l0=1e-4, device="cpu", seed=1)
    lw, la = initial_parameters(np.full(9_000, 100.0), 1)
    eng = FusedBackend(X, X @ np.ones(9_000), lw, la, p, threads=2)
    w = eng.sampled_weights(0)
    np.testing.assert_allclose(eng.yhat, X.astype(np.float64) @ w, rtol=1e-12)


def test_backends_agree_under_a_budget_a_temperature_schedule_and_pinned_gates():
    """The record budget's λ_L0 controller, l0-python's annealed β and the hybrid's pinned
    gates: the same trajectory on both back-ends, up to float rounding."""
    torch.set_num_threads(1)
    X, y = _problem()
    p = FitParams(records=150, epochs=400, temperature_schedule="cosine", beta_start=1.5,
                  anneal_share=0.5, lambda_l0=2e-2, device="cpu", seed=5)
    lw, la = initial_parameters(np.full(400, 100.0), 5)
    la[:30] = PINNED_OPEN
    fe = FusedBackend(X, y, lw.clone(), la.clone(), p)
    te = TorchBackend(X, y, lw.clone(), la.clone(), p, torch.device("cpu"))
    lambdas = []
    for eng in (fe, te):
        control = BudgetController(150, 400, p.epochs, p.lambda_l0)
        lam, seen = p.lambda_l0, []
        for epoch in range(p.epochs):
            _, _, expected = eng.l0_step(epoch, lam)
            seen.append((lam, expected))
            lam = control.update(epoch, expected)
        lambdas.append(np.array(seen))
    assert lambdas[0][-1, 1] < 0.5 * 400  # the controller closed gates
    # λ_L0 = exp(I + 400·e) below the path magnifies E's float rounding: compare log λ.
    np.testing.assert_allclose(lambdas[0][:, 1], lambdas[1][:, 1], rtol=1e-4)
    np.testing.assert_allclose(np.log(lambdas[0][:, 0]), np.log(lambdas[1][:, 0]), atol=0.05)
    np.testing.assert_allclose(fe.la, te.model.log_alpha.detach().numpy(), atol=2e-2)
    assert (fe.la[:30] == PINNED_OPEN).all()
    assert (te.model.log_alpha.detach().numpy()[:30] == PINNED_OPEN).all()


def test_the_calibration_distance_is_the_same_objective_on_both_backends():
    """λ_CD > 0: the distance to the reference weights (scaled by the records L0 is
    expected to drop) has the same value and gradient in the fused kernel and autograd, in
    the L0 phase and the polish; it pulls the kept weights toward their references."""
    torch.set_num_threads(1)
    X, y = _problem()
    rng = np.random.default_rng(3)
    reference = rng.gamma(4.0, 25.0, 400)
    p = FitParams(lambda_l0=1e-2, lambda_l2=1e-6, calibration_distance=50.0, device="cpu",
                  seed=7)
    lw, la = initial_parameters(np.full(400, 100.0), 7)
    fe = FusedBackend(X, y, lw.clone(), la.clone(), p, reference=reference)
    te = TorchBackend(X, y, lw.clone(), la.clone(), p, torch.device("cpu"), reference=reference)
    plain = FusedBackend(X, y, lw.clone(), la.clone(), p.with_(calibration_distance=0.0))
    # epoch 0's term: the open draws' Σ (w − r)²/r, r scaled by the expected kept share
    w0 = fe.sampled_weights(0)
    scale = reference.sum() / (reference * te.model.gates.get_active_prob().detach().numpy()
                               ).sum()
    r0 = scale * reference
    term = 50.0 / reference.sum() * (np.square(w0 - r0) / r0)[w0 > 0].sum()
    without = plain.l0_step(0, 1e-2)[0]
    assert term > 0.01 * without
    for epoch in range(25):
        (loss_f, yhat_f, _), (loss_t, yhat_t, _) = (fe.l0_step(epoch, 1e-2),
                                                    te.l0_step(epoch, 1e-2))
        if epoch == 0:
            assert loss_f == pytest.approx(without + term, rel=1e-5)
        assert abs(loss_f - loss_t) <= 1e-5 * loss_t
        np.testing.assert_allclose(yhat_f, yhat_t, rtol=2e-5)
    np.testing.assert_allclose(fe.lw, te.model.log_weight.detach().numpy(), atol=1e-4)
    np.testing.assert_allclose(fe.la, te.model.log_alpha.detach().numpy(), atol=1e-2)
    kept, start, w_f = _polish_alike(fe, te, p)
    w_plain = plain.polish(kept, start, PolishSchedule(p, 15), lambda *_: None)
    target = reference[kept] * reference.sum() / reference[kept].sum()

    def distance(w):
        return np.square(w[kept] / target - 1).mean()

    assert distance(w_f) < distance(w_plain)
