"""Reconciliation: what the fit trains on when two levels of one statistic disagree.

The target DB keeps every statistic as published (uprated); the target config's
`reconcile:` rules decide, at fit time, how a conflicting level is brought into line:
- `scale`: each `level` target is multiplied so the targets under one `parent` target sum
  to it, keeping the level's own shares (a survey level, such as ACS districts, takes its
  total from an administrative parent, such as USDA states);
- `drop`: the `level` targets leave training (they are still validated).
Rules apply in the order listed, each to the values the previous ones left. Every changed
target records the rule (`reconcile_rule`) and the scale (`reconcile_factor`); the value
before is `original_value × uprating_factor`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.targets.db import GEO_PREFIX, normalise_domain

METHODS = ("scale", "drop")
LEVELS = tuple(GEO_PREFIX)  # national, state, district: each level sums into the ones before
FIELDS = ("variable", "domain_variable", "level", "parent", "method", "name")
_REQUIRED = FIELDS[:-1]


@dataclass(frozen=True)
class ReconcileRule:
    variable: str
    domain_variable: str  # normalised: sorted, comma-joined
    level: str  # the level whose targets change
    parent: str  # the level taken as right
    method: str
    name: str  # recorded on every target the rule changes


def parse_rule(raw: object, path: str | Path | None, where: str) -> ReconcileRule:
    """One `reconcile:` entry, with every field checked (names are checked on use)."""
    fix = (f"write e.g. {{variable: household_count, domain_variable: snap, level: district, "
           f"parent: state, method: scale}}; fields {list(FIELDS)} (name optional)")
    if not isinstance(raw, dict):
        raise InputError(path, where, f"rule is {raw!r}", fix)
    unknown = sorted(set(map(str, raw)) - set(FIELDS))
    if unknown:
        raise InputError(path, f"{where}.{unknown[0]}", "unknown rule key", fix)
    missing = [f for f in _REQUIRED if f not in raw]
    if missing:
        raise InputError(path, f"{where}.{missing[0]}", "missing", fix)
    values = {k: "" if v is None and k == "domain_variable" else v for k, v in raw.items()}
    for key, value in values.items():
        if not isinstance(value, str):
            raise InputError(path, f"{where}.{key}", f"value {value!r} is not a string",
                             f"quote it, e.g. {key}: \"...\"")
    if values["method"] not in METHODS:
        raise InputError(path, f"{where}.method", f"unknown method {values['method']!r}",
                         f"use one of {list(METHODS)}")
    for key in ("level", "parent"):
        if values[key] not in LEVELS:
            raise InputError(path, f"{where}.{key}", f"unknown geo level {values[key]!r}",
                             f"use one of {list(LEVELS)}")
    if LEVELS.index(values["parent"]) >= LEVELS.index(values["level"]):
        raise InputError(path, f"{where}.parent",
                         f"{values['parent']} is not above {values['level']}",
                         f"the parent is a larger area: order {list(LEVELS)}")
    domain = normalise_domain(values["domain_variable"])
    default = (f"{values['method']} {values['level']} {values['variable']}[{domain}] "
               f"{'to' if values['method'] == 'scale' else 'for'} {values['parent']}")
    return ReconcileRule(values["variable"], domain, values["level"], values["parent"],
                         values["method"], values.get("name") or default)


def target_groups(targets: pd.DataFrame) -> list[list[str]]:
    """Every (variable, domain_variable, geo_level) present: what a rule may name."""
    keys = zip(targets["variable"].astype(str),
               targets["domain_variable"].fillna("").astype(str).map(normalise_domain),
               targets["geo_level"].astype(str), strict=True)
    return [list(k) for k in sorted(set(keys))]


def _check(rule: ReconcileRule, groups: Iterable[Iterable[str]], path: str | Path | None,
           where: str) -> None:
    known = {tuple(g) for g in groups}
    statistics = sorted({(v, d) for v, d, _ in known})
    levels = sorted(lvl for v, d, lvl in known
                    if (v, d) == (rule.variable, rule.domain_variable))
    if not levels:
        raise InputError(path, f"{where}.variable",
                         f"no target has variable {rule.variable!r} with domain "
                         f"{rule.domain_variable!r}",
                         f"use one of (variable, domain_variable) {statistics}")
    for key in ("level", "parent"):
        if getattr(rule, key) not in levels:
            raise InputError(path, f"{where}.{key}",
                             f"no {getattr(rule, key)} targets of {rule.variable}"
                             f"[{rule.domain_variable}]",
                             f"name a level where they exist: {levels}")


def _parent_key(frame: pd.DataFrame, level: str, parent: str) -> pd.Series:
    """The parent area of each `level` row (a district's state, or the nation) with the
    row's constraints: equal for a parent target and each of its children."""
    if parent == "national":
        area = pd.Series("US", index=frame.index)
    elif level == "district":
        area = frame["geographic_id"].astype(int).floordiv(100).astype(str)
    else:
        area = frame["geographic_id"].astype(str)
    return area + "|" + frame["constraints"].astype(str)


def reconcile(targets: pd.DataFrame, selected: np.ndarray, rules: Iterable[ReconcileRule],
              groups: Iterable[Iterable[str]], path: str | Path | None) -> tuple[
                  pd.DataFrame, np.ndarray]:
    """Apply `rules` in order; return the reconciled copy of `targets` and the selection.

    Names are checked against `groups` (the whole target DB's, see `target_groups`). A
    child whose parent target is not in `targets` (a package for a few states has no
    national targets) is left as it is.
    """
    out = targets.copy()
    keep = np.asarray(selected, dtype=bool).copy()
    domain = out["domain_variable"].fillna("").astype(str).map(normalise_domain)
    groups = list(groups)
    for i, rule in enumerate(rules):
        where = f"reconcile[{i}]"
        _check(rule, groups, path, where)
        same = (out["variable"] == rule.variable) & (domain == rule.domain_variable)
        child = same & (out["geo_level"] == rule.level)
        if rule.method == "drop":
            keep &= ~child.to_numpy()
            out.loc[child, "reconcile_rule"] = rule.name
            continue
        parents = out[same & (out["geo_level"] == rule.parent)]
        parent_value = pd.Series(parents["value"].to_numpy(),
                                 index=_parent_key(parents, rule.parent, rule.parent))
        key = _parent_key(out[child], rule.level, rule.parent)
        key = key[key.isin(parent_value.index)]
        sums = out.loc[key.index, "value"].groupby(key).sum()
        empty = sums[(sums == 0) & (parent_value.reindex(sums.index) != 0)]
        if len(empty):
            raise InputError(path, where, f"the {rule.level} targets under "
                             f"{empty.index[0].split('|')[0]} sum to 0, so no share can be "
                             "kept", f"use method: drop for the {rule.level} level")
        factor = (parent_value / sums).reindex(key).fillna(1.0).to_numpy()
        out.loc[key.index, "value"] = out.loc[key.index, "value"].to_numpy() * factor
        out.loc[key.index, "reconcile_factor"] = (
            out.loc[key.index, "reconcile_factor"].to_numpy() * factor)
        out.loc[key.index, "reconcile_rule"] = rule.name
    return out, keep
