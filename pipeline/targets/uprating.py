"""Uprating: every target carried from its statistic's year to the calibration year.

The microdata is Tax-Calculator's CPS advanced to the calibration year with Tax-Calculator's
own growth factors and weights (`pipeline.source.taxcalc_cps`); targets are carried with the
same sources, so both describe one year:
- counts grow with the population the CPS weights represent (`population_growth.csv`,
  derived by `scripts/derive_population_growth.py`): persons and households with persons,
  returns (tax units) with tax units;
- amounts grow with that count times Tax-Calculator's per-unit growth factor
  (`taxcalc/growfactors.csv`, one ratio to the year before per row): AGI and income tax with
  ATXPY (AGI per return); the EITC and SNAP with their parameters' indexing, ACPIU lagged
  one year (Tax-Calculator indexes year y+1's tax parameters by year y's ACPIU, and the
  SNAP cost-of-living adjustment for a fiscal year uses the prices of the year before;
  Tax-Calculator holds its own SNAP factor at 1 after 2016); state income tax and real
  estate taxes with ATXPY (Tax-Calculator's factor for e18400/e18500), premium tax credits
  with ACPIM (medical prices: the credit is a share of a premium);
- AGI band edges are nominal dollars and move with ATXPY too (rounded to the dollar):
  incomes grew, so 2022's returns of AGI $75K–$100K are 2024's returns of $84K–$112K.
  Left in place, a band would keep its count but need a mean above its top edge (a 2022
  mean of $86.7K grown 12% is $97.4K), which no record can give.
A target already of the calibration year keeps factor 1. Age bands stay. A cell that a law
change empties or fills is flagged by validation (`pipeline.validate.scoring`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import taxcalc

from pipeline.core.contracts import FINITE, check_table
from pipeline.core.errors import InputError
from pipeline.core.packaged import POPULATION_GROWTH

GROWFACTORS = Path(os.path.dirname(taxcalc.__file__)) / "growfactors.csv"
DOLLAR_BANDS = {"adjusted_gross_income": "ATXPY"}  # band variable -> factor moving its edges



@dataclass(frozen=True)
class Basis:
    count: str  # series in population_growth.csv
    per_unit: str | None = None  # column of growfactors.csv
    lagged: bool = False  # the year before's ratios (parameters indexed by last year's prices)

    def __str__(self) -> str:
        unit = f" x {self.per_unit}{' of the year before' if self.lagged else ''}"
        return self.count + (unit if self.per_unit else "")


BASIS: dict[str, Basis] = {
    "person_count": Basis("persons"),
    "household_count": Basis("persons"),
    "tax_unit_count": Basis("tax_units"),
    "adjusted_gross_income": Basis("tax_units", "ATXPY"),
    "income_tax": Basis("tax_units", "ATXPY"),
    "eitc": Basis("tax_units", "ACPIU", lagged=True),
    "snap": Basis("persons", "ACPIU", lagged=True),
    # policyengine-only families: state income tax and real estate taxes as Tax-Calculator
    # grows income tax and e18500 (ATXPY); premium tax credits with medical prices (ACPIM).
    "state_income_tax": Basis("tax_units", "ATXPY"),
    "real_estate_taxes": Basis("tax_units", "ATXPY"),
    "aca_ptc": Basis("tax_units", "ACPIM"),
}
_POSITIVE = pa.Check(lambda s: pd.to_numeric(s, errors="coerce") > 0,
                     error="a positive factor (growth factors are never negative or zero)")


def _series_schema(name: str, columns: list[str]) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {"year": pa.Column("int64", unique=True),
         **{c: pa.Column(None, [FINITE, _POSITIVE]) for c in columns}},
        name=name)


POPULATION_SCHEMA = _series_schema("population_growth", ["persons", "tax_units"])
GROWFACTOR_SCHEMA = _series_schema(
    "growfactors", sorted({b.per_unit for b in BASIS.values() if b.per_unit}
                          | set(DOLLAR_BANDS.values())))


@dataclass(frozen=True)
class Uprating:
    """Level of each count series and per-unit factor of each amount, by year."""

    population: pd.DataFrame  # index year; columns persons, tax_units (levels)
    growfactors: pd.DataFrame  # index year; columns ATXPY, ACPIU (ratio to the year before)
    population_file: str
    growfactors_file: str

    def factor(self, variable: str, period: int, year: int, source: str | Path) -> float:
        """Multiplier taking `variable` from `period` to `year` (1 for the same year)."""
        if variable not in BASIS:
            raise InputError(source, "variable", f"no uprating rule for {variable!r}",
                             "add it to BASIS in pipeline/targets/uprating.py")
        if period == year:
            return 1.0
        basis = BASIS[variable]
        counts = self._level(basis.count, year) / self._level(basis.count, period)
        if basis.per_unit is None:
            return counts
        return counts * self.growth(basis.per_unit, period, year, lagged=basis.lagged)

    def growth(self, column: str, period: int, year: int, *, lagged: bool = False) -> float:
        """Product of one growfactors.csv column's yearly ratios from `period` to `year`
        (each ratio is to the year before; `lagged` takes every ratio one year earlier)."""
        lo, hi = sorted((period, year))
        growth = 1.0
        for y in range(lo + 1 - lagged, hi + 1 - lagged):
            growth *= self._row(self.growfactors, self.growfactors_file, y, column)
        return growth if year >= period else 1.0 / growth

    def edge(self, variable: str, value: float, period: int, year: int) -> float:
        """A band edge on `variable` in `year`'s dollars (whole dollars; ±inf and edges of
        bands that are not dollars stay)."""
        if variable not in DOLLAR_BANDS or period == year or not math.isfinite(value):
            return value
        return float(round(value * self.growth(DOLLAR_BANDS[variable], period, year)))

    def _level(self, series: str, year: int) -> float:
        return self._row(self.population, self.population_file, year, series)

    @staticmethod
    def _row(table: pd.DataFrame, file: str, year: int, column: str) -> float:
        if year not in table.index:
            raise InputError(file, "year", f"no row for {year}, needed for {column}",
                             "add that year's row (regenerate the file from Tax-Calculator), "
                             "or calibrate to a year the file covers")
        return float(table.at[year, column])


def _read(path: Path, schema: pa.DataFrameSchema, rename: dict[str, str]) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(path, None, "growth factor file missing",
                         "reinstall taxcalc, or run scripts/derive_population_growth.py")
    df = pd.read_csv(path, comment="#").rename(columns=rename)
    check_table(schema, df, path, "use positive growth factors, one row per year", csv=True)
    return df.set_index("year")[list(schema.columns)[1:]].astype(float)


def load_uprating(population: str | Path = POPULATION_GROWTH,
                  growfactors: str | Path = GROWFACTORS) -> Uprating:
    """Read and check both factor files (years unique, every factor finite and > 0)."""
    population, growfactors = Path(population), Path(growfactors)
    return Uprating(_read(population, POPULATION_SCHEMA, {}),
                    _read(growfactors, GROWFACTOR_SCHEMA, {"YEAR": "year"}),
                    str(population), str(growfactors))
