"""A CPU epoch in one pass over X: Xᵀ·g, the gate draw, both Adams and the next X·w, fused.

An epoch needs g = Xᵀ·r for the current draw (r = ∂loss/∂ŷ), one Adam step per column,
then the next draw w and ŷ = X·w. Column by column these are one computation: X is kept
by columns (`ColumnMatrix`), and for each block of columns the kernel reads the block's
slice of X once, gathers its gradient from r, steps and redraws its gates, and scatters the
new w into ŷ while the slice is still in cache. Per column it reads and writes only seven
float32 state arrays (log-weights, log-alphas, their Adam moments, and the draw's
pre-stretch gate, which the next step differentiates); a closed gate (z = 0) skips its
column of X in both products.

Threads never share an output: each of the fixed `N_CHUNKS` column ranges writes its own
columns and its own partial ŷ (float64), and the partials are added in chunk order. The
chunk cut depends only on the number of columns, so results are bit-identical on any
number of threads. Threads take the next chunk when they finish one (`ChunkRunner`), so
a core held by another process slows the epoch by its share, without an OpenMP barrier
spinning on it.

exp/log are float32 polynomials (relative error ~1e-7): libm's are scalar calls that cost
4× more. error_model="numpy" lets divisions vectorise (no zero-division check). Penalty
sums are vectorised per block (`_sum`): the same bits on every run of the same build.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit

F = np.float32
MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment
MIX1, MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
UNIFORM_EPS = 1e-6  # l0-python's: u ~ U(eps, 1 − eps)
N_CHUNKS = 64  # fixed: the summation order, hence the bits, must not depend on threads
MIN_CHUNK = 2048  # columns; fewer chunks for small problems (each has a partial ŷ)
BLOCK = 256  # columns per block: its slice of X stays in L1/L2 between gather and scatter
STRETCH_LO, STRETCH_SPAN = F(-0.1), F(1.2)  # gamma, zeta − gamma
LOG_ALPHA_BOUND = F(20.0)

# The kernels' float32 hyperparameter vector, by name.
HYPER = ("beta1", "beta2", "eps", "step_size", "bc2_sqrt", "lambda_l0", "lambda_l2",
         "inv_beta_step", "shift_step", "inv_beta_draw", "shift_draw", "shift_final")
H = {name: i for i, name in enumerate(HYPER)}
(_B1, _B2, _EPS, _STEP, _BC2, _LAM0, _LAM2, _IBS, _SHS, _IBD, _SHD, _SHF) = range(len(HYPER))
# State rows: the L0 phase's per-column arrays (its six parameters and Adam moments, and
# the current draw's pre-stretch gate, which the next step differentiates); the polish's.
LW, LA, M_LW, V_LW, M_LA, V_LA, GATE = range(7)
PW, PM, PV = range(3)

_LOG2E, _LN2_HI, _LN2_LO = F(1.4426950408889634), F(0.693359375), F(-2.12194440e-4)
_LN2 = F(0.6931471805599453)
_SQRT2 = F(1.4142135623730951)


def mix64(z: int) -> int:
    """splitmix64's finaliser on Python ints (the per-epoch key)."""
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def noise_key(seed: int, epoch: int) -> int:
    """Epoch `epoch`'s gate noise is the splitmix64 stream started at this key."""
    return mix64((mix64((seed + GOLDEN) & MASK64) + (epoch + 1) * GOLDEN) & MASK64)


@njit(inline="always", error_model="numpy")
def _exp(x):
    """e^x for float32 x; 0 below −87 (where float32 leaves normal range), so exp(−inf) = 0."""
    zero = x < F(-87.0)
    x = min(max(x, F(-87.0)), F(88.0))
    k = np.floor(x * _LOG2E + F(0.5))
    r = x - k * _LN2_HI - k * _LN2_LO
    p = F(1 / 5040.0)
    p = p * r + F(1 / 720.0)
    p = p * r + F(1 / 120.0)
    p = p * r + F(1 / 24.0)
    p = p * r + F(1 / 6.0)
    p = p * r + F(0.5)
    p = p * r + F(1.0)
    p = p * r + F(1.0)
    e = p * np.int32((np.int32(k) + np.int32(127)) << np.int32(23)).view(np.float32)
    return F(0.0) if zero else e


