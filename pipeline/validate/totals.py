"""Validation: recompute every target from the published H5 files, independently.

This is the second of the two paths through the engine: it reads the files users get (one
walk, `pipeline.validate.published`, shared with the structural sanity check), runs
`simulate` on them, and aggregates each target with its own code (`aggregate.py`, never the
matrix builder's), so the X·w consistency check compares two genuinely separate answers.

A release holds the files of every publishing fit (`pipeline.core.fit_table`), and each
fit is validated on its own (`fit` column), by the files it publishes:
- area files (the local fit's state and district files): state targets from
  `states/<AB>.h5`, district targets from `districts/<geoid>.h5`, national targets summed
  over every state file;
- one file (the national fit's `national.h5`): the targets of the geo levels its fit trains
  on, each restricted to its area by the area's own constraint (`state_fips`, ...).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import scipy.sparse as sp
from pydantic import Field

from pipeline.core.atomic import atomic_path
from pipeline.core.contracts import check_table
from pipeline.core.errors import InputError
from pipeline.core.fit_table import AREA_FILES, LOCAL, Fit
from pipeline.core.geo import STATE_ABBR, STATE_NAME
from pipeline.core.parallel import Runner
from pipeline.core.settings import Settings
from pipeline.engine import EngineIdentity, load_engine
from pipeline.engine.tax_cache import TaxCache
from pipeline.fit.training import products_f64
from pipeline.publish.stacking import district_file, load_manifest, state_file
from pipeline.targets.db import TARGETS
from pipeline.validate.published import FileTask, Walk, engine_of, walk, walk_cached
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
# group and provenance (published value and year, uprating, reconciliation), its robust
# score (`pipeline.validate.scoring`), and the fit whose files gave sim_value.
VALIDATION_RESULTS = pa.DataFrameSchema({
    "area_type": pa.Column(str, pa.Check.isin(["national", "state", "district"])),
    "area_id": _TEXT, "display_name": _TEXT, "district": _TEXT, "variable": _TEXT,
    "target_name": pa.Column(str), "period": pa.Column("int64"),
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
    "fit": _added(str),  # the fit table's name of the fit whose files gave sim_value
    "engine": _added(str),  # the engine that computed sim_value (name, version, parameters)
}, unique=["fit", "target_name"], name="validation_results")
COLUMNS = tuple(VALIDATION_RESULTS.columns)
_PROVENANCE = ("holdout_group", "original_value", "original_period", "uprating_factor",
               "reconcile_rule", "reconcile_factor")
_EMPTY = "no households in the published files"
_MATRIX = "publishes no files: totals are X·w on the package's matrix"


@dataclass(frozen=True)
class FitTargets:
    """One fit as validation sees it: the package's targets under the fit's config, the
    ones it trained on, the files that hold its totals (`publishes`, as in the fit table)
    and the rows those files are judged on (`validated`)."""

    fit: str
    publishes: str | None
    targets: pd.DataFrame
    selected: np.ndarray
    validated: np.ndarray

    @classmethod
    def of(cls, fit: Fit, targets: pd.DataFrame, selected: np.ndarray) -> FitTargets:
        """Area files cover every area; a single file is judged at the geo levels its fit
        trains on (a 50K-record file says little about one district)."""
        targets = targets.reset_index(drop=True)
        selected = np.asarray(selected, dtype=bool)
        if selected.shape != (len(targets),):
            raise InputError(None, "selected", f"{selected.shape[0]} flags for "
                             f"{len(targets)} targets",
                             "pass the selection made for this targets frame")
        levels = set(targets.loc[selected, "geo_level"])
        validated = (np.ones(len(targets), bool) if fit.publishes == AREA_FILES
                     else targets["geo_level"].isin(levels).to_numpy())
        return cls(fit.name, fit.publishes, targets, selected, validated)

    @property
    def rows(self) -> pd.DataFrame:
        return self.targets[self.validated].reset_index(drop=True)


Place = tuple[str, int]  # (published file, row of its task)


class DistrictSample(Settings):
    """Which district files a large release walks: the largest and a seeded draw of the
    rest (every state file and the national file are always walked)."""

    size: int = Field(40, ge=1, description="district files drawn at random besides the "
                      "largest")
    largest: int = Field(10, ge=0, description="the district files with the most "
                         "households, always walked")
    seed: int = Field(0, ge=0, description="which districts the draw picks")


def engine_label(identity: dict[str, str]) -> str:
    """How validation_results.csv names an engine identity (builtin before engines had
    names)."""
    if not identity.get("name"):
        return "builtin"
    return EngineIdentity(identity["name"], identity["version"],
                          identity["parameters_sha256"]).label()


def sample_districts(manifest: dict[str, Any], sample: DistrictSample | None) -> list[str]:
    """The district files to walk, sorted: all of them without a sample."""
    files = [rel for rel in manifest["files"] if rel.startswith("districts/")]
    if sample is None:
        return sorted(files)
    by_size = sorted(files, key=lambda rel: (-manifest["files"][rel]["households"], rel))
    largest = by_size[:sample.largest]
    rest = sorted(by_size[sample.largest:],
                  key=lambda rel: hashlib.sha256(f"{sample.seed}:{rel}".encode()).hexdigest())
    return sorted(largest + rest[:sample.size])


@dataclass(frozen=True)
class Published:
    """Every validated target of every fit placed on the files that hold its area, and
    the walk."""

    areas: dict[str, list[tuple[str, int, str, str]]]  # per fit: (level, id, name, district)
    places: dict[str, list[list[Place]]]  # per fit, per row: the files summed, their rows
    walk: Walk
    engine: dict[str, str]  # the identity of the engine the files were built for
    districts_walked: list[str]  # the district files read (all, or a sample)

    def sim_value(self, fit: str) -> np.ndarray:
        return np.array([sum(self.walk.totals[rel][i] for rel, i in places)
                         for places in self.places[fit]], dtype=np.float64)

    def file_labels(self, fit: str) -> list[str]:
        """Per validated row, the file its total comes from (or how many it sums)."""
        return [p[0][0] if len(p) == 1 else f"sum of {len(p)} files" if p else "no file"
                for p in self.places[fit]]


def walk_published(stacked_dir: str | Path, fits: list[FitTargets],
                   seed_of: Callable[[], TaxCache | None], runner: Runner | None = None,
                   cache_dir: str | Path | None = None,
                   districts: DistrictSample | None = None) -> Published:
    """Walk every published file once (of the district files, `districts`' sample): sanity
    of each, totals of every fit's targets. A district target whose file is not walked is
    summed from its state file, restricted to the district."""
    stacked_dir = Path(stacked_dir)
    manifest = load_manifest(stacked_dir)
    engine = load_engine(engine_of(manifest))
    walked = sample_districts(manifest, districts)
    skipped = {rel for rel in manifest["files"] if rel.startswith("districts/")} - set(walked)
    tasks: dict[str, list[tuple[str, str]]] = {rel: [] for rel in manifest["files"]
                                               if rel not in skipped}
    areas, places = {}, {}
    for view in fits:
        rows = view.rows
        unknown = engine.out_of_scope(rows["variable"])
        if unknown:
            raise InputError(None, "variable", f"the engine {engine.name!r} the files were "
                             f"built for cannot compute {unknown}",
                             f"use one of {sorted(engine.computes)}")
        areas[view.fit] = [_area(level, str(geo)) for level, geo in
                           zip(rows["geo_level"], rows["geographic_id"], strict=True)]
        places[view.fit] = []
        for (level, code, _, _), variable, constraints in zip(
                areas[view.fit], rows["variable"], rows["constraints"], strict=True):
            found = []
            for rel, extra in _files_of(view.publishes, level, code, manifest, skipped):
                found.append((rel, len(tasks[rel])))
                tasks[rel].append((variable, json.dumps(json.loads(constraints) + extra)))
            places[view.fit].append(found)
    file_tasks = [FileTask(rel, manifest["files"][rel],
                           pd.DataFrame(tasks[rel], columns=["variable", "constraints"]))
                  for rel in tasks]
    found = (walk_cached(stacked_dir, file_tasks, seed_of, runner, cache_dir) if cache_dir
             else walk(stacked_dir, file_tasks, seed_of(), runner))
    return Published(areas, places, found, dict(manifest.get("engine", {})), walked)


def validate_h5s(published: Published, fits: list[FitTargets]) -> pd.DataFrame:
    """One row per fit and validated target: its files' total next to the target value.

    Every validated target is reported; `in_training` marks the ones the fit used
    (held-out and config-excluded targets are False). Production's relative errors divide
    by max(|target|, 1); `score` is the robust error the gates judge.
    """
    by_file = {rel: [SanityResult(c, st, r) for c, st, r in
                     group[["check", "status", "reason"]].values]
               for rel, group in published.walk.sanity.groupby("file")}
    frames = []
    for view in fits:
        sanity = [summarize([r for rel, _ in p for r in by_file[rel]]) if p
                  else (WARN, _EMPTY) for p in published.places[view.fit]]
        frames.append(_results(view, published.sim_value(view.fit), published.areas[view.fit],
                               sanity, engine_label(published.engine)))
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def validate_matrix(X: sp.spmatrix, view: FitTargets, weights: np.ndarray,  # noqa: N803
                    engine: str) -> pd.DataFrame:
    """Validation rows of a fit that publishes no files (a held-out fit): its totals are
    X·w on the package's matrix (computed by `engine`, the package's), which the X·w gate
    shows equal to what the engine computes from the published fits' files. Scored,
    flagged and judged like any other fit's."""
    rows = view.rows
    # float64 one row block at a time: a float64 copy of the production matrix's selected
    # rows took 2.7 GiB beside it and made this step the run's peak
    [xw] = products_f64(X, [np.asarray(weights, np.float64)])
    sim_value = xw[np.flatnonzero(view.validated)]
    areas = [_area(level, str(geo)) for level, geo in
             zip(rows["geo_level"], rows["geographic_id"], strict=True)]
    return _results(view, sim_value, areas, [(PASS, _MATRIX)] * len(rows), engine)[
        list(COLUMNS)]


