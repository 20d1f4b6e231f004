"""Stack the calibrated clones into published household files (national, state, district).

Every column with a positive weight becomes its own household: the base record's rows,
moved to the column's district and county, with the takeup draws the matrix builder made
for that clone, and the column's weight. Households are ordered by district, so each state
and district file is a contiguous run.

Two fits publish together: the local-area fit's weights make the state and district files,
the national fit's (`national_weights`, a record budget of its own) make `national.h5`;
without national weights, `national.h5` holds every record the local fit kept.

Memory is bounded by a block of households, never by how many records the fit kept: a
file job (the national file, or one state with its districts) builds `BLOCK_HOUSEHOLDS`
households at a time from the small base tables and appends them to its files. Jobs are
independent, so they run on the compute runner (one Dask task each); the directory appears
in one rename, with `manifest.json` (every file's sha256 and row offsets) written last.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_dir, write_json
from pipeline.core.errors import InputError
from pipeline.core.fit_table import NATIONAL_FILE
from pipeline.core.geo import STATE_ABBR
from pipeline.core.hashing import sha256_array, sha256_file
from pipeline.core.layout import MANIFEST
from pipeline.core.parallel import InProcess, Runner
from pipeline.engine.takeup import draw_takeup_at
from pipeline.microdata import (
    H5Writer,
    Microdata,
    RowBlock,
    read_h5,
    slice_published,
    string_widths,
)
from pipeline.microdata.vocabulary import check_lossless, to_policyengine
from pipeline.package.store import CalibrationPackage

BLOCK_HOUSEHOLDS = 50_000


@dataclass(frozen=True)
class StackResult:
    out_dir: Path
    manifest: dict[str, Any]
    n_households: int
    weight_total: float
    districts: list[int]
    empty_districts: list[int]
    empty_states: list[int]


@dataclass(frozen=True)
class StackSource:
    """What every file job shares: sent once to each worker."""

    base_h5: Path
    n_records: int
    counties: np.ndarray
    scales: dict[str, int]  # per id column: new id = clone * scale + base id
    widths: dict[str, int]  # text column widths


@dataclass(frozen=True)
class FileJob:
    """Columns (ordered by district, then column) and the files they are cut into."""

    cols: np.ndarray
    cd: np.ndarray
    county_index: np.ndarray
    weights: np.ndarray
    files: tuple[tuple[str, int, int], ...]  # (relative path, start, stop) into `cols`


def state_file(abbr: str) -> str:
    return f"states/{abbr}.h5"


def district_file(geoid: int) -> str:
    return f"districts/{int(geoid)}.h5"


def stack_h5s(package: CalibrationPackage, weights: np.ndarray, out_dir: str | Path,
              lineage: dict[str, str] | None = None, runner: Runner | None = None,
              national_weights: np.ndarray | None = None) -> StackResult:
    """Write `out_dir` with `national.h5` (from `national_weights`, else from `weights`),
    one file per state and per non-empty district (from `weights`).

    `lineage` (the hashes of the package and weights files these came from) goes into the
    manifest, so promotion can prove the files descend from the fits it releases.
    """
    out_dir = Path(out_dir)
    weights = _check_weights(package, weights)
    national_w = weights if national_weights is None else _check_weights(
        package, national_weights, "national_weights")
    source = _source(package)
    cols, cd = _ordered(package, weights)

    universe = np.unique(package.cd_geoid.astype(np.int64))
    states = np.unique(universe // 100)
    unknown = sorted(set(states.tolist()) - set(STATE_ABBR))
    if unknown:
        raise InputError(package.path, "cd_geoid", f"districts in unknown states {unknown[:5]}",
                         "assign every column a district GEOID (state FIPS * 100 + district)")
    n_cols, n_cd = _ordered(package, national_w)
    national_job = FileJob(n_cols, n_cd, package.county_index[n_cols], national_w[n_cols],
                           ((NATIONAL_FILE, 0, len(n_cols)),))
    jobs = [national_job, *_state_jobs(cols, cd, package.county_index[cols], weights[cols])]
    with atomic_dir(out_dir) as tmp:
        done = (runner or InProcess()).map(run_file_job, jobs, source, str(tmp),
                                           desc="stacking: national and state files")
        files = {rel: entry for entries in done for rel, entry in entries.items()}
        files = {NATIONAL_FILE: files.pop(NATIONAL_FILE), **files}
        empty_districts = sorted(set(universe.tolist()) - set(np.unique(cd).tolist()))
        empty_states = sorted(set(states.tolist()) - set(np.unique(cd // 100).tolist()))
        local = {k: sum(f[k] for rel, f in files.items() if rel.startswith("states/"))
                 for k in ("households", "tax_units", "persons", "weight_total")}
        national = files[NATIONAL_FILE]
        manifest = {
            "period": int(_base(source.base_h5).period),
            "files": files,
            # The state files' totals: the local fit's kept records, each in one state.
            **local,
            "columns": len(weights),
            "nonzero_columns": len(cols),
            "weights_sha256": sha256_array(weights),
            "national": {"households": national["households"],
                         "weight_total": national["weight_total"],
                         "weights_sha256": sha256_array(national_w)},
            "package": {k: package.metadata.get(k) for k in ("n_records", "n_clones", "seed")},
            "empty_districts": empty_districts,
            "empty_states": empty_states,
            "lineage": lineage or {},
        }
        write_json(tmp / MANIFEST, manifest)
    return StackResult(out_dir, manifest, len(cols), local["weight_total"],
                       sorted(np.unique(cd).tolist()), empty_districts, empty_states)


def _ordered(package: CalibrationPackage, weights: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """The kept columns and their districts, ordered by district, then column."""
    cols = np.flatnonzero(weights > 0)
    cd = package.cd_geoid[cols].astype(np.int64)
    order = np.lexsort((cols, cd))
    return cols[order], cd[order]


def load_manifest(stacked_dir: str | Path) -> dict[str, Any]:
    """The manifest of a complete stacked directory; without it the directory is not one."""
    path = Path(stacked_dir) / MANIFEST
    if not path.is_file():
        raise InputError(path, None, "no manifest: the stacked directory is missing or incomplete",
                         "materialize stacked_h5s again")
    return json.loads(path.read_text())


def _check_weights(package: CalibrationPackage, weights: np.ndarray,
                   name: str = "weights") -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    n_cols = package.n_records * package.n_clones
    if weights.shape != (n_cols,):
        raise InputError(None, name,
                         f"shape {weights.shape}, the package has {n_cols} columns",
                         "pass the weights fitted on this calibration package")
    bad = int(np.sum(~np.isfinite(weights) | (weights < 0)))
    if bad:
        raise InputError(None, name, f"{bad} weights are NaN, infinite or negative",
                         "refit; gate 1 should have refused these weights")
    return weights


def _source(package: CalibrationPackage) -> StackSource:
    base = read_h5(package.base_h5)
    if len(base.household) != package.n_records:
        raise InputError(package.base_h5, "household_id",
                         f"{len(base.household)} households, the package has "
                         f"n_records={package.n_records}",
                         "rebuild the calibration package from this base file")
    counties = np.asarray(package.counties, dtype=object)
    return StackSource(package.base_h5, package.n_records, counties,
                       _id_scales(base, package.n_clones - 1),
                       string_widths(base, county=counties))


def _state_jobs(cols: np.ndarray, cd: np.ndarray, county: np.ndarray, w: np.ndarray
                ) -> list[FileJob]:
    """One job per state holding its districts' files."""
    jobs = []
    state = cd // 100
    for fips in np.unique(state).tolist():
        a, b = np.searchsorted(state, [fips, fips + 1])
        sub = cd[a:b]
        present = np.unique(sub)
        starts = np.searchsorted(sub, present, side="left")
        ends = np.searchsorted(sub, present, side="right")
        files = ((state_file(STATE_ABBR[fips]), 0, b - a),
                 *((district_file(g), int(s), int(e)) for g, s, e in
                   zip(present.tolist(), starts, ends, strict=True)))
        jobs.append(FileJob(cols[a:b], cd[a:b], county[a:b], w[a:b], files))
    return jobs


