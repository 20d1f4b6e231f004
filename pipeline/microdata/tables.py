"""Household / tax-unit / person microdata: the tables every stage passes along.

Tax units are grouped contiguously by household and persons by tax unit, in household
order, so a household's members are one slice of each table (stacking and the engine rely
on it). `validate` enforces that, and the columns every stage needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipeline.core.contracts import check_table
from pipeline.core.errors import InputError

_ID = {"dtype": "int64"}
_ANY = {"dtype": None}
# The columns every stage needs (more may exist; every column is written to the H5). Values
# a published file may get wrong (negative weights, NaN, non-boolean takeup) are the
# structural sanity gate's to report, so they are not refused here.
SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "household": pa.DataFrameSchema({
        "household_id": pa.Column(**_ID, unique=True),
        "household_weight": pa.Column(**_ANY),
        "state_fips": pa.Column(**_ID),
        "congressional_district_geoid": pa.Column(**_ID),
        "county": pa.Column(**_ANY),
        "takes_up_snap_if_eligible": pa.Column(**_ANY),
    }, name="household"),
    "tax_unit": pa.DataFrameSchema({
        "tax_unit_id": pa.Column(**_ID, unique=True),
        "household_id": pa.Column(**_ID),
        "takes_up_eitc": pa.Column(**_ANY),
        "MARS": pa.Column(**_ANY),
        "XTOT": pa.Column(**_ANY),
    }, name="tax_unit"),
    "person": pa.DataFrameSchema({
        "person_id": pa.Column(**_ID, unique=True),
        "household_id": pa.Column(**_ID),
        "tax_unit_id": pa.Column(**_ID),
        "age": pa.Column(**_ANY),
        "is_tax_unit_head": pa.Column(**_ANY),
        "is_tax_unit_spouse": pa.Column(**_ANY),
        "is_tax_unit_dependent": pa.Column(**_ANY),
        "employment_income": pa.Column(**_ANY),
    }, name="person"),
}
ENTITIES = tuple(SCHEMAS)
REQUIRED: dict[str, tuple[str, ...]] = {e: tuple(s.columns) for e, s in SCHEMAS.items()}


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
            check_table(SCHEMAS[name], getattr(self, name), file,
                        "rebuild the microdata with pipeline.source (every row its own id)")
        hh_pos = self.household_rows("tax_unit")
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

    def household_rows(self, entity: str) -> np.ndarray:
        """Per row of `entity`'s table, the row of its household (-1 for none)."""
        return _positions(self.household["household_id"], getattr(self, entity)["household_id"])

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