def _results(view: FitTargets, sim_value: np.ndarray, areas: list[tuple[str, int, str, str]],
             sanity: list[tuple[str, str]], engine: str) -> pd.DataFrame:
    """One fit's rows: its totals beside the targets, production's errors and the score."""
    targets = check_table(TARGETS, view.rows, None,
                          "pass the targets frame load_selection returns")
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
        "sanity_check": [status for status, _ in sanity],
        "sanity_reason": [reason for _, reason in sanity],
        "in_training": view.selected[view.validated],
        **{c: targets[c].to_numpy() for c in _PROVENANCE},
    })
    scores = score_errors(frame, targets["original_value"].to_numpy(),
                          targets["original_period"].to_numpy(), targets["period"].to_numpy())
    return pd.concat([frame, scores], axis=1).assign(fit=view.fit, engine=engine)


def read_validation_csv(path: str | Path) -> pd.DataFrame:
    """Read what `write_validation_csv` wrote, with text columns kept as text."""
    text = ("area_id", "district", "sanity_reason", "target_name", "holdout_group",
            "reconcile_rule", "fit", "engine")
    df = pd.read_csv(path, dtype=dict.fromkeys(text, str))
    present = [c for c in text if c in df.columns]
    df[present] = df[present].fillna("")
    if "fit" not in df.columns:  # written before the national fit: one fit's files
        df["fit"] = LOCAL.name
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


