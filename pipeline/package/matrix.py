"""Sparse target matrix X (targets × cloned records), built state by state.

Each state is one task: the engine computes every base record placed in the state, takeup
on (`Engine.state_values`, cached on disk per state when a cache directory is given); then
each of the state's columns takes its record's values in its own district, its clone's
takeup draws zero the variables they gate, and each value lands in the rows of the
national, state and district targets it counts towards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.core import heap
from pipeline.core.errors import InputError
from pipeline.core.parallel import InProcess, Runner
from pipeline.engine import VARIABLES, StateValues, load_engine
from pipeline.engine.base import Mixed
from pipeline.engine.state_cache import cached_state_values
from pipeline.engine.takeup import Takeup, draw_units
from pipeline.engine.variables import HOLDS
from pipeline.microdata import Microdata
from pipeline.package.geography import state_plan

_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "==": np.equal, "!=": np.not_equal, ">": np.greater,
    ">=": np.greater_equal, "<": np.less, "<=": np.less_equal,
}


@dataclass(frozen=True)
class Feature:
    """A target's non-geographic definition: one variable summed over a domain."""

    variable: str
    constraints: tuple[tuple[str, str, float], ...]

    @property
    def entity(self) -> str:
        return VARIABLES[self.variable]


def parse_features(targets: pd.DataFrame) -> tuple[list[Feature], np.ndarray]:
    """Distinct features and, per target row, the index of its feature."""
    index: dict[Feature, int] = {}
    of_target = np.empty(len(targets), dtype=np.int64)
    for i, (variable, constraints) in enumerate(
        zip(targets["variable"], targets["constraints"], strict=True)
    ):
        parsed = tuple(sorted((str(v), str(op), float(x)) for v, op, x in json.loads(constraints)))
        feature = Feature(str(variable), parsed)
        of_target[i] = index.setdefault(feature, len(index))
    return list(index), of_target


def feature_variables(features: list[Feature]) -> tuple[str, ...]:
    """Every variable the features sum or constrain on, sorted (what the engine computes)."""
    names = {f.variable for f in features} | {v for f in features for v, _, _ in f.constraints}
    return tuple(sorted(names))


@dataclass(frozen=True)
class RowLookup:
    """Target row for (feature, national | state | district); -1 where no such target."""

    national: np.ndarray
    state: np.ndarray
    district: np.ndarray
    district_position: np.ndarray  # district GEOID -> column of `district`

    @classmethod
    def of(cls, targets: pd.DataFrame, of_target: np.ndarray, n_features: int,
           districts: np.ndarray) -> RowLookup:
        district_position = np.full(int(districts.max()) + 1, -1, dtype=np.int64)
        district_position[districts] = np.arange(len(districts))
        national = np.full(n_features, -1, dtype=np.int64)
        state = np.full((n_features, 100), -1, dtype=np.int64)
        district = np.full((n_features, len(districts)), -1, dtype=np.int64)
        for row, (level, geo_id) in enumerate(
            zip(targets["geo_level"], targets["geographic_id"], strict=True)
        ):
            f = of_target[row]
            if level == "national":
                national[f] = row
            elif level == "state":
                state[f, int(geo_id)] = row
            elif level == "district":
                district[f, district_position[int(geo_id)]] = row
            else:
                raise InputError(None, "geo_level", f"unknown level {level!r}",
                                 "use national, state or district")
        return cls(national, state, district, district_position)


@dataclass(frozen=True)
class MatrixPlan:
    """What every state's task needs: sent once to each worker."""

    base: Microdata
    base_sha256: str
    engine: str
    features: list[Feature]
    lookup: RowLookup
    districts: pd.DataFrame  # the package's districts: cd_geoid, state_fips
    cache_dir: str | None


