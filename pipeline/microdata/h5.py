"""Microdata in PolicyEngine's HDF5 layout and policyengine-us's vocabulary.

The H5 layout is the one policyengine-us's Microsimulation loads: one group per variable,
one dataset per period, the group's `entity` attribute naming its entity. What each
variable is called and which entity holds it is `vocabulary.py`'s business: it maps the
in-memory tables (Tax-Calculator's names) to policyengine-us's on write and back on read.
Every H5 file the pipeline writes (source.h5, base.h5 and the published files) is in that
vocabulary. The file's attributes record the vocabulary, each variable's entity (one read
instead of one per variable) and the in-memory columns and dtypes to rebuild.

A published file holds only policyengine-us's variables, so loading it logs no warning: the
columns only our own engine reads (Tax-Calculator's inputs policyengine-us has no variable
for, the source record) go to a sidecar file of the same layout, which the main file names
(attribute `sidecar`, relative to its directory) and `read_h5` reads with it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import InputError
from pipeline.microdata.tables import ENTITIES, REQUIRED, Microdata
from pipeline.microdata.vocabulary import (
    DERIVED,
    ROW_ENTITY,
    TEXT_WIDTHS,
    UNIT_OF_PERSONS,
    VOCABULARY,
    Published,
    check_lossless,
    from_policyengine,
    policyengine_knows,
    rebuilt_dtypes,
    to_policyengine,
)

# Published files hold millions of rows: chunked, compressed datasets (gzip, which every
# HDF5 reader has; shuffle groups bytes of equal significance first). See
# benchmarks/results/outputs.txt for the size and time with and without.
DATASET_OPTIONS = {"chunks": True, "compression": "gzip", "compression_opts": 1,
                   "shuffle": True}


@dataclass(frozen=True)
class RowBlock:
    """One block of whole households: rows [start, stop) of each table."""

    households: tuple[int, int]
    tax_units: tuple[int, int]
    persons: tuple[int, int]


def string_widths(md: Microdata, **later: np.ndarray) -> dict[str, int]:
    """Byte widths of every text variable, wide enough for the values `later` says a column
    will hold in later blocks (e.g. `county=` every county name, or a column `md` does not
    have yet)."""
    widths: dict[str, int] = dict(TEXT_WIDTHS)
    for entity in ENTITIES:
        table = getattr(md, entity)
        for col in table.columns:
            if _is_text(table[col]):
                extra = _max_bytes(later[col]) if col in later else 1
                widths[col] = max(1, _max_bytes(table[col]), extra)
    for col, values in later.items():  # columns added after `md` (e.g. county_fips)
        widths.setdefault(col, max(1, _max_bytes(values)))
    return widths


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or pd.api.types.is_string_dtype(series.dtype)


def _max_bytes(values: object) -> int:
    return max((len(str(v).encode("utf-8")) for v in np.asarray(values).ravel()), default=1)


def _h5_values(name: str, values: np.ndarray, width: int | None) -> np.ndarray:
    if values.dtype.kind not in "OU":
        return values.astype(np.float32) if name == "household_weight" else values
    encoded = [str(v).encode("utf-8") for v in values]
    longest = max((len(v) for v in encoded), default=1)
    if width is None or longest > width:
        raise ValueError(f"text variable {name!r} holds {longest} bytes, over its width {width}")
    return np.array(encoded, dtype=f"S{width}")


class _DiskFile(io.RawIOBase):
    """The file HDF5 writes through: unbuffered, so a full disk fails the very write.

    After a failed write the rest are swallowed and the error is kept: HDF5 can then close
    its file normally (a write failing inside HDF5's own driver leaves a file handle that
    crashes the interpreter at exit), and `H5Writer.close` raises the error. The file is a
    temporary one, removed by the caller's atomic write.
    """

    def __init__(self, path: str | Path):
        self.raw = open(path, "w+b", buffering=0)  # noqa: SIM115 - closed by H5Writer.close
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def readinto(self, buffer: bytearray) -> int:
        return self.raw.readinto(buffer)

    def write(self, data: bytes) -> int:
        if self.error is None:
            try:
                return self.raw.write(data)
            except OSError as exc:
                self.error = exc
        self.raw.seek(len(memoryview(data)), io.SEEK_CUR)
        return len(memoryview(data))

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self.raw.truncate(size)
            except OSError as exc:
                self.error = exc
        return self.raw.tell() if size is None else size

    def close(self) -> None:
        if not self.raw.closed:
            self.raw.close()
        super().close()


class H5Writer:
    """Writes the PolicyEngine layout one block of households at a time (bounded memory).

    Datasets are created on the first block and grow with each one; the file's variables,
    dtypes and text widths are the first block's. Each block is checked to read back as the
    same tables (`vocabulary.check_lossless`). Not atomic by itself: write to a temporary
    path (`write_h5` does; stacking writes into a temporary directory).
    """

    def __init__(self, path: str | Path, period: int, widths: dict[str, int],
                 sidecar: str | Path | None = None):
        self.disks = [_DiskFile(path)]
        self.file = h5py.File(self.disks[0], "w")
        self.side = None
        if sidecar is not None:
            self.disks.append(_DiskFile(sidecar))
            self.side = h5py.File(self.disks[1], "w")
            self.side.attrs["period"] = period
            self.side.attrs["vocabulary"] = VOCABULARY
            self.file.attrs["sidecar"] = os.path.relpath(sidecar, Path(path).parent)
        self.period = str(period)
        self.widths = widths
        self.datasets: dict[str, h5py.Dataset] | None = None
        self.offsets = [(0, 0, 0)]  # cumulative (households, tax units, persons) per block
        self.file.attrs["period"] = period

    def append(self, md: Microdata, published: Published | None = None) -> None:
        """Add households (already validated: `write_h5` and stacking check their blocks).

        `published`: md's columns already in policyengine-us's vocabulary and checked
        lossless (`slice_published` of a checked block: stacking maps each block once for
        the state file and its districts)."""
        if published is None:
            published = to_policyengine(md)
            check_lossless(md, published)
        columns = {name: (entity, _h5_values(name, values, self.widths.get(name)))
                   for name, (entity, values) in published.items()}
        if self.datasets is None:
            self._create(md, columns)
        else:
            if list(columns) != list(self.datasets):
                raise ValueError("a block's variables differ from the file's first block")
            for name, (_, values) in columns.items():
                dataset = self.datasets[name]
                start = dataset.shape[0]
                dataset.resize((start + len(values),))
                dataset[start:] = values
        hh, tu, person = self.offsets[-1]
        self.offsets.append((hh + len(md.household), tu + len(md.tax_unit),
                             person + len(md.person)))

    def _create(self, md: Microdata, columns: dict[str, tuple[str, np.ndarray]]) -> None:
        """The datasets, holding the first block (one h5py call per variable)."""
        attrs = self.file.attrs
        attrs["vocabulary"] = VOCABULARY
        attrs["entities"] = json.dumps({name: entity for name, (entity, _) in columns.items()})
        attrs["columns"] = json.dumps({e: list(getattr(md, e).columns) for e in ENTITIES})
        attrs["dtypes"] = json.dumps(rebuilt_dtypes(md))
        aside = [n for n in columns if self.side is not None and not policyengine_knows(n)]
        attrs["sidecar_variables"] = json.dumps(aside)
        self.datasets = {}
        for name, (entity, values) in columns.items():
            group = (self.side if name in aside else self.file).create_group(name)
            group.attrs["entity"] = entity
            self.datasets[name] = group.create_dataset(self.period, data=values,
                                                       maxshape=(None,), **DATASET_OPTIONS)

    def close(self) -> None:
        """Close; a write the disk refused (full) is raised here, after HDF5 has let go."""
        self.file.close()
        if self.side is not None:
            self.side.close()
        for disk in self.disks:
            disk.close()
        for disk in self.disks:
            if disk.error is not None:
                raise disk.error

    def __enter__(self) -> H5Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_h5(md: Microdata, path: str | Path) -> None:
    """Write `md` in the PolicyEngine layout, atomically."""
    md.validate()
    with atomic_path(path) as tmp, H5Writer(tmp, md.period, string_widths(md)) as writer:
        writer.append(md)


def read_h5(path: str | Path, block: RowBlock | None = None) -> Microdata:
    """Read a file written by `H5Writer` (the whole file, or one block of households) back
    into the in-memory tables; InputError for a missing, corrupt or incomplete one."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "file does not exist", "materialize the stage that writes it")
    published: Published = {}
    try:
        with h5py.File(path, "r") as f, _sidecar(path, f) as side:
            if f.attrs.get("vocabulary") != VOCABULARY:
                raise InputError(path, "vocabulary",
                                 f"written in {f.attrs.get('vocabulary')!r}, not {VOCABULARY!r}",
                                 "rebuild it from its upstream stage")
            period = int(f.attrs["period"])
            columns = json.loads(f.attrs["columns"])
            aside = set(json.loads(f.attrs.get("sidecar_variables", "[]")))
            for name, entity in json.loads(f.attrs["entities"]).items():
                if name in DERIVED:
                    continue
                try:
                    dataset = (side if name in aside else f)[f"{name}/{period}"]
                except KeyError:
                    raise InputError(path, name, f"no dataset for period {period}",
                                     "write every variable for the file's period") from None
                values = dataset[_rows(block, ROW_ENTITY[entity])]
                if values.dtype.kind == "S":
                    values = np.array([v.decode("utf-8") for v in values], dtype=object)
                published[name] = (entity, values)
            dtypes = json.loads(f.attrs["dtypes"])
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(path, None, f"file is corrupt or truncated ({exc})",
                         "rebuild it from its upstream stage") from None
    for entity in ENTITIES:
        for col in REQUIRED[entity]:
            if col not in columns[entity]:
                raise InputError(path, col, f"required {entity} variable is missing",
                                 "rebuild the file with pipeline.microdata.write_h5")
    try:
        md = from_policyengine(published, columns, dtypes, period)
    except InputError as exc:
        raise InputError(path, exc.field, exc.problem, exc.fix) from None
    household = md.household.assign(
        household_weight=md.household["household_weight"].astype(np.float64))
    return Microdata(period, household, md.tax_unit, md.person).validate(path)


