"""Learning where to spend a sparsity budget: environments, agents, the search.

The public API is `allocate` (train, search, save: `calibrate allocate` and the
`sparsity_allocation` asset) and `AllocationSettings` (the profile's `allocation` section).
The search plays a `protocol.CompressionProblem`; the two problems it solves live in
`problems/`: calibration (where the national fit's record budget goes) and digits (an MLP's
weights, the benchmark with known baselines).
"""

from pipeline.sparsity.allocate import allocate
from pipeline.sparsity.allocation_settings import AllocationSettings

__all__ = ["AllocationSettings", "allocate"]
