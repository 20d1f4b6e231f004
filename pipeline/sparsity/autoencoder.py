"""A small torch autoencoder over the uncompressed data: the reward's reconstruction term.

Trained once, on what compression should preserve (an area's weighted distribution of its
households, or a layer's trained weight rows), it maps data onto what the uncompressed
model looks like. The error of a compressed input is the distance between its
reconstruction and the original's: 0 for the uncompressed model, growing as compression
moves the data along what the autoencoder learned, while noise it never saw is projected
away.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.core.hashing import stable_seed

EPOCHS = 300
LEARNING_RATE = 1e-2


def fit_reconstruction(net: nn.Module, x: torch.Tensor, epochs: int, lr: float) -> float:
    """Full-batch Adam on ‖net(x) − x‖²; the net is left in eval mode. Its final loss."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        loss = (net(x) - x).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    return float(loss.detach())


class AreaAutoencoder:
    def __init__(self, data: np.ndarray, *, hidden: int = 8, code: int = 3, seed: int = 0):
        """Fit to the rows of `data` (full-batch Adam, seeded): deterministic on CPU."""
        gen = torch.Generator().manual_seed(stable_seed("autoencoder", seed))
        n_in = data.shape[1]
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, code),
                                 nn.Tanh(), nn.Linear(code, hidden), nn.Tanh(),
                                 nn.Linear(hidden, n_in))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / max(1, p.shape[-1])) ** 0.5)
        x = torch.as_tensor(data, dtype=torch.float32)
        self.mean = x.mean(0)
        self.scale = x.std(0).clamp_min(1e-6)
        z = (x - self.mean) / self.scale
        self.training_loss = fit_reconstruction(self.net, z, EPOCHS, LEARNING_RATE)

    @torch.no_grad()
    def reconstruct(self, rows: np.ndarray) -> np.ndarray:
        z = (torch.as_tensor(rows, dtype=torch.float32) - self.mean) / self.scale
        return self.net(z).numpy().astype(np.float64)

    def error(self, current: np.ndarray, original: np.ndarray) -> np.ndarray:
        """Per row: the RMS of AE(current) − AE(original), in units of the training data's
        spread (so 0.1 is a tenth of the spread the uncompressed data has)."""
        a, b = self.reconstruct(current), self.reconstruct(original)
        return np.sqrt(np.square(a - b).mean(axis=1))