@contextlib.contextmanager
def _sidecar(path: Path, f: h5py.File) -> Iterator[h5py.File | None]:
    """The sidecar the main file names, open for reading (None when it names none)."""
    if "sidecar" not in f.attrs:
        yield None
        return
    side = path.parent / str(f.attrs["sidecar"])
    if not side.is_file():
        raise InputError(side, None, f"sidecar of {path.name} is missing",
                         "keep a published file's sidecar beside it (materialize stacked_h5s)")
    with h5py.File(side, "r") as handle:
        yield handle


def sidecar_of(path: str | Path) -> Path | None:
    """The sidecar a file names, if any."""
    with h5py.File(path, "r") as f:
        name = f.attrs.get("sidecar")
    return None if name is None else Path(path).parent / str(name)


def slice_published(published: Published, rows: RowBlock) -> Published:
    """The columns of the households in `rows`, as `to_policyengine` maps those households:
    each variable cut by its entity's rows; a unit without rows of its own rebuilt from
    its persons' links."""
    out: Published = {}
    for name, (entity, values) in published.items():
        if name in UNIT_OF_PERSONS:
            link = published[UNIT_OF_PERSONS[name]][1][_rows(rows, "person")]
            out[name] = (entity, np.unique(link))
        else:
            out[name] = (entity, values[_rows(rows, ROW_ENTITY[entity])])
    return out


