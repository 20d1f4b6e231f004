"""The gated weights w = exp(log_weight) ⊙ z, with z from l0-python's Hard Concrete."""

from __future__ import annotations

import math

import numpy as np
import torch
from l0.distributions import HardConcrete
from torch import nn

STRETCH = 0.1  # gamma = -0.1, zeta = 1.1 (production)
LOG_ALPHA_INIT = math.log(0.999 / 0.001)  # logit(0.999): every gate starts open
LOG_ALPHA_JITTER = 0.01
LOG_WEIGHT_JITTER = 0.05


class SeededHardConcrete(HardConcrete):
    """l0-python's Hard Concrete, drawing its noise from a given generator.

    The parent draws u from torch's global RNG, which no seed of ours controls; only the
    draw is replaced, the transformation, clamps, penalty and active probability are its own.
    """

    def __init__(self, n: int, beta: float, generator: torch.Generator):
        super().__init__(n, temperature=beta, stretch=STRETCH, init_mean=None)
        self.generator = generator

    def _sample_gates(self) -> torch.Tensor:
        logits = self.qz_logits.clamp(-self.LOG_ALPHA_BOUND, self.LOG_ALPHA_BOUND)
        u = torch.empty_like(logits).uniform_(
            self._UNIFORM_EPS, 1.0 - self._UNIFORM_EPS, generator=self.generator
        )
        s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + logits) / self.temperature)
        return torch.clamp(s * (self.zeta - self.gamma) + self.gamma, 0, 1)


class GatedWeights(nn.Module):
    def __init__(self, initial_weights: np.ndarray, beta: float, generator: torch.Generator):
        super().__init__()
        device = generator.device
        n = len(initial_weights)
        self.gates = SeededHardConcrete(n, beta, generator).to(device)
        # Draw order is part of the seed's meaning: log_alpha jitter first, then log_weight.
        jitter_a = torch.randn(n, generator=generator, device=device) * LOG_ALPHA_JITTER
        jitter_w = torch.randn(n, generator=generator, device=device) * LOG_WEIGHT_JITTER
        base = torch.as_tensor(np.log(initial_weights), dtype=torch.float32, device=device)
        with torch.no_grad():
            self.gates.qz_logits.copy_(LOG_ALPHA_INIT + jitter_a)
        self.log_weight = nn.Parameter(base + jitter_w)

    @property
    def log_alpha(self) -> nn.Parameter:
        return self.gates.qz_logits

    def sampled(self) -> torch.Tensor:
        return torch.exp(self.log_weight) * self.gates._sample_gates()

    def l0_penalty(self) -> torch.Tensor:
        return self.gates.get_penalty()

    def l2_penalty(self) -> torch.Tensor:
        return torch.exp(self.log_weight).square().sum()

    @torch.no_grad()
    def keep_mask(self) -> torch.Tensor:
        """Gates more likely open than closed: P(z > 0) > 0.5, the gates the L0 term counts.

        This is exactly where production's deterministic gate is > 0, so the kept set is the
        one production would export, and the polish then refits their weights.
        """
        return self.gates.get_active_prob() > 0.5

    @torch.no_grad()
    def production_export(self) -> torch.Tensor:
        """Production's exported weights: exp(log_weight) · clip(sigmoid(α/β)(ζ−γ)+γ, 0, 1)."""
        return torch.exp(self.log_weight) * self.gates._deterministic_gates()
