"""The neural-network environment: an MLP of l0-python `L0Linear` layers on the digits.

The data are scikit-learn's bundled 8×8 handwritten digits (1797 images, no download),
split once by a seeded permutation into train / validation / test (60/20/20) and
standardised with the training statistics. The model, 64→64→32→10 with ReLU, is trained
once per process (Adam, full batch, a small L0 penalty on the weight-level Hard Concrete
gates) and cached with everything derived from it, so every episode reuses it.

The trained model an episode compresses is the L0 network in eval mode: each weight is
folded with its deterministic gate (weight × gate mean), so an all-open mask reproduces
the trained network exactly. From then on the mask is explicit: a boolean keep-mask per
layer, and the forward pass uses weight × mask (the gates fixed to the mask, never
sampled). The trained gates' open probabilities stay as the "activations" the features
report and the ranking `keep` restores by.

- A layer is an `L0Linear` layer; its groups are `n_groups` contiguous blocks of output
  neurons (rows), padded with empty groups when a layer has fewer rows.
- keep: lock the group open (neither `prune` nor, before every unlocked weight is gone,
  `enforce` closes it again, as in the calibration problem) and restore `STEP` of its
  kept count (at least `MIN_STEP` of its size) of its pruned weights, most likely first
  (trained gate probability × trained |w|), at their trained values;
- prune: close the same step of its kept weights, least likely first (|w| × probability);
- quantize: round the group's kept weights to int8 with one symmetric scale per group
  (max |w| / 127); they stay on that grid through fine-tuning (frozen);
- shuffle: swap the group's weights with their neighbour in the row (columns 2k ↔ 2k+1,
  mask and flags with them): each weight then reads the wrong input pixel or unit.

`fine_tune` trains every layer's kept weights and biases (not only the layer acted on), so
an episode's epoch is the same unit as a baseline's epoch (`episode_epochs`). Score reads
the validation split only; `test_accuracy` reads the test split, for a final report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from l0.layers import L0Linear
from sklearn.datasets import load_digits
from torch import nn

from pipeline.core.hashing import stable_seed
from pipeline.sparsity.autoencoder import fit_reconstruction
from pipeline.sparsity.protocol import FEATURES, KEEP, PRUNE, QUANTIZE, SHUFFLE, Score

HIDDEN = (64, 32)  # hidden widths: 64 → 64 → 32 → 10
SPLIT = (0.6, 0.2)  # train and validation shares; the rest is the test split
TRAIN_EPOCHS = 300
TRAIN_LR = 1e-2
GATE_LR = 5e-2
L0_PENALTY = 1e-2  # λ on the expected share of open gates: a light nudge, not a budget
INIT_SPARSITY = 0.1  # the gates start 90% open: the network trains as a dense one first
FINE_TUNE_LR = 3e-2
FINE_TUNE_EPOCHS = 5
RESET_EPOCHS = 20
STEP = 0.25  # share of a group's kept weights one keep or prune moves
MIN_STEP = 0.02  # ... but at least this share of the group's size (an empty group reopens)
AE_CHUNK = 32  # the autoencoder reads rows in chunks of this many weights
AE_HIDDEN = 24
AE_EPOCHS = 400
AE_LR = 1e-2
L0_EPOCHS = 300  # uniform_l0: epochs of one L0 fit of the bisection
L0_BISECTIONS = 10
L0_TOLERANCE = 0.05  # relative distance to the density that ends the bisection


def episode_epochs(steps: int) -> int:
    """Fine-tune epochs an episode of `steps` steps spends in all (reset, every step, the
    final enforce): the budget the baselines get, so they are compared at equal training."""
    return RESET_EPOCHS + (steps + 1) * FINE_TUNE_EPOCHS


BASELINE_EPOCHS = episode_epochs(16)


# -- data and the trained model ----------------------------------------------------------
@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # (n, 64) float32, standardised by the training split
    y: torch.Tensor  # (n,) int64


@dataclass(frozen=True)
class Digits:
    train: Split
    val: Split
    test: Split


def load(seed: int) -> Digits:
    """The seeded 60/20/20 split of scikit-learn's digits, standardised by train."""
    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(stable_seed("digits-split", seed)).permutation(len(y))
    n_train, n_val = int(SPLIT[0] * len(y)), int(SPLIT[1] * len(y))
    parts = np.split(order, [n_train, n_train + n_val])
    mean = x[parts[0]].mean(axis=0)
    std = x[parts[0]].std(axis=0)
    std[std < 1e-6] = 1.0  # always-blank corner pixels
    splits = [Split(torch.as_tensor((x[p] - mean) / std, dtype=torch.float32),
                    torch.as_tensor(y[p])) for p in parts]
    return Digits(*splits)


