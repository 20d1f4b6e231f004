"""The L0 fit: gated training, then a fixed keep-set polished with L0 off.

Production exported `exp(log_weight)·E[gate]`, a model it never trained (17% mean error
against 2% for the sampled model it did train). Here the keep-set is fixed after the L0
phase and the kept weights are refit with plain gradient steps; the exported weights are
exactly the polished ones and every reported error is computed from them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from pipeline.errors import InputError
from pipeline.fit.checkpoint import load_checkpoint, save_checkpoint
from pipeline.fit.model import GatedWeights
from pipeline.fit.operator import SparseOperator
from pipeline.fit.params import TRAJECTORY_FIELDS, FitParams
from pipeline.hashing import sha256_array

MIN_GATE = 1e-6  # floor for log(E[gate]) of a kept column when seeding the polish


@dataclass
class FitResult:
    weights: np.ndarray  # float64, one per column; exactly what was polished
    estimates: np.ndarray  # X·weights for every target (float64)
    y: np.ndarray
    selected: np.ndarray
    achievable: np.ndarray
    target_names: list[str]
    kept: int
    final_loss: float  # Σ over selected targets of ((y − X·w)/(y + 1))² at the exported weights
    loss_history: dict[str, list[float]]
    log: pd.DataFrame
    error_summaries: dict[str, dict[str, float]]
    identity: dict[str, Any]
    params: FitParams
    device: str
    epochs_per_second: float
    out_dir: Path | None = None
    targets: pd.DataFrame | None = None


def rel_error(estimate: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The loss's own relative error, (ŷ − y)/(y + 1), so reports and training agree."""
    return (estimate - y) / (y + 1.0)


def error_summary(estimate: np.ndarray, y: np.ndarray) -> dict[str, float]:
    e = np.abs(rel_error(estimate, y))
    if e.size == 0:
        return {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0.0}
    return {"mean": float(e.mean()), "median": float(np.median(e)),
            "p90": float(np.quantile(e, 0.9)), "max": float(e.max())}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "device", "CUDA requested but no CUDA device is available",
                         "pass --device cpu (or auto), or run on a machine with a GPU")
    if device not in ("cpu", "cuda"):
        raise InputError(None, "device", f"unknown device {device!r}",
                         "use one of ['auto', 'cpu', 'cuda']")
    return torch.device(device)


def check_inputs(
    X: sp.csr_matrix, y: np.ndarray, initial_weights: np.ndarray,  # noqa: N803
    selected: np.ndarray, names: list[str], source: str | Path | None = None,
) -> None:
    """Every problem that would otherwise surface as NaN loss mid-training, caught up front."""
    n_t, n_c = X.shape
    fix = "rebuild the calibration package"
    for name, arr, n in (("targets.value", y, n_t), ("initial_weights", initial_weights, n_c),
                         ("selected", selected, n_t), ("target_name", names, n_t)):
        if len(arr) != n:
            raise InputError(source, name, f"has {len(arr)} entries, X implies {n}", fix)
    if not np.isfinite(X.data).all():
        raise InputError(source, "X", f"{int((~np.isfinite(X.data)).sum())} NaN/inf entries",
                         fix)
    bad = ~np.isfinite(y)
    if bad.any():
        raise InputError(source, "targets.value", f"NaN/inf for {_names(names, bad)}", fix)
    neg = y < 0
    if neg.any():
        raise InputError(source, "targets.value", f"negative target for {_names(names, neg)}",
                         "fix the target values or exclude those targets in the target config")
    iw = initial_weights
    if not (np.isfinite(iw).all() and (iw > 0).all()):
        raise InputError(source, "initial_weights", "must be finite and > 0 (log-weights)", fix)
    empty = selected & (np.diff(X.indptr) == 0)
    if empty.any():
        raise InputError(source, "X", f"selected target rows with no non-zeros: "
                         f"{_names(names, empty)}",
                         "exclude those targets in the target config (no record can hit them)")


def _names(names: list[str], mask: np.ndarray, limit: int = 5) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(names[i]) for i in idx[:limit])
    return shown + (f" and {len(idx) - limit} more" if len(idx) > limit else "")


def input_identity(
    X: sp.csr_matrix, y: np.ndarray, initial_weights: np.ndarray,  # noqa: N803
    selected: np.ndarray, params: FitParams,
) -> dict[str, Any]:
    data_hash = "|".join(sha256_array(a) for a in (X.indptr, X.indices, X.data, y,
                                                   initial_weights))
    return {
        "package_hash": sha256_array(np.frombuffer(data_hash.encode(), dtype=np.uint8)),
        "selection_hash": sha256_array(selected.astype(bool)),
        **{k: getattr(params, k) for k in TRAJECTORY_FIELDS},
    }


