"""When each phase of the fit stops: at its epoch count, or once its loss has settled.

Production ran a fixed 1,000 epochs whether the loss still fell or had been flat for
hundreds. Under `stopping: converged` (the default) `epochs` and `polish_epochs` are maxima:

- The L0 phase stops when the best loss of the last `stop_window` epochs is not
  `stop_tolerance` (relative) below the best before them. The loss is that of a sampled
  gate draw, so it is noisy; comparing bests, not the latest value, keeps one lucky draw
  from ending or prolonging the phase. Under a record budget the kept count must have
  settled too (the expected open count moved by at most `stop_tolerance` of the budget
  over the window). Epochs before the budget's ramp or a temperature schedule has ended
  are not compared at all: until then λ_L0 or β, and so what the loss measures, still
  move.
- The polish uses the same rule at its full learning rate; when it fires at epoch k the
  learning rate decays linearly to zero over the next round(k·3/7) epochs, the shape a
  fixed polish of k/0.7 epochs has (`POLISH_DECAY_START`), so the exported weights are a
  settled point either way.

`stopping: fixed` runs exactly `epochs` and `polish_epochs` (the presets' counts).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

POLISH_DECAY_START = 0.7  # share of a fixed polish run at the full learning rate


def polish_lr(lr: float, epoch: int, epochs: int, start: float | None = None) -> float:
    """Full rate, then a linear decay to zero from `start` (default: 70% of `epochs`) to
    `epochs`: the exported weights are a settled point, not wherever full-size Adam steps
    left them oscillating near a (near-)zero loss."""
    start = POLISH_DECAY_START * epochs if start is None else start
    if epoch < start:
        return lr
    return lr * (epochs - epoch) / (epochs - start)


class Plateau:
    """Whether the best of the last `window` values is not `tolerance` (relative) below
    the best before them."""

    def __init__(self, window: int, tolerance: float):
        self.window, self.tolerance = window, tolerance
        self.recent: deque[float] = deque(maxlen=window)
        self.best_before = math.inf
        self.seen = 0

    def update(self, value: float) -> bool:
        if len(self.recent) == self.window:
            self.best_before = min(self.best_before, self.recent[0])
        self.recent.append(value)
        self.seen += 1
        if self.seen < 2 * self.window:
            return False
        return min(self.recent) > self.best_before - self.tolerance * abs(self.best_before)


class Settled:
    """Whether the last `window` values all lie within `tolerance · scale` of each other."""

    def __init__(self, window: int, tolerance: float, scale: float):
        self.recent: deque[float] = deque(maxlen=window)
        self.limit = tolerance * scale

    def update(self, value: float) -> bool:
        self.recent.append(value)
        full = len(self.recent) == self.recent.maxlen
        return full and max(self.recent) - min(self.recent) <= self.limit


class L0Stopping:
    """The L0 phase's rule; fed every epoch's loss and expected open count in order (a
    resumed fit replays its checkpoint's history), it says when the phase is done."""

    def __init__(self, params: Any, ramp_epochs: int = 0):
        self.params = params
        self.fixed = params.stopping == "fixed"
        self.loss = Plateau(params.stop_window, params.stop_tolerance)
        self.kept = None if params.records is None else Settled(
            params.stop_window, params.stop_tolerance, params.records)
        anneal = 0 if params.temperature_schedule == "constant" else max(
            1, round(params.anneal_share * params.epochs))
        self.earliest = max(ramp_epochs, anneal)
        self.stopped_at: int | None = None

    def update(self, epoch: int, loss: float, expected_open: float) -> bool:
        """After L0 epoch `epoch` (1-based): has the phase converged? Epochs before the
        ramps end are not compared: λ_L0 or β still changes what the loss measures."""
        if self.fixed or self.stopped_at is not None or epoch <= self.earliest:
            return self.stopped_at is not None
        flat = self.loss.update(loss)
        settled = self.kept.update(expected_open) if self.kept is not None else True
        if flat and settled:
            self.stopped_at = epoch
        return self.stopped_at is not None

    def record(self, epochs_run: int) -> dict[str, Any]:
        return _record(self.params, "l0", epochs_run, self.params.epochs, self.stopped_at)


class PolishSchedule:
    """The polish's learning rate per epoch and its end, under the fit's stopping rule."""

    def __init__(self, params: Any, max_epochs: int):
        self.params, self.lr0 = params, params.learning_rate
        self.max_epochs = self.total = max_epochs
        self.decay_start: float = POLISH_DECAY_START * max_epochs
        self.plateau = None if params.stopping == "fixed" else Plateau(
            params.stop_window, params.stop_tolerance)
        self.stopped_at: int | None = None

    def lr(self, epoch: int) -> float:
        return polish_lr(self.lr0, epoch, self.total, self.decay_start)

    def update(self, epoch: int, loss: float) -> bool:
        """After polish epoch `epoch` (0-based) measured `loss`: is the polish done?"""
        done = epoch + 1
        if self.plateau is not None and self.stopped_at is None and done < self.decay_start \
                and self.plateau.update(loss):
            self.stopped_at = done
            self.decay_start = done
            self.total = min(self.max_epochs,
                             done + round(done * (1 - POLISH_DECAY_START) / POLISH_DECAY_START))
        return done >= self.total

    def record(self, epochs_run: int) -> dict[str, Any]:
        return _record(self.params, "polish", epochs_run, self.max_epochs, self.stopped_at)


def _record(params: Any, phase: str, epochs_run: int, max_epochs: int,
            stopped_at: int | None) -> dict[str, Any]:
    if params.stopping == "fixed":
        rule = f"fixed: {max_epochs:,} epochs"
    else:
        rule = (f"converged: best loss of the last {params.stop_window} epochs less than "
                f"{params.stop_tolerance:g} (relative) below the best before them")
        if phase == "l0" and params.records is not None:
            rule += (f", and the expected kept count within {params.stop_tolerance:g} x "
                     f"{params.records:,} over the window, after the budget's ramp")
        elif phase == "polish":
            rule += ", then the learning-rate decay (3/7 of the epochs run at full rate)"
    return {"epochs": epochs_run, "max_epochs": max_epochs,
            "converged_at": stopped_at, "rule": rule}