def _torch_seed(*parts: object) -> int:
    return stable_seed(*parts) % (2**63)


def _build(sizes: Sequence[int]) -> nn.ModuleList:
    return nn.ModuleList(L0Linear(a, b, init_sparsity=INIT_SPARSITY)
                         for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def _l0_forward(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for i, layer in enumerate(layers):
        x = layer(x)
        if i < len(layers) - 1:
            x = F.relu(x)
    return x


def _l0_fit(layers: nn.ModuleList, train: Split, epochs: int, penalty: float) -> None:
    """Full-batch Adam on cross-entropy + penalty × expected share of open gates. The gate
    samples draw on torch's global generator: callers fork and seed it."""
    weights = [p for layer in layers for p in (layer.weight, layer.bias)]
    logits = [layer.weight_gates.qz_logits for layer in layers]
    n = sum(int(q.numel()) for q in logits)
    opt = torch.optim.Adam([{"params": weights, "lr": TRAIN_LR},
                            {"params": logits, "lr": GATE_LR}])
    layers.train()
    for _ in range(epochs):
        loss = F.cross_entropy(_l0_forward(layers, train.x), train.y)
        if penalty:
            loss = loss + penalty * sum(layer.get_l0_penalty() for layer in layers) / n
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    layers.eval()


@torch.no_grad()
def _fold(layers: nn.ModuleList) -> tuple[list[torch.Tensor], list[torch.Tensor],
                                          list[torch.Tensor]]:
    """The eval-mode network as plain tensors: weight × deterministic gate, bias, and the
    gates' open probabilities."""
    layers.eval()
    weights = [(layer.weight * layer.weight_gates()).detach().clone() for layer in layers]
    biases = [layer.bias.detach().clone() for layer in layers]
    probs = [layer.weight_gates.get_active_prob().detach().clone() for layer in layers]
    return weights, biases, probs


def _forward(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
             x: torch.Tensor) -> torch.Tensor:
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        x = F.linear(x, w, b)
        if i < len(weights) - 1:
            x = F.relu(x)
    return x


@torch.no_grad()
def _accuracy(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
              split: Split) -> float:
    return float((_forward(weights, biases, split.x).argmax(1) == split.y).float().mean())


class RowAutoencoder:
    """One small autoencoder over fixed-length chunks (`AE_CHUNK`) of every layer's trained
    weight rows, each layer scaled to unit RMS.

    One network on chunks rather than one per layer: the output layer has only 10 rows,
    too few to train an autoencoder of its own, and one forward pass scores all layers.
    It reads the signed rows themselves (not sorted |w|), so a shuffle, which leaves a
    row's magnitudes as they were, still moves it. The error of a compressed row is
    ‖AE(current) − AE(trained)‖ / ‖trained‖, the convention of `autoencoder.py`: exactly 0
    for the trained model (the autoencoder's own error cancels), growing with pruning,
    rounding and shuffling, on the scale of the row itself (a pruned-away row is ≈ 1).
    """

    def __init__(self, weights: Sequence[torch.Tensor], seed: int):
        self.scales = [float(w.square().mean().sqrt().clamp_min(1e-12)) for w in weights]
        self.widths = [int(w.shape[1]) for w in weights]
        self.rows = [int(w.shape[0]) for w in weights]
        chunks = self.chunks(weights)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_torch_seed("digits-autoencoder", seed))
            self.net = nn.Sequential(nn.Linear(AE_CHUNK, AE_HIDDEN), nn.Tanh(),
                                     nn.Linear(AE_HIDDEN, AE_CHUNK))
        self.training_error = fit_reconstruction(self.net, chunks, AE_EPOCHS, AE_LR)
        with torch.no_grad():
            self.reference = self.net(chunks)
            norm2 = self._per_row(chunks.square())
        self.row_norm = norm2.sqrt().clamp_min(1e-3)  # a row the L0 gates closed entirely
        self.row_layer = torch.repeat_interleave(torch.arange(len(weights)),
                                                 torch.tensor(self.rows))

    def chunks(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        parts = []
        for w, s in zip(weights, self.scales, strict=True):
            pad = -w.shape[1] % AE_CHUNK
            parts.append(F.pad(w / s, (0, pad)).reshape(-1, AE_CHUNK))
        return torch.cat(parts)

    def _per_row(self, per_weight: torch.Tensor) -> torch.Tensor:
        """Chunk values summed back into their rows, all layers' rows concatenated."""
        out = []
        start = 0
        for rows, width in zip(self.rows, self.widths, strict=True):
            n = rows * math.ceil(width / AE_CHUNK)
            out.append(per_weight[start:start + n].reshape(rows, -1).sum(dim=1))
            start += n
        return torch.cat(out)

    @torch.no_grad()
    def row_errors(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """Every row's relative error (all layers' rows, concatenated)."""
        diff = self.net(self.chunks(weights)) - self.reference
        return self._per_row(diff.square()).sqrt() / self.row_norm

    def layer_errors(self, weights: Sequence[torch.Tensor]) -> tuple[np.ndarray, float]:
        """Mean relative row error per layer, and over all rows."""
        err = self.row_errors(weights)
        per_layer = torch.zeros(len(self.rows)).index_add_(0, self.row_layer, err)
        per_layer /= torch.tensor(self.rows, dtype=torch.float32)
        return per_layer.numpy().astype(np.float64), float(err.mean())


@dataclass(frozen=True)
class TrainedDigits:
    """Everything an episode reuses: data, the folded trained network, its gates, the
    autoencoder and the feature scales."""

    sizes: tuple[int, ...]
    seed: int
    data: Digits
    state: dict[str, torch.Tensor]  # the L0 network's own state (uniform_l0 starts there)
    weights: list[torch.Tensor]  # weight × deterministic gate
    biases: list[torch.Tensor]
    probs: list[torch.Tensor]  # gate open probabilities
    autoencoder: RowAutoencoder
    weight_scale: np.ndarray  # per layer: trained mean |w|
    grad_scale: np.ndarray  # per layer: mean |∂loss/∂w| of the trained network at 10% density
    seconds: float


_TRAINED: dict[tuple[tuple[int, ...], int], TrainedDigits] = {}


def trained_digits(seed: int = 0, hidden: Sequence[int] = HIDDEN) -> TrainedDigits:
    """The trained model for (hidden, seed), built once per process."""
    key = (tuple(int(h) for h in hidden), int(seed))
    if key not in _TRAINED:
        _TRAINED[key] = _train(*key)
    return _TRAINED[key]


def _train(hidden: tuple[int, ...], seed: int) -> TrainedDigits:
    start = time.perf_counter()
    data = load(seed)
    sizes = (int(data.train.x.shape[1]), *hidden, 10)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_torch_seed("digits-model", seed))
        layers = _build(sizes)
        _l0_fit(layers, data.train, TRAIN_EPOCHS, L0_PENALTY)
    weights, biases, probs = _fold(layers)
    state = {k: v.detach().clone() for k, v in layers.state_dict().items()}
    ae = RowAutoencoder(weights, seed)
    weight_scale = np.array([float(w.abs().mean().clamp_min(1e-12)) for w in weights])
    # The gradient's scale: the trained network pruned to 10% (an episode's typical state)
    # has gradients far from the converged network's near-zero ones.
    masks = _magnitude_masks(weights, 0.1)
    grads = _gradients([w * m for w, m in zip(weights, masks, strict=True)], biases,
                       data.train)
    grad_scale = np.array([float(g[m].abs().mean().clamp_min(1e-12)) if m.any() else 1.0
                           for g, m in zip(grads, masks, strict=True)])
    return TrainedDigits(sizes=sizes, seed=seed, data=data, state=state, weights=weights,
                   biases=biases, probs=probs, autoencoder=ae, weight_scale=weight_scale,
                   grad_scale=grad_scale, seconds=time.perf_counter() - start)


def _magnitude_masks(weights: Sequence[torch.Tensor], density: float) -> list[torch.Tensor]:
    """Global magnitude top-k over all layers: exactly round(density × all) kept (ties go
    to the earlier weight, so the mask is deterministic)."""
    flat = torch.cat([w.abs().reshape(-1) for w in weights])
    return _top_k_masks(flat, density, weights)


def _top_k_masks(score: torch.Tensor, density: float,
                 like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    k = int(round(min(max(density, 0.0), 1.0) * score.numel()))
    keep = torch.zeros(score.numel(), dtype=torch.bool)
    keep[torch.argsort(-score, stable=True)[:k]] = True
    return [m.reshape(w.shape) for m, w in
            zip(torch.split(keep, [w.numel() for w in like]), like, strict=True)]


def _gradients(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
               train: Split) -> list[torch.Tensor]:
    """∂(training cross-entropy)/∂ every weight."""
    ws = [w.detach().clone().requires_grad_(True) for w in weights]
    loss = F.cross_entropy(_forward(ws, [b.detach() for b in biases], train.x), train.y)
    return [g.detach() for g in torch.autograd.grad(loss, ws)]


# -- the problem -------------------------------------------------------------------------
class DigitsProblem:
    """One episode's state over the shared trained digits MLP; see the module docstring."""

    def __init__(self, n_groups: int = 8, seed: int = 0, hidden: Sequence[int] = HIDDEN):
        self.model = trained_digits(seed, hidden)
        self.n_groups = int(n_groups)
        m = self.model
        shapes = zip(m.sizes[:-1], m.sizes[1:], strict=True)
        self.layer_names = [f"fc{i + 1}:{a}x{b}" for i, (a, b) in enumerate(shapes)]
        # Row bounds of every (layer, group); an empty range pads a layer with few rows.
        self.bounds = [[(int(r[0]), int(r[-1]) + 1) if len(r) else (w.shape[0], w.shape[0])
                        for r in np.array_split(np.arange(w.shape[0]), self.n_groups)]
                       for w in m.weights]
        self.total = sum(int(w.numel()) for w in m.weights)
        # Every weight's cell (layer × n_groups + group), flattened layer after layer.
        self._layer_sizes = [int(w.numel()) for w in m.weights]
        self._cell_count = len(m.weights) * self.n_groups
        self._cell = np.concatenate([
            np.repeat(i * self.n_groups + np.arange(self.n_groups),
                      [(r1 - r0) * w.shape[1] for r0, r1 in self.bounds[i]])
            for i, w in enumerate(m.weights)]).astype(np.int64)
        self._probs = np.concatenate([p.reshape(-1).numpy() for p in m.probs]).astype(
            np.float64)
        self._resets: dict[int, tuple[list[torch.Tensor], list[torch.Tensor],
                                      list[torch.Tensor]]] = {}
        self._restore(1.0)  # the trained network itself until the first reset

    # -- state -------------------------------------------------------------------------
    def _restore(self, density: float) -> None:
        """TrainedDigits weights, global magnitude mask at `density`, nothing locked or rounded,
        a fresh optimiser: what `reset` fine-tunes and the magnitude baseline starts from."""
        m = self.model
        self.weights = [nn.Parameter(w.clone()) for w in m.weights]
        self.biases = [nn.Parameter(b.clone()) for b in m.biases]
        self.masks = _magnitude_masks(m.weights, density)
        self._reset_state()

    def _reset_state(self) -> None:
        self.quantized = [torch.zeros_like(mk) for mk in self.masks]
        self.scales = np.zeros((len(self.weights), self.n_groups), dtype=np.float64)
        self.locked = np.zeros((len(self.weights), self.n_groups), dtype=bool)
        self.optimizer = torch.optim.Adam([*self.weights, *self.biases], lr=FINE_TUNE_LR)

    def _effective(self) -> list[torch.Tensor]:
        return [w * mk for w, mk in zip(self.weights, self.masks, strict=True)]

    def _train_epochs(self, epochs: int) -> None:
        """Full-batch Adam on the training split, masks fixed, rounded weights frozen."""
        train = self.model.data.train
        for _ in range(epochs):
            loss = F.cross_entropy(_forward(self._effective(), self.biases, train.x), train.y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            frozen = [w.detach().clone() if q.any() else None
                      for w, q in zip(self.weights, self.quantized, strict=True)]
            self.optimizer.step()
            with torch.no_grad():
                for w, q, f in zip(self.weights, self.quantized, frozen, strict=True):
                    if f is not None:
                        w.copy_(torch.where(q, f, w))

    def kept(self) -> int:
        return int(sum(int(mk.sum()) for mk in self.masks))

    # -- the protocol ------------------------------------------------------------------
    def reset(self, density: float) -> None:
        k = int(round(min(max(density, 0.0), 1.0) * self.total))
        if k not in self._resets:
            self._restore(density)
            self._train_epochs(RESET_EPOCHS)
            self._resets[k] = ([w.detach().clone() for w in self.weights],
                               [b.detach().clone() for b in self.biases],
                               [mk.clone() for mk in self.masks])
        weights, biases, masks = self._resets[k]
        self.weights = [nn.Parameter(w.clone()) for w in weights]
        self.biases = [nn.Parameter(b.clone()) for b in biases]
        self.masks = [mk.clone() for mk in masks]
        self._reset_state()  # the episode's optimiser starts fresh after the reset

    def apply(self, layer: int, group: int, op: int) -> None:
        r0, r1 = self.bounds[layer][group]
        if r0 == r1:
            return
        w, mk, q = self.weights[layer], self.masks[layer], self.quantized[layer]
        prob = self.model.probs[layer][r0:r1]
        block = mk[r0:r1]
        n_kept = int(block.sum())
        step = max(math.ceil(STEP * n_kept), math.ceil(MIN_STEP * block.numel()), 1)
        with torch.no_grad():
            if op == KEEP:
                self.locked[layer, group] = True
                trained_w = self.model.weights[layer][r0:r1]
                score = torch.where(block, -1.0, prob * trained_w.abs()).reshape(-1)
                add = torch.argsort(-score, stable=True)[:min(step, block.numel() - n_kept)]
                flat = block.reshape(-1).clone()
                flat[add] = True
                w[r0:r1].view(-1)[add] = trained_w.reshape(-1)[add]
                q[r0:r1].view(-1)[add] = False
                mk[r0:r1] = flat.reshape(block.shape)
            elif op == PRUNE and not self.locked[layer, group] and n_kept:
                score = torch.where(block, w[r0:r1].abs() * prob, math.inf).reshape(-1)
                drop = torch.argsort(score, stable=True)[:min(step, n_kept)]
                mk[r0:r1].view(-1)[drop] = False
                q[r0:r1].view(-1)[drop] = False
            elif op == QUANTIZE and n_kept:
                kept = w[r0:r1][block]
                scale = float(kept.abs().max()) / 127.0
                if scale > 0:
                    w[r0:r1] = torch.where(block, torch.round(w[r0:r1] / scale) * scale,
                                           w[r0:r1])
                self.scales[layer, group] = scale
                q[r0:r1] = block
            elif op == SHUFFLE and n_kept:
                cols = torch.arange(w.shape[1])
                partner = cols ^ 1
                partner[partner >= w.shape[1]] = cols[partner >= w.shape[1]]
                for t in (w, mk, q):
                    t[r0:r1] = t[r0:r1][:, partner]

    def fine_tune(self, layer: int) -> None:
        """`FINE_TUNE_EPOCHS` warm epochs (the episode's Adam) of every layer: `layer` is
        the protocol's; a pruned layer is repaired by its neighbours too."""
        self._train_epochs(FINE_TUNE_EPOCHS)

    @torch.no_grad()
    def score(self) -> Score:
        eff = self._effective()
        accuracy = _accuracy(eff, self.biases, self.model.data.val)
        _, recon = self.model.autoencoder.layer_errors(eff)
        return Score(error=1.0 - accuracy, density=self.kept() / self.total,
                     reconstruction=recon)

    def enforce(self, density: float) -> None:
        """Close the smallest |w| unlocked kept weights (locked ones only once every
        unlocked one is gone) until kept / all ≤ density, then fine-tune if any closed."""
        excess = self.kept() - math.floor(density * self.total + 1e-9)
        if excess <= 0:
            return
        locked = torch.as_tensor(self.locked.reshape(-1)[self._cell])
        mag = torch.cat([w.detach().abs().reshape(-1) for w in self.weights])
        kept = torch.cat([mk.reshape(-1) for mk in self.masks])
        # Kept unlocked, then kept locked, smallest |w| first in each; closed ones last.
        # Lexicographic through two stable sorts.
        rank = torch.where(kept, locked.to(torch.int8), 2)
        order = torch.argsort(mag, stable=True)
        order = order[torch.argsort(rank[order], stable=True)]
        drop = order[:excess]
        flat_mask = kept.clone()
        flat_mask[drop] = False
        flat_q = torch.cat([q.reshape(-1) for q in self.quantized]) & flat_mask
        sizes = [w.numel() for w in self.weights]
        self.masks = [m.reshape(w.shape) for m, w in
                      zip(torch.split(flat_mask, sizes), self.weights, strict=True)]
        self.quantized = [m.reshape(w.shape) for m, w in
                          zip(torch.split(flat_q, sizes), self.weights, strict=True)]
        self._train_epochs(FINE_TUNE_EPOCHS)

    def allocation(self) -> dict[str, np.ndarray]:
        """keep / integer: every layer's mask and rounded flags, flattened and concatenated
        (the calibration problem's keys); cell_records: kept per (layer, group); layer_kept:
        kept per layer; scales: each group's int8 scale (0 where never quantized)."""
        cells = np.zeros((len(self.weights), self.n_groups), dtype=np.int64)
        for i, mk in enumerate(self.masks):
            for g, (r0, r1) in enumerate(self.bounds[i]):
                cells[i, g] = int(mk[r0:r1].sum())
        return {
            "keep": torch.cat([mk.reshape(-1) for mk in self.masks]).numpy().copy(),
            "integer": torch.cat([(q & mk).reshape(-1) for q, mk in
                                  zip(self.quantized, self.masks, strict=True)]).numpy().copy(),
            "cell_records": cells,
            "layer_kept": cells.sum(axis=1),
            "scales": self.scales.copy(),
        }

    # -- observations ------------------------------------------------------------------
    def features(self) -> np.ndarray:
        """Per (layer, group), in `FEATURES` order. |w| is in units of the layer's trained
        mean |w| and the gradient in units of its mean |gradient| at 10% density, both
        through log1p; gates, shares and entropy are in [0, 1]; the autoencoder error is
        ≈ 1 for a pruned-away layer. A padding group is all zeros, a fully pruned group
        has zero_share 1 and zeros for the statistics of its (no) kept weights."""
        m = self.model
        eff = self._effective()
        grads = _gradients(eff, self.biases, m.data.train)
        recon, _ = m.autoencoder.layer_errors(eff)
        scale_w = np.repeat(m.weight_scale, self._layer_sizes)
        scale_g = np.repeat(m.grad_scale, self._layer_sizes)
        a = np.concatenate([w.detach().abs().reshape(-1).numpy() for w in self.weights]) / scale_w
        g = np.concatenate([x.reshape(-1).numpy() for x in grads]) / scale_g
        keep = np.concatenate([mk.reshape(-1).numpy() for mk in self.masks])
        quant = np.concatenate([q.reshape(-1).numpy() for q in self.quantized]) & keep
        cell, size = self._cell, self._cell_count
        kc = cell[keep]

        def mean_var(values: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            n = np.bincount(at, minlength=size).astype(np.float64)
            s1 = np.bincount(at, values, minlength=size)
            s2 = np.bincount(at, values * values, minlength=size)
            mean = np.divide(s1, n, out=np.zeros(size), where=n > 0)
            var = np.divide(s2, n, out=np.zeros(size), where=n > 0) - mean * mean
            return mean, np.maximum(var, 0.0)

        n_all = np.bincount(cell, minlength=size).astype(np.float64)
        n_kept = np.bincount(kc, minlength=size).astype(np.float64)
        w_mean, w_var = mean_var(a[keep], kc)
        total = np.bincount(kc, a[keep], minlength=size)
        share = a[keep] / np.maximum(total[kc], 1e-300)
        plogp = np.where(share > 0, share * np.log(np.maximum(share, 1e-300)), 0.0)
        entropy = np.divide(-np.bincount(kc, plogp, minlength=size),
                            np.log(np.maximum(n_kept, 2.0)), out=np.zeros(size),
                            where=n_kept > 1)
        g_abs_mean, _ = mean_var(np.abs(g[keep]), kc)
        _, g_var = mean_var(g[keep], kc)
        p_mean, p_var = mean_var(self._probs, cell)
        columns = {
            "weight_mean": np.log1p(w_mean), "weight_var": np.log1p(w_var),
            "weight_entropy": entropy, "gate_mean": p_mean,
            "gate_var": 4.0 * p_var,  # a [0, 1] variable's variance is at most 1/4
            "zero_share": np.divide(n_all - n_kept, n_all, out=np.zeros(size),
                                    where=n_all > 0),
            "grad_mean": np.log1p(g_abs_mean), "grad_var": np.log1p(g_var),
            "reconstruction": np.where(n_all > 0, np.repeat(recon, self.n_groups), 0.0),
            "quantized": np.divide(np.bincount(cell[quant], minlength=size), n_kept,
                                   out=np.zeros(size), where=n_kept > 0),
        }
        out = np.stack([columns[f] for f in FEATURES], axis=1)
        return np.nan_to_num(np.clip(out, -10.0, 10.0)).astype(np.float32).reshape(
            len(self.weights), self.n_groups, len(FEATURES))


# -- evaluation and baselines ------------------------------------------------------------
def test_accuracy(problem: DigitsProblem) -> float:
    """The problem's current network on the test split (never read by score or training)."""
    return _accuracy(problem._effective(), problem.biases, problem.model.data.test)


test_accuracy.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def _report(problem: DigitsProblem) -> dict[str, float]:
    return {"accuracy_val": 1.0 - problem.score().error,
            "accuracy_test": test_accuracy(problem),
            "density": problem.kept() / problem.total}


def magnitude_pruning(density: float, seed: int = 0, epochs: int = BASELINE_EPOCHS,
                      hidden: Sequence[int] = HIDDEN) -> dict[str, float]:
    """The budget method: global magnitude pruning of the trained model to `density`, then
    `epochs` fine-tune epochs (an episode's total by default)."""
    problem = DigitsProblem(seed=seed, hidden=hidden)
    problem._restore(density)
    problem._train_epochs(epochs)
    return _report(problem)


def uniform_l0(density: float, seed: int = 0, epochs: int = BASELINE_EPOCHS,
               hidden: Sequence[int] = HIDDEN) -> dict[str, float]:
    """One λ_L0 for every layer, bisected (log scale) until the L0 fit's expected share of
    open gates is within `L0_TOLERANCE` of `density`; then the globally most likely open
    weights, exactly `density` of them, fine-tuned `epochs` epochs. Every fit starts from
    the trained network with the same seed, so the bisection is deterministic; its own
    L0 epochs are the method's, not counted in `epochs`."""
    problem = DigitsProblem(seed=seed, hidden=hidden)
    m = problem.model
    lo, hi = -3.0, 2.0  # log10 λ
    best: tuple[float, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] | None
    best = None
    for _ in range(L0_BISECTIONS):
        mid = 0.5 * (lo + hi)
        layers = _build(m.sizes)
        layers.load_state_dict(m.state)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_torch_seed("digits-uniform-l0", seed))
            _l0_fit(layers, m.data.train, L0_EPOCHS, 10.0**mid)
        weights, biases, probs = _fold(layers)
        expected = float(torch.cat([p.reshape(-1) for p in probs]).mean())
        miss = abs(expected / density - 1.0)
        if best is None or miss < best[0]:
            best = (miss, weights, biases, probs)
        if miss < L0_TOLERANCE:
            break
        if expected > density:
            lo = mid
        else:
            hi = mid
    assert best is not None
    _, weights, biases, probs = best
    # Most likely open first; the folded magnitude breaks ties among saturated gates.
    score = torch.cat([(p + 1e-3 * w.abs() / (w.abs().max() + 1e-12)).reshape(-1)
                       for p, w in zip(probs, weights, strict=True)])
    problem.weights = [nn.Parameter(w.clone()) for w in weights]
    problem.biases = [nn.Parameter(b.clone()) for b in biases]
    problem.masks = _top_k_masks(score, density, weights)
    problem._reset_state()
    problem._train_epochs(epochs)
    return _report(problem)
