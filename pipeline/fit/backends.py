"""Two implementations of the same training: torch autograd (any device) and fused CPU.

Both draw the same gate noise, start from the same parameters and keep Adam's state in
torch's `state_dict` layout, so checkpoints move between them; they differ only in float
rounding. CUDA keeps the torch path; CPU runs fused.py's one pass over X per epoch.
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
from pipeline.fit.stopping import PolishSchedule

BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which production uses
OnEpoch = Callable[[int, float, np.ndarray], None]  # (polish epoch, loss, ŷ)


def _data_term(y: np.ndarray, yhat: np.ndarray) -> tuple[float, np.ndarray]:
    """Σ((y − ŷ)/(y + 1))² and its gradient with respect to ŷ."""
    scaled = (y - yhat) / (y + 1.0)
    return float(np.square(scaled).sum()), -2.0 * scaled / (y + 1.0)


def _adam_scalars(lr: float, step: int) -> tuple[float, float]:
    """torch's step_size and sqrt(bias_correction2) for a 1-based step."""
    return lr / (1 - BETAS[0] ** step), math.sqrt(1 - BETAS[1] ** step)


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

    def polish(self, kept_idx: np.ndarray, start: torch.Tensor, schedule: PolishSchedule,
               on_epoch: OnEpoch) -> np.ndarray:
        p = self.params
        op = SparseOperator(self.X[:, kept_idx], self.device)
        log_w = torch.nn.Parameter(start.to(self.device).clone())
        opt = torch.optim.Adam([log_w], lr=p.learning_rate)
        k, done = 0, schedule.total == 0
        while not done:
            data, yhat = self._data_loss(torch.exp(log_w), op)
            loss = data + p.lambda_l2 * torch.exp(log_w).square().sum() if p.lambda_l2 else data
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.param_groups[0]["lr"] = schedule.lr(k)
            opt.step()
            value = float(loss.detach())
            on_epoch(k, value, yhat.detach().cpu().numpy())
            done = schedule.update(k, value)
            k += 1
        weights = np.zeros(self.X.shape[1], dtype=np.float64)
        weights[kept_idx] = torch.exp(log_w.detach()).cpu().numpy().astype(np.float64)
        return weights


