"""Sparse target matrix X (targets × cloned records) built clone by clone.

Each clone moves every base record into its assigned district; the engine recomputes
the record's values there (state rules, that clone's takeup draws), and each value lands
in the rows of the national, state and district targets it counts towards. Federal tax
results do not depend on the state, so Tax-Calculator runs once for all clones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.core.errors import InputError
from pipeline.core.parallel import InProcess, Runner, batches
from pipeline.engine import VARIABLES, TaxResults, compute_taxes, simulate
from pipeline.engine.takeup import draw_takeup
from pipeline.microdata import Microdata

_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "==": np.equal, "!=": np.not_equal, ">": np.greater,
    ">=": np.greater_equal, "<": np.less, "<=": np.less_equal,
}


@dataclass(frozen=True)
class _EntityIndex:
    """Row positions that carry household/tax-unit values down to the entities below."""

    person_household: np.ndarray
    person_tax_unit: np.ndarray
    tax_unit_household: np.ndarray
    n_households: int

    @classmethod
    def of(cls, md: Microdata) -> _EntityIndex:
        hh = pd.Index(md.household["household_id"].to_numpy())
        tu = pd.Index(md.tax_unit["tax_unit_id"].to_numpy())
        return cls(
            person_household=hh.get_indexer(md.person["household_id"].to_numpy()),
            person_tax_unit=tu.get_indexer(md.person["tax_unit_id"].to_numpy()),
            tax_unit_household=hh.get_indexer(md.tax_unit["household_id"].to_numpy()),
            n_households=len(hh),
        )

    def household_of(self, entity: str) -> np.ndarray | None:
        return {"person": self.person_household, "tax_unit": self.tax_unit_household}.get(entity)


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


def feature_contributions(
    sim_tables: dict[str, pd.DataFrame], features: list[Feature], idx: _EntityIndex
) -> np.ndarray:
    """(n_features × n_households) sum of each feature's variable over each household."""
    out = np.zeros((len(features), idx.n_households))
    for f, feature in enumerate(features):
        entity = feature.entity
        values = sim_tables[entity][feature.variable].to_numpy(dtype=np.float64)
        mask = np.ones(len(values), dtype=bool)
        for variable, op, threshold in feature.constraints:
            mask &= _OPS[op](_values_at(sim_tables, variable, entity, idx), threshold)
        weights = np.where(mask, values, 0.0)
        households = idx.household_of(entity)
        out[f] = weights if households is None else np.bincount(
            households, weights=weights, minlength=idx.n_households
        )
    return out


def _values_at(
    sim_tables: dict[str, pd.DataFrame], variable: str, entity: str, idx: _EntityIndex
) -> np.ndarray:
    source = VARIABLES[variable]
    values = sim_tables[source][variable].to_numpy(dtype=np.float64)
    if source == entity:
        return values
    if source == "household":
        return values[idx.household_of(entity)]
    if source == "tax_unit" and entity == "person":
        return values[idx.person_tax_unit]
    raise InputError(None, variable, f"a {source} variable cannot constrain a {entity} target",
                     "constrain on a variable of the target's entity or a larger one")


@dataclass(frozen=True)
class _RowLookup:
    """Target row for (feature, national | state | district); -1 where no such target."""

    national: np.ndarray
    state: np.ndarray
    district: np.ndarray
    district_position: np.ndarray  # district GEOID -> column of `district`

    @classmethod
    def of(cls, targets: pd.DataFrame, of_target: np.ndarray, n_features: int,
           districts: np.ndarray) -> _RowLookup:
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


