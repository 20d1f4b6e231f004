"""The variables a target or a constraint may name, and the entity each belongs to."""

from __future__ import annotations

VARIABLES: dict[str, str] = {
    "person_count": "person",
    "age": "person",
    "tax_unit_count": "tax_unit",
    "adjusted_gross_income": "tax_unit",
    "income_tax": "tax_unit",
    "eitc": "tax_unit",
    "eitc_child_count": "tax_unit",
    "ctc": "tax_unit",
    "is_tax_filer": "tax_unit",
    "household_count": "household",
    "snap": "household",
    "state_fips": "household",
    "congressional_district_geoid": "household",
}
