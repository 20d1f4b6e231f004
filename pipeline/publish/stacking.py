"""Stack the calibrated clones into published household files (national, state, district).

Every column with a positive weight becomes its own household: the base record's rows,
moved to the column's district and county, with the takeup draws the matrix builder made
for that clone, and the column's weight. Tables are built by fancy indexing on the base
tables (no per-household Python), sorted by district so each state and district file is a
contiguous slice. The directory appears in one rename with `manifest.json` written last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_dir, write_json
from pipeline.core.errors import InputError
from pipeline.core.geo import STATE_ABBR
from pipeline.core.hashing import sha256_array, sha256_file
from pipeline.core.layout import MANIFEST
from pipeline.engine.takeup import draw_takeup
from pipeline.microdata import Microdata, read_h5, write_h5
from pipeline.package.store import CalibrationPackage


@dataclass(frozen=True)
class StackResult:
    out_dir: Path
    manifest: dict[str, Any]
    n_households: int
    weight_total: float
    districts: list[int]
    empty_districts: list[int]
    empty_states: list[int]


def state_file(abbr: str) -> str:
    return f"states/{abbr}.h5"


def district_file(geoid: int) -> str:
    return f"districts/{int(geoid)}.h5"


def stack_h5s(package: CalibrationPackage, weights: np.ndarray, out_dir: str | Path,
              lineage: dict[str, str] | None = None) -> StackResult:
    """Write `out_dir` with `national.h5`, one file per state and per non-empty district.

    `lineage` (the hashes of the package and weights file these came from) goes into the
    manifest, so promotion can prove the files descend from the fit it releases.
    """
    out_dir = Path(out_dir)
    weights = _check_weights(package, weights)
    base = read_h5(package.base_h5)
    n = package.n_records
    if len(base.household) != n:
        raise InputError(package.base_h5, "household_id",
                         f"{len(base.household)} households, the package has n_records={n}",
                         "rebuild the calibration package from this base file")
    cols = np.flatnonzero(weights > 0)
    cd = package.cd_geoid[cols].astype(np.int64)
    order = np.lexsort((cols, cd))
    cols, cd = cols[order], cd[order]
    stacked = _stack(base, package, cols, cd, weights[cols])

    universe = np.unique(package.cd_geoid.astype(np.int64))
    states = np.unique(universe // 100)
    unknown = sorted(set(states.tolist()) - set(STATE_ABBR))
    if unknown:
        raise InputError(package.path, "cd_geoid", f"districts in unknown states {unknown[:5]}",
                         "assign every column a district GEOID (state FIPS * 100 + district)")
    files: dict[str, dict[str, Any]] = {}
    with atomic_dir(out_dir) as tmp:
        files["national.h5"] = _write(stacked, 0, len(cd), tmp / "national.h5")
        for key, name_of in ((cd // 100, lambda s: state_file(STATE_ABBR[s])),
                             (cd, district_file)):
            present = np.unique(key)
            starts = np.searchsorted(key, present, side="left")
            ends = np.searchsorted(key, present, side="right")
            for k, a, b in zip(present.tolist(), starts, ends, strict=True):
                files[name_of(k)] = _write(stacked, int(a), int(b), tmp / name_of(k))
        empty_districts = sorted(set(universe.tolist()) - set(np.unique(cd).tolist()))
        empty_states = sorted(set(states.tolist()) - set(np.unique(cd // 100).tolist()))
        weight_total = float(np.sum(weights[cols].astype(np.float32), dtype=np.float64))
        manifest = {
            "period": base.period,
            "files": files,
            "households": len(stacked.md.household),
            "tax_units": len(stacked.md.tax_unit),
            "persons": len(stacked.md.person),
            "weight_total": weight_total,
            "columns": len(weights),
            "nonzero_columns": len(cols),
            "weights_sha256": sha256_array(weights),
            "package": {k: package.metadata.get(k) for k in ("n_records", "n_clones", "seed")},
            "empty_districts": empty_districts,
            "empty_states": empty_states,
            "lineage": lineage or {},
        }
        write_json(tmp / MANIFEST, manifest)
    return StackResult(out_dir, manifest, len(cols), weight_total,
                       sorted(np.unique(cd).tolist()), empty_districts, empty_states)


def load_manifest(stacked_dir: str | Path) -> dict[str, Any]:
    """The manifest of a complete stacked directory; without it the directory is not one."""
    path = Path(stacked_dir) / MANIFEST
    if not path.is_file():
        raise InputError(path, None, "no manifest: the stacked directory is missing or incomplete",
                         "materialize stacked_h5s again")
    return json.loads(path.read_text())


def _check_weights(package: CalibrationPackage, weights: np.ndarray) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    n_cols = package.X.shape[1]
    if weights.shape != (n_cols,):
        raise InputError(None, "weights",
                         f"shape {weights.shape}, the package has {n_cols} columns",
                         "pass the weights fitted on this calibration package")
    bad = int(np.sum(~np.isfinite(weights) | (weights < 0)))
    if bad:
        raise InputError(None, "weights", f"{bad} weights are NaN, infinite or negative",
                         "refit; gate 1 should have refused these weights")
    return weights


@dataclass(frozen=True)
class _Stacked:
    md: Microdata
    tu_offsets: np.ndarray  # tax-unit row where household i starts (length n + 1)
    person_offsets: np.ndarray


def _stack(base: Microdata, package: CalibrationPackage, cols: np.ndarray, cd: np.ndarray,
           weights: np.ndarray) -> _Stacked:
    n = package.n_records
    clone, record = cols // n, cols % n
    hh_index = pd.Index(base.household["household_id"].to_numpy())
    tu_count = np.bincount(hh_index.get_indexer(base.tax_unit["household_id"]), minlength=n)
    p_count = np.bincount(hh_index.get_indexer(base.person["household_id"]), minlength=n)
    tu_rows, tu_clone = _expand(record, clone, tu_count)
    p_rows, p_clone = _expand(record, clone, p_count)

    household = base.household.iloc[record].reset_index(drop=True)
    tax_unit = base.tax_unit.iloc[tu_rows].reset_index(drop=True)
    person = base.person.iloc[p_rows].reset_index(drop=True)
    base_hh_ids = household["household_id"].to_numpy(np.int64)
    base_tu_hh_ids = tax_unit["household_id"].to_numpy(np.int64)
    state = cd // 100
    snap, eitc = _takeup(base_hh_ids, base_tu_hh_ids, clone, tu_clone, state)

    scales = _id_scales(base, int(clone.max(initial=0)))
    for table, clones in ((household, clone), (tax_unit, tu_clone), (person, p_clone)):
        for col in [c for c in table.columns if c.endswith("_id")]:
            table[col] = clones * scales[col] + table[col].to_numpy(np.int64)
    household["household_weight"] = weights
    household["state_fips"] = state
    household["congressional_district_geoid"] = cd
    counties = np.asarray(package.counties, dtype=object)
    household["county"] = counties[package.county_index[cols]]
    household["takes_up_snap_if_eligible"] = snap
    tax_unit["takes_up_eitc"] = eitc
    md = Microdata(base.period, household, tax_unit, person)
    return _Stacked(md, _offsets(tu_count[record]), _offsets(p_count[record]))


def _expand(record: np.ndarray, clone: np.ndarray, count: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Base row positions of every member of each stacked household, and their clone."""
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    per = count[record]
    offsets = _offsets(per)
    rows = np.repeat(start[record] - offsets[:-1], per) + np.arange(offsets[-1])
    return rows, np.repeat(clone, per)


