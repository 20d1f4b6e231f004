"""Robust error scores: relative where a target is large, absolute where it is near zero.

Production's relative error |ŷ − y| / (|y| or 1) turns a cell with y = 0 and ŷ = $40M into
an "error" of 4×10⁷ that swamps every mean. Here each target is scored against
`floor` = NEAR_ZERO_SHARE × the largest |target| of its table (same variable, area and
domain variables: one district's age bins, one state's AGI bands, the nation's EITC cells),
and at least 1:
- |y| ≥ floor: `score` = |ŷ − y| / |y| (rule `relative`);
- |y| < floor: `score` = |ŷ − y| / floor (rule `absolute`: the miss in units of 1% of the
  table's largest cell).
A target published as 0 for another year than the data's, that the engine finds non-zero
under the data year's law, is `out_of_scope`: a zero cannot be uprated, and a cell a law
change has filled is no failure of the data (e.g. EITC with one child and AGI ≥ $50K: none
under TY2022 law, some under 2024 law). Gates skip out-of-scope targets.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

NEAR_ZERO_SHARE = 0.01
RELATIVE, ABSOLUTE = "relative", "absolute"
IN_SCOPE, OUT_OF_SCOPE = "in_scope", "out_of_scope"
COLUMNS = ("error_rule", "error_floor", "score", "scope")


def domain_of(target_name: pd.Series) -> pd.Series:
    """Domain variables from a target name: `cd_101/person_count/[age>=0,age<5]` → `age`."""
    inside = target_name.str.extract(r"/\[(.*)\]$", expand=False).fillna("")
    return inside.map(lambda s: ",".join(sorted(set(re.findall(r"(?:^|,)([A-Za-z_]\w*)", s)))))


def score_errors(frame: pd.DataFrame, original_value: np.ndarray,
                 original_period: np.ndarray, data_period: np.ndarray | int) -> pd.DataFrame:
    """`COLUMNS` for validation rows (target_name, variable, area_type, area_id,
    target_value, sim_value), row-aligned with `frame`."""
    target = frame["target_value"].to_numpy(dtype=np.float64)
    sim = frame["sim_value"].to_numpy(dtype=np.float64)
    table = [frame["variable"], frame["area_type"], frame["area_id"].astype(str),
             domain_of(frame["target_name"].astype(str))]
    largest = pd.Series(np.abs(target), index=frame.index).groupby(table).transform("max")
    floor = np.maximum(NEAR_ZERO_SHARE * largest.to_numpy(), 1.0)
    absolute = np.abs(target) < floor
    out_of_scope = ((np.asarray(original_value) == 0)
                    & (np.asarray(original_period) != np.asarray(data_period)) & (sim != 0))
    return pd.DataFrame({
        "error_rule": np.where(absolute, ABSOLUTE, RELATIVE),
        "error_floor": floor,
        "score": np.abs(sim - target) / np.maximum(np.abs(target), floor),
        "scope": np.where(out_of_scope, OUT_OF_SCOPE, IN_SCOPE),
    }, index=frame.index)
