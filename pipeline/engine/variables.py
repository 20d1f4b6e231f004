"""The variables a target or a constraint may name, and the entity each belongs to.

Names are policyengine-us's. The IRS SOI items are tax-unit totals here (SOI counts
returns), though policyengine-us holds most of them per person: it sums them to the tax
unit (`map_to="tax_unit"`).
"""

from __future__ import annotations

from pipeline.engine.simulation import SOI_INPUTS
from pipeline.engine.taxes import SOI_ITEMS

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
    **dict.fromkeys(SOI_INPUTS, "tax_unit"),
    **dict.fromkeys(SOI_ITEMS, "tax_unit"),
    "household_count": "household",
    "snap": "household",
    "state_fips": "household",
    "congressional_district_geoid": "household",
}
