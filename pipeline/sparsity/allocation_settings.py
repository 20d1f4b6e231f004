"""The allocation search's settings: the profile's `allocation` section and the CLI's flags."""

from __future__ import annotations

from pydantic import Field

from pipeline.core.settings import Settings


class AllocationSettings(Settings):
    episodes: int = Field(96, ge=1, description="training episodes of the search")
    parallel: int = Field(8, ge=1, description="episodes per round, played side by side on "
                          "the Dask workers (PPO's env columns)")
    steps: int = Field(32, ge=1, description="operations per episode")
    ops_per_layer: int = Field(4, ge=1, description="operations in a state before the high "
                               "level picks the next")
    curriculum_start: float | None = Field(0.5, gt=0, le=1, description="the first "
                                           "episodes' kept share of columns, tightening to "
                                           "the budget; null: no curriculum")
    hierarchy: bool = Field(True, description="a high-level agent picks the state, a "
                            "low-level one the operation; false: one flat agent")
    density_penalty: float = Field(2.0, ge=0, description="reward penalty per unit of "
                                   "records over the budget (relative)")
    reconstruction_weight: float = Field(0.5, ge=0, description="weight of the autoencoder's "
                                         "reconstruction error in the reward; 0: off")
    seed: int = Field(0, ge=0, description="seeds the agents, the episodes and which half "
                      "of the validation split the reward reads")