def _files_of(publishes: str | None, level: str, code: int, manifest: dict,
              skipped: set[str] = frozenset()) -> list[tuple[str, list[list[Any]]]]:
    """The published files whose sum is an area's total for a fit that publishes
    `publishes`, each with the constraints that keep only the area's households; [] for an
    area left empty. A district file in `skipped` is replaced by its state file."""
    if publishes is None:
        raise InputError(None, "fit", "this fit publishes no files to validate",
                         "validate only the fits the fit table marks as publishing")
    if publishes != AREA_FILES:  # one file of every area's households
        if level == "national":
            return [(publishes, [])]
        geo = "state_fips" if level == "state" else "congressional_district_geoid"
        return [(publishes, [[geo, "==", code]])]
    if level == "national":  # every kept record is in exactly one state file
        return [(rel, []) for rel in manifest["files"] if rel.startswith("states/")]
    if level == "state":
        rel = state_file(STATE_ABBR[code])
        if code in manifest["empty_states"]:
            return []
    else:
        rel = district_file(code)
        if code in manifest["empty_districts"]:
            return []
        if rel in skipped:
            return [(state_file(STATE_ABBR[code // 100]),
                     [["congressional_district_geoid", "==", code]])]
    if rel not in manifest["files"]:
        raise InputError(rel, None, "no published file for this target's area",
                         "restack with a package whose geography covers every target area")
    return [(rel, [])]