@dataclass(frozen=True)
class _Columns:
    """One state's columns with the rows of their records' tax units and persons."""

    cols: np.ndarray  # column indices, ascending
    record: np.ndarray  # base household row per column
    clone: np.ndarray
    cd: np.ndarray  # district GEOID per column
    district: np.ndarray  # per column: its district's index in the state's plan
    rows: dict[str, np.ndarray]  # entity -> base row of each expanded row
    col: dict[str, np.ndarray]  # entity -> column position (0..len(cols)) of each row
    person_tax_unit: np.ndarray  # each expanded person's expanded tax-unit row

    @classmethod
    def of(cls, base: Microdata, cols: np.ndarray, cd_geoid: np.ndarray,
           plan_districts: np.ndarray) -> _Columns:
        n = len(base.household)
        record, clone = cols % n, cols // n
        cd = cd_geoid[cols].astype(np.int64)
        tu_hh, p_hh = base.household_rows("tax_unit"), base.household_rows("person")
        p_tu = pd.Index(base.tax_unit["tax_unit_id"].to_numpy()).get_indexer(
            base.person["tax_unit_id"].to_numpy())
        tu_rows, tu_col, tu_start = _expand(record, np.bincount(tu_hh, minlength=n))
        p_rows, p_col, _ = _expand(record, np.bincount(p_hh, minlength=n))
        first_tu = np.concatenate([[0], np.cumsum(np.bincount(tu_hh, minlength=n))[:-1]])
        person_tax_unit = tu_start[p_col] + p_tu[p_rows] - first_tu[record[p_col]]
        district = pd.Index(plan_districts).get_indexer(cd)
        return cls(cols, record, clone, cd, district,
                   {"household": record, "tax_unit": tu_rows, "person": p_rows},
                   {"household": np.arange(len(cols)), "tax_unit": tu_col, "person": p_col},
                   person_tax_unit)

    def broadcast(self, values: np.ndarray, source: str, entity: str) -> np.ndarray:
        """A `source` variable's expanded values at `entity`'s rows (same or smaller)."""
        if entity not in HOLDS[source]:
            raise InputError(None, source, f"a {source} variable cannot constrain a {entity} "
                             "target", "constrain on a variable of the target's entity or a "
                             "larger one")
        if source == entity:
            return values
        if source == "household":
            return values[self.col[entity]]
        return values[self.person_tax_unit]  # a tax unit's, at its persons


