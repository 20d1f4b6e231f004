"""One environment protocol for learning where to spend a sparsity budget.

Anything made of layers of weights fits it: a calibration package (a layer is an area, its
weights are the area's household weights, the mask is the Hard Concrete gates) or a
network of l0-python `L0Linear` layers (a layer is a layer). Each layer's weights fall into
a fixed number of groups, and an agent acts on one group at a time with one of `OPS`.

The reward reads only `Score`: an error measured on held-out data (never on what
`fine_tune` trains on), the share of weights kept, and an autoencoder's reconstruction
error. The episode logic (`episodes.py`) is the same for every problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

OPS = ("keep", "prune", "quantize", "shuffle")
KEEP, PRUNE, QUANTIZE, SHUFFLE = range(len(OPS))
# What a problem reports for each (layer, group), in this order; scaled to about O(1).
FEATURES = (
    "weight_mean",    # of the kept weights (log scale where weights are positive)
    "weight_var",
    "weight_entropy",  # of the kept weights' shares, normalised to [0, 1]
    "gate_mean",      # the gates' open probabilities (the "activations")
    "gate_var",
    "zero_share",     # share of the group's weights now pruned
    "grad_mean",      # the training loss's gradient with respect to the kept weights
    "grad_var",
    "reconstruction",  # the autoencoder's error for the group's layer
    "quantized",      # share of the group's kept weights rounded
)


@dataclass(frozen=True)
class Score:
    error: float  # held-out error: random-split targets, or 1 − validation accuracy
    density: float  # kept weights / all weights
    reconstruction: float  # autoencoder error, 0 for the trained model


class CompressionProblem(Protocol):
    """A trained model to compress; deterministic: the same calls give the same state."""

    layer_names: list[str]
    n_groups: int  # groups per layer (a layer with fewer pads with empty groups)

    def reset(self, density: float) -> None:
        """Back to the trained model, pruned uniformly to `density` (the episode's
        curriculum level) and fine-tuned: the baseline an episode improves on."""
        ...

    def features(self) -> np.ndarray:
        """(layers, groups, len(FEATURES)) float32, finite."""
        ...

    def apply(self, layer: int, group: int, op: int) -> None:
        """One operation on one group: keep (lock open, add its next most likely weights),
        prune (close its least likely), quantize, shuffle."""
        ...

    def fine_tune(self, layer: int) -> None:
        """A few warm-started epochs on the training data with the mask fixed."""
        ...

    def score(self) -> Score:
        ...

    def enforce(self, density: float) -> None:
        """Prune to at most `density`, the least likely unlocked weights first: an episode
        ends within its budget."""
        ...

    def allocation(self) -> dict[str, Any]:
        """What a search keeps of an episode: masks and per-layer budgets (arrays)."""
        ...