def fit(
    X: sp.spmatrix,  # noqa: N803
    y: np.ndarray,
    initial_weights: np.ndarray,
    params: FitParams,
    *,
    selected: np.ndarray | None = None,
    target_names: list[str] | None = None,
    checkpoint_path: str | Path | None = None,
    resume_from: str | Path | None = None,
    source: str | Path | None = None,
) -> FitResult:
    """Fit weights so X·w hits y on the selected rows; see the module docstring."""
    params.validate()
    device = resolve_device(params.device)
    X = sp.csr_matrix(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float64)
    initial_weights = np.asarray(initial_weights, dtype=np.float64)
    n_t, n_c = X.shape
    names = list(target_names) if target_names is not None else [str(i) for i in range(n_t)]
    sel = np.ones(n_t, bool) if selected is None else np.asarray(selected, dtype=bool)
    check_inputs(X, y, initial_weights, sel, names, source)
    if not sel.any():
        raise InputError(source, "target_config", "no targets selected",
                         "include at least one target in the target config")
    identity = input_identity(X, y, initial_weights, sel, params)
    trainer = _Trainer(X[sel], y[sel], initial_weights, params, device)
    if resume_from is not None:
        trainer.restore(load_checkpoint(resume_from, identity, params.epochs, device))
    t0 = time.perf_counter()
    start = trainer.epoch
    trainer.train_l0(params.epochs, identity, checkpoint_path)
    l0_seconds = time.perf_counter() - t0
    if checkpoint_path is not None:
        save_checkpoint(checkpoint_path, trainer.state(identity))
    sampled_w = trainer.sampled_weights()
    production_w = trainer.model.production_export().cpu().numpy().astype(np.float64)
    weights = trainer.polish()

    X64 = X.astype(np.float64)
    estimates = X64 @ weights
    y_sel = y[sel]
    summaries = {
        "exported": error_summary(estimates[sel], y_sel),
        "production_deterministic_export": error_summary(X64[sel] @ production_w, y_sel),
        "sampled_gates": error_summary(X64[sel] @ sampled_w, y_sel),
    }
    ran = params.epochs - start
    return FitResult(
        weights=weights, estimates=estimates, y=y, selected=sel,
        achievable=np.diff(X.indptr) > 0, target_names=names,
        kept=int((weights > 0).sum()),
        final_loss=float(np.square(rel_error(estimates[sel], y_sel)).sum()),
        loss_history=trainer.history(), log=trainer.log_frame(names, sel, y, X),
        error_summaries=summaries, identity=identity, params=params, device=str(device),
        epochs_per_second=ran / l0_seconds if ran and l0_seconds > 0 else math.nan,
    )