def _expand(record: np.ndarray, count: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(base row, column position) of every member of each column's record, and each
    column's first expanded row."""
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    per = count[record]
    offsets = np.concatenate([[0], np.cumsum(per, dtype=np.int64)])
    rows = np.repeat(start[record] - offsets[:-1], per) + np.arange(offsets[-1])
    return rows, np.repeat(np.arange(len(record)), per), offsets[:-1]


def build_matrix(plan: MatrixPlan, targets: pd.DataFrame, cd_geoid: np.ndarray,
                 n_clones: int, runner: Runner | None = None
                 ) -> tuple[sp.csr_matrix, dict[int, float]]:
    """X[t, clone·n + record] = the record's contribution to target t in that clone, and
    each state's seconds (its engine values, computed or read from the cache, and its
    entries).

    States are independent tasks; X's entries do not depend on their order (no two tasks
    write one entry), so X is the same bits for any number of workers.
    """
    n = len(plan.base.household)
    if len(cd_geoid) != n * n_clones:
        raise ValueError(f"cd_geoid has {len(cd_geoid)} entries, expected {n * n_clones}")
    state = np.asarray(cd_geoid, dtype=np.int64) // 100
    order = np.argsort(state, kind="stable")
    states, starts = np.unique(state[order], return_index=True)
    items = [(int(s), order[a:b]) for s, a, b in
             zip(states, starts, [*starts[1:], len(order)], strict=True)]
    parts = (runner or InProcess()).map(state_entries, items, plan, np.asarray(cd_geoid),
                                        desc="package: states")
    seconds = {fips: round(float(p[3]), 2) for (fips, _), p in zip(items, parts, strict=True)}
    rows, cols, vals = (np.concatenate([p[k] for p in parts]) for k in range(3))
    del parts
    X = sp.csr_matrix((vals, (rows, cols)), shape=(len(targets), n * n_clones),
                      dtype=np.float32)
    X.sum_duplicates()
    return X, seconds


def state_entries(item: tuple[int, np.ndarray], plan: MatrixPlan, cd_geoid: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(rows, cols, values) of X for one state's columns, and the seconds it took."""
    started = time.perf_counter()
    fips, cols = item
    engine = load_engine(plan.engine)
    base = plan.base
    placement = state_plan(base.household["household_id"].to_numpy(), fips, plan.districts)
    values = cached_state_values(engine, base, plan.base_sha256, placement,
                                 feature_variables(plan.features),
                                 Path(plan.cache_dir) if plan.cache_dir else None)
    columns = _Columns.of(base, np.sort(cols), cd_geoid, placement.districts)
    expanded = _expanded_values(values, columns, engine, base, fips)
    # int32 columns while they fit: a quarter less to hold, move and concatenate.
    col_type = np.int32 if len(cd_geoid) <= np.iinfo(np.int32).max else np.int64
    rows, out_cols, vals = [], [], []
    lookup = plan.lookup
    for f, feature in enumerate(plan.features):
        entity = feature.entity
        mask = np.ones(len(columns.rows[entity]), dtype=bool)
        for variable, op, threshold in feature.constraints:
            at = columns.broadcast(expanded[variable], VARIABLES[variable], entity)
            mask &= _OPS[op](at, threshold)
        weights = np.where(mask, expanded[feature.variable], 0.0)
        contrib = np.bincount(columns.col[entity], weights=weights, minlength=len(columns.cols))
        (j,) = np.nonzero(contrib)
        value = contrib[j].astype(np.float32)
        for row in (np.full(len(j), lookup.national[f]), np.full(len(j), lookup.state[f, fips]),
                    lookup.district[f, lookup.district_position[columns.cd[j]]]):
            keep = row >= 0
            rows.append(row[keep].astype(np.int32))
            out_cols.append(columns.cols[j[keep]].astype(col_type))
            vals.append(value[keep])
    empty = [np.zeros(0, np.int32), np.zeros(0, col_type), np.zeros(0, np.float32)]
    parts = [np.concatenate(p) if p else e for p, e in zip((rows, out_cols, vals), empty,
                                                            strict=True)]
    del rows, out_cols, vals, expanded, values, columns
    heap.trim()  # a worker runs state after state: what this one freed goes back now
    return (*parts, time.perf_counter() - started)


def _expanded_values(values: StateValues, columns: _Columns, engine, base: Microdata,
                     fips: int) -> dict[str, np.ndarray]:
    """Every computed variable at the columns' expanded rows, each clone's takeup draws
    applied: zeroing the variables they gate, picking the on or off values of the others
    they change."""
    def gather(variable: str, off: str | None = None) -> np.ndarray:
        entity = VARIABLES[variable]
        return values.gather(variable, columns.rows[entity],
                             columns.district[columns.col[entity]], off)

    out = {variable: gather(variable) for variable in values.values}
    household_ids = base.household["household_id"].to_numpy()[columns.record]
    state = np.full(len(columns.cols), fips)
    draws = {takeup: draw_units(takeup, household_ids, columns.col[takeup.entity],
                                columns.clone, state) for takeup in engine.takeups
             if {*takeup.gates, *values.off.get(takeup.variable, {}),
                 *_mixed_variables(values, takeup)} & out.keys()}
    for takeup, takes_up in draws.items():  # picks first: another takeup may gate one
        for v in values.off.get(takeup.variable, {}):
            on = columns.broadcast(takes_up, takeup.entity, VARIABLES[v])
            out[v] = np.where(on, out[v], gather(v, takeup.variable))
        if takeup.variable in values.mixed:
            _pick_mixed(values.mixed[takeup.variable], columns, takeup.entity, takes_up, out)
    for takeup, takes_up in draws.items():
        for g in (g for g in takeup.gates if g in out):
            out[g] = out[g] * takes_up
    return out


def _mixed_variables(values: StateValues, takeup: Takeup) -> dict[str, np.ndarray]:
    mixed = values.mixed.get(takeup.variable)
    return mixed.values if mixed else {}


def _pick_mixed(mixed: Mixed, columns: _Columns, entity: str, takes_up: np.ndarray,
                out: dict[str, np.ndarray]) -> None:
    """At the columns of `mixed`'s records, each variable's value for the combination of
    the clone's draws of the units that matter (draw k is bit k of the combination)."""
    record = pd.Index(mixed.records).get_indexer(columns.record)
    at = np.flatnonzero(record >= 0)
    first = np.searchsorted(columns.col[entity], at)  # each column's first unit row
    offset = columns.rows[entity][first]  # ... and that unit's base row
    units = mixed.units[record[at]]
    expanded = first[:, None] + units - offset[:, None]
    bits = np.where(units >= 0, takes_up[np.where(units >= 0, expanded, 0)], False)
    combo = np.zeros(len(columns.cols), dtype=np.int64)
    combo[at] = (bits.astype(np.int64) << np.arange(units.shape[1])).sum(axis=1)
    for v, grid in mixed.values.items():
        if v not in out:
            continue
        target = VARIABLES[v]
        row = pd.Index(mixed.rows[v]).get_indexer(columns.rows[target])
        hit = np.flatnonzero(row >= 0)  # rows of mixed's records only
        col = columns.col[target][hit]
        out[v][hit] = grid[columns.district[col], row[hit], combo[col]]


def initial_weights(targets: pd.DataFrame, cd_geoid: np.ndarray) -> np.ndarray:
    """Production's start: per district, its person-count total over its columns; 100 elsewhere."""
    person = (targets["geo_level"] == "district") & (targets["variable"] == "person_count")
    totals = targets[person].groupby("geographic_id")["value"].sum()
    ids, inverse, counts = np.unique(cd_geoid, return_inverse=True, return_counts=True)
    per_district = totals.reindex([str(i) for i in ids]).to_numpy(dtype=np.float64) / counts
    weights = per_district[inverse]
    return np.where(np.isnan(weights), 100.0, weights)
