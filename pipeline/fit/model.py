"""The gated weights w = exp(log_weight) ⊙ z, with z from l0-python's Hard Concrete.

The gate noise is counter-based (splitmix64 of seed, epoch and column; see fused.py), not a
stateful generator: every back-end and device draws the same u, a resumed fit needs no RNG
state, and the CPU kernel can draw in parallel.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from l0.distributions import HardConcrete
from torch import nn

from pipeline.fit.fused import GOLDEN, MIX1, MIX2, UNIFORM_EPS, noise_key

STRETCH = 0.1  # gamma = -0.1, zeta = 1.1 (production)
LOG_ALPHA_INIT = math.log(0.999 / 0.001)  # logit(0.999): every gate starts open
LOG_ALPHA_JITTER = 0.01
LOG_WEIGHT_JITTER = 0.05


def initial_parameters(initial_weights: np.ndarray, seed: int) -> tuple[torch.Tensor, ...]:
    """(log_weight, log_alpha), float32 on CPU; drawn on CPU so every device starts alike."""
    gen = torch.Generator().manual_seed(seed)
    n = len(initial_weights)
    # Draw order is part of the seed's meaning: log_alpha jitter first, then log_weight.
    jitter_a = torch.randn(n, generator=gen) * LOG_ALPHA_JITTER
    jitter_w = torch.randn(n, generator=gen) * LOG_WEIGHT_JITTER
    base = torch.as_tensor(np.log(initial_weights), dtype=torch.float32)
    return base + jitter_w, LOG_ALPHA_INIT + jitter_a


def open_gates(log_alpha: torch.Tensor, beta: float) -> int:
    """How many gates are more likely open than closed, as `GatedWeights.keep_mask` counts:
    P(z > 0) = sigmoid(log_alpha - beta·ln(-gamma/zeta)) > 0.5."""
    return int((log_alpha > beta * math.log(STRETCH / (1 + STRETCH))).sum())


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def gate_noise(seed: int, epoch: int, n: int, device: torch.device) -> torch.Tensor:
    """fused.uniform_noise on a torch device: int64 arithmetic wraps like uint64."""
    z = torch.arange(1, n + 1, dtype=torch.int64, device=device) * _signed(GOLDEN)
    z = z + _signed(noise_key(seed, epoch))
    z = (z ^ _shr(z, 30)) * _signed(MIX1)
    z = (z ^ _shr(z, 27)) * _signed(MIX2)
    z = z ^ _shr(z, 31)
    u01 = (_shr(z, 41).to(torch.float32) * 2.0 + 1.0) * 2.0**-24
    return UNIFORM_EPS + u01 * (1.0 - 2 * UNIFORM_EPS)


class SeededHardConcrete(HardConcrete):
    """l0-python's Hard Concrete over given logits, sampling from given noise u.

    The parent draws u from torch's global RNG, which no seed of ours controls; only the
    draw is replaced, the transformation, clamps, penalty and active probability are its own.
    """

    def __init__(self, log_alpha: torch.Tensor, beta: float):
        super().__init__(len(log_alpha), temperature=beta, stretch=STRETCH, init_mean=None)
        self.qz_logits = nn.Parameter(log_alpha)

    def sample(self, u: torch.Tensor) -> torch.Tensor:
        logits = self.qz_logits.clamp(-self.LOG_ALPHA_BOUND, self.LOG_ALPHA_BOUND)
        s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + logits) / self.temperature)
        return torch.clamp(s * (self.zeta - self.gamma) + self.gamma, 0, 1)


class GatedWeights(nn.Module):
    def __init__(self, log_weight: torch.Tensor, log_alpha: torch.Tensor, beta: float,
                 seed: int):
        super().__init__()
        self.seed = seed
        self.gates = SeededHardConcrete(log_alpha, beta)
        self.log_weight = nn.Parameter(log_weight)

    @property
    def log_alpha(self) -> nn.Parameter:
        return self.gates.qz_logits

    def sampled(self, epoch: int) -> torch.Tensor:
        u = gate_noise(self.seed, epoch, len(self.log_weight), self.log_weight.device)
        return torch.exp(self.log_weight) * self.gates.sample(u)

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
