"""Uprating: every target carried from its statistic's year to the calibration year.

The microdata is Tax-Calculator's CPS advanced to the calibration year with Tax-Calculator's
own growth factors and weights (`pipeline.source.taxcalc_cps`); targets are carried with the
same sources, so both describe one year:
- counts grow with the population the CPS weights represent (`population_growth.csv`,
  derived by `scripts/derive_population_growth.py`): persons and households with persons,
  returns (tax units) with tax units;
- amounts grow with that count times Tax-Calculator's per-unit growth factor
  (`taxcalc/growfactors.csv`, one ratio to the year before per row): AGI and income tax with
  ATXPY (AGI per return), the EITC and SNAP with ACPIU (CPI-U: both credits' parameters
  are indexed to prices; Tax-Calculator holds its SNAP factor at 1 after 2016).
A target already of the calibration year keeps factor 1. Band edges (AGI, age) stay as
published: a cell that a law change empties or fills is flagged by validation
(`pipeline.validate.scoring`), not moved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import taxcalc

from pipeline.core.errors import InputError
from pipeline.core.packaged import POPULATION_GROWTH
from pipeline.core.tables import FINITE, check_table

GROWFACTORS = Path(os.path.dirname(taxcalc.__file__)) / "growfactors.csv"

# variable -> (count series in population_growth.csv, per-unit factor in growfactors.csv)
BASIS: dict[str, tuple[str, str | None]] = {
    "person_count": ("persons", None),
    "household_count": ("persons", None),
    "tax_unit_count": ("tax_units", None),
    "adjusted_gross_income": ("tax_units", "ATXPY"),
    "income_tax": ("tax_units", "ATXPY"),
    "eitc": ("tax_units", "ACPIU"),
    "snap": ("persons", "ACPIU"),
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
    "growfactors", sorted({f for _, f in BASIS.values() if f is not None}))


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
        series, per_unit = BASIS[variable]
        counts = self._level(series, year) / self._level(series, period)
        if per_unit is None:
            return counts
        lo, hi = sorted((period, year))
        growth = 1.0
        for y in range(lo + 1, hi + 1):
            growth *= self._row(self.growfactors, self.growfactors_file, y, per_unit)
        return counts * (growth if year > period else 1.0 / growth)

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
