"""Validation: recompute every target from the published H5 files, independently.

This is the second of the two paths through the engine: it reads the files users get, runs
`simulate` once per file (`pipeline.validate.published`), and aggregates each target with its own
pandas code (never the matrix builder's), so the X·w consistency check compares two
genuinely separate answers.
Geography comes from the file a target is evaluated on: national targets from
`national.h5`, state targets from `states/<AB>.h5`, district targets from
`districts/<geoid>.h5`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import InputError
from pipeline.core.geo import STATE_ABBR, STATE_NAME
from pipeline.core.hashing import sha256_dir
from pipeline.core.tables import check_table
from pipeline.engine import VARIABLES, Simulation
from pipeline.microdata import Microdata
from pipeline.publish.stacking import district_file, load_manifest, state_file
from pipeline.targets.db import TARGETS
from pipeline.validate.published import iter_published
from pipeline.validate.sanity import FAIL, PASS, WARN, sanity_check_file, summarize
from pipeline.validate.scoring import (
    ABSOLUTE,
    IN_SCOPE,
    OUT_OF_SCOPE,
    RELATIVE,
    score_errors,
)

_TEXT, _NUMBER = pa.Column(str), pa.Column(float, nullable=True)  # NaN: gate 2 refuses it


def _added(dtype: object, checks: pa.Check | None = None) -> pa.Column:
    """A column after production's: always written, optional when reading an older CSV."""
    return pa.Column(dtype, checks, required=False)


# Production's validation_results.csv columns, in order; then ours: the target's held-out
# group and provenance (published value and year, uprating, reconciliation), and its robust
# score (`pipeline.validate.scoring`).
VALIDATION_RESULTS = pa.DataFrameSchema({
    "area_type": pa.Column(str, pa.Check.isin(["national", "state", "district"])),
    "area_id": _TEXT, "display_name": _TEXT, "district": _TEXT, "variable": _TEXT,
    "target_name": pa.Column(str, unique=True), "period": pa.Column("int64"),
    "target_value": _NUMBER, "sim_value": _NUMBER, "error": _NUMBER, "rel_error": _NUMBER,
    "abs_error": _NUMBER, "rel_abs_error": _NUMBER,
    "sanity_check": pa.Column(str, pa.Check.isin([PASS, WARN, FAIL])),
    "sanity_reason": _TEXT, "in_training": pa.Column(bool),
    "holdout_group": _added(str), "original_value": _added(float),
    "original_period": _added("int64"), "uprating_factor": _added(float),
    "reconcile_rule": _added(str), "reconcile_factor": _added(float),
    "error_rule": _added(str, pa.Check.isin([RELATIVE, ABSOLUTE])),
    "error_floor": _added(float), "score": pa.Column(float, nullable=True, required=False),
    "scope": _added(str, pa.Check.isin([IN_SCOPE, OUT_OF_SCOPE])),
}, name="validation_results")
COLUMNS = tuple(VALIDATION_RESULTS.columns)
_PROVENANCE = ("holdout_group", "original_value", "original_period", "uprating_factor",
               "reconcile_rule", "reconcile_factor")
_COMPARE = {"==": "eq", "!=": "ne", ">": "gt", ">=": "ge", "<": "lt", "<=": "le"}
_EMPTY = "no households in the published files"