def _rows(block: RowBlock | None, entity: str) -> slice:
    if block is None:
        return slice(None)
    start, stop = {"household": block.households, "tax_unit": block.tax_units,
                   "person": block.persons}[entity]
    return slice(start, stop)


def blocks(offsets: list[list[int]] | list[tuple[int, int, int]]) -> list[RowBlock]:
    """The blocks between consecutive cumulative (households, tax units, persons) offsets."""
    return [RowBlock((a[0], b[0]), (a[1], b[1]), (a[2], b[2]))
            for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def whole_file(offsets: list[list[int]] | list[tuple[int, int, int]]) -> RowBlock:
    """Every row of a file, from its cumulative (households, tax units, persons) offsets."""
    households, tax_units, persons = offsets[-1]
    return RowBlock((0, households), (0, tax_units), (0, persons))


def split_block(path: str | Path, block: RowBlock, households: int) -> list[RowBlock]:
    """`block` cut into the fewest blocks of at most `households` whole households (each
    with its tax units and persons), in order and of even size."""
    n = block.households[1] - block.households[0]
    if n <= households:
        return [block]
    with h5py.File(path, "r") as f:
        period = str(f.attrs["period"])

        def rows(name: str, span: tuple[int, int]) -> np.ndarray:
            return f[name][period][span[0]:span[1]]

        hh = pd.Index(rows("household_id", block.households))
        person_hh = hh.get_indexer(rows("person_household_id", block.persons))
        person_tu = pd.Index(rows("tax_unit_id", block.tax_units)).get_indexer(
            rows("person_tax_unit_id", block.persons))
    tu_hh = np.empty(block.tax_units[1] - block.tax_units[0], dtype=np.int64)
    tu_hh[person_tu[::-1]] = person_hh[::-1]  # each tax unit's first member's household
    tu_end = np.cumsum(np.bincount(tu_hh, minlength=n))
    p_end = np.cumsum(np.bincount(person_hh, minlength=n))
    parts = -(-n // households)
    cuts = [n * i // parts for i in range(parts + 1)]
    out = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        tu_a, p_a = (int(tu_end[a - 1]), int(p_end[a - 1])) if a else (0, 0)
        out.append(RowBlock((block.households[0] + a, block.households[0] + b),
                            (block.tax_units[0] + tu_a, block.tax_units[0] + int(tu_end[b - 1])),
                            (block.persons[0] + p_a, block.persons[0] + int(p_end[b - 1]))))
    return out
