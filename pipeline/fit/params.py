"""Fit hyperparameters: one typed model behind the profile, the launchpad and the CLI flags.

A preset fills the regularisation fields a caller leaves out. Which fields it filled is
remembered, so switching preset later replaces them and keeps what the caller chose.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from pipeline.core.settings import Settings, parse_settings

PRESETS: dict[str, dict[str, float]] = {
    # Production's two regimes: keep millions of records, or ~50K of them.
    "local": {"lambda_l0": 1e-8, "beta": 0.35, "lambda_l2": 0.0},
    "national": {"lambda_l0": 1e-4, "beta": 0.35, "lambda_l2": 0.0},
}
Preset = Literal["local", "national"]
Device = Literal["auto", "cpu", "cuda"]
# Fields that change the trajectory: a checkpoint is only valid under the same values.
TRAJECTORY_FIELDS = ("lambda_l0", "beta", "lambda_l2", "learning_rate", "seed")


class FitParams(Settings):
    preset: Preset = Field("local", description="regime whose λ_L0, β and λ_L2 fill the "
                           "fields not given: local (most records kept) or national")
    lambda_l0: float = Field(ge=0, description="L0 penalty per open gate (from the preset)")
    beta: float = Field(gt=0, description="Hard Concrete temperature (from the preset)")
    lambda_l2: float = Field(ge=0, description="L2 penalty on the weights (from the preset)")
    learning_rate: float = Field(0.15, gt=0, description="Adam learning rate")
    epochs: int = Field(1000, ge=1, description="L0 epochs (the total when resuming)")
    polish_epochs: int = Field(500, ge=0, description="epochs refitting the kept weights "
                               "with the gates fixed")
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
        defaults = PRESETS.get(data.get("preset", "local"), {})
        filled = {k: v for k, v in defaults.items() if k not in data}
        params = handler({**data, **filled})
        params._from_preset = frozenset(filled)
        return params

    def with_(self, **changes: Any) -> FitParams:
        """These values changed; a new preset also replaces the fields the old one filled."""
        new_preset = changes.get("preset", self.preset) != self.preset
        dropped = set(self._from_preset) if new_preset else set()
        params = parse_settings(FitParams, {**self.model_dump(exclude=dropped), **changes}, None)
        if not new_preset:
            params._from_preset = self._from_preset - set(changes)
        return params

    def to_dict(self) -> dict[str, Any]:
        return {**self.model_dump(), "from_preset": sorted(self._from_preset)}

