"""Household / tax-unit / person microdata and its PolicyEngine-layout HDF5 form.

The H5 layout is the one policyengine-us's Microsimulation loads: one group per variable,
one dataset per period, the group's `entity` attribute naming its table. Column names must
therefore be unique across the three tables; the id links that share a name are renamed on
write (`person.household_id` → `person_household_id`, `person.tax_unit_id` →
`person_tax_unit_id`, `tax_unit.household_id` → `tax_unit_household_id`) and back on read.
SPM unit and family are the household; a marital unit is a head with their spouse, and each
dependent alone. These derived ids are written for PolicyEngine and not read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.atomic import atomic_path
from pipeline.errors import InputError

REQUIRED: dict[str, tuple[str, ...]] = {
    "household": (
        "household_id",
        "household_weight",
        "state_fips",
        "congressional_district_geoid",
        "county",
        "takes_up_snap_if_eligible",
    ),
    "tax_unit": ("tax_unit_id", "household_id", "takes_up_eitc", "MARS", "XTOT"),
    "person": (
        "person_id",
        "household_id",
        "tax_unit_id",
        "age",
        "is_tax_unit_head",
        "is_tax_unit_spouse",
        "is_tax_unit_dependent",
        "employment_income",
    ),
}
ENTITIES = ("household", "tax_unit", "person")
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


@dataclass(frozen=True)
class Microdata:
    period: int
    household: pd.DataFrame
    tax_unit: pd.DataFrame
    person: pd.DataFrame

    def validate(self, file: str | Path | None = None) -> Microdata:
        """Raise InputError unless required columns exist, ids are unique and rows are
        grouped contiguously by household (then tax unit) in household order."""
        for name in ENTITIES:
            table = getattr(self, name)
            for col in REQUIRED[name]:
                if col not in table.columns:
                    raise InputError(file, f"{name}.{col}", "required column is missing",
                                     "rebuild the microdata with pipeline.sources")
        for name, id_col in (("household", "household_id"), ("tax_unit", "tax_unit_id"),
                             ("person", "person_id")):
            if not getattr(self, name)[id_col].is_unique:
                raise InputError(file, f"{name}.{id_col}", "ids are not unique",
                                 "give every row its own id")
        hh_pos = _positions(self.household["household_id"], self.tax_unit["household_id"])
        tu_pos = _positions(self.tax_unit["tax_unit_id"], self.person["tax_unit_id"])
        if (hh_pos < 0).any() or (tu_pos < 0).any():
            raise InputError(file, "household_id/tax_unit_id", "a row links to a missing entity",
                             "drop orphan tax units and persons")
        if np.any(np.diff(hh_pos) < 0) or np.any(np.diff(tu_pos) < 0):
            raise InputError(file, "household_id/tax_unit_id",
                             "rows are not grouped contiguously in household order",
                             "sort tax units by household and persons by tax unit")
        person_hh = self.tax_unit["household_id"].to_numpy()[tu_pos]
        if not np.array_equal(person_hh, self.person["household_id"].to_numpy()):
            raise InputError(file, "person.household_id",
                             "a person's household differs from their tax unit's",
                             "take each person's household from their tax unit")
        return self

    def take_households(self, positions: np.ndarray) -> Microdata:
        """The households at `positions` (ascending) with their tax units and persons."""
        hh = self.household.iloc[np.asarray(positions)].reset_index(drop=True)
        keep = pd.Index(hh["household_id"])
        tu = self.tax_unit[keep.get_indexer(self.tax_unit["household_id"]) >= 0]
        person = self.person[keep.get_indexer(self.person["household_id"]) >= 0]
        return Microdata(self.period, hh, tu.reset_index(drop=True),
                         person.reset_index(drop=True))


def _positions(ids: pd.Series, links: pd.Series) -> np.ndarray:
    return pd.Index(ids.to_numpy()).get_indexer(links.to_numpy())


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
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["period"] = md.period
        for entity in ENTITIES:
            f.attrs[f"{entity}_columns"] = list(getattr(md, entity).columns)
        for name, (entity, values) in columns.items():
            group = f.create_group(name)
            group.attrs["entity"] = entity
            group.create_dataset(period, data=values)


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
                                 "rebuild the file with pipeline.microdata.write_h5")
        names = [c for c in order[entity] if c in cols]
        names += sorted(c for c in cols if c not in names)
        frames[entity] = pd.DataFrame({c: cols[c] for c in names})
    frames["household"]["household_weight"] = frames["household"]["household_weight"].astype(
        np.float64
    )
    return Microdata(period, frames["household"], frames["tax_unit"],
                     frames["person"]).validate(path)
