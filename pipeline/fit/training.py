"""The L0 fit: gated training, then a fixed keep-set polished with L0 off.

Production exported `exp(log_weight)·E[gate]`, a model it never trained (17% mean error
against 2% for the sampled model it did train). Here the keep-set is fixed after the L0
phase and the kept weights are refit with plain gradient steps; the exported weights are
exactly the polished ones and every reported error is computed from them.

Under a record budget (`records`) λ_L0 is steered during the L0 phase (`schedules.py`) and
the keep-set is the `records` columns most likely open; with `hybrid_share`, that share of
the budget is a design-weighted random sample whose gates stay open, fitted together with
the rest.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from pipeline.core.errors import InputError
from pipeline.core.hashing import sha256_array, sha256_text
from pipeline.core.progress import Progress
from pipeline.fit.allocation import Allocation
from pipeline.fit.backends import FusedBackend, TorchBackend
from pipeline.fit.checkpoint import load_checkpoint, save_checkpoint
from pipeline.fit.device import describe, resolve_device
from pipeline.fit.model import GatedWeights, initial_parameters, open_gates
from pipeline.fit.params import TRAJECTORY_FIELDS, FitParams
from pipeline.fit.schedules import BudgetController
from pipeline.fit.selection import PINNED_OPEN, design_weighted_sample, top_k
from pipeline.fit.stopping import L0Stopping, PolishSchedule

MIN_GATE = 1e-6  # floor for log(E[gate]) of a kept column when seeding the polish
DIAG_BLOCK = 1 << 21  # non-zeros per float64 row block of the final products


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
    budget: dict[str, Any]  # the keep set: open gates at the L0 phase's end, λ_L0 per epoch
    stopping: dict[str, Any]  # per phase: epochs run, the maximum, where it converged, the rule
    targets: pd.DataFrame | None = None
    frontier: pd.DataFrame | None = None  # this and earlier fits' points (fit_package)


def rel_error(estimate: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The loss's own relative error, (ŷ − y)/(y + 1), so reports and training agree."""
    return (estimate - y) / (y + 1.0)


def error_summary(estimate: np.ndarray, y: np.ndarray) -> dict[str, float]:
    e = np.abs(rel_error(estimate, y))
    if e.size == 0:
        return {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0.0}
    return {"mean": float(e.mean()), "median": float(np.median(e)),
            "p90": float(np.quantile(e, 0.9)), "max": float(e.max())}


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
    neg = (y < 0) & selected  # unselected (e.g. held-out) targets may be negative
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
        "package_hash": sha256_text(data_hash),
        "selection_hash": sha256_array(selected.astype(bool)),
        **{k: getattr(params, k) for k in TRAJECTORY_FIELDS},
        "schedule_epochs": params.schedule_epochs,
    }