class _Trainer:
    def __init__(self, X: sp.csr_matrix, y: np.ndarray, initial_weights: np.ndarray,  # noqa: N803
                 params: FitParams, device: torch.device):
        self.X = X
        self.params = params
        self.device = device
        self.op = SparseOperator(X, device)
        self.y = torch.as_tensor(y, dtype=torch.float64, device=device)
        self.generator = torch.Generator(device=device).manual_seed(params.seed)
        self.model = GatedWeights(initial_weights, params.beta, self.generator)
        self.optimizer = torch.optim.Adam([self.model.log_weight, self.model.log_alpha],
                                          lr=params.learning_rate)
        self.epoch = 0
        self.losses: list[float] = []
        self.polish_losses: list[float] = []
        self.log_epochs: list[int] = []
        self.log_estimates: list[np.ndarray] = []
        self.log_losses: list[float] = []

    def _data_loss(self, w: torch.Tensor, op: SparseOperator) -> tuple[torch.Tensor, torch.Tensor]:
        yhat = op(w).double()
        r = (self.y - yhat) / (self.y + 1.0)
        return r.square().sum(), yhat

    def _maybe_log(self, epoch: int, last: int, yhat: torch.Tensor, loss: float) -> None:
        if epoch % self.params.log_freq == 0 or epoch == last:
            self.log_epochs.append(epoch)
            self.log_estimates.append(yhat.detach().cpu().numpy())
            self.log_losses.append(loss)

    def train_l0(self, epochs: int, identity: dict[str, Any], ckpt: str | Path | None) -> None:
        p = self.params
        last = epochs + p.polish_epochs
        while self.epoch < epochs:
            data, yhat = self._data_loss(self.model.sampled(), self.op)
            loss = data + p.lambda_l0 * self.model.l0_penalty()
            if p.lambda_l2 > 0:
                loss = loss + p.lambda_l2 * self.model.l2_penalty()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.epoch += 1
            value = float(loss.detach())
            self.losses.append(value)
            self._maybe_log(self.epoch, last, yhat, value)
            if ckpt is not None and self.epoch % p.checkpoint_every == 0 and self.epoch < epochs:
                save_checkpoint(ckpt, self.state(identity))

    @torch.no_grad()
    def sampled_weights(self) -> np.ndarray:
        """One gate draw from a copy of the generator, so the checkpointed stream is untouched."""
        gen = torch.Generator(device=self.device)
        gen.set_state(self.generator.get_state())
        self.model.gates.generator = gen
        try:
            return self.model.sampled().cpu().numpy().astype(np.float64)
        finally:
            self.model.gates.generator = self.generator

    def polish(self) -> np.ndarray:
        """Refit the kept columns with the gates fixed (1 kept, 0 dropped) and L0 off."""
        p = self.params
        with torch.no_grad():
            keep = self.model.keep_mask()
            gate = self.model.gates._deterministic_gates().clamp_min(MIN_GATE)
            start = (self.model.log_weight + torch.log(gate))[keep]
        kept_idx = keep.cpu().numpy().nonzero()[0]
        op = SparseOperator(self.X[:, kept_idx], self.device)
        log_w = torch.nn.Parameter(start.clone())
        opt = torch.optim.Adam([log_w], lr=p.learning_rate)
        last = p.epochs + p.polish_epochs
        for k in range(p.polish_epochs):
            data, yhat = self._data_loss(torch.exp(log_w), op)
            loss = data + p.lambda_l2 * torch.exp(log_w).square().sum() if p.lambda_l2 else data
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            self.polish_losses.append(value)
            self._maybe_log(p.epochs + k + 1, last, yhat, value)
        weights = np.zeros(self.X.shape[1], dtype=np.float64)
        weights[kept_idx] = torch.exp(log_w.detach()).cpu().numpy().astype(np.float64)
        return weights

    def state(self, identity: dict[str, Any]) -> dict[str, Any]:
        n_logs = len(self.log_epochs)
        return {
            "identity": identity,
            "epoch": self.epoch,
            "log_weight": self.model.log_weight.detach().clone(),
            "log_alpha": self.model.log_alpha.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "rng_state": self.generator.get_state(),
            "losses": torch.tensor(self.losses, dtype=torch.float64),
            "log_epochs": torch.tensor(self.log_epochs, dtype=torch.int64),
            "log_estimates": torch.from_numpy(np.array(self.log_estimates, dtype=np.float64))
            if n_logs else torch.zeros((0, self.X.shape[0]), dtype=torch.float64),
            "log_losses": torch.tensor(self.log_losses, dtype=torch.float64),
        }

    def restore(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.model.log_weight.copy_(state["log_weight"])
            self.model.log_alpha.copy_(state["log_alpha"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["rng_state"].cpu())
        self.epoch = int(state["epoch"])
        self.losses = state["losses"].tolist()
        # Logs after the checkpoint's own L0 end (its final epoch, polish) are redone here.
        keep = [i for i, e in enumerate(state["log_epochs"].tolist()) if e <= self.epoch
                and e % self.params.log_freq == 0]
        self.log_epochs = [int(state["log_epochs"][i]) for i in keep]
        self.log_estimates = [state["log_estimates"][i].cpu().numpy() for i in keep]
        self.log_losses = [float(state["log_losses"][i]) for i in keep]

    def history(self) -> dict[str, list[float]]:
        return {"l0": list(self.losses), "polish": list(self.polish_losses)}

    def log_frame(self, names: list[str], sel: np.ndarray, y: np.ndarray,
                  X: sp.csr_matrix) -> pd.DataFrame:  # noqa: N803
        idx = np.flatnonzero(sel)
        n = len(idx)
        est = np.concatenate(self.log_estimates) if self.log_estimates else np.zeros(0)
        target = np.tile(y[idx], len(self.log_epochs))
        error = est - target
        rel = error / (target + 1.0)
        return pd.DataFrame({
            "target_name": np.tile(np.asarray(names, dtype=object)[idx], len(self.log_epochs)),
            "estimate": est, "target": target,
            "epoch": np.repeat(np.asarray(self.log_epochs, dtype=np.int64), n),
            "error": error, "rel_error": rel, "abs_error": np.abs(error),
            "rel_abs_error": np.abs(rel),
            "loss": np.repeat(np.asarray(self.log_losses, dtype=np.float64), n),
            "achievable": np.tile(np.diff(X.indptr)[idx] > 0, len(self.log_epochs)),
        })
