"""Validation: recompute every target from the published H5 files, independently.

This is the second of the two paths through the engine: it reads the files users get (one
walk, `pipeline.validate.published`, shared with the structural sanity check), runs
`simulate` on them, and aggregates each target with its own code (`aggregate.py`, never the
matrix builder's), so the X·w consistency check compares two genuinely separate answers.
Geography comes from the file a target is evaluated on: national targets from
`national.h5`, state targets from `states/<AB>.h5`, district targets from
`districts/<geoid>.h5`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import InputError
from pipeline.core.geo import STATE_ABBR, STATE_NAME
from pipeline.core.parallel import Runner
from pipeline.core.tables import check_table
from pipeline.engine import VARIABLES
from pipeline.engine.tax_cache import TaxCache
from pipeline.publish.stacking import district_file, load_manifest, state_file
from pipeline.targets.db import TARGETS
from pipeline.validate.published import FileTask, Walk, walk, walk_cached
from pipeline.validate.sanity import FAIL, PASS, WARN, SanityResult, summarize
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
_EMPTY = "no households in the published files"


@dataclass(frozen=True)
class Published:
    """Every target placed on the published file that holds its area, and the walk."""

    areas: list[tuple[str, int, str, str]]  # (level, numeric id, display name, district)
    files: list[str]  # per target: its file, or "" for an area left empty
    walk: Walk

    def sim_value(self) -> np.ndarray:
        value = np.zeros(len(self.files))
        seen: dict[str, int] = {}
        for i, rel in enumerate(self.files):
            if rel:
                value[i] = self.walk.totals[rel][seen.get(rel, 0)]
                seen[rel] = seen.get(rel, 0) + 1
        return value


def walk_published(stacked_dir: str | Path, targets_df: pd.DataFrame,
                   seed_of: Callable[[], TaxCache], runner: Runner | None = None,
                   cache_dir: str | Path | None = None) -> Published:
    """Walk every published file once: sanity of each, totals of every target."""
    stacked_dir = Path(stacked_dir)
    manifest = load_manifest(stacked_dir)
    targets = targets_df.reset_index(drop=True)
    unknown = sorted(set(targets["variable"]) - set(VARIABLES))
    if unknown:
        raise InputError(None, "variable", f"the engine cannot compute {unknown}",
                         f"use one of {sorted(VARIABLES)}")
    areas = [_area(level, str(geo)) for level, geo in
             zip(targets["geo_level"], targets["geographic_id"], strict=True)]
    files = [_file_of(level, code, manifest) for level, code, _, _ in areas]
    placed = pd.Series(files)
    tasks = [FileTask(rel, entry, targets.loc[placed == rel, ["variable", "constraints"]]
                      .reset_index(drop=True))
             for rel, entry in manifest["files"].items()]
    found = (walk_cached(stacked_dir, tasks, seed_of, runner, cache_dir) if cache_dir
             else walk(stacked_dir, tasks, seed_of(), runner))
    return Published(areas, files, found)


def validate_h5s(published: Published, targets_df: pd.DataFrame, selected: np.ndarray
                 ) -> pd.DataFrame:
    """One row per target: the published files' total next to the target value.

    Every target is validated; `in_training` marks the ones the fit used (held-out and
    config-excluded targets are False). Production's relative errors divide by
    max(|target|, 1); `score` is the robust error the gates judge.
    """
    targets = check_table(TARGETS, targets_df.reset_index(drop=True), None,
                          "pass the targets frame load_selection returns")
    selected = np.asarray(selected, dtype=bool)
    if selected.shape != (len(targets),):
        raise InputError(None, "selected", f"{selected.shape[0]} flags for {len(targets)} targets",
                         "pass the selection made for this targets frame")
    by_file = {rel: summarize([SanityResult(c, st, r) for c, st, r in
                               group[["check", "status", "reason"]].values])
               for rel, group in published.walk.sanity.groupby("file")}
    sanity = [by_file[f][0] if f else WARN for f in published.files]
    reason = [by_file[f][1] if f else _EMPTY for f in published.files]
    areas = published.areas
    sim_value = published.sim_value()
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