def products_f64(X: sp.csr_matrix, vectors: list[np.ndarray]) -> list[np.ndarray]:  # noqa: N803
    """X·v in float64 for each v, equal to X.astype(float64) @ v, one row block at a time."""
    out = [np.empty(X.shape[0]) for _ in vectors]
    bounds = np.searchsorted(X.indptr, np.arange(0, X.nnz + DIAG_BLOCK, DIAG_BLOCK))
    bounds = np.unique(np.concatenate([[0], np.minimum(bounds, X.shape[0]), [X.shape[0]]]))
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        block = X[a:b].astype(np.float64)
        for o, v in zip(out, vectors, strict=True):
            o[a:b] = block @ v
    return out


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
    design_weights: np.ndarray | None = None,
    allocation: Allocation | None = None,
) -> FitResult:
    """Fit weights so X·w hits y on the selected rows; see the module docstring.

    `design_weights` (one per column, default the initial weights) weight the hybrid's
    random draw. An `allocation` (a learned one, `pipeline.sparsity`) replaces the budget's
    keep set with its own and rounds its integer columns to whole households; it must have
    been searched from this very L0 phase.
    """
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
    check_budget(params, n_c, design_weights, source)
    identity = input_identity(X, y, initial_weights, sel, params)
    if allocation is not None:
        check_allocation(allocation, identity, n_c, source)
    trainer = _Trainer(X, sel, y[sel], initial_weights, params, device,
                       initial_weights if design_weights is None else design_weights,
                       allocation)
    if resume_from is not None:
        trainer.restore(load_checkpoint(resume_from, identity, params.epochs, device))
    t0 = time.perf_counter()
    start = trainer.epoch
    trainer.train_l0(params.epochs, identity, checkpoint_path)
    l0_seconds = time.perf_counter() - t0
    if checkpoint_path is not None:
        save_checkpoint(checkpoint_path, trainer.state(identity))
    sampled_w = trainer.backend.sampled_weights(trainer.epoch)
    production_w = trainer.gates().production_export().cpu().numpy().astype(np.float64)
    weights = trainer.polish()

    estimates, production_est, sampled_est = products_f64(X, [weights, production_w, sampled_w])
    y_sel = y[sel]
    summaries = {
        "exported": error_summary(estimates[sel], y_sel),
        "production_deterministic_export": error_summary(production_est[sel], y_sel),
        "sampled_gates": error_summary(sampled_est[sel], y_sel),
    }
    ran = trainer.epoch - start
    return FitResult(
        weights=weights, estimates=estimates, y=y, selected=sel,
        achievable=np.diff(X.indptr) > 0, target_names=names,
        kept=int((weights > 0).sum()),
        final_loss=float(np.square(rel_error(estimates[sel], y_sel)).sum()),
        loss_history=trainer.history(), log=trainer.log_frame(names, sel, y, X),
        error_summaries=summaries, identity=identity, params=params,
        device=describe(device, getattr(trainer.backend, "threads", None)),
        epochs_per_second=ran / l0_seconds if ran and l0_seconds > 0 else math.nan,
        budget=trainer.budget_record(int((weights > 0).sum())),
        stopping={"l0": trainer.stop.record(trainer.epoch),
                  "polish": trainer.polish_schedule.record(len(trainer.polish_losses))},
    )


def check_allocation(allocation: Allocation, identity: dict[str, Any], n_columns: int,
                     source: str | Path | None) -> None:
    searched = allocation.meta.get("lineage", {}).get("trained_model")
    if searched != identity_digest(identity):
        raise InputError(source, "sparsity_allocation", "the allocation was searched from "
                         "another L0 phase (other package, targets or fit parameters)",
                         "rerun the allocation search with this fit's settings, or set "
                         "allocation: budget")
    if len(allocation.keep) != n_columns:
        raise InputError(source, "sparsity_allocation", f"{len(allocation.keep):,} columns, "
                         f"the package has {n_columns:,}", "rerun the allocation search")


def identity_digest(identity: dict[str, Any]) -> str:
    """A fit's identity (package, selection, trajectory) as one hash, which an allocation
    records for the L0 phase its search started from."""
    return sha256_text(json.dumps(identity, sort_keys=True, default=str))


def check_budget(params: FitParams, n_columns: int, design_weights: np.ndarray | None,
                 source: str | Path | None) -> None:
    """A budget must leave something to choose; the hybrid's draw needs positive weights."""
    if params.records is not None and params.records > n_columns:
        raise InputError(source, "fit.records", f"a budget of {params.records:,} records "
                         f"exceeds the package's {n_columns:,} columns",
                         f"set records to at most {n_columns:,}, or unset it to steer by "
                         "lambda_l0")
    if design_weights is not None and (len(design_weights) != n_columns or not (
            np.isfinite(design_weights).all() and (design_weights > 0).all())):
        raise InputError(source, "design_weights", f"need {n_columns:,} finite positive "
                         "weights, one per column", "rebuild the calibration package")


