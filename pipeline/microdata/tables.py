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

from pipeline.core.errors import InputError

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
