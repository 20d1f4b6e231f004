"""The sparse operator: exact products in both directions, a correct autograd backward."""

import numpy as np
import scipy.sparse as sp
import torch

from pipeline.fit.operator import SparseOperator


def _matrix(seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    X = sp.random(40, 3000, density=0.02, format="csr", random_state=rng, dtype=np.float32)
    X.data[:] = rng.integers(1, 9, X.nnz)  # small integers: float32 sums are exact
    return X


def test_products_match_scipy_exactly_for_integer_data():
    X = _matrix()
    op = SparseOperator(X, torch.device("cpu"))
    w = np.arange(3000, dtype=np.float32) % 7
    g = np.arange(40, dtype=np.float32) % 5
    assert np.array_equal(op.matvec(torch.from_numpy(w)).numpy(), X @ w)
    assert np.array_equal(op.rmatvec(torch.from_numpy(g)).numpy(), X.T @ g)
    assert op.bytes_per_product == X.nnz * 8


def test_autograd_backward_is_transpose_product():
    X = _matrix(1)
    op = SparseOperator(X, torch.device("cpu"))
    w = torch.ones(3000, requires_grad=True)
    coef = torch.arange(40, dtype=torch.float32)
    (op(w) * coef).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), X.T @ coef.numpy())


def test_products_repeat_bit_for_bit():
    rng = np.random.default_rng(2)
    X = sp.random(300, 20000, density=0.01, format="csr", random_state=rng, dtype=np.float32)
    op = SparseOperator(X, torch.device("cpu"))
    w = torch.from_numpy(rng.random(20000, dtype=np.float32))
    g = torch.from_numpy(rng.random(300, dtype=np.float32))
    assert torch.equal(op.matvec(w), op.matvec(w))
    assert torch.equal(op.rmatvec(g), op.rmatvec(g))
    np.testing.assert_allclose(op.matvec(w).numpy(), X @ w.numpy(), rtol=1e-5)
