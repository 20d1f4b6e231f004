"""Two implementations of the same training: torch autograd (any device) and fused CPU.

Both draw the same gate noise, start from the same parameters and keep Adam's state in
torch's `state_dict` layout, so checkpoints move between them; they differ only in float
rounding. CUDA keeps the torch path; CPU runs fused.py's one-pass epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from pipeline.fit import fused
from pipeline.fit.model import GatedWeights
from pipeline.fit.operator import SparseOperator
from pipeline.fit.schedules import temperature_at

BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which production uses
OnEpoch = Callable[[int, float, np.ndarray], None]  # (polish epoch, loss, ŷ)


def _data_term(y: np.ndarray, yhat: np.ndarray) -> tuple[float, np.ndarray]:
    """Σ((y − ŷ)/(y + 1))² and its gradient with respect to ŷ."""
    scaled = (y - yhat) / (y + 1.0)
    return float(np.square(scaled).sum()), -2.0 * scaled / (y + 1.0)


def _adam_scalars(lr: float, step: int) -> tuple[float, float]:
    """torch's step_size and sqrt(bias_correction2) for a 1-based step."""
    return lr / (1 - BETAS[0] ** step), math.sqrt(1 - BETAS[1] ** step)


POLISH_DECAY_START = 0.7  # share of the polish run at the full learning rate


def polish_lr(lr: float, epoch: int, epochs: int) -> float:
    """Full rate, then a linear decay to zero over the last 30% of the polish: the exported
    weights are a settled point, not wherever full-size Adam steps left them oscillating
    near a (near-)zero loss."""
    start = POLISH_DECAY_START * epochs
    if epoch < start:
        return lr
    return lr * (epochs - epoch) / (epochs - start)


def adam_groups(lr: float) -> list[dict[str, Any]]:
    """torch.optim.Adam's param_groups for [log_weight, log_alpha], as its state_dict has them."""
    return torch.optim.Adam([torch.zeros(1), torch.zeros(1)], lr=lr).state_dict()["param_groups"]


