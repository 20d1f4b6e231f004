"""X·w and Xᵀ·g for targets × millions of columns, without densifying.

torch's generic sparse backward builds a COO gradient and dominated l0-python's epoch time.
Here X and a precomputed Xᵀ are both CSR with int32 indices, so each direction is one
row-parallel CSR matvec (MKL on CPU, cuSPARSE on CUDA). Measured on the 2-core dev box
(2,000 × 2M, 20M non-zeros): torch int32 CSR 19 ms forward / 8 ms backward against scipy's
55 / 30 ms, and int64 indices cost 3×. Both back-ends use it: the torch one (CUDA)
through autograd, the fused CPU one through `matvec` / `rmatvec` directly.
Each output row is summed by one thread in a fixed order, so CPU results repeat bit for bit.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch


def _to_torch_csr(m: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    m = sp.csr_matrix(m, dtype=np.float32)
    m.sort_indices()  # indices stay int32 and data float32 without a copy where they are
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR is beta" notices
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int32, copy=False)),
            torch.from_numpy(m.indices.astype(np.int32, copy=False)),
            torch.from_numpy(m.data),
            size=m.shape,
            device=device,
        )


class SparseOperator:
    """A fixed float32 matrix with fast products in both directions."""

    def __init__(self, X: sp.spmatrix, device: torch.device):  # noqa: N803
        X = sp.csr_matrix(X)
        self.shape = X.shape
        self.nnz = int(X.nnz)
        self.device = device
        self.X = _to_torch_csr(X, device)
        self.XT = _to_torch_csr(X.T.tocsr(), device)

    @property
    def bytes_per_product(self) -> int:
        """Bytes of values + column indices one product reads (row pointers are negligible)."""
        return self.nnz * (4 + 4)

    def matvec(self, w: torch.Tensor) -> torch.Tensor:
        return self.X @ w

    def rmatvec(self, g: torch.Tensor) -> torch.Tensor:
        return self.XT @ g

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """X·w with autograd: the backward is one Xᵀ CSR matvec."""
        return _MatVec.apply(w, self)


class _MatVec(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor, op: SparseOperator) -> torch.Tensor:  # noqa: ANN001
        ctx.op = op
        return op.matvec(w.contiguous())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        return ctx.op.rmatvec(grad.contiguous()), None