def _offsets(count: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(count, dtype=np.int64)])


def _id_scales(base: Microdata, max_clone: int) -> dict[str, int]:
    """Per id name, a power of ten above every base id: new id = clone * scale + base id.

    The same name gets the same scale in every table, so links stay links, and the base id
    and clone can be read back from a published id.
    """
    top: dict[str, int] = {}
    for table in (base.household, base.tax_unit, base.person):
        for col in [c for c in table.columns if c.endswith("_id")]:
            values = table[col].to_numpy(np.int64)
            if len(values) and values.min() < 0:
                raise InputError(None, col, "negative ids in the base microdata",
                                 "rebuild the base file with non-negative ids")
            top[col] = max(top.get(col, 0), int(values.max(initial=0)))
    scales = {col: 10 ** len(str(v)) for col, v in top.items()}
    too_big = [c for c, s in scales.items() if (max_clone + 1) * s >= 2**63]
    if too_big:
        raise InputError(None, too_big[0], "cloned ids would overflow int64",
                         "renumber the base ids densely from 0")
    return scales


def _takeup(hh_ids: np.ndarray, tu_hh_ids: np.ndarray, clone: np.ndarray, tu_clone: np.ndarray,
            state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw per clone, exactly as the matrix builder does (base ids, clone index, state)."""
    snap = np.zeros(len(hh_ids), dtype=bool)
    eitc = np.zeros(len(tu_hh_ids), dtype=bool)
    if not len(hh_ids):
        return snap, eitc
    hh_order = np.argsort(clone, kind="stable")
    tu_order = np.argsort(tu_clone, kind="stable")
    clones = np.unique(clone)
    hh_split = np.searchsorted(clone[hh_order], clones[1:])
    tu_split = np.searchsorted(tu_clone[tu_order], clones[1:])
    for c, hh_sel, tu_sel in zip(clones.tolist(), np.split(hh_order, hh_split),
                                 np.split(tu_order, tu_split), strict=True):
        snap[hh_sel], eitc[tu_sel] = draw_takeup(hh_ids[hh_sel], tu_hh_ids[tu_sel], c,
                                                 state[hh_sel])
    return snap, eitc


def _write(stacked: _Stacked, a: int, b: int, path: Path) -> dict[str, Any]:
    md = stacked.md
    tu_a, tu_b = stacked.tu_offsets[a], stacked.tu_offsets[b]
    p_a, p_b = stacked.person_offsets[a], stacked.person_offsets[b]
    part = Microdata(md.period, md.household.iloc[a:b].reset_index(drop=True),
                     md.tax_unit.iloc[tu_a:tu_b].reset_index(drop=True),
                     md.person.iloc[p_a:p_b].reset_index(drop=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_h5(part, path)
    w = part.household["household_weight"].to_numpy(dtype=np.float32)
    return {"sha256": sha256_file(path), "households": b - a, "tax_units": int(tu_b - tu_a),
            "persons": int(p_b - p_a), "weight_total": float(np.sum(w, dtype=np.float64))}
