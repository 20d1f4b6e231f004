"""The calibration environment: where a national fit's record budget is spent.

A layer is a state; its weights are the household weights of the package columns assigned
to it; its groups are income band × household size strata of the base records. The
trained model is the national fit's L0 phase (its Hard Concrete logits rank the columns
inside every group). An episode starts from that fit's own keep set at the episode's
budget (the budget method) and moves records between groups:

- keep: lock the group and open its next most likely gates (`STEP` of its kept count);
- prune: close the group's least likely open gates (the same step);
- quantize: round the group's weights to whole households (integer weights);
- shuffle: move each kept weight to the same base record's clone in another district of
  the same state.

The reward's error is mean |relative error| on one half of the random validation split
(`reward` half); the other half (`report`) is never seen by the search, so a benchmark can
say whether what the search learned generalizes. Training targets only ever drive
`fine_tune`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from pipeline.core.hashing import stable_seed
from pipeline.fit.stopping import polish_lr
from pipeline.fit.training import rel_error
from pipeline.sparsity.autoencoder import AreaAutoencoder
from pipeline.sparsity.protocol import FEATURES, KEEP, PRUNE, QUANTIZE, SHUFFLE, Score

INCOME_BANDS = (30_000.0, 100_000.0)  # household income cut points of the groups
SIZE_CUT = 3  # households of at least this many people form the second size stratum
STEP = 0.25  # share of a group's kept records one keep or prune moves
MIN_STEP = 8  # records; a small group still moves
FINE_TUNE_EPOCHS = 20
RESET_EPOCHS = 300  # the budget method's start: the fit's own polish rate and decay
RESET_LEARNING_RATE = 0.15
LEARNING_RATE = 0.05  # fine-tuning a warm start
BETAS, EPS = (0.9, 0.999), 1e-8


@dataclass
class CalibrationData:
    """What every episode shares, built once per process: read-only after construction."""

    X_train: sp.csc_matrix  # noqa: N815  (trained targets × columns)
    y_train: np.ndarray
    X_reward: sp.csc_matrix  # noqa: N815  (the split half the reward reads)
    y_reward: np.ndarray
    X_report: sp.csc_matrix  # noqa: N815  (the split half nobody optimizes)
    y_report: np.ndarray
    log_alpha: np.ndarray  # the trained gates' logits, one per column
    start_weight: np.ndarray  # exp(log_weight) of the trained model: a kept column's seed
    gate_prob: np.ndarray  # P(gate open) at the final temperature
    layer: np.ndarray  # state index per column
    group: np.ndarray  # stratum index per column
    profile: np.ndarray  # (columns,) index into the autoencoder's one-hot features
    sibling: np.ndarray  # same record, same state, other district; -1 when none
    layer_names: list[str]
    n_groups: int
    n_profile: int
    autoencoder: AreaAutoencoder
    cells: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # ranked columns
    layer_columns: list[np.ndarray] = field(default_factory=list)  # each layer's, in order

    def __post_init__(self) -> None:
        self.layer_columns = [np.flatnonzero(self.layer == i)
                              for i in range(len(self.layer_names))]
        key = self.layer.astype(np.int64) * self.n_groups + self.group
        order = np.lexsort((np.arange(len(key)), -self.log_alpha, key))  # most likely first
        bounds = np.searchsorted(key[order], np.arange(len(self.layer_names) * self.n_groups + 1))
        for cell in range(len(bounds) - 1):
            self.cells[divmod(cell, self.n_groups)] = order[bounds[cell]:bounds[cell + 1]]

    @property
    def n_columns(self) -> int:
        return len(self.log_alpha)


def strata(income: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Income band × size stratum of each base record: 0 … 2·(len(INCOME_BANDS)+1) − 1."""
    band = np.searchsorted(np.asarray(INCOME_BANDS), income, side="right")
    return band * 2 + (size >= SIZE_CUT)


