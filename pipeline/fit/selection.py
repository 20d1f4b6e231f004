"""Which columns a fit keeps: the budget's top-k cut, and the hybrid's random share.

Both are fixed functions of their inputs (ties broken by column index, draws seeded), so
CPU results repeat bit for bit.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.hashing import stable_seed
from pipeline.fit.fused import LOG_ALPHA_BOUND

# A log_alpha beyond the clamp: its gradient is 0 in both back-ends (torch's clamp, the fused
# kernel's mask), so Adam never moves it, and its gate samples as 1 for any β ≤ 2.5.
PINNED_OPEN = float(LOG_ALPHA_BOUND) + 1.0


def top_k(log_alpha: np.ndarray, k: int) -> np.ndarray:
    """Mask of the k columns with the largest log_alpha (most likely open); ties by index."""
    order = np.argsort(-np.asarray(log_alpha, dtype=np.float64), kind="stable")
    keep = np.zeros(len(log_alpha), dtype=bool)
    keep[order[:k]] = True
    return keep


def design_weighted_sample(design_weights: np.ndarray, m: int, seed: int) -> np.ndarray:
    """m distinct columns drawn with probability proportional to their design weight
    (Efraimidis-Spirakis: the m largest log(u)/w), sorted."""
    w = np.asarray(design_weights, dtype=np.float64)
    u = np.random.default_rng(stable_seed("hybrid", seed)).random(len(w))
    keys = np.log(np.maximum(u, np.finfo(float).tiny)) / w
    return np.sort(np.argsort(-keys, kind="stable")[:m])
