"""Hierarchical consistency: does a level's total agree with the sum of the level below?

Targets of the same variable and the same non-geographic constraints exist at several
levels (ACS age bins for the nation, each state and each district; SNAP households for
each state from USDA and for each district from the ACS). The fit cannot hit a parent and
children that disagree, so the gaps are reported before anything trains on them. The
report is a warning: reconciling is the target config's job (`pipeline.targets.reconcile`).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from pipeline.core.report import GateReport, Rule
from pipeline.targets.db import format_value

# (parent level, child level): whom a child's value sums into.
PAIRS = (("national", "state"), ("national", "district"), ("state", "district"))
GAP_COLUMNS = ["variable", "domain_variable", "domain", "parent_level", "parent_id",
               "child_level", "n_children", "parent_value", "children_sum", "gap"]


def _parent_id(level: str, geographic_id: pd.Series, parent_level: str) -> pd.Series:
    if parent_level == "national":
        return pd.Series("US", index=geographic_id.index)
    return geographic_id.astype(int).floordiv(100).astype(str)  # a district's state


def _domain(constraints: str) -> str:
    parts = [f"{v}{op}{format_value(x)}" for v, op, x in json.loads(constraints)]
    return f"[{','.join(parts)}]" if parts else "(all)"


def hierarchy_gaps(targets: pd.DataFrame) -> pd.DataFrame:
    """One row per parent target whose children (same variable and constraints, one level
    down) exist: their sum and the gap (children − parent) / max(|parent|, 1)."""
    t = targets.assign(domain=targets["constraints"].map(_domain))
    rows = []
    for parent_level, child_level in PAIRS:
        parents = t[t["geo_level"] == parent_level]
        children = t[t["geo_level"] == child_level]
        if parents.empty or children.empty:
            continue
        children = children.assign(parent_id=_parent_id(child_level, children["geographic_id"],
                                                         parent_level))
        sums = (children.groupby(["variable", "domain", "parent_id"])["value"]
                .agg(children_sum="sum", n_children="size").reset_index())
        merged = parents.rename(columns={"geographic_id": "parent_id", "value": "parent_value"}
                                ).merge(sums, on=["variable", "domain", "parent_id"])
        rows.append(merged.assign(parent_level=parent_level, child_level=child_level))
    if not rows:
        return pd.DataFrame(columns=GAP_COLUMNS)
    gaps = pd.concat(rows, ignore_index=True)
    gaps["gap"] = (gaps["children_sum"] - gaps["parent_value"]) / np.maximum(
        gaps["parent_value"].abs(), 1.0)
    order = gaps["gap"].abs().sort_values(ascending=False, kind="stable").index
    return gaps.loc[order, GAP_COLUMNS].reset_index(drop=True)


def gap_summary(gaps: pd.DataFrame) -> pd.DataFrame:
    """Per variable × domain variable × level pair: comparisons, max and mean |gap|, worst."""
    if gaps.empty:
        return pd.DataFrame(columns=["variable", "domain_variable", "levels", "comparisons",
                                     "max_abs_gap", "mean_abs_gap", "worst"])
    g = gaps.assign(levels=gaps["parent_level"] + " vs " + gaps["child_level"] + "s",
                    abs_gap=gaps["gap"].abs())
    worst = g.loc[g.groupby(["variable", "domain_variable", "levels"])["abs_gap"].idxmax()]
    summary = g.groupby(["variable", "domain_variable", "levels"]).agg(
        comparisons=("abs_gap", "size"), max_abs_gap=("abs_gap", "max"),
        mean_abs_gap=("abs_gap", "mean")).reset_index()
    summary["worst"] = (worst["parent_id"] + " " + worst["domain"]).to_numpy()
    return summary.sort_values("max_abs_gap", ascending=False, kind="stable").reset_index(
        drop=True)


def hierarchy_report(targets: pd.DataFrame, tolerance: float, top: int = 10) -> GateReport:
    """Warning report: passes when no parent and its children's sum differ beyond tolerance."""
    gaps = hierarchy_gaps(targets)
    over = gaps[gaps["gap"].abs() > tolerance]
    failing = tuple(f"{r.parent_id} {r.variable}{r.domain} vs {r.child_level}s: {r.gap:+.1%}"
                    for r in over.head(top).itertuples())
    rule = Rule("levels_agree", over.empty,
                f"{len(over)} of {len(gaps)} parent targets differ from the sum of their "
                f"children by more than {tolerance:.0%}", failing)
    return GateReport.of(
        [rule],
        {"comparisons": float(len(gaps)), "over_tolerance": float(len(over)),
         "max_abs_gap": float(gaps["gap"].abs().max()) if len(gaps) else 0.0},
        {"summary": gap_summary(gaps).to_dict(orient="records"),
         "largest_gaps": gaps.head(top).to_dict(orient="records")},
        summary=rule.detail)
