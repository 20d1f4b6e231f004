"""The validation split: a seeded random share of the trainable targets, never trained on.

Held-out tables (the EITC-by-AGI table, a different period and source) measure how the
fit extrapolates; the split measures how it generalizes to targets like the ones it fits.
It is drawn when the target DB is built, as `holdout_group = validation_split`, so it is a
fixed function of the DB's targets and a seed: no target config can train on it (holdout
targets are never selected), and every fit and release is measured on the same targets.

Within each variable × geo level group of trainable targets, the round(share · n) targets
whose sha256(seed, name) is smallest are held out: independent of row order, and a target
keeps its place in or out of the split as long as its name and group exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pydantic import Field

from pipeline.core.settings import Settings
from pipeline.targets.db import normalise_domain

VALIDATION_SPLIT = "validation_split"


class SplitSettings(Settings):
    share: float = Field(0.1, ge=0, lt=1, description="share of each variable x geo level's "
                         "trainable targets held out as the validation split")
    seed: int = Field(0, ge=0, description="which targets the split draws")


def split_mask(names: Sequence[str], groups: Sequence[str], share: float,
               seed: int) -> np.ndarray:
    """True for the names drawn into the split, round(share · n) of each group."""
    frame = pd.DataFrame({"group": list(groups), "key": [
        hashlib.sha256(f"{seed}\x1f{name}".encode()).hexdigest() for name in names]})
    rank = frame.groupby("group")["key"].rank(method="first").to_numpy()
    size = frame.groupby("group")["key"].transform("size").to_numpy()
    return rank <= np.floor(share * size + 0.5)


def split_scope(targets: pd.DataFrame, selected: np.ndarray) -> np.ndarray:
    """The split targets a fit is judged on: those whose (variable, geo level, domain)
    the fit trains on. A target config selects by exactly these fields, so these are the
    split targets the config would have trained, had they not been held out."""
    keys = (targets["variable"].astype(str) + "|" + targets["geo_level"].astype(str) + "|"
            + targets["domain_variable"].fillna("").astype(str).map(normalise_domain))
    trained = set(keys[np.asarray(selected, dtype=bool)])
    return ((targets["holdout_group"] == VALIDATION_SPLIT) & keys.isin(trained)).to_numpy()