def run_file_job(job: FileJob, source: StackSource, out_dir: str) -> dict[str, dict[str, Any]]:
    """Write a job's files block by block; return their manifest entries.

    A block is mapped to policyengine-us's vocabulary and checked lossless once; the state
    file and each district file take their rows of it (every household is in two files).
    """
    base = _base(source.base_h5)
    writers: dict[str, H5Writer] = {}
    totals: dict[str, float] = {}
    entries: dict[str, dict[str, Any]] = {}
    for start in range(0, len(job.cols), BLOCK_HOUSEHOLDS):
        stop = min(start + BLOCK_HOUSEHOLDS, len(job.cols))
        block = _stacked(base, source, job, start, stop).validate()
        published = to_policyengine(block)
        check_lossless(block, published)
        rows = _member_rows(block)
        for rel, a, b in job.files:
            lo, hi = max(a, start), min(b, stop)
            if lo >= hi:
                continue
            if rel not in writers:
                path = Path(out_dir) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                writers[rel] = H5Writer(path, base.period, source.widths)
            span = rows(lo - start, hi - start)
            part = _slice(block, span)
            writers[rel].append(part, slice_published(published, span))
            w = part.household["household_weight"].to_numpy(np.float32)
            totals[rel] = totals.get(rel, 0.0) + float(np.sum(w, dtype=np.float64))
        for rel, _, b in job.files:  # close each file as soon as its rows are written
            if rel in writers and b <= stop:
                entries[rel] = _entry(writers.pop(rel), Path(out_dir) / rel, totals[rel])
    return entries