def clone_microdata(md: Microdata, cd_geoid: np.ndarray, clone: int) -> Microdata:
    """The base records placed in one clone's districts, with that clone's takeup draws."""
    state = (cd_geoid // 100).astype(np.int64)
    snap_takeup, eitc_takeup = draw_takeup(
        md.household["household_id"].to_numpy(),
        md.tax_unit["household_id"].to_numpy(),
        clone,
        state,
    )
    household = md.household.assign(
        state_fips=state,
        congressional_district_geoid=cd_geoid.astype(np.int64),
        takes_up_snap_if_eligible=snap_takeup,
    )
    tax_unit = md.tax_unit.assign(takes_up_eitc=eitc_takeup)
    return replace(md, household=household, tax_unit=tax_unit)


CLONES_PER_TASK = 8  # a fixed cut of the clones into tasks, whatever the worker count


@dataclass(frozen=True)
class _Plan:
    """What every batch of clones needs: sent once to each worker."""

    md: Microdata
    taxes: TaxResults
    features: list[Feature]
    lookup: _RowLookup
    idx: _EntityIndex
    cd_geoid: np.ndarray


def build_matrix(
    md: Microdata,
    targets: pd.DataFrame,
    cd_geoid: np.ndarray,
    n_clones: int,
    districts: np.ndarray,
    runner: Runner | None = None,
) -> sp.csr_matrix:
    """X[t, clone·n + record] = the record's contribution to target t in that clone.

    Batches of clones are independent tasks; their entries are concatenated in clone order,
    so X is the same bits for any number of workers.
    """
    n = len(md.household)
    if len(cd_geoid) != n * n_clones:
        raise ValueError(f"cd_geoid has {len(cd_geoid)} entries, expected {n * n_clones}")
    features, of_target = parse_features(targets)
    plan = _Plan(md, compute_taxes(md),  # state-invariant: once for every clone
                 features, _RowLookup.of(targets, of_target, len(features), districts),
                 _EntityIndex.of(md), np.asarray(cd_geoid))
    parts = (runner or InProcess()).map(_clone_entries,
                                        batches(range(n_clones), CLONES_PER_TASK), plan,
                                        desc="package: batches of clones")
    rows, cols, vals = (np.concatenate([p[k] for p in parts]) for k in range(3))
    del parts
    X = sp.csr_matrix((vals, (rows, cols)), shape=(len(targets), n * n_clones),
                      dtype=np.float32)
    X.sum_duplicates()
    return X


def _clone_entries(clones: list[int], plan: _Plan) -> tuple[np.ndarray, ...]:
    """(rows, cols, values) of X for a batch of clones, in clone order."""
    md, n, lookup = plan.md, len(plan.md.household), plan.lookup
    rows, cols, vals = [], [], []
    for clone in clones:
        cd = plan.cd_geoid[clone * n:(clone + 1) * n]
        sim = simulate(clone_microdata(md, cd, clone), plan.taxes)
        tables = {"person": sim.person, "tax_unit": sim.tax_unit, "household": sim.household}
        contrib = feature_contributions(tables, plan.features, plan.idx)
        f, r = np.nonzero(contrib)
        value = contrib[f, r].astype(np.float32)
        for row in (lookup.national[f], lookup.state[f, cd[r] // 100],
                    lookup.district[f, lookup.district_position[cd[r]]]):
            keep = row >= 0
            rows.append(row[keep].astype(np.int32))
            cols.append((clone * n + r[keep]).astype(np.int64))
            vals.append(value[keep])
    empty = [np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float32)]
    return tuple(np.concatenate(p) if p else e for p, e in zip((rows, cols, vals), empty,
                                                                strict=True))


def initial_weights(targets: pd.DataFrame, cd_geoid: np.ndarray) -> np.ndarray:
    """Production's start: per district, its person-count total over its columns; 100 elsewhere."""
    person = (targets["geo_level"] == "district") & (targets["variable"] == "person_count")
    totals = targets[person].groupby("geographic_id")["value"].sum()
    ids, inverse, counts = np.unique(cd_geoid, return_inverse=True, return_counts=True)
    per_district = totals.reindex([str(i) for i in ids]).to_numpy(dtype=np.float64) / counts
    weights = per_district[inverse]
    return np.where(np.isnan(weights), 100.0, weights)
