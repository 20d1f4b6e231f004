"""The variables a target or a constraint may name, and the entity each belongs to.

The names are policyengine-us's (the engine of record), except `is_tax_filer`, which
policyengine-us calls `tax_unit_is_filer`. Each engine computes a subset (`Engine.computes`);
a target naming a variable its engine does not compute is out of scope for that engine.
A policyengine-us SPM-unit variable (`snap`) is held per household: a published household
is one SPM unit.
"""

from __future__ import annotations

BUILTIN: dict[str, str] = {
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
# Computed by policyengine-us only (issue 18's state families).
POLICYENGINE_ONLY: dict[str, str] = {
    "state_income_tax": "tax_unit",
    "aca_ptc": "tax_unit",
    "medicaid_enrolled": "person",
    "real_estate_taxes": "person",
}
VARIABLES: dict[str, str] = {**BUILTIN, **POLICYENGINE_ONLY}
