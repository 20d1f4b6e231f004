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

The files are a drop-in dataset for policyengine-us:
- ids are renumbered from 1 across the release (national file first, then each state in
  order; a district file holds its state file's ids), so they fit the int32 policyengine-us
  stores them in and `family_id` (= household id) stays below float32's exact 2^24; the
  sidecar keeps each household's `source_household_id` (the base record) and `clone`;
- `county_fips` sits beside `county` (policyengine-us's SPM poverty reads it);
- the columns only our own engine reads go to the sidecar (`sidecar/<file>`), so loading a
  file logs no warning;
- a kept column's weight is at least `MIN_WEIGHT` households: a smaller positive weight
  is raised to it (`published_weights`; the X·w check applies the same rule), so a file
  holds exactly the records its fit kept (a record budget stays met) and no weight
  policyengine-us users would read as noise.
The takeup inputs of the package's engine are drawn as its matrix builder drew them.
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
from pipeline.core.geo import STATE_ABBR, load_county_fips
from pipeline.core.hashing import sha256_array, sha256_file
from pipeline.core.layout import MANIFEST
from pipeline.core.parallel import InProcess, Runner
from pipeline.engine.takeup import Takeup, draw_units
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
SIDECAR = "sidecar"  # the sidecar of <file> is sidecar/<file>
MIN_WEIGHT = 0.01  # households: a kept column's smallest published weight
MAX_HOUSEHOLDS = 2**24 - 1  # family_id (= household id) is float32 in policyengine-us
MAX_PERSONS = 2**31 - 1  # ids are int32 in policyengine-us


def published_weights(weights: np.ndarray) -> np.ndarray:
    """The weights the files hold: a positive weight below `MIN_WEIGHT` is raised to it
    (adds under 0.01 households per such record; dropping them broke record budgets)."""
    weights = np.asarray(weights, dtype=np.float64)
    return np.where(weights > 0, np.maximum(weights, MIN_WEIGHT), 0.0)


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
    county_fips: np.ndarray  # per entry of `counties`
    takeups: tuple[Takeup, ...]  # redrawn per clone
    record_inputs: dict[str, dict[str, np.ndarray]]  # the same in every clone, by base row
    widths: dict[str, int]  # text column widths


@dataclass(frozen=True)
class FileJob:
    """Columns (ordered by district, then column), the files they are cut into and the
    first id each entity takes (ids run on across jobs)."""

    cols: np.ndarray
    cd: np.ndarray
    county_index: np.ndarray
    weights: np.ndarray
    files: tuple[tuple[str, int, int], ...]  # (relative path, start, stop) into `cols`
    first_ids: tuple[int, int, int] = (1, 1, 1)  # household, tax unit, person


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
    weights = published_weights(_check_weights(package, weights))
    national_w = weights if national_weights is None else published_weights(_check_weights(
        package, national_weights, "national_weights"))
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
    jobs = _numbered([national_job,
                      *_state_jobs(cols, cd, package.county_index[cols], weights[cols])],
                     package)
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
            "engine": package.metadata.get("engine", {}),
            "min_weight": MIN_WEIGHT,
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
    fips = load_county_fips().reindex(counties)
    if fips.isna().any():
        raise InputError(package.path, "counties", f"no FIPS code for "
                         f"{list(counties[fips.isna().to_numpy()][:5])}",
                         "rebuild the calibration package (scripts/snapshot_county_fips.py)")
    engine = package.engine
    return StackSource(package.base_h5, package.n_records, counties,
                       fips.to_numpy(dtype=object), engine.takeups, engine.record_inputs(base),
                       string_widths(base, county=counties, county_fips=fips.to_numpy()))


def _numbered(jobs: list[FileJob], package: CalibrationPackage) -> list[FileJob]:
    """The jobs with the first ids of each entity: numbered from 1 across the release."""
    base = _base(package.base_h5)
    tu_count = np.bincount(base.household_rows("tax_unit"), minlength=package.n_records)
    p_count = np.bincount(base.household_rows("person"), minlength=package.n_records)
    first, out = np.ones(3, dtype=np.int64), []
    for job in jobs:
        out.append(FileJob(job.cols, job.cd, job.county_index, job.weights, job.files,
                           tuple(int(x) for x in first)))
        record = job.cols % package.n_records
        first += [len(job.cols), tu_count[record].sum(), p_count[record].sum()]
    households, _, persons = (int(x) - 1 for x in first)
    if households > MAX_HOUSEHOLDS or persons > MAX_PERSONS:
        raise InputError(package.path, "weights",
                         f"{households:,} households and {persons:,} persons would be "
                         "published: above policyengine-us's float32 family ids (2^24) or "
                         "int32 ids (2^31)",
                         "keep fewer records (a record budget, fit.records)")
    return out


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
                path, side = Path(out_dir) / rel, Path(out_dir) / SIDECAR / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                side.parent.mkdir(parents=True, exist_ok=True)
                writers[rel] = H5Writer(path, base.period, source.widths, sidecar=side)
            span = rows(lo - start, hi - start)
            part = _slice(block, span)
            writers[rel].append(part, slice_published(published, span))
            w = part.household["household_weight"].to_numpy(np.float32)
            totals[rel] = totals.get(rel, 0.0) + float(np.sum(w, dtype=np.float64))
        for rel, _, b in job.files:  # close each file as soon as its rows are written
            if rel in writers and b <= stop:
                entries[rel] = _entry(writers.pop(rel), Path(out_dir), rel, totals[rel])
    return entries


def _entry(writer: H5Writer, out_dir: Path, rel: str, weight_total: float) -> dict[str, Any]:
    writer.close()
    households, tax_units, persons = writer.offsets[-1]
    side = f"{SIDECAR}/{rel}"
    return {"sha256": sha256_file(out_dir / rel), "households": households,
            "tax_units": tax_units, "persons": persons, "weight_total": weight_total,
            "row_offsets": [list(o) for o in writer.offsets],
            "sidecar": {"path": side, "sha256": sha256_file(out_dir / side)}}


@functools.lru_cache(maxsize=2)
def _base_cached(path: str, mtime_ns: int, size: int) -> Microdata:
    return read_h5(path)


def _base(path: Path) -> Microdata:
    """The base sample, read once per worker process (and again only if the file changed)."""
    stat = Path(path).stat()
    return _base_cached(str(path), stat.st_mtime_ns, stat.st_size)


def _stacked(base: Microdata, source: StackSource, job: FileJob, start: int, stop: int
             ) -> Microdata:
    """Households for job.cols[start:stop]: base rows with new ids, the base record and
    clone they are, geography, takeup draws and weight."""
    n = source.n_records
    cols, cd = job.cols[start:stop], job.cd[start:stop]
    clone, record = cols // n, cols % n
    tu_count = np.bincount(base.household_rows("tax_unit"), minlength=n)
    p_count = np.bincount(base.household_rows("person"), minlength=n)
    tu_rows, tu_col = _expand(record, tu_count)
    p_rows, p_col = _expand(record, p_count)

    household = base.household.iloc[record].reset_index(drop=True)
    tax_unit = base.tax_unit.iloc[tu_rows].reset_index(drop=True)
    person = base.person.iloc[p_rows].reset_index(drop=True)
    state = cd // 100
    base_ids = household["household_id"].to_numpy(np.int64)
    # Drawn as the matrix builder draws them: keyed by base household id and clone.
    unit_household = {"household": np.arange(len(cols)), "tax_unit": tu_col, "person": p_col}
    tables = {"household": household, "tax_unit": tax_unit, "person": person}
    for t in source.takeups:
        tables[t.entity][t.variable] = draw_units(t, base_ids, unit_household[t.entity],
                                                  clone, state)
    base_rows = {"household": record, "tax_unit": tu_rows, "person": p_rows}
    for entity, columns in source.record_inputs.items():
        for name, values in columns.items():
            tables[entity][name] = values[base_rows[entity]]
    hh_id, tu_id, p_id = (first + np.arange(count) for first, count in zip(
        _block_first_ids(job, tu_count, p_count, start), (len(cols), len(tu_rows), len(p_rows)),
        strict=True))
    household["household_id"] = hh_id
    tax_unit["tax_unit_id"], tax_unit["household_id"] = tu_id, hh_id[tu_col]
    tu_of_person = pd.Index(base.tax_unit["tax_unit_id"].to_numpy()).get_indexer(
        person["tax_unit_id"].to_numpy())
    first_tu = np.concatenate([[0], np.cumsum(tu_count)[:-1]])
    tu_start = np.concatenate([[0], np.cumsum(tu_count[record])[:-1]])
    person["person_id"], person["household_id"] = p_id, hh_id[p_col]
    person["tax_unit_id"] = tu_id[tu_start[p_col] + tu_of_person - first_tu[record[p_col]]]
    household["household_weight"] = job.weights[start:stop]
    household["state_fips"] = state
    household["congressional_district_geoid"] = cd
    household["county"] = source.counties[job.county_index[start:stop]]
    household["county_fips"] = source.county_fips[job.county_index[start:stop]]
    household["source_household_id"] = base_ids
    household["clone"] = clone
    return Microdata(base.period, household, tax_unit, person)


def _block_first_ids(job: FileJob, tu_count: np.ndarray, p_count: np.ndarray, start: int
                     ) -> tuple[int, int, int]:
    """The first household, tax-unit and person id of the block starting at `start`."""
    before = job.cols[:start] % len(tu_count)
    hh, tu, person = job.first_ids
    return hh + start, tu + int(tu_count[before].sum()), person + int(p_count[before].sum())


def _member_rows(md: Microdata) -> Any:
    """rows(a, b): the rows of households a..b of a block and of their tax units and
    persons (contiguous: the tables are grouped by household, in household order)."""
    n = len(md.household)
    starts = {}
    for entity in ("tax_unit", "person"):
        owner = md.household_rows(entity)
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


def _expand(record: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Base row positions of every member of each stacked household, and the household's
    position in the block."""
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    per = count[record]
    offsets = np.concatenate([[0], np.cumsum(per, dtype=np.int64)])
    rows = np.repeat(start[record] - offsets[:-1], per) + np.arange(offsets[-1])
    return rows, np.repeat(np.arange(len(record)), per)