class TorchBackend:
    """Autograd through l0-python's Hard Concrete and a CSR operator; torch.optim.Adam."""

    def __init__(self, X: sp.csr_matrix, y: np.ndarray, log_weight: torch.Tensor,  # noqa: N803
                 log_alpha: torch.Tensor, params: Any, device: torch.device):
        self.X, self.params, self.device = X, params, device
        self.op = SparseOperator(X, device)
        self.y = torch.as_tensor(y, dtype=torch.float64, device=device)
        self.model = GatedWeights(log_weight.to(device), log_alpha.to(device), params.beta,
                                  params.seed)
        self.optimizer = torch.optim.Adam([self.model.log_weight, self.model.log_alpha],
                                          lr=params.learning_rate)
        self.temperature = temperature_at(params)

    def _data_loss(self, w: torch.Tensor, op: SparseOperator) -> tuple[torch.Tensor, torch.Tensor]:
        yhat = op(w).double()
        r = (self.y - yhat) / (self.y + 1.0)
        return r.square().sum(), yhat

    def l0_step(self, epoch: int, lambda_l0: float) -> tuple[float, np.ndarray, float]:
        """One step; (loss, ŷ, expected open count before the step at the final β)."""
        p = self.params
        with torch.no_grad():  # the count a budget steers: at the β the keep set uses
            self.model.gates.temperature = p.beta
            expected = float(self.model.l0_penalty())
        self.model.gates.temperature = self.temperature(epoch)
        data, yhat = self._data_loss(self.model.sampled(epoch), self.op)
        loss = data + lambda_l0 * self.model.l0_penalty()
        if p.lambda_l2 > 0:
            loss = loss + p.lambda_l2 * self.model.l2_penalty()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), yhat.detach().cpu().numpy(), expected

    @torch.no_grad()
    def sampled_weights(self, epoch: int) -> np.ndarray:
        self.model.gates.temperature = self.temperature(epoch)
        return self.model.sampled(epoch).cpu().numpy().astype(np.float64)

    def parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.log_weight.detach(), self.model.log_alpha.detach()

    def optimizer_state(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load(self, log_weight: torch.Tensor, log_alpha: torch.Tensor,
             optimizer: dict[str, Any]) -> None:
        with torch.no_grad():
            self.model.log_weight.copy_(log_weight)
            self.model.log_alpha.copy_(log_alpha)
        self.optimizer.load_state_dict(optimizer)

    def polish(self, kept_idx: np.ndarray, start: torch.Tensor, epochs: int,
               on_epoch: OnEpoch) -> np.ndarray:
        p = self.params
        op = SparseOperator(self.X[:, kept_idx], self.device)
        log_w = torch.nn.Parameter(start.to(self.device).clone())
        opt = torch.optim.Adam([log_w], lr=p.learning_rate)
        for k in range(epochs):
            data, yhat = self._data_loss(torch.exp(log_w), op)
            loss = data + p.lambda_l2 * torch.exp(log_w).square().sum() if p.lambda_l2 else data
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.param_groups[0]["lr"] = polish_lr(p.learning_rate, k, epochs)
            opt.step()
            on_epoch(k, float(loss.detach()), yhat.detach().cpu().numpy())
        weights = np.zeros(self.X.shape[1], dtype=np.float64)
        weights[kept_idx] = torch.exp(log_w.detach()).cpu().numpy().astype(np.float64)
        return weights


class FusedBackend:
    """CPU: torch's int32 CSR products and fused.py's one elementwise pass per epoch.

    State between epochs: after the update that ended step e, w, the penalty sums and the
    gate cache belong to epoch e's draw, so step e + 1 needs no draw of its own.
    """

    def __init__(self, X: sp.csr_matrix, y: np.ndarray, log_weight: torch.Tensor,  # noqa: N803
                 log_alpha: torch.Tensor, params: Any):
        self.X, self.params, self.y = X, params, y
        self.op = SparseOperator(X, torch.device("cpu"))
        self.n_cols = X.shape[1]
        self.chunks = fused.chunk_bounds(self.n_cols)
        self.lw = log_weight.numpy().astype(np.float32)
        self.la = log_alpha.numpy().astype(np.float32)
        self.moments = np.zeros((4, self.n_cols), np.float32)  # m_lw, v_lw, m_la, v_la
        self.cache = np.empty((3, self.n_cols), np.float32)  # exp(lw), s, P(gate > 0)
        self.w = np.empty(self.n_cols, np.float32)
        self.g = np.zeros(self.n_cols, np.float32)
        self.step = 0
        self.sums = np.zeros((len(self.chunks) - 1, 3), np.float64)
        self.drawn_for: int | None = None  # epoch whose draw w and the cache hold
        self.temperature = temperature_at(params)
        # fused.l0_update's hyper: the betas and lambda_l0 are set before each update.
        self.hyper = np.array([*BETAS, EPS, 0, 0, 0, params.lambda_l0, params.lambda_l2,
                               params.beta * math.log(0.1 / 1.1)], dtype=np.float32)
        fused.set_threads(torch.get_num_threads())
        self._draw(0)  # loads the compiled kernel (~0.2 s) outside the timed epochs

    def _update(self, do_step: bool, epoch: int) -> None:
        """Optionally step from the cached draw's gradient, then draw for `epoch`."""
        if do_step:
            self.hyper[3] = 1 / self.temperature(self.drawn_for)
        beta = self.temperature(epoch)
        self.hyper[4], self.hyper[5] = beta * math.log(0.1 / 1.1), 1 / beta
        step_size, bc2 = _adam_scalars(self.params.learning_rate, self.step + 1)
        fused.l0_update(self.chunks, self.g, self.lw, self.la, *self.moments, *self.cache,
                        self.w, do_step, np.uint64(fused.noise_key(self.params.seed, epoch)),
                        np.float32(step_size), np.float32(bc2), self.hyper, self.sums)
        self.drawn_for = epoch

    def _draw(self, epoch: int) -> None:
        if self.drawn_for != epoch:
            self._update(False, epoch)

    def _gradient(self, op: SparseOperator, w: np.ndarray,
                  out: np.ndarray) -> tuple[float, np.ndarray]:
        """Data term at w, ŷ, and ∂data/∂w written into out."""
        yhat = op.matvec(torch.from_numpy(w)).numpy().astype(np.float64)
        data, r = _data_term(self.y, yhat)
        # np.copyto: torch's copy_ into a from_numpy tensor measured 10× slower here.
        np.copyto(out, op.rmatvec(torch.from_numpy(r.astype(np.float32))).numpy())
        return data, yhat

    def l0_step(self, epoch: int, lambda_l0: float) -> tuple[float, np.ndarray, float]:
        """One step; (loss, ŷ, expected open count before the step at the final β)."""
        self._draw(epoch)
        p = self.params
        data, yhat = self._gradient(self.op, self.w, self.g)
        pen, l2, expected = self.sums.sum(axis=0)
        loss = float(data + lambda_l0 * pen + (p.lambda_l2 * l2 if p.lambda_l2 > 0 else 0.0))
        self.hyper[6] = lambda_l0
        self._update(True, epoch + 1)
        self.step += 1
        return loss, yhat, float(expected)

    def sampled_weights(self, epoch: int) -> np.ndarray:
        self._draw(epoch)
        return self.w.astype(np.float64)

    def parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.lw), torch.from_numpy(self.la)

    def optimizer_state(self) -> dict[str, Any]:
        step = torch.tensor(float(self.step))
        m = [torch.from_numpy(a) for a in self.moments]
        return {"state": {0: {"step": step, "exp_avg": m[0], "exp_avg_sq": m[1]},
                          1: {"step": step.clone(), "exp_avg": m[2], "exp_avg_sq": m[3]}},
                "param_groups": adam_groups(self.params.learning_rate)}

    def load(self, log_weight: torch.Tensor, log_alpha: torch.Tensor,
             optimizer: dict[str, Any]) -> None:
        self.lw[:] = log_weight.cpu().numpy()
        self.la[:] = log_alpha.cpu().numpy()
        state = optimizer["state"]
        if state:
            for i, (k, key) in enumerate(((0, "exp_avg"), (0, "exp_avg_sq"), (1, "exp_avg"),
                                          (1, "exp_avg_sq"))):
                self.moments[i] = state[k][key].cpu().numpy()
            self.step = int(state[0]["step"])
        self.drawn_for = None

    def polish(self, kept_idx: np.ndarray, start: torch.Tensor, epochs: int,
               on_epoch: OnEpoch) -> np.ndarray:
        """Over X's kept columns; when most are kept, over all of X with zeros elsewhere,
        so the polish never holds a second near-full copy of X."""
        full = 2 * len(kept_idx) > self.n_cols
        op = self.op if full else SparseOperator(self.X[:, kept_idx], torch.device("cpu"))
        cols = np.arange(self.n_cols) if full else np.arange(len(kept_idx))
        where = kept_idx if full else cols
        log_w = np.full(len(cols), -np.inf, np.float32)  # exp(−inf) = 0: dropped columns
        log_w[where] = start.cpu().numpy()
        m, v = np.zeros_like(log_w), np.zeros_like(log_w)
        w, g = np.zeros_like(log_w), np.zeros_like(log_w)
        chunks = fused.chunk_bounds(len(cols))
        sums = np.zeros((len(chunks) - 1, 2), np.float64)
        lr, lam2 = self.params.learning_rate, self.params.lambda_l2

        def update(do_step: bool, step: int, step_lr: float) -> None:
            step_size, bc2 = _adam_scalars(step_lr, step)
            fused.polish_update(chunks, g, log_w, m, v, w, do_step, np.float32(step_size),
                                np.float32(bc2), self.hyper, sums)

        update(False, 1, lr)
        for k in range(epochs):
            data, yhat = self._gradient(op, w, g)
            loss = float(data + lam2 * sums[:, 1].sum()) if lam2 else data
            update(True, k + 1, polish_lr(lr, k, epochs))
            on_epoch(k, loss, yhat)
        self.drawn_for = None
        weights = np.zeros(self.n_cols, dtype=np.float64)
        weights[kept_idx] = w[where]
        return weights
