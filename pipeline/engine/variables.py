"""The variables a target or a constraint may name, and the entity each belongs to.

The names are policyengine-us's (the engine of record), except `is_tax_filer`, which
policyengine-us calls `tax_unit_is_filer`. Each engine computes a subset (`Engine.computes`);
a target naming a variable its engine does not compute is out of scope for that engine.
A policyengine-us SPM-unit variable (`snap`) is held per household: a published household
is one SPM unit. The IRS SOI items are tax-unit totals here (SOI counts returns), though
policyengine-us holds most of them per person: it sums them to the tax unit
(`map_to="tax_unit"`).
"""

from __future__ import annotations

from pipeline.engine.simulation import SOI_INPUTS
from pipeline.engine.taxes import SOI_ITEMS

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
    **dict.fromkeys(SOI_INPUTS, "tax_unit"),
    **dict.fromkeys(SOI_ITEMS, "tax_unit"),
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
# The entities a unit of each entity holds whole: its values (or one draw for it) reach
# them; a household holds its tax units and persons, a tax unit its persons.
HOLDS: dict[str, frozenset[str]] = {"household": frozenset({"household", "tax_unit", "person"}),
                                    "tax_unit": frozenset({"tax_unit", "person"}),
                                    "person": frozenset({"person"})}
