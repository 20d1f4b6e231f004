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

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.core.atomic import write_bytes
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


def _h5_values(series: pd.Series) -> np.ndarray:
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        encoded = [str(v).encode("utf-8") for v in series]
        width = max((len(v) for v in encoded), default=1) or 1
        return np.array(encoded, dtype=f"S{width}")
    return series.to_numpy()


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


def write_h5(md: Microdata, path: str | Path) -> None:
    """Write `md` in the PolicyEngine layout, atomically."""
    md.validate()
    period = str(md.period)
    columns: dict[str, tuple[str, np.ndarray]] = {}
    for entity in ENTITIES:
        table = getattr(md, entity)
        for col in table.columns:
            name = _RENAMES.get((entity, col), col)
            if name in columns or name in _DERIVED:
                raise InputError(None, f"{entity}.{col}",
                                 f"column name {name!r} is used by another table",
                                 "rename the column so each variable has one entity")
            values = _h5_values(table[col])
            if name == "household_weight":
                values = values.astype(np.float32)
            columns[name] = (entity, values)
    for name, values in _derived_ids(md).items():
        columns[name] = (_DERIVED[name], values)
    # HDF5 builds the file in memory and Python writes the bytes: a disk error then is a
    # plain OSError, never a half-closed HDF5 file that crashes the interpreter at exit.
    with h5py.File(f"{path}.image", "w", driver="core", backing_store=False) as f:
        f.attrs["period"] = md.period
        for entity in ENTITIES:
            f.attrs[f"{entity}_columns"] = list(getattr(md, entity).columns)
        for name, (entity, values) in columns.items():
            group = f.create_group(name)
            group.attrs["entity"] = entity
            group.create_dataset(period, data=values)
        f.flush()
        image = f.id.get_file_image()
    write_bytes(path, image)


def read_h5(path: str | Path) -> Microdata:
    """Read a file written by `write_h5`; InputError for a missing, corrupt or incomplete one."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "file does not exist", "materialize the stage that writes it")
    tables: dict[str, dict[str, np.ndarray]] = {e: {} for e in ENTITIES}
    back = {h5: col for (_, col), h5 in _RENAMES.items()}
    try:
        with h5py.File(path, "r") as f:
            period = int(f.attrs["period"]) if "period" in f.attrs else None
            order = {e: [str(c) for c in f.attrs.get(f"{e}_columns", [])] for e in ENTITIES}
            for name in f:
                if name in _DERIVED:
                    continue
                group = f[name]
                entity = group.attrs.get("entity")
                entity = entity.decode() if isinstance(entity, bytes) else entity
                if entity not in tables:
                    raise InputError(path, name, f"unknown entity {entity!r}",
                                     f"set the group attribute 'entity' to one of {ENTITIES}")
                if period is None:
                    period = int(next(iter(group.keys())))
                if str(period) not in group:
                    raise InputError(path, name, f"no dataset for period {period}",
                                     "write every variable for the file's period")
                values = group[str(period)][()]
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
                                 "rebuild the file with pipeline.microdata.tables.write_h5")
        names = [c for c in order[entity] if c in cols]
        names += sorted(c for c in cols if c not in names)
        frames[entity] = pd.DataFrame({c: cols[c] for c in names})
    frames["household"]["household_weight"] = frames["household"]["household_weight"].astype(
        np.float64
    )
    return Microdata(period, frames["household"], frames["tax_unit"],
                     frames["person"]).validate(path)