def siblings(record: np.ndarray, layer: np.ndarray, district: np.ndarray) -> np.ndarray:
    """For each column, the next clone (cyclically, by column index) of its base record in
    the same state, if that clone lies in another district, else -1: where a shuffle moves
    its weight."""
    n = len(record)
    order = np.lexsort((np.arange(n), layer, record))
    key = record[order].astype(np.int64) * 1000 + layer[order]
    first = np.r_[True, key[1:] != key[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    last = np.r_[key[1:] != key[:-1], True]
    nxt = np.where(last, start, np.arange(n) + 1)
    out = np.full(n, -1, dtype=np.int64)
    partner = order[nxt]
    ok = district[partner] != district[order]
    out[order[ok]] = partner[ok]
    return out


class CalibrationProblem:
    """One episode's state over shared `CalibrationData`; see the module docstring."""

    def __init__(self, data: CalibrationData, *, use_reconstruction: bool = True):
        self.data = data
        self.layer_names = data.layer_names
        self.n_groups = data.n_groups
        self.use_reconstruction = use_reconstruction
        n = data.n_columns
        self.weights = np.zeros(n)
        self.integer = np.zeros(n, dtype=bool)
        self.locked = np.zeros((len(self.layer_names), self.n_groups), dtype=bool)
        self._resets: dict[int, np.ndarray] = {}
        self._full_profiles = self._profiles(np.where(data.gate_prob > 0.5, data.start_weight,
                                                      0.0))
        self._sync()

    # -- state ----------------------------------------------------------------------------
    def _sync(self) -> None:
        d = self.data
        self.yhat_train = d.X_train @ self.weights
        self.yhat_reward = d.X_reward @ self.weights
        self.yhat_report = d.X_report @ self.weights
        self._recon = self._reconstruction()

    def _move(self, cols: np.ndarray, new: np.ndarray) -> None:
        """Set weights[cols] = new, keeping every ŷ current with one product per matrix."""
        delta = new - self.weights[cols]
        self.weights[cols] = new
        d = self.data
        self.yhat_train += d.X_train[:, cols] @ delta
        self.yhat_reward += d.X_reward[:, cols] @ delta
        self.yhat_report += d.X_report[:, cols] @ delta

    def reset(self, density: float) -> None:
        d = self.data
        k = max(1, min(d.n_columns, round(density * d.n_columns)))
        if k not in self._resets:
            keep = np.zeros(d.n_columns, dtype=bool)
            keep[np.argsort(-d.log_alpha, kind="stable")[:k]] = True
            self.weights = np.where(keep, d.start_weight, 0.0)
            self.integer[:] = False
            self._sync()
            self._polish(np.flatnonzero(keep), RESET_EPOCHS, RESET_LEARNING_RATE)
            self._resets[k] = self.weights.copy()
        self.weights = self._resets[k].copy()
        self.integer[:] = False
        self.locked[:] = False
        self._sync()

    # -- the protocol ---------------------------------------------------------------------
    def apply(self, layer: int, group: int, op: int) -> None:
        cols = self.data.cells.get((layer, group), np.zeros(0, dtype=np.int64))
        if not len(cols):
            return
        kept = cols[self.weights[cols] > 0]
        if op == KEEP:
            self.locked[layer, group] = True
            closed = cols[self.weights[cols] == 0]
            add = closed[:self._step(len(kept))]
            self._move(add, self.data.start_weight[add])
        elif op == PRUNE and not self.locked[layer, group]:
            drop = kept[::-1][:self._step(len(kept))]  # cols are ranked most likely first
            self._move(drop, np.zeros(len(drop)))
            self.integer[drop] = False
        elif op == QUANTIZE and len(kept):
            self.integer[kept] = True
            self._move(kept, np.maximum(1.0, np.round(self.weights[kept])))
        elif op == SHUFFLE and len(kept):
            self._shuffle(kept)
        self._recon[layer] = self._area_error(layer)

    def _shuffle(self, kept: np.ndarray) -> None:
        target = self.data.sibling[kept]
        movable = (target >= 0) & (self.weights[np.maximum(target, 0)] == 0)
        src, dst = kept[movable], target[movable]
        _, first = np.unique(dst, return_index=True)  # two sources, one sibling: the first
        src, dst = src[np.sort(first)], dst[np.sort(first)]
        w = self.weights[src].copy()
        self._move(np.concatenate([src, dst]), np.concatenate([np.zeros(len(src)), w]))
        self.integer[dst] = self.integer[src]
        self.integer[src] = False

    @staticmethod
    def _step(kept: int) -> int:
        return max(MIN_STEP, math.ceil(STEP * kept))

    def fine_tune(self, layer: int) -> None:
        cols = self.data.layer_columns[layer]
        cols = cols[(self.weights[cols] > 0) & ~self.integer[cols]]
        self._polish(cols, FINE_TUNE_EPOCHS, LEARNING_RATE)

    def _polish(self, cols: np.ndarray, epochs: int, lr: float) -> None:
        """Adam on log-weights of `cols` against the training targets, the rest fixed, at
        the fit's polish schedule (full rate, then a linear decay)."""
        if not len(cols):
            return
        d = self.data
        X = d.X_train[:, cols].tocsr()  # noqa: N806
        y = d.y_train
        log_w = np.log(self.weights[cols])
        fixed = self.yhat_train - X @ self.weights[cols]
        m, v = np.zeros_like(log_w), np.zeros_like(log_w)
        for step in range(1, epochs + 1):
            w = np.exp(log_w)
            scaled = (y - fixed - X @ w) / (y + 1.0)
            grad = (X.T @ (-2.0 * scaled / (y + 1.0))) * w
            m = BETAS[0] * m + (1 - BETAS[0]) * grad
            v = BETAS[1] * v + (1 - BETAS[1]) * grad * grad
            step_size = polish_lr(lr, step - 1, epochs) / (1 - BETAS[0] ** step)
            log_w -= step_size * m / (np.sqrt(v / (1 - BETAS[1] ** step)) + EPS)
        self._move(cols, np.exp(log_w))

    def score(self) -> Score:
        d = self.data
        error = float(np.abs(rel_error(self.yhat_reward, d.y_reward)).mean())
        recon = float(self._recon.mean()) if self.use_reconstruction else 0.0
        return Score(error=error, density=float((self.weights > 0).mean()),
                     reconstruction=recon)

    def report_error(self) -> float:
        """Mean |relative error| on the split half no search reads."""
        return float(np.abs(rel_error(self.yhat_report, self.data.y_report)).mean())

    def enforce(self, density: float) -> None:
        d = self.data
        excess = int((self.weights > 0).sum()) - round(density * d.n_columns)
        if excess <= 0:
            return
        open_cell = ~self.locked[d.layer, d.group] & (self.weights > 0)
        candidates = np.flatnonzero(open_cell)
        order = np.lexsort((candidates, d.log_alpha[candidates]))  # least likely first
        drop = candidates[order[:excess]]
        if len(drop) < excess:  # every unlocked record is gone: locks give way last
            rest = np.flatnonzero((self.weights > 0) & ~open_cell)
            rest = rest[np.lexsort((rest, d.log_alpha[rest]))][:excess - len(drop)]
            drop = np.concatenate([drop, rest])
        self._move(drop, np.zeros(len(drop)))
        self.integer[drop] = False
        for layer in np.unique(d.layer[drop]):
            self.fine_tune(int(layer))
        self._recon = self._reconstruction()

    def allocation(self) -> dict[str, np.ndarray]:
        d = self.data
        keep = self.weights > 0
        counts = np.zeros((len(self.layer_names), self.n_groups), dtype=np.int64)
        np.add.at(counts, (d.layer[keep], d.group[keep]), 1)
        return {"keep": keep, "integer": self.integer & keep, "cell_records": counts}

    # -- observations ---------------------------------------------------------------------
    def features(self) -> np.ndarray:
        d = self.data
        n_layers = len(self.layer_names)
        cell = d.layer.astype(np.int64) * self.n_groups + d.group
        size = n_layers * self.n_groups
        keep = self.weights > 0
        gradient = self._gradient()

        def per_cell(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            n = np.bincount(cell[mask], minlength=size).astype(float)
            s = np.bincount(cell[mask], values[mask], minlength=size)
            s2 = np.bincount(cell[mask], values[mask] ** 2, minlength=size)
            mean = np.divide(s, n, out=np.zeros(size), where=n > 0)
            var = np.divide(s2, n, out=np.zeros(size), where=n > 0) - mean ** 2
            return mean, np.maximum(var, 0.0)

        log_w = np.log(np.where(keep, self.weights, 1.0))
        w_mean, w_var = per_cell(log_w, keep)
        total = np.bincount(cell[keep], self.weights[keep], minlength=size)
        share = self.weights / np.maximum(total[cell], 1e-300)
        ent = np.bincount(cell[keep], -share[keep] * np.log(np.maximum(share[keep], 1e-300)),
                          minlength=size)
        n_kept = np.bincount(cell[keep], minlength=size).astype(float)
        n_all = np.bincount(cell, minlength=size).astype(float)
        ent = np.divide(ent, np.log(np.maximum(n_kept, 2.0)))
        g_mean, g_var = per_cell(gradient, keep)
        p_mean, p_var = per_cell(d.gate_prob, np.ones(d.n_columns, dtype=bool))
        zero = 1.0 - np.divide(n_kept, n_all, out=np.ones(size), where=n_all > 0)
        quant = np.divide(np.bincount(cell[keep & self.integer], minlength=size), n_kept,
                          out=np.zeros(size), where=n_kept > 0)
        recon = np.repeat(self._recon, self.n_groups)
        scale = np.sqrt(np.maximum(np.mean(g_var[n_kept > 0]) if (n_kept > 0).any() else 1.0,
                                   1e-30))
        columns = {
            "weight_mean": w_mean / 10.0, "weight_var": np.log1p(w_var),
            "weight_entropy": ent, "gate_mean": p_mean, "gate_var": p_var * 4.0,
            "zero_share": zero, "grad_mean": np.arcsinh(g_mean / scale),
            "grad_var": np.log1p(g_var / scale ** 2), "reconstruction": recon,
            "quantized": quant,
        }
        out = np.stack([columns[f] for f in FEATURES], axis=1)
        return np.nan_to_num(np.clip(out, -10, 10)).astype(np.float32).reshape(
            n_layers, self.n_groups, len(FEATURES))

    def _gradient(self) -> np.ndarray:
        """∂(training loss)/∂ log w for every kept column (0 elsewhere)."""
        d = self.data
        scaled = (d.y_train - self.yhat_train) / (d.y_train + 1.0)
        return (d.X_train.T @ (-2.0 * scaled / (d.y_train + 1.0))) * self.weights

    def _profiles(self, weights: np.ndarray) -> np.ndarray:
        """Each area's weighted distribution over the profile cells (rows sum to 1)."""
        d = self.data
        n_layers = len(self.layer_names)
        flat = np.bincount(d.layer.astype(np.int64) * d.n_profile + d.profile, weights,
                           minlength=n_layers * d.n_profile).reshape(n_layers, d.n_profile)
        return flat / np.maximum(flat.sum(axis=1, keepdims=True), 1e-300)

    def _area_error(self, layer: int) -> float:
        d = self.data
        cols = d.layer_columns[layer]
        dist = np.bincount(d.profile[cols], self.weights[cols], minlength=d.n_profile)
        dist = dist / max(dist.sum(), 1e-300)
        return d.autoencoder.error(dist[None, :], self._full_profiles[layer][None, :])[0]

    def _reconstruction(self) -> np.ndarray:
        return self.data.autoencoder.error(self._profiles(self.weights), self._full_profiles)


def reward_halves(names: list[str], seed: int) -> np.ndarray:
    """True for the split targets the reward reads: half of them, by a stable hash."""
    keys = np.array([stable_seed("reward-half", seed, n) for n in names], dtype=np.uint64)
    return (keys % np.uint64(2)) == 0


def train_profiles(weights: np.ndarray, layer: np.ndarray, profile: np.ndarray,
                   n_layers: int, n_profile: int, replicates: int, seed: int) -> np.ndarray:
    """The autoencoder's training set: every area's profile under the full fit, and under
    Poisson-bootstrap replicates of its records (the spread the uncompressed data has)."""
    gen = np.random.default_rng(stable_seed("autoencoder-data", seed))
    rows = []
    for r in range(replicates + 1):
        w = weights if r == 0 else weights * gen.poisson(1.0, len(weights))
        flat = np.bincount(layer.astype(np.int64) * n_profile + profile, w,
                           minlength=n_layers * n_profile).reshape(n_layers, n_profile)
        rows.append(flat / np.maximum(flat.sum(axis=1, keepdims=True), 1e-300))
    return np.concatenate(rows).astype(np.float32)


def torch_threads() -> None:
    """One thread per process: episodes run side by side on Dask workers."""
    torch.set_num_threads(1)