def validate_h5s(stacked_dir: str | Path, targets_df: pd.DataFrame, selected: np.ndarray
                 ) -> pd.DataFrame:
    """One row per target: the published files' total next to the target value.

    Every target is validated; `in_training` marks the ones the fit used (held-out and
    config-excluded targets are False). Production's relative errors divide by
    max(|target|, 1); `score` is the robust error the gates judge.
    """
    stacked_dir = Path(stacked_dir)
    manifest = load_manifest(stacked_dir)
    targets = check_table(TARGETS, targets_df.reset_index(drop=True), None,
                          "pass the targets frame load_selection returns")
    selected = np.asarray(selected, dtype=bool)
    if selected.shape != (len(targets),):
        raise InputError(None, "selected", f"{selected.shape[0]} flags for {len(targets)} targets",
                         "pass the selection made for this targets frame")
    unknown = sorted(set(targets["variable"]) - set(VARIABLES))
    if unknown:
        raise InputError(None, "variable", f"the engine cannot compute {unknown}",
                         f"use one of {sorted(VARIABLES)}")
    areas = [_area(level, str(geo)) for level, geo in
             zip(targets["geo_level"], targets["geographic_id"], strict=True)]
    files = [_file_of(level, code, manifest) for level, code, _, _ in areas]
    sim_value = np.zeros(len(targets))
    sanity = np.full(len(targets), WARN, dtype=object)
    reason = np.full(len(targets), _EMPTY, dtype=object)
    groups = pd.Series(range(len(targets))).groupby(files, sort=True).indices
    for rel, md, sim in iter_published(stacked_dir, [f for f in groups if f]):
        rows = groups[rel]
        sanity[rows], reason[rows] = summarize(sanity_check_file(md, sim))
        tables = _EntityTables(md, sim)
        for i in rows:
            sim_value[i] = tables.total(targets.at[i, "variable"], targets.at[i, "constraints"])
    target = targets["value"].to_numpy(dtype=np.float64)
    error = sim_value - target
    rel_error = error / np.maximum(np.abs(target), 1.0)
    frame = pd.DataFrame({
        "area_type": targets["geo_level"].to_numpy(),
        "area_id": targets["geographic_id"].astype(str).to_numpy(),
        "display_name": [a[2] for a in areas],
        "district": [a[3] for a in areas],
        "variable": targets["variable"].to_numpy(),
        "target_name": targets["target_name"].to_numpy(),
        "period": targets["period"].to_numpy(),
        "target_value": target,
        "sim_value": sim_value,
        "error": error,
        "rel_error": rel_error,
        "abs_error": np.abs(error),
        "rel_abs_error": np.abs(rel_error),
        "sanity_check": sanity,
        "sanity_reason": reason,
        "in_training": selected,
        **{c: targets[c].to_numpy() for c in _PROVENANCE},
    })
    scores = score_errors(frame, targets["original_value"].to_numpy(),
                          targets["original_period"].to_numpy(), targets["period"].to_numpy())
    return pd.concat([frame, scores], axis=1)[list(COLUMNS)]


def validate_h5s_cached(stacked_dir: str | Path, targets_df: pd.DataFrame, selected: np.ndarray,
                        cache_dir: str | Path) -> pd.DataFrame:
    """`validate_h5s`, remembered for one (published files, targets, selection).

    The X·w check and the validation asset read the same files with the same targets;
    the second caller reads the first one's result instead of walking every file again.
    The key hashes the files' bytes, not the manifest, so a file changed or damaged since
    the first walk is walked (and refused) again. Only the latest entry is kept.
    """
    key = hashlib.sha256(sha256_dir(stacked_dir).encode())
    key.update(pd.util.hash_pandas_object(targets_df, index=False).to_numpy().tobytes())
    key.update(np.asarray(selected, dtype=bool).tobytes())
    path = Path(cache_dir) / f"{key.hexdigest()[:32]}.csv"
    if not path.exists():
        write_validation_csv(validate_h5s(stacked_dir, targets_df, selected), path)
        for stale in Path(cache_dir).glob("*.csv"):
            if stale != path:
                stale.unlink()
    return read_validation_csv(path)


def read_validation_csv(path: str | Path) -> pd.DataFrame:
    """Read what `write_validation_csv` wrote, with text columns kept as text."""
    text = ("area_id", "district", "sanity_reason", "target_name", "holdout_group",
            "reconcile_rule")
    df = pd.read_csv(path, dtype=dict.fromkeys(text, str))
    present = [c for c in text if c in df.columns]
    df[present] = df[present].fillna("")
    return check_table(VALIDATION_RESULTS, df, path, "materialize validation_results again",
                       csv=True)