@njit(inline="always", error_model="numpy")
def _log(x):
    """ln x for positive normal float32 x."""
    bits = np.float32(x).view(np.int32)
    e = (bits >> np.int32(23)) - np.int32(127)
    m = np.int32((bits & np.int32(0x7FFFFF)) | np.int32(0x3F800000)).view(np.float32)
    big = m > _SQRT2
    m = m * F(0.5) if big else m
    e = e + np.int32(1) if big else e
    f = m - F(1.0)
    s = f / (F(2.0) + f)
    s2 = s * s
    poly = s * (F(2.0) + s2 * (F(2 / 3) + s2 * (F(2 / 5) + s2 * (F(2 / 7) + s2 * F(2 / 9)))))
    return F(e) * _LN2 + poly


@njit(inline="always", error_model="numpy")
def _uniform(key, j):
    """u ~ U(eps, 1 − eps): the 23 top bits of splitmix64 at position j of the key's stream."""
    z = key + np.uint64(j + 1) * np.uint64(GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    z = z ^ (z >> np.uint64(31))
    u01 = (F(np.int32(z >> np.uint64(41))) * F(2.0) + F(1.0)) * F(2.0**-24)
    return F(UNIFORM_EPS) + u01 * F(1.0 - 2 * UNIFORM_EPS)


@njit(cache=True, error_model="numpy")
def uniform_noise(key: np.uint64, n: int) -> np.ndarray:
    out = np.empty(n, np.float32)
    for j in range(n):
        out[j] = _uniform(key, j)
    return out


@njit(inline="always", error_model="numpy")
def _pre_gate(key, j, la, inv_beta):
    """The Hard Concrete sample before the stretch: sigmoid((logit u + clamp(α))/β)."""
    u = _uniform(key, j)
    lac = min(max(la, -LOG_ALPHA_BOUND), LOG_ALPHA_BOUND)
    return F(1.0) / (F(1.0) + _exp(-(_log(u / (F(1.0) - u)) + lac) * inv_beta))


@njit(inline="always", error_model="numpy")
def _open_prob(la, shift):
    """P(gate > 0) = sigmoid(clamp(α) − β·ln(−γ/ζ)): the L0 term of one column."""
    lac = min(max(la, -LOG_ALPHA_BOUND), LOG_ALPHA_BOUND)
    return F(1.0) / (F(1.0) + _exp(shift - lac))


@njit(inline="always", error_model="numpy")
def _adam(p, g, m, v, b1, b2, step_size, bc2_sqrt, eps):
    """torch.optim.Adam's update (lerp, addcmul, sqrt/bc2 + eps, addcdiv), in float32."""
    m = m + (F(1.0) - b1) * (g - m)
    v = v * b2 + (F(1.0) - b2) * g * g
    return p - step_size * (m / (math.sqrt(v) / bc2_sqrt + eps)), m, v


@njit(fastmath={"reassoc", "nsz"})
def _sum(buf, n):
    """Σ buf[:n] in float64, vectorised: the association is the compiled loop's, the same
    on every call (never the thread count's)."""
    total = 0.0
    for b in range(n):
        total += buf[b]
    return total


@njit(inline="always")
def _gather(ip, rows, vals, b, r):
    """(Xᵀ·r) of the block's column b (ip: the block's column pointers, unsigned), in two
    running sums: one chain of dependent adds stalls the loop."""
    one = np.uint64(1)
    k, end = ip[b], ip[b + 1]
    a0 = a1 = F(0.0)
    while k + one < end:
        a0 += vals[k] * r[rows[k]]
        a1 += vals[k + one] * r[rows[k + one]]
        k += np.uint64(2)
    if k < end:
        a0 += vals[k] * r[rows[k]]
    return a0 + a1


@njit(inline="always")
def _scatter(ip, rows, vals, b, w, out):
    """out += w·X[:, b] in float64."""
    wd = np.float64(w)
    for k in range(ip[b], ip[b + 1]):
        out[rows[k]] += wd * vals[k]


@njit(nogil=True, cache=True, error_model="numpy")
def l0_chunk(c, bounds, indptr, rows, vals, r, state, hyper, key_draw, do_step, part, sums):
    """Chunk c of an L0 epoch: optionally one Adam step from the current draw (its gates
    in state[GATE], its data gradient g = Xᵀ·r), then the draw of `key_draw`: its gates,
    its X·w into part[c], and into sums[c] its Σ P(gate > 0), Σ exp(log_weight)² and
    Σ P(gate > 0) at the final β.

    Loops run over block views with a 0-based index (a computed index defeats
    vectorisation: numba must allow for a negative one), indptr is unsigned for the same
    reason."""
    b1, b2, eps, step_size, bc2 = (hyper[_B1], hyper[_B2], hyper[_EPS], hyper[_STEP],
                                   hyper[_BC2])
    lam0, lam2 = hyper[_LAM0], hyper[_LAM2]
    inv_beta_step, shift_step = hyper[_IBS], hyper[_SHS]
    inv_beta, shift, shift_final = hyper[_IBD], hyper[_SHD], hyper[_SHF]
    out = part[c]
    out[:] = 0.0
    g_b = np.empty(BLOCK, np.float32)
    w_b = np.empty(BLOCK, np.float32)
    p_b = np.empty(BLOCK, np.float32)
    e2_b = np.empty(BLOCK, np.float32)
    pen = l2 = pen_final = 0.0
    for j0 in range(bounds[c], bounds[c + 1], BLOCK):
        j1 = min(j0 + BLOCK, bounds[c + 1])
        n = j1 - j0
        ip = indptr[j0:j1 + 1]
        lw, la, gate = state[LW, j0:j1], state[LA, j0:j1], state[GATE, j0:j1]
        if do_step:
            m_lw, v_lw = state[M_LW, j0:j1], state[V_LW, j0:j1]
            m_la, v_la = state[M_LA, j0:j1], state[V_LA, j0:j1]
            for b in range(n):  # a closed gate (t < 0) has no data gradient
                g_b[b] = _gather(ip, rows, vals, b, r) \
                    if gate[b] * STRETCH_SPAN + STRETCH_LO >= F(0.0) else F(0.0)
            for b in range(n):
                gj, sj, laj = g_b[b], gate[b], la[b]
                t = sj * STRETCH_SPAN + STRETCH_LO
                ej = _exp(lw[b])
                pj = _open_prob(laj, shift_step)
                z = min(max(t, F(0.0)), F(1.0))
                zm = F(1.0) if (t >= F(0.0)) and (t <= F(1.0)) else F(0.0)
                am = F(1.0) if (laj >= -LOG_ALPHA_BOUND) and (laj <= LOG_ALPHA_BOUND) \
                    else F(0.0)
                glw = gj * (ej * z) + lam2 * (F(2.0) * ej * ej)
                gla = am * (gj * ej * zm * STRETCH_SPAN * sj * (F(1.0) - sj) * inv_beta_step
                            + lam0 * pj * (F(1.0) - pj))
                lw[b], m_lw[b], v_lw[b] = _adam(lw[b], glw, m_lw[b], v_lw[b], b1, b2,
                                                step_size, bc2, eps)
                la[b], m_la[b], v_la[b] = _adam(laj, gla, m_la[b], v_la[b], b1, b2,
                                                step_size, bc2, eps)
        for b in range(n):  # the next draw
            s = _pre_gate(key_draw, j0 + b, la[b], inv_beta)
            gate[b] = s
            ej = _exp(lw[b])
            w_b[b] = ej * min(max(s * STRETCH_SPAN + STRETCH_LO, F(0.0)), F(1.0))
            p_b[b] = _open_prob(la[b], shift)
            e2_b[b] = ej * ej
        pen += _sum(p_b, n)
        l2 += _sum(e2_b, n)
        if shift_final != shift:  # under a temperature schedule: the count at the final β
            for b in range(n):
                p_b[b] = _open_prob(la[b], shift_final)
            pen_final += _sum(p_b, n)
        for b in range(n):
            if w_b[b] != F(0.0):
                _scatter(ip, rows, vals, b, w_b[b], out)
    sums[c, 0] = pen
    sums[c, 1] = l2
    sums[c, 2] = pen if shift_final == shift else pen_final


@njit(nogil=True, cache=True, error_model="numpy")
def polish_chunk(c, bounds, cols, indptr, rows, vals, r, state, hyper, do_step, part, sums):
    """Chunk c of a polish epoch over the kept columns `cols`: optionally one Adam step of
    the log-weights from g = Xᵀ·r, then w = exp(log_w): its X·w into part[c], Σ w² into
    sums[c, 1]."""
    b1, b2, eps, step_size, bc2 = (hyper[_B1], hyper[_B2], hyper[_EPS], hyper[_STEP],
                                   hyper[_BC2])
    lam2 = hyper[_LAM2]
    out = part[c]
    out[:] = 0.0
    w_b = np.empty(BLOCK, np.float32)
    g_b = np.empty(BLOCK, np.float32)
    ip = np.empty(2, indptr.dtype)
    l2 = 0.0
    for j0 in range(bounds[c], bounds[c + 1], BLOCK):
        j1 = min(j0 + BLOCK, bounds[c + 1])
        n = j1 - j0
        log_w, m, v, col = state[PW, j0:j1], state[PM, j0:j1], state[PV, j0:j1], cols[j0:j1]
        if do_step:
            for b in range(n):
                ip[0], ip[1] = indptr[col[b]], indptr[col[b] + 1]
                g_b[b] = _gather(ip, rows, vals, 0, r)
            for b in range(n):
                w = _exp(log_w[b])
                gj = g_b[b] * w + lam2 * (F(2.0) * w * w)
                log_w[b], m[b], v[b] = _adam(log_w[b], gj, m[b], v[b], b1, b2, step_size,
                                             bc2, eps)
        for b in range(n):
            w = _exp(log_w[b])
            w_b[b] = w
            g_b[b] = w * w
        l2 += _sum(g_b, n)
        for b in range(n):
            ip[0], ip[1] = indptr[col[b]], indptr[col[b] + 1]
            _scatter(ip, rows, vals, 0, w_b[b], out)
    sums[c, 0] = 0.0
    sums[c, 1] = l2
    sums[c, 2] = 0.0


@njit(nogil=True, cache=True, error_model="numpy")
def sampled_weights(lw, la, key, inv_beta):
    """w = exp(log_weight)·z for one draw (the kernel's draw, as a vector)."""
    out = np.empty(lw.size, np.float32)
    for j in range(lw.size):
        s = _pre_gate(key, j, la[j], inv_beta)
        out[j] = _exp(lw[j]) * min(max(s * STRETCH_SPAN + STRETCH_LO, F(0.0)), F(1.0))
    return out


@njit(nogil=True, cache=True, error_model="numpy")
def exp32(x):
    """The kernels' exp over a float32 array (the polish's exported weights)."""
    out = np.empty(x.size, np.float32)
    for j in range(x.size):
        out[j] = _exp(x[j])
    return out


@njit(cache=True)
def _count_columns(indptr, indices, keep, counts):
    for i in keep:
        for k in range(indptr[i], indptr[i + 1]):
            counts[indices[k]] += 1


@njit(cache=True)
def _fill_columns(indptr, indices, data, keep, col_ptr, rows, vals):
    nxt = col_ptr[:-1].copy()
    for new, i in enumerate(keep):
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            p = nxt[j]
            rows[p] = new
            vals[p] = data[k]
            nxt[j] = p + 1


@dataclass(frozen=True)
class ColumnMatrix:
    """X by columns, row indices as narrow as the targets allow (uint16 up to 65,535
    targets): 6 bytes a non-zero instead of CSR's 8, and the only copy of X the backend keeps."""

    indptr: np.ndarray  # uint64, n_cols + 1 (unsigned: no negative-index checks)
    rows: np.ndarray  # uint16 or int32, sorted within each column
    vals: np.ndarray  # float32
    shape: tuple[int, int]

    @classmethod
    def from_csr(cls, X: sp.csr_matrix, rows: np.ndarray | None = None  # noqa: N803
                 ) -> ColumnMatrix:
        """X's rows where the mask `rows` is set (all by default), renumbered in order."""
        X = sp.csr_matrix(X, dtype=np.float32)
        keep = np.flatnonzero(rows) if rows is not None else np.arange(X.shape[0])
        n_t, n_c = len(keep), X.shape[1]
        counts = np.zeros(n_c, np.int64)
        _count_columns(X.indptr, X.indices, keep, counts)
        col_ptr = np.zeros(n_c + 1, np.uint64)
        np.cumsum(counts, out=col_ptr[1:])
        nnz = int(col_ptr[-1])
        index = np.empty(nnz, np.uint16 if n_t <= np.iinfo(np.uint16).max else np.int32)
        vals = np.empty(nnz, np.float32)
        _fill_columns(X.indptr, X.indices, X.data, keep, col_ptr, index, vals)
        return cls(col_ptr, index, vals, (n_t, n_c))

    @property
    def nnz(self) -> int:
        return int(self.vals.size)

    @property
    def bytes_per_pass(self) -> int:
        """Bytes of X one epoch reads (values and row indices; the column pointers are
        small), when every gate is open."""
        return self.nnz * (self.vals.itemsize + self.rows.itemsize)


def chunk_bounds(n: int) -> np.ndarray:
    """Up to N_CHUNKS equal column ranges of at least MIN_CHUNK columns: a function of n
    only, never of the thread count."""
    chunks = max(1, min(N_CHUNKS, n // MIN_CHUNK))
    return np.unique(np.linspace(0, n, chunks + 1).astype(np.int64))


_pools: dict[int, ThreadPoolExecutor] = {}  # by pid: a forked child must not inherit one
_pools_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    with _pools_lock:
        pid = os.getpid()
        if pid not in _pools:
            _pools.clear()
            _pools[pid] = ThreadPoolExecutor(max(1, (os.cpu_count() or 1) - 1),
                                             thread_name_prefix="fit-chunk")
        return _pools[pid]


class ChunkRunner:
    """Runs a chunk kernel over every chunk on `threads` threads (this one and pool
    threads), each taking the next chunk when it finishes one."""

    def __init__(self, n_columns: int, threads: int):
        self.bounds = chunk_bounds(n_columns)
        self.n_chunks = len(self.bounds) - 1
        self.threads = max(1, min(threads, self.n_chunks))

    def run(self, kernel: Any, *args: Any) -> None:
        """kernel(c, bounds, *args) for every chunk c; an error surfaces after every
        thread stopped (no kernel still writes when the caller sees it)."""
        counter = itertools.count()

        def work() -> None:
            while (c := next(counter)) < self.n_chunks:
                kernel(c, self.bounds, *args)

        helpers = [_pool().submit(work) for _ in range(self.threads - 1)]
        try:
            work()
        finally:
            errors = [f.exception() for f in helpers]
        for error in errors:
            if error is not None:
                raise error
