"""Hierarchical consistency: does a level's total agree with the sum of the level below?

Targets of the same variable and the same non-geographic constraints exist at several
levels (ACS age bins for the nation, each state and each district; SNAP households for
each state from USDA and for each district from the ACS). The fit cannot hit a parent and
children that disagree, so the gaps are reported before anything trains on them.
Reconciling is the target config's job (`pipeline.targets.reconcile`): the warning
(`config_hierarchy_report`) counts only the conflicts a config leaves between levels it
trains, after its reconcile rules, and says how many its rules resolved.
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
    down) exist: their sum and the gap (children − parent) / max(|parent|, 1). With a
    boolean `trained` column, also whether the parent is trained (`parent_trained`) and
    whether any child is (`children_trained`)."""
    trained = "trained" in targets
    t = targets.assign(domain=targets["constraints"].map(_domain))
    rows = []
    for parent_level, child_level in PAIRS:
        parents = t[t["geo_level"] == parent_level]
        children = t[t["geo_level"] == child_level]
        if parents.empty or children.empty:
            continue
        children = children.assign(parent_id=_parent_id(child_level, children["geographic_id"],
                                                         parent_level))
        by = children.groupby(["variable", "domain", "parent_id"])
        sums = by["value"].agg(children_sum="sum", n_children="size")
        if trained:
            sums["children_trained"] = by["trained"].any()
        merged = parents.rename(columns={"geographic_id": "parent_id", "value": "parent_value",
                                         "trained": "parent_trained"}
                                ).merge(sums.reset_index(), on=["variable", "domain", "parent_id"])
        rows.append(merged.assign(parent_level=parent_level, child_level=child_level))
    columns = GAP_COLUMNS + (["parent_trained", "children_trained"] if trained else [])
    if not rows:
        return pd.DataFrame(columns=columns)
    gaps = pd.concat(rows, ignore_index=True)
    gaps["gap"] = (gaps["children_sum"] - gaps["parent_value"]) / np.maximum(
        gaps["parent_value"].abs(), 1.0)
    order = gaps["gap"].abs().sort_values(ascending=False, kind="stable").index
    return gaps.loc[order, columns].reset_index(drop=True)


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


def config_hierarchy_report(targets: pd.DataFrame, configured: pd.DataFrame,
                            selected: np.ndarray, tolerance: float, top: int = 10
                            ) -> GateReport:
    """Warning report for one target config: the conflicts (a parent and the sum of its
    children differing beyond `tolerance`) that remain between a trained parent and its
    trained children once the config's reconcile rules have run. A conflict a rule scaled
    away or dropped from training is counted as resolved; one between levels the config
    does not both train is no conflict for the fit.

    Values are compared over every child (held-out ones included: leaving a child out of
    training does not change what its siblings should sum to).
    """
    trained = np.asarray(selected, dtype=bool)
    before = _over(hierarchy_gaps(targets.assign(trained=trained)), tolerance)
    after = _over(hierarchy_gaps(configured.assign(trained=trained)), tolerance)
    remaining = after[after["parent_trained"] & after["children_trained"]]
    key = ["variable", "domain", "parent_level", "parent_id", "child_level"]
    conflicts = before[before["parent_trained"] & before["children_trained"]]
    resolved = len(conflicts.merge(remaining[key], on=key, how="left", indicator=True)
                   .query("_merge == 'left_only'"))
    failing = tuple(f"{r.parent_id} {r.variable}{r.domain} vs {r.child_level}s: {r.gap:+.1%}"
                    for r in remaining.head(top).itertuples())
    rule = Rule("levels_agree", remaining.empty,
                f"{len(remaining)} conflict{'' if len(remaining) == 1 else 's'} no reconcile "
                "rule resolves between trained levels "
                f"(a parent and its children's sum differing by more than {tolerance:.0%}); "
                f"{resolved} resolved by the config's reconcile rules", failing,
                value=float(remaining["gap"].abs().max()) if len(remaining) else 0.0,
                limit=tolerance)
    return GateReport.of(
        [rule],
        {"unresolved": float(len(remaining)), "resolved_by_reconcile": float(resolved),
         "max_abs_gap": float(remaining["gap"].abs().max()) if len(remaining) else 0.0},
        {"unresolved": remaining.head(top).to_dict(orient="records")},
        summary=rule.detail)


def _over(gaps: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    return gaps[gaps["gap"].abs() > tolerance]