def write_validation_csv(df: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def _area(level: str, geo: str) -> tuple[str, int, str, str]:
    """(level, numeric id, display name, district label) of one target's area."""
    if level == "national":
        return level, 0, "United States", ""
    try:
        code = int(geo)
    except ValueError:
        code = -1
    fips = code if level == "state" else code // 100
    if level not in ("state", "district") or fips not in STATE_ABBR:
        raise InputError(None, "geo_level/geographic_id", f"unknown area {level} {geo!r}",
                         "use national/US, state/<FIPS> or district/<GEOID>")
    if level == "state":
        return level, code, STATE_NAME[fips], ""
    number = code % 100
    label = f"{STATE_ABBR[fips]}-{'AL' if number == 0 else f'{number:02d}'}"
    return level, code, label, label


def _file_of(level: str, code: int, manifest: dict) -> str:
    """The published file holding an area, or "" for an area the manifest lists as empty."""
    if level == "national":
        rel = "national.h5"
    elif level == "state":
        rel = state_file(STATE_ABBR[code])
        if code in manifest["empty_states"]:
            return ""
    else:
        rel = district_file(code)
        if code in manifest["empty_districts"]:
            return ""
    if rel not in manifest["files"]:
        raise InputError(rel, None, "no published file for this target's area",
                         "restack with a package whose geography covers every target area")
    return rel


class _EntityTables:
    """A file's simulated values by entity, with each entity's household weight."""

    def __init__(self, md: Microdata, sim: Simulation):
        hh_id = md.household["household_id"]
        self.frames = {"household": sim.household, "tax_unit": sim.tax_unit,
                       "person": sim.person}
        self.household_id = {"household": hh_id, "tax_unit": md.tax_unit["household_id"],
                             "person": md.person["household_id"]}
        self.person_tax_unit = md.person["tax_unit_id"]
        self.tax_unit_id = md.tax_unit["tax_unit_id"]
        weight = pd.Series(md.household["household_weight"].to_numpy(np.float64),
                           index=hh_id.to_numpy())
        self.weight = {e: weight.reindex(ids.to_numpy()).to_numpy()
                       for e, ids in self.household_id.items()}
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def values(self, variable: str, entity: str) -> np.ndarray:
        """`variable` at `entity`: own values, or a larger entity's broadcast down."""
        key = (variable, entity)
        if key not in self._cache:
            source = VARIABLES[variable]
            own = self.frames[source][variable]
            if source == entity:
                out = own.to_numpy(dtype=np.float64)
            elif source == "household":
                by_id = pd.Series(own.to_numpy(np.float64), index=self.household_id[source])
                out = by_id.reindex(self.household_id[entity].to_numpy()).to_numpy()
            elif source == "tax_unit" and entity == "person":
                by_id = pd.Series(own.to_numpy(np.float64), index=self.tax_unit_id.to_numpy())
                out = by_id.reindex(self.person_tax_unit.to_numpy()).to_numpy()
            else:
                raise InputError(None, variable,
                                 f"a {source} variable cannot constrain a {entity} target",
                                 "constrain on a variable of the target's entity or a larger one")
            self._cache[key] = out
        return self._cache[key]

    def total(self, variable: str, constraints: str) -> float:
        entity = VARIABLES[variable]
        mask = pd.Series(True, index=range(len(self.weight[entity])))
        for var, op, threshold in json.loads(constraints):
            if op not in _COMPARE:
                raise InputError(None, "constraints", f"unknown operation {op!r}",
                                 f"use one of {list(_COMPARE)}")
            column = pd.Series(self.values(str(var), entity))
            mask &= getattr(column, _COMPARE[op])(float(threshold))
        values = self.values(variable, entity)
        picked = mask.to_numpy()
        return float(np.sum(values[picked] * self.weight[entity][picked]))
