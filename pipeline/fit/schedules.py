"""What may change from one L0 epoch to the next: the temperature β and, under a record
budget, λ_L0.

Temperature: l0-python's `TemperatureScheduler` anneals β from `beta_start` to `beta` over
`anneal_share` of the L0 epochs, then holds `beta`; the keep set and the exports use the
final β.

Record budget: production tuned λ_L0 by hand until the kept count looked right (2e-2 for
~50K records). Here λ_L0 is steered by a PI controller on the expected number of open
gates, E = Σ P(gate > 0) — the L0 term itself, so no extra work per epoch. The target falls
from every column to the budget along a smooth geometric path over the first `RAMP_SHARE`
of the L0 epochs, then holds. Under Adam, λ_L0 sets how fast gates close more than how many
stay open, and a gate closed far below its threshold no longer sees the data (its sampled
gate is 0), so an overshoot is hard to undo: the path is gradual, and the controller brakes
hard below it. The keep set is then the `records` columns most likely open
(`pipeline.fit.selection.top_k`), so the budget is met exactly; how far the L0 phase itself
ended from it is recorded, and gate 1 judges it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from l0.penalties import TemperatureScheduler

from pipeline.fit.params import FitParams

RAMP_SHARE = 0.5  # share of the L0 epochs over which the target falls to the budget
# log λ_L0 = I + KP · e, I += KI · e per epoch, e = log(E / target): the integral learns
# the λ_L0 that keeps pace with the path, the proportional term brakes at once (and 20×
# harder) when E falls below it. On the demo package's national fit (`make run`), E ends
# at 49,066 for a budget of 50,000 of 240,000 columns (-1.9%); ci's, 978 for 1,000.
KP = 20.0
KP_BELOW = 400.0
KI = 0.05
# The steering starts at λ_L0 ≥ this: an open gate's penalty gradient is λ·p(1−p) with
# p(1−p) ≈ 2e-4 at the initial gates, and below ~1e-3 Adam's ε (1e-8) damps that pull so
# much that gates cannot follow the path (a 1e-7 start — the local preset — measured
# +27% above a budget after 400 epochs on a small problem).
START_FLOOR = 1e-3


def temperature_at(params: FitParams) -> Callable[[int], float]:
    """β for an L0 epoch (0-based)."""
    if params.temperature_schedule == "constant":
        return lambda _epoch: params.beta
    scheduler = TemperatureScheduler(
        initial_temp=params.beta_start, final_temp=params.beta,
        anneal_epochs=max(1, round(params.anneal_share * params.epochs)),
        schedule=params.temperature_schedule)
    return scheduler.get_temperature


class BudgetController:
    """λ_L0 for each epoch, from the expected open count the previous epoch measured."""

    def __init__(self, records: int, n_columns: int, epochs: int, lambda_start: float):
        self.records, self.n_columns = records, n_columns
        self.ramp = max(1, round(RAMP_SHARE * epochs))
        self.log_lambda = self.integral = math.log(max(lambda_start, START_FLOOR))

    @property
    def lambda_l0(self) -> float:
        return math.exp(self.log_lambda)

    def target(self, epoch: int) -> float:
        """The expected open count wanted once `epoch` L0 steps are done."""
        eased = (1.0 - math.cos(math.pi * min(1.0, epoch / self.ramp))) / 2.0
        return self.n_columns * (self.records / self.n_columns) ** eased

    def update(self, epoch: int, expected_open: float) -> float:
        """Epoch `epoch` measured E (before its step): the λ_L0 for the next epoch."""
        error = math.log(max(expected_open, 1.0) / self.target(epoch))
        self.integral += KI * error
        self.log_lambda = self.integral + (KP if error > 0 else KP_BELOW) * error
        return self.lambda_l0

    def state(self) -> list[float]:
        return [self.integral, self.log_lambda]

    def restore(self, state: list[float]) -> None:
        self.integral, self.log_lambda = state
