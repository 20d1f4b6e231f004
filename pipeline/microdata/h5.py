"""Microdata in PolicyEngine's HDF5 layout.

The H5 layout is the one policyengine-us's Microsimulation loads: one group per variable,
one dataset per period, the group's `entity` attribute naming its table. Column names must
therefore be unique across the three tables; the id links that share a name are renamed on
write (`person.household_id` → `person_household_id`, `person.tax_unit_id` →
`person_tax_unit_id`, `tax_unit.household_id` → `tax_unit_household_id`) and back on read.
SPM unit and family are the household; a marital unit is a head with their spouse, and each
dependent alone. These derived ids are written for PolicyEngine and not read back.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import InputError
from pipeline.microdata.tables import ENTITIES, REQUIRED, Microdata

# (table, column) → H5 variable name, for the links whose column name repeats across tables.
_RENAMES = {
    ("person", "household_id"): "person_household_id",
    ("person", "tax_unit_id"): "person_tax_unit_id",
    ("tax_unit", "household_id"): "tax_unit_household_id",
}
_DERIVED = {
    "spm_unit_id": "spm_unit",
    "family_id": "family",
    "marital_unit_id": "marital_unit",
    "person_spm_unit_id": "person",
    "person_family_id": "person",
    "person_marital_unit_id": "person",
}


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
    """Byte widths of every text column, wide enough for the values `later` says a column
    will hold in later blocks (e.g. `county=` every county name)."""
    widths: dict[str, int] = {}
    for entity in ENTITIES:
        table = getattr(md, entity)
        for col in table.columns:
            if _is_text(table[col]):
                extra = _max_bytes(later[col]) if col in later else 1
                widths[col] = max(1, _max_bytes(table[col]), extra)
    return widths


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or pd.api.types.is_string_dtype(series.dtype)


def _max_bytes(values: object) -> int:
    return max((len(str(v).encode("utf-8")) for v in np.asarray(values).ravel()), default=1)


def _h5_values(series: pd.Series, width: int | None) -> np.ndarray:
    if not _is_text(series):
        return series.to_numpy()
    encoded = [str(v).encode("utf-8") for v in series]
    longest = max((len(v) for v in encoded), default=1)
    if width is None or longest > width:
        raise ValueError(f"text column {series.name!r} holds {longest} bytes, over its width "
                         f"{width}")
    return np.array(encoded, dtype=f"S{width}")


def _derived_ids(md: Microdata) -> dict[str, np.ndarray]:
    person = md.person
    hh = md.household["household_id"].to_numpy(np.int64)
    pid = person["person_id"].to_numpy(np.int64)
    # A spouse joins the marital unit of the head of the same tax unit.
    head_of_tu = (person.loc[person["is_tax_unit_head"].to_numpy(bool)]
                  .set_index("tax_unit_id")["person_id"])
    spouse = person["is_tax_unit_spouse"].to_numpy(bool)
    marital = pid.copy()
    marital[spouse] = head_of_tu.reindex(person["tax_unit_id"][spouse]).to_numpy(np.int64)
    person_hh = person["household_id"].to_numpy(np.int64)
    return {
        "spm_unit_id": hh,
        "family_id": hh,
        "marital_unit_id": np.unique(marital),
        "person_spm_unit_id": person_hh,
        "person_family_id": person_hh,
        "person_marital_unit_id": marital,
    }


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

    Datasets are created on the first block and grow with each one; the file's columns,
    dtypes and text widths are the first block's. Not atomic by itself: write to a
    temporary path (`write_h5` does; stacking writes into a temporary directory).
    """

    def __init__(self, path: str | Path, period: int, widths: dict[str, int]):
        self.disk = _DiskFile(path)
        self.file = h5py.File(self.disk, "w")
        self.period = str(period)
        self.widths = widths
        self.datasets: dict[str, h5py.Dataset] | None = None
        self.offsets = [(0, 0, 0)]  # cumulative (households, tax units, persons) per block
        self.file.attrs["period"] = period

    def append(self, md: Microdata) -> None:
        """Add households (already validated: `write_h5` and stacking check their blocks)."""
        columns = self._columns(md)
        if self.datasets is None:
            self._create(md, columns)
        else:
            if list(columns) != list(self.datasets):
                raise ValueError("a block's columns differ from the file's first block")
            for name, (_, values) in columns.items():
                dataset = self.datasets[name]
                start = dataset.shape[0]
                dataset.resize((start + len(values),))
                dataset[start:] = values
        hh, tu, person = self.offsets[-1]
        self.offsets.append((hh + len(md.household), tu + len(md.tax_unit),
                             person + len(md.person)))

    def _columns(self, md: Microdata) -> dict[str, tuple[str, np.ndarray]]:
        columns: dict[str, tuple[str, np.ndarray]] = {}
        for entity in ENTITIES:
            table = getattr(md, entity)
            for col in table.columns:
                name = _RENAMES.get((entity, col), col)
                if name in columns or name in _DERIVED:
                    raise InputError(None, f"{entity}.{col}",
                                     f"column name {name!r} is used by another table",
                                     "rename the column so each variable has one entity")
                values = _h5_values(table[col], self.widths.get(col))
                if name == "household_weight":
                    values = values.astype(np.float32)
                columns[name] = (entity, values)
        for name, values in _derived_ids(md).items():
            columns[name] = (_DERIVED[name], values)
        return columns

    def _create(self, md: Microdata, columns: dict[str, tuple[str, np.ndarray]]) -> None:
        """The datasets, holding the first block (one h5py call per variable)."""
        for entity in ENTITIES:
            self.file.attrs[f"{entity}_columns"] = list(getattr(md, entity).columns)
        self.datasets = {}
        for name, (entity, values) in columns.items():
            group = self.file.create_group(name)
            group.attrs["entity"] = entity
            self.datasets[name] = group.create_dataset(self.period, data=values,
                                                       maxshape=(None,), **DATASET_OPTIONS)

    def close(self) -> None:
        """Close; a write the disk refused (full) is raised here, after HDF5 has let go."""
        self.file.close()
        self.disk.close()
        if self.disk.error is not None:
            raise self.disk.error

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
    """Read a file written by `H5Writer` (the whole file, or one block of households);
    InputError for a missing, corrupt or incomplete one."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "file does not exist", "materialize the stage that writes it")
    tables: dict[str, dict[str, np.ndarray]] = {e: {} for e in ENTITIES}
    back = {h5: col for (_, col), h5 in _RENAMES.items()}
    try:
        with h5py.File(path, "r") as f:
            period = int(f.attrs["period"]) if "period" in f.attrs else None
            order = {e: [str(c) for c in f.attrs.get(f"{e}_columns", [])] for e in ENTITIES}
            for name, entity in _entities(f, order, path).items():
                if period is None:
                    period = int(next(iter(f[name].keys())))
                try:
                    dataset = f[f"{name}/{period}"]
                except KeyError:
                    raise InputError(path, name, f"no dataset for period {period}",
                                     "write every variable for the file's period") from None
                values = dataset[_rows(block, entity)]
                if values.dtype.kind == "S":
                    values = np.array([v.decode("utf-8") for v in values], dtype=object)
                tables[entity][back.get(name, name)] = values
    except InputError:
        raise
    except (OSError, KeyError, ValueError, StopIteration) as exc:
        raise InputError(path, None, f"file is corrupt or truncated ({exc})",
                         "rebuild it from its upstream stage") from exc
    frames = {}
    for entity in ENTITIES:
        cols = tables[entity]
        for col in REQUIRED[entity]:
            if col not in cols:
                raise InputError(path, col, f"required {entity} variable is missing",
                                 "rebuild the file with pipeline.microdata.write_h5")
        names = [c for c in order[entity] if c in cols]
        names += sorted(c for c in cols if c not in names)
        frames[entity] = pd.DataFrame({c: cols[c] for c in names})
    frames["household"]["household_weight"] = frames["household"]["household_weight"].astype(
        np.float64
    )
    return Microdata(period, frames["household"], frames["tax_unit"],
                     frames["person"]).validate(path)


def _entities(f: h5py.File, order: dict[str, list[str]], path: Path) -> dict[str, str]:
    """Variable -> entity: from the file's column lists when it has them (one attribute
    read instead of one per variable), else from each group's `entity` attribute."""
    if all(order.values()):
        return {_RENAMES.get((e, c), c): e for e, cols in order.items() for c in cols}
    found = {}
    for name in f:
        if name in _DERIVED:
            continue
        entity = f[name].attrs.get("entity")
        entity = entity.decode() if isinstance(entity, bytes) else entity
        if entity not in ENTITIES:
            raise InputError(path, name, f"unknown entity {entity!r}",
                             f"set the group attribute 'entity' to one of {ENTITIES}")
        found[name] = entity
    return found


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
