"""Fit hyperparameters: one typed model behind the profile, the launchpad and the CLI flags.

A preset fills the regularisation fields a caller leaves out. Which fields it filled is
remembered, so switching preset later replaces them and keeps what the caller chose; the
run config records where the preset's values come from.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from pipeline.core.fit_table import LOCAL, NATIONAL
from pipeline.core.settings import Settings, parse_settings

PRESETS: dict[str, dict[str, float]] = {
    # What production's orchestration runs for its two fits (not its module's defaults).
    "local": {"lambda_l0": 1e-7, "beta": 0.65, "lambda_l2": 1e-8, "epochs": 1000},
    "national": {"lambda_l0": 2e-2, "beta": 0.65, "lambda_l2": 1e-12, "epochs": 1000},
}
PRESET_SOURCES: dict[str, str] = {
    "local": "policyengine-us-data's orchestration, regional (local-area) fit: "
             "lambda_l0 1e-7, lambda_l2 1e-8, beta 0.65, 1000 epochs (about 3-4M of 5.2M "
             "records kept); its calibration module's default (1e-8, beta 0.35) is not what "
             "it runs",
    "national": "policyengine-us-data's orchestration, national fit: lambda_l0 2e-2 (raised "
                "from the module's 1e-4), lambda_l2 1e-12, beta 0.65, 1000 epochs (about 50K "
                "records kept)",
}
Preset = Literal["local", "national"]
Device = Literal["auto", "cpu", "cuda"]
Schedule = Literal["constant", "linear", "exponential", "cosine"]
AllocationMode = Literal["budget", "learned"]
Stopping = Literal["converged", "fixed"]
# Fields that change the trajectory: a checkpoint is only valid under the same values.
TRAJECTORY_FIELDS = ("lambda_l0", "beta", "lambda_l2", "learning_rate", "seed", "records",
                     "temperature_schedule", "beta_start", "anneal_share", "hybrid_share",
                     "stopping", "stop_window", "stop_tolerance")


class FitParams(Settings):
    preset: Preset = Field(LOCAL.preset, description="regime whose λ_L0, β, λ_L2 and epochs fill "
                           "the fields not given: local (most records kept) or national")
    records: int | None = Field(None, ge=1, description="record budget: keep this many "
                                "records (±2%), steering λ_L0 during the fit; unset: λ_L0 "
                                "as given")
    lambda_l0: float = Field(ge=0, description="L0 penalty per open gate (from the preset); "
                             "with a record budget, where the steering starts (at least "
                             "1e-3)")
    beta: float = Field(gt=0, description="Hard Concrete temperature (from the preset); the "
                        "final one under a temperature schedule")
    lambda_l2: float = Field(ge=0, description="L2 penalty on the weights (from the preset)")
    learning_rate: float = Field(0.15, gt=0, description="Adam learning rate")
    epochs: int = Field(ge=1, description="L0 epochs (from the preset; the total when "
                        "resuming); with stopping: converged, the most")
    polish_epochs: int = Field(500, ge=0, description="epochs refitting the kept weights "
                               "with the gates fixed; with stopping: converged, the most")
    stopping: Stopping = Field("converged", description="converged: each phase ends once its "
                               "loss (under a record budget, also the kept count) stops "
                               "improving over stop_window epochs; fixed: exactly epochs and "
                               "polish_epochs, as production ran them")
    stop_window: int = Field(100, gt=0, description="epochs over which a phase must improve "
                             "by stop_tolerance to go on")
    stop_tolerance: float = Field(1e-2, gt=0, allow_inf_nan=False, description="relative "
                                  "improvement of the best loss over the window below which "
                                  "a phase has converged")
    temperature_schedule: Schedule = Field("constant", description="l0-python's "
                                           "TemperatureScheduler: anneal β from beta_start "
                                           "to beta (linear, exponential, cosine)")
    beta_start: float = Field(2.0, gt=0, description="first temperature of the schedule")
    anneal_share: float = Field(0.5, gt=0, le=1, description="share of the L0 epochs the "
                                "schedule anneals over")
    hybrid_share: float = Field(0.0, ge=0, lt=1, description="share of the record budget "
                                "drawn at random, weighted by design weight, instead of by "
                                "L0 (needs records)")
    allocation: AllocationMode = Field("budget", description="which records a budget keeps: "
                                       "budget (the most likely open gates) or learned (the "
                                       "sparsity_allocation asset's search; needs records)")
    seed: int = Field(42, ge=0, description="seeds the initial jitter and every gate draw")
    device: Device = Field("auto", description="auto takes CUDA when present")
    log_freq: int = Field(50, ge=1, description="epochs between calibration-log rows")
    checkpoint_every: int = Field(100, ge=1, description="L0 epochs between checkpoints")

    _from_preset: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="wrap")
    @classmethod
    def _fill_from_preset(cls, data: Any, handler: Any) -> FitParams:
        if not isinstance(data, dict):
            return handler(data)
        defaults = PRESETS.get(data.get("preset", cls.model_fields["preset"].default), {})
        filled = {k: v for k, v in defaults.items() if k not in data}
        params = handler({**data, **filled})
        params._from_preset = frozenset(filled)
        return params

    @model_validator(mode="after")
    def _hybrid_needs_budget(self) -> FitParams:
        if self.hybrid_share > 0 and self.records is None:
            raise ValueError("hybrid_share is a share of the record budget: set records too")
        return self

    @model_validator(mode="after")
    def _learned_needs_budget(self) -> FitParams:
        if self.allocation == "learned" and self.records is None:
            raise ValueError("allocation: learned spends a record budget: set records too")
        return self

    @property
    def schedule_epochs(self) -> int | None:
        """The L0 epochs when the trajectory depends on their total (a record budget's
        ramp, a temperature schedule), else None: it belongs to a checkpoint's identity."""
        steered = self.records is not None or self.temperature_schedule != "constant"
        return self.epochs if steered else None

    def with_(self, **changes: Any) -> FitParams:
        """These values changed; a new preset also replaces the fields the old one filled."""
        new_preset = changes.get("preset", self.preset) != self.preset
        dropped = set(self._from_preset) if new_preset else set()
        params = parse_settings(type(self), {**self.model_dump(exclude=dropped), **changes},
                                None)
        if not new_preset:
            params._from_preset = self._from_preset - set(changes)
        return params

    def to_dict(self) -> dict[str, Any]:
        return {**self.model_dump(), "from_preset": sorted(self._from_preset),
                "preset_source": PRESET_SOURCES[self.preset] if self._from_preset else None}


class NationalFitParams(FitParams):
    """The national file's fit: the national preset under a budget of 50,000 records (the
    fit table's defaults for it)."""

    preset: Preset = Field(NATIONAL.preset, description=FitParams.model_fields["preset"]
                           .description)
    records: int | None = Field(NATIONAL.records, ge=1,
                                description=FitParams.model_fields["records"].description)