def _entry(writer: H5Writer, path: Path, weight_total: float) -> dict[str, Any]:
    writer.close()
    households, tax_units, persons = writer.offsets[-1]
    return {"sha256": sha256_file(path), "households": households, "tax_units": tax_units,
            "persons": persons, "weight_total": weight_total,
            "row_offsets": [list(o) for o in writer.offsets]}


@functools.lru_cache(maxsize=2)
def _base_cached(path: str, mtime_ns: int, size: int) -> Microdata:
    return read_h5(path)


def _base(path: Path) -> Microdata:
    """The base sample, read once per worker process (and again only if the file changed)."""
    stat = Path(path).stat()
    return _base_cached(str(path), stat.st_mtime_ns, stat.st_size)


def _stacked(base: Microdata, source: StackSource, job: FileJob, start: int, stop: int
             ) -> Microdata:
    """Households for job.cols[start:stop]: base rows with ids, geography, takeup, weight."""
    n = source.n_records
    cols, cd = job.cols[start:stop], job.cd[start:stop]
    clone, record = cols // n, cols % n
    hh_index = pd.Index(base.household["household_id"].to_numpy())
    tu_count = np.bincount(hh_index.get_indexer(base.tax_unit["household_id"]), minlength=n)
    p_count = np.bincount(hh_index.get_indexer(base.person["household_id"]), minlength=n)
    tu_rows, tu_clone = _expand(record, clone, tu_count)
    p_rows, p_clone = _expand(record, clone, p_count)

    household = base.household.iloc[record].reset_index(drop=True)
    tax_unit = base.tax_unit.iloc[tu_rows].reset_index(drop=True)
    person = base.person.iloc[p_rows].reset_index(drop=True)
    state = cd // 100
    # Drawn as the matrix builder draws them: keyed by base household id and clone.
    snap, eitc = draw_takeup_at(household["household_id"].to_numpy(np.int64),
                                np.repeat(np.arange(len(cols)), tu_count[record]), clone, state)
    for table, clones in ((household, clone), (tax_unit, tu_clone), (person, p_clone)):
        for col in [c for c in table.columns if c.endswith("_id")]:
            table[col] = clones * source.scales[col] + table[col].to_numpy(np.int64)
    household["household_weight"] = job.weights[start:stop]
    household["state_fips"] = state
    household["congressional_district_geoid"] = cd
    household["county"] = source.counties[job.county_index[start:stop]]
    household["takes_up_snap_if_eligible"] = snap
    tax_unit["takes_up_eitc"] = eitc
    return Microdata(base.period, household, tax_unit, person)


def _member_rows(md: Microdata) -> Any:
    """rows(a, b): the rows of households a..b of a block and of their tax units and
    persons (contiguous: the tables are grouped by household, in household order)."""
    position = pd.Index(md.household["household_id"])
    n = len(position)
    starts = {}
    for entity in ("tax_unit", "person"):
        owner = position.get_indexer(getattr(md, entity)["household_id"])
        starts[entity] = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n))])

    def rows(a: int, b: int) -> RowBlock:
        tu, person = starts["tax_unit"], starts["person"]
        return RowBlock((a, b), (int(tu[a]), int(tu[b])), (int(person[a]), int(person[b])))

    return rows


def _slice(md: Microdata, rows: RowBlock) -> Microdata:
    """The households of `rows` with their tax units and persons."""
    if rows.households == (0, len(md.household)):
        return md

    def cut(table: pd.DataFrame, span: tuple[int, int]) -> pd.DataFrame:
        return table.iloc[span[0]:span[1]].reset_index(drop=True)

    return Microdata(md.period, cut(md.household, rows.households),
                     cut(md.tax_unit, rows.tax_units), cut(md.person, rows.persons))


def _expand(record: np.ndarray, clone: np.ndarray, count: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Base row positions of every member of each stacked household, and their clone."""
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    per = count[record]
    offsets = np.concatenate([[0], np.cumsum(per, dtype=np.int64)])
    rows = np.repeat(start[record] - offsets[:-1], per) + np.arange(offsets[-1])
    return rows, np.repeat(clone, per)


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