class FusedBackend:
    """CPU: fused.py's one pass over X per epoch (X by columns, the only copy it keeps).

    State between epochs: after the pass that ended step e, ŷ and the penalty sums belong
    to epoch e's draw, so step e + 1 needs no draw of its own.
    """

    def __init__(self, X: sp.csr_matrix, y: np.ndarray, log_weight: torch.Tensor,  # noqa: N803
                 log_alpha: torch.Tensor, params: Any, threads: int | None = None,
                 rows: np.ndarray | None = None):
        """`rows`: a mask of X's rows to fit (y has one entry per selected row)."""
        self.params, self.y = params, y
        self.X = fused.ColumnMatrix.from_csr(X, rows)
        self.n_cols = self.X.shape[1]
        self.threads = threads or torch.get_num_threads()
        self.runner = fused.ChunkRunner(self.n_cols, self.threads)
        self.state = np.zeros((7, self.n_cols), np.float32)  # fused.LW ... fused.GATE
        self.state[fused.LW] = log_weight.numpy()
        self.state[fused.LA] = log_alpha.numpy()
        self.part = np.empty((self.runner.n_chunks, len(y)), np.float64)
        self.sums = np.zeros((self.runner.n_chunks, 3), np.float64)
        self.yhat = np.zeros(len(y))
        self.step = 0
        self.drawn_for: int | None = None  # epoch whose draw ŷ and the sums hold
        self.temperature = temperature_at(params)
        self.hyper = np.zeros(len(fused.HYPER), np.float32)
        for name, value in (("beta1", BETAS[0]), ("beta2", BETAS[1]), ("eps", EPS),
                            ("lambda_l0", params.lambda_l0), ("lambda_l2", params.lambda_l2),
                            ("shift_final", _shift(params.beta))):
            self.hyper[fused.H[name]] = value
        self._draw(0)  # loads the compiled kernel (~0.2 s) outside the timed epochs

    @property
    def lw(self) -> np.ndarray:
        return self.state[fused.LW]

    @property
    def la(self) -> np.ndarray:
        return self.state[fused.LA]

    def _pass(self, do_step: bool, epoch: int, r: np.ndarray) -> None:
        """Optionally step from the current draw's gradient (r = ∂data/∂ŷ), then draw for
        `epoch`: ŷ and the penalty sums of that draw."""
        h, H = self.hyper, fused.H  # noqa: N806
        if do_step:
            beta = self.temperature(self.drawn_for)
            h[H["inv_beta_step"]], h[H["shift_step"]] = 1 / beta, _shift(beta)
            h[H["step_size"]], h[H["bc2_sqrt"]] = _adam_scalars(self.params.learning_rate,
                                                                self.step + 1)
        beta = self.temperature(epoch)
        h[H["inv_beta_draw"]], h[H["shift_draw"]] = 1 / beta, _shift(beta)
        self.runner.run(fused.l0_chunk, self.X.indptr, self.X.rows, self.X.vals, r,
                        self.state, h, np.uint64(fused.noise_key(self.params.seed, epoch)),
                        do_step, self.part, self.sums)
        self.yhat = self.part.sum(axis=0)  # chunk partials, added in chunk order
        self.drawn_for = epoch

    def _draw(self, epoch: int) -> None:
        if self.drawn_for != epoch:
            self._pass(False, epoch, np.zeros(len(self.y), np.float32))

    def l0_step(self, epoch: int, lambda_l0: float) -> tuple[float, np.ndarray, float]:
        """One step; (loss, ŷ, expected open count before the step at the final β)."""
        self._draw(epoch)
        p = self.params
        yhat = self.yhat
        data, r = _data_term(self.y, yhat)
        pen, l2, expected = self.sums.sum(axis=0)
        loss = float(data + lambda_l0 * pen + (p.lambda_l2 * l2 if p.lambda_l2 > 0 else 0.0))
        self.hyper[fused.H["lambda_l0"]] = lambda_l0
        self._pass(True, epoch + 1, r.astype(np.float32))
        self.step += 1
        return loss, yhat, float(expected)

    def sampled_weights(self, epoch: int) -> np.ndarray:
        key = np.uint64(fused.noise_key(self.params.seed, epoch))
        w = fused.sampled_weights(self.lw, self.la, key,
                                  np.float32(1 / self.temperature(epoch)))
        return w.astype(np.float64)

    def parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.lw), torch.from_numpy(self.la)

    def optimizer_state(self) -> dict[str, Any]:
        step = torch.tensor(float(self.step))
        m = [torch.from_numpy(self.state[i]) for i in (fused.M_LW, fused.V_LW, fused.M_LA,
                                                      fused.V_LA)]
        return {"state": {0: {"step": step, "exp_avg": m[0], "exp_avg_sq": m[1]},
                          1: {"step": step.clone(), "exp_avg": m[2], "exp_avg_sq": m[3]}},
                "param_groups": adam_groups(self.params.learning_rate)}

    def load(self, log_weight: torch.Tensor, log_alpha: torch.Tensor,
             optimizer: dict[str, Any]) -> None:
        self.state[fused.LW] = log_weight.cpu().numpy()
        self.state[fused.LA] = log_alpha.cpu().numpy()
        state = optimizer["state"]
        if state:
            for row, (k, key) in ((fused.M_LW, (0, "exp_avg")), (fused.V_LW, (0, "exp_avg_sq")),
                                  (fused.M_LA, (1, "exp_avg")), (fused.V_LA, (1, "exp_avg_sq"))):
                self.state[row] = state[k][key].cpu().numpy()
            self.step = int(state[0]["step"])
        self.drawn_for = None

    def polish(self, kept_idx: np.ndarray, start: torch.Tensor, schedule: PolishSchedule,
               on_epoch: OnEpoch) -> np.ndarray:
        """Over X's kept columns only: the pass skips the others, X is not copied."""
        cols = np.ascontiguousarray(kept_idx, dtype=np.int64)
        runner = fused.ChunkRunner(len(cols), self.threads)
        state = np.zeros((3, len(cols)), np.float32)  # fused.PW, PM, PV
        state[fused.PW] = start.cpu().numpy()
        part = np.empty((runner.n_chunks, len(self.y)), np.float64)
        sums = np.zeros((runner.n_chunks, 3), np.float64)
        h, H = self.hyper.copy(), fused.H  # noqa: N806
        lam2 = self.params.lambda_l2
        r = np.zeros(len(self.y), np.float32)

        def run(do_step: bool) -> np.ndarray:
            runner.run(fused.polish_chunk, cols, self.X.indptr, self.X.rows, self.X.vals, r,
                       state, h, do_step, part, sums)
            return part.sum(axis=0)

        yhat = run(False)
        k, done = 0, schedule.total == 0
        while not done:
            data, grad = _data_term(self.y, yhat)
            loss = float(data + lam2 * sums[:, 1].sum()) if lam2 else data
            r[:] = grad
            h[H["step_size"]], h[H["bc2_sqrt"]] = _adam_scalars(schedule.lr(k), k + 1)
            yhat_next = run(True)
            on_epoch(k, loss, yhat)
            done = schedule.update(k, loss)
            yhat = yhat_next
            k += 1
        self.drawn_for = None
        weights = np.zeros(self.n_cols, dtype=np.float64)
        weights[cols] = fused.exp32(state[fused.PW])
        return weights


def _shift(beta: float) -> float:
    """β·ln(−γ/ζ): P(gate > 0) = sigmoid(log_alpha − shift)."""
    return beta * math.log(0.1 / 1.1)
