"""Fit hyperparameters; production's values are the defaults so a run is comparable."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from pipeline.core.errors import InputError

PRESETS: dict[str, dict[str, float]] = {
    # Production's two regimes: keep millions of records, or ~50K of them.
    "local": {"lambda_l0": 1e-8},
    "national": {"lambda_l0": 1e-4},
}
DEVICES = ("auto", "cpu", "cuda")
# Fields that change the trajectory: a checkpoint is only valid under the same values.
TRAJECTORY_FIELDS = ("lambda_l0", "beta", "lambda_l2", "learning_rate", "seed")


@dataclass(frozen=True)
class FitParams:
    lambda_l0: float = 1e-8
    beta: float = 0.35
    lambda_l2: float = 0.0
    learning_rate: float = 0.15
    epochs: int = 1000
    seed: int = 42
    device: str = "auto"
    log_freq: int = 100
    checkpoint_every: int = 100
    polish_epochs: int = 100

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> FitParams:
        if name not in PRESETS:
            raise InputError(None, "preset", f"unknown preset {name!r}",
                             f"use one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def with_(self, **changes: Any) -> FitParams:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Refuse values that would fail (or silently misbehave) after training starts."""
        if self.device not in DEVICES:
            raise InputError(None, "device", f"unknown device {self.device!r}",
                             f"use one of {list(DEVICES)}")
        positive = {"beta": self.beta, "learning_rate": self.learning_rate}
        for name, value in positive.items():
            if not value > 0:
                raise InputError(None, name, f"must be > 0, got {value}", f"pass a positive {name}")
        for name in ("lambda_l0", "lambda_l2"):
            value = getattr(self, name)
            if not value >= 0:
                raise InputError(None, name, f"must be >= 0, got {value}", f"pass {name} >= 0")
        for name in ("epochs", "polish_epochs"):
            if getattr(self, name) < 0:
                raise InputError(None, name, "must be >= 0", f"pass {name} >= 0")
        for name in ("log_freq", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(None, name, "must be >= 1", f"pass {name} >= 1")