class _Trainer:
    def __init__(self, X: sp.csr_matrix, sel: np.ndarray, y: np.ndarray,  # noqa: N803
                 initial_weights: np.ndarray, params: FitParams, device: torch.device,
                 design_weights: np.ndarray, allocation: Allocation | None = None):
        self.params = params
        self.allocation = allocation
        self.n_targets = int(sel.sum())
        n_columns = X.shape[1]
        log_weight, log_alpha = initial_parameters(initial_weights, params.seed)
        if params.records is not None and params.hybrid_share > 0:
            m = round(params.hybrid_share * params.records)
            drawn = design_weighted_sample(design_weights, m, params.seed)
            log_alpha[torch.from_numpy(drawn)] = PINNED_OPEN
        self.controller = None if params.records is None else BudgetController(
            params.records, n_columns, params.epochs, params.lambda_l0)
        self.stop = L0Stopping(params, self.controller.ramp if self.controller else 0)
        self.polish_schedule = PolishSchedule(params, params.polish_epochs)
        self.lambda_next = params.lambda_l0
        self.lambdas: list[float] = []  # λ_L0 of each L0 epoch
        self.expected_open: list[float] = []  # Σ P(gate > 0) of each L0 epoch, before its step
        self.open_at_end: int | None = None
        self.backend: TorchBackend | FusedBackend
        if device.type == "cpu":  # takes the selected rows itself, without a copy of X
            self.backend = FusedBackend(X, y, log_weight, log_alpha, params, rows=sel)
        else:
            X_sel = X if sel.all() else X[sel]  # noqa: N806
            self.backend = TorchBackend(X_sel, y, log_weight, log_alpha, params, device)
        self.epoch = 0
        self.losses: list[float] = []
        self.polish_losses: list[float] = []
        self.log_epochs: list[int] = []
        self.log_estimates: list[np.ndarray] = []
        self.log_losses: list[float] = []

    def _maybe_log(self, epoch: int, last: int | None, yhat: np.ndarray, loss: float) -> None:
        """Every log_freq epochs, and the last (`last`; None: not known yet)."""
        if epoch % self.params.log_freq == 0 or epoch == last:
            self.log_epochs.append(epoch)
            self.log_estimates.append(yhat)
            self.log_losses.append(loss)

    def train_l0(self, epochs: int, identity: dict[str, Any], ckpt: str | Path | None) -> None:
        """Up to `epochs` L0 epochs; fewer when the stopping rule says the phase converged.
        The epoch it stopped at is logged (it may fall between log points)."""
        p = self.params
        with Progress("fit: L0 phase", epochs, "epoch") as progress:
            progress.update(self.epoch, kept=self.kept())  # a resumed fit starts part-way
            converged = self.stop.stopped_at is not None
            while self.epoch < epochs and not converged:
                value, yhat, expected = self.backend.l0_step(self.epoch, self.lambda_next)
                self.lambdas.append(self.lambda_next)
                self.expected_open.append(expected)
                if self.controller is not None:
                    self.lambda_next = self.controller.update(self.epoch, expected)
                self.epoch += 1
                self.losses.append(value)
                converged = self.stop.update(self.epoch, value, expected)
                ends = converged or (self.epoch == epochs and p.polish_epochs == 0)
                self._maybe_log(self.epoch, self.epoch if ends else None, yhat, value)
                if ckpt is not None and self.epoch % p.checkpoint_every == 0 \
                        and self.epoch < epochs:
                    save_checkpoint(ckpt, self.state(identity))
                # Counting open gates reads every column: only as often as the log.
                kept = {"kept": self.kept()} if self.epoch % p.log_freq == 0 else {}
                progress.update(loss=value, **kept)

    def kept(self) -> int:
        """Records whose gate is more likely open than closed (the set the polish keeps
        without a budget)."""
        return open_gates(self.backend.parameters()[1], self.params.beta)

    def gates(self) -> GatedWeights:
        """The trained parameters in l0-python's Hard Concrete, on CPU, for the exports."""
        log_weight, log_alpha = self.backend.parameters()
        return GatedWeights(log_weight.cpu().clone(), log_alpha.cpu().clone(),
                            self.params.beta, self.params.seed)

    def polish(self) -> np.ndarray:
        """Refit the kept columns with the gates fixed (1 kept, 0 dropped) and L0 off."""
        p = self.params
        model = self.gates()
        with torch.no_grad():
            keep = model.keep_mask()
            self.open_at_end = int(keep.sum())
            gate = model.gates._deterministic_gates().clamp_min(MIN_GATE)
            if self.allocation is not None:
                # The allocation sets the gates: every kept one open, its trained weight as
                # it stands (a record the L0 phase had closed starts where it was left).
                keep = torch.from_numpy(self.allocation.keep.copy())
                gate = torch.ones_like(gate)
            elif p.records is not None:
                keep = torch.from_numpy(top_k(model.log_alpha.numpy(), p.records))
            start = (model.log_weight + torch.log(gate))[keep]
        kept_idx = keep.numpy().nonzero()[0]
        schedule = self.polish_schedule

        with Progress("fit: polish", p.polish_epochs, "epoch") as progress:
            progress.figures["kept"] = len(kept_idx)
            pending: list[tuple[int, np.ndarray, float]] = []  # the latest, until it is last

            def on_epoch(k: int, loss: float, yhat: np.ndarray) -> None:
                self.polish_losses.append(loss)
                if pending:
                    epoch, before, value = pending.pop()
                    self._maybe_log(epoch, None, before, value)
                pending.append((self.epoch + k + 1, yhat, loss))
                progress.update(loss=loss)

            weights = self.backend.polish(kept_idx, start, schedule, on_epoch)
            if pending:
                epoch, yhat, loss = pending.pop()
                self._maybe_log(epoch, epoch, yhat, loss)
        if self.allocation is not None:  # whole households where the allocation says so
            whole = self.allocation.integer
            weights[whole] = np.maximum(1.0, np.round(weights[whole]))
        return weights

    def state(self, identity: dict[str, Any]) -> dict[str, Any]:
        n_logs = len(self.log_epochs)
        log_weight, log_alpha = self.backend.parameters()
        return {
            "identity": identity,
            "epoch": self.epoch,
            "log_weight": log_weight.clone(),
            "log_alpha": log_alpha.clone(),
            "optimizer": self.backend.optimizer_state(),
            "losses": torch.tensor(self.losses, dtype=torch.float64),
            "log_epochs": torch.tensor(self.log_epochs, dtype=torch.int64),
            "log_estimates": torch.from_numpy(np.array(self.log_estimates, dtype=np.float64))
            if n_logs else torch.zeros((0, self.n_targets), dtype=torch.float64),
            "log_losses": torch.tensor(self.log_losses, dtype=torch.float64),
            "lambdas": torch.tensor(self.lambdas, dtype=torch.float64),
            "expected_open": torch.tensor(self.expected_open, dtype=torch.float64),
            "lambda_next": torch.tensor(self.lambda_next, dtype=torch.float64),
            "controller": torch.tensor(self.controller.state() if self.controller else [],
                                       dtype=torch.float64),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.backend.load(state["log_weight"], state["log_alpha"], state["optimizer"])
        self.epoch = int(state["epoch"])
        self.losses = state["losses"].tolist()
        self.lambdas = state["lambdas"].tolist()
        self.expected_open = state["expected_open"].tolist()
        self.lambda_next = float(state["lambda_next"])
        if self.controller is not None:
            self.controller.restore(state["controller"].tolist())
        for epoch, (loss, expected) in enumerate(zip(self.losses, self.expected_open,
                                                     strict=True), start=1):
            self.stop.update(epoch, loss, expected)  # a converged checkpoint stays converged
        # Logs after the checkpoint's own L0 end (its final epoch, polish) are redone here.
        keep = [i for i, e in enumerate(state["log_epochs"].tolist()) if e <= self.epoch
                and e % self.params.log_freq == 0]
        self.log_epochs = [int(state["log_epochs"][i]) for i in keep]
        self.log_estimates = [state["log_estimates"][i].cpu().numpy() for i in keep]
        self.log_losses = [float(state["log_losses"][i]) for i in keep]

    def history(self) -> dict[str, list[float]]:
        return {"l0": list(self.losses), "polish": list(self.polish_losses)}

    def budget_record(self, kept: int) -> dict[str, Any]:
        """How the keep set came about: the budget, the gates open when the L0 phase ended
        (P(gate > 0) > 0.5: the set kept without a budget), λ_L0 and E per epoch."""
        return {"records": self.params.records, "open_at_end": self.open_at_end,
                "kept": kept, "allocation_records": None if self.allocation is None
                else self.allocation.records, "lambda_l0": list(self.lambdas),
                "expected_open": list(self.expected_open)}

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
