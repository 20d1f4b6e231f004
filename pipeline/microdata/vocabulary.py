"""policyengine-us's variable vocabulary for the H5 files: applied on write, inverted on read.

In memory every stage keeps Tax-Calculator's column names (the engine reads them). On disk
every variable has policyengine-us's name and entity, so its `Microsimulation` loads a file
as it is: income and expense inputs are person-level, split between head and spouse where
the CPS splits them (Tax-Calculator's `*p`/`*s` columns) and on the head where it does not;
SNAP takeup is on the SPM unit; variables policyengine-us computes by formula (`age_head`,
`blind_head`, `is_tax_unit_*`, `tax_unit_household_id`, ...) are not written: their inputs
are (`age`, `is_blind`, `tax_unit_role_input`, the person links). Tax-Calculator's columns
with no policyengine-us input (`MARS`, `XTOT`, `EIC`, benefits policyengine-us computes
itself, ...) are written as `taxcalc_<name>`, a prefix no policyengine-us variable uses.

The reverse mapping rebuilds exactly the tables that were written: a Tax-Calculator total
is the sum over the unit's members, its `p`/`s` parts the head's and the spouse's values, a
total held with one of its parts (dividends, pensions) the part plus the remainder. Whole-
dollar amounts (`pipeline.source` rounds them) make every such sum exact; `H5Writer` checks
on each block that reading it back gives the same tables, bit for bit, so a file the
validation walk reads gives Tax-Calculator the inputs the matrix was built from.

The table of every name: docs/policyengine.md. Files target `POLICYENGINE_US_VERSION`.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.core.packaged import packaged
from pipeline.microdata.tables import ENTITIES, Microdata

POLICYENGINE_US_VERSION = "2.68.0"
VOCABULARY = f"policyengine-us {POLICYENGINE_US_VERSION}"
PREFIX = "taxcalc_"  # Tax-Calculator columns policyengine-us has no input for
ROLE = "tax_unit_role_input"
ROLES = ("HEAD", "SPOUSE", "DEPENDENT")  # policyengine-us's TaxUnitRole names
TEXT_WIDTHS = {ROLE: max(len(r) for r in ROLES)}

# Person inputs the CPS splits between head and spouse: PE name -> (total, head, spouse).
SPLIT = {
    "employment_income_before_lsr": ("e00200", "e00200p", "e00200s"),
    "self_employment_income_before_lsr": ("e00900", "e00900p", "e00900s"),
    "farm_income": ("e02100", "e02100p", "e02100s"),
    "traditional_401k_contributions_desired": (None, "pencon_p", "pencon_s"),
}
# The in-memory person column that already holds a split variable (it wins over the parts).
PERSON_COLUMN = {"employment_income_before_lsr": "employment_income"}
# Tax-Calculator's wages are net of elective deferrals; policyengine-us's are gross.
GROSS_OF = {"employment_income_before_lsr": "traditional_401k_contributions_desired"}
# Tax-unit amounts the CPS does not split: on the head. PE name -> Tax-Calculator column.
ON_HEAD = {
    "taxable_interest_income": "e00300",
    "tax_exempt_interest_income": "e00400",
    "qualified_dividend_income": "e00650",
    "alimony_income": "e00800",
    "non_sch_d_capital_gains": "e01100",
    "taxable_ira_distributions": "e01400",
    "taxable_private_pension_income": "e01700",
    "unemployment_compensation": "e02300",
    "social_security_retirement": "e02400",
    "traditional_ira_contributions_desired": "e03150",
    "student_loan_interest": "e03210",
    "health_insurance_premiums": "e03270",
    "self_employed_pension_contributions_desired": "e03300",
    "other_medical_expenses": "e17500",
    "real_estate_taxes": "e18500",
    "home_mortgage_interest": "e19200",
    "charitable_cash_donations": "e19800",
    "charitable_non_cash_donations": "e20100",
    "veterans_benefits": "vet_ben",
}
# Totals Tax-Calculator holds with one of their parts: PE remainder -> (total, part).
REMAINDER = {
    "non_qualified_dividend_income": ("e00600", "e00650"),
    "tax_exempt_private_pension_income": ("e01500", "e01700"),
}
TAX_UNIT_RENAMED = {"domestic_production_ald": "e03240"}
HEAD_FLAGS = {"claimed_as_dependent_on_another_return": "DSI"}
BLIND = ("blind_head", "blind_spouse")  # -> person is_blind
AGES = ("age_head", "age_spouse")  # -> person age (policyengine-us computes these)
# Columns of the three tables policyengine-us knows under the same name and entity.
# Tax-unit columns written under their own name (policyengine-us inputs), and every takeup
# input (`takes_up_*`); every other tax-unit column is Tax-Calculator's (`taxcalc_<name>`).
KEPT_TAX_UNIT = ("tax_unit_id", "would_file_taxes_voluntarily")
TAKEUP = "takes_up_"
ON_SPM_UNIT = ("takes_up_snap_if_eligible",)  # SPM unit = household, same order
PERSON_LINKS = {"household_id": "person_household_id", "tax_unit_id": "person_tax_unit_id"}
DERIVED = {  # ids written for policyengine-us and not read back
    "spm_unit_id": "spm_unit", "family_id": "family", "marital_unit_id": "marital_unit",
    "person_spm_unit_id": "person", "person_family_id": "person",
    "person_marital_unit_id": "person",
}
# Units with no table of their own, whose ids are the sorted distinct ids of their persons'
# links (`_derived_ids`): a subset of households has the distinct ids of its persons.
UNIT_OF_PERSONS = {"marital_unit_id": "person_marital_unit_id"}
ROW_ENTITY = {"household": "household", "spm_unit": "household", "family": "household",
              "tax_unit": "tax_unit", "person": "person"}  # whose rows a variable's rows are

# policyengine-us's variables (name, entity, input or formula), snapshotted by
# scripts/snapshot_policyengine_variables.py, so no stage needs policyengine-us installed.
POLICYENGINE_VARIABLES = packaged("data", "policyengine_us_variables.csv.gz")

Published = dict[str, tuple[str, np.ndarray]]  # name -> (policyengine-us entity, values)


@functools.lru_cache(maxsize=1)
def _policyengine_names() -> frozenset[str]:
    table = pd.read_csv(POLICYENGINE_VARIABLES, comment="#")
    return frozenset(table["name"])


def policyengine_knows(name: str) -> bool:
    """Whether `name` is one of policyengine-us's variables (else a published file keeps it
    in its sidecar, which policyengine-us never opens, so loading logs no warning: the CPS
    year and sequence, the source record and clone, `taxcalc_*` columns, ...)."""
    return name in _policyengine_names()


def to_policyengine(md: Microdata) -> Published:
    """Every variable of `md` under its policyengine-us name and entity."""
    person, tu, hh = md.person, md.tax_unit, md.household
    members = _Members.of(md)
    out: Published = {}
    used: set[str] = set()

    def add(name: str, entity: str, values: np.ndarray | pd.Series) -> None:
        if name in out:
            raise InputError(None, name, "two columns map to the same policyengine-us name",
                             "rename one of them")
        out[name] = (entity, np.asarray(values))

    for col in hh.columns:
        add(col, "spm_unit" if col in ON_SPM_UNIT else "household", hh[col])
    for col in person.columns:
        if col in ("is_tax_unit_head", "is_tax_unit_spouse", "is_tax_unit_dependent"):
            continue
        if col not in PERSON_COLUMN.values():
            add(PERSON_LINKS.get(col, col), "person", person[col])
    add(ROLE, "person", np.array(ROLES, dtype=object)[members.role])

    split: dict[str, np.ndarray] = {}
    for name, (total, head, spouse) in SPLIT.items():
        own = PERSON_COLUMN.get(name)
        if own in person.columns:
            split[name] = person[own].to_numpy(np.float64)
        elif head in tu.columns or spouse in tu.columns:
            split[name] = members.on_head_spouse(tu, head, spouse)
        elif total in tu.columns:
            split[name] = members.on_head(tu[total])
        else:
            continue
        used.update(c for c in (total, head, spouse) if c)
    for name, deferral in GROSS_OF.items():
        if name in split and deferral in split:
            split[name] = split[name] + split[deferral]
    for name, values in split.items():
        add(name, "person", values)
    for name, col in ON_HEAD.items():
        if col in tu.columns:
            add(name, "person", members.on_head(tu[col]))
            used.add(col)
    for name, (total, part) in REMAINDER.items():
        if total in tu.columns:
            rest = tu[total].to_numpy(np.float64)
            if part in tu.columns:
                rest = rest - tu[part].to_numpy(np.float64)
            add(name, "person", members.on_head(rest))
            used.add(total)
    for name, col in TAX_UNIT_RENAMED.items():
        if col in tu.columns:
            add(name, "tax_unit", tu[col])
            used.add(col)
    for name, col in HEAD_FLAGS.items():
        if col in tu.columns:
            add(name, "person", members.on_head(tu[col] != 0).astype(bool))
            used.add(col)
    if any(c in tu.columns for c in BLIND):
        blind = members.on_head_spouse(tu, *BLIND) != 0
        add("is_blind", "person", blind)
        used.update(BLIND)
    used.update(AGES)
    for col in tu.columns:
        if col == "household_id" or col in used:
            continue
        kept = col in KEPT_TAX_UNIT or col.startswith(TAKEUP)
        add(col if kept else PREFIX + col, "tax_unit", tu[col])
    for name, values in _derived_ids(md, members).items():
        add(name, DERIVED[name], values)
    return out


def from_policyengine(published: Published, columns: dict[str, list[str]],
                      dtypes: dict[str, dict[str, str]], period: int) -> Microdata:
    """The tables `to_policyengine` was given: `columns` and `dtypes` name each table's
    in-memory columns and the dtypes of the rebuilt ones (the file records both)."""
    entity_of = {name: entity for name, (entity, _) in published.items()}
    p = {name: values for name, (_, values) in published.items()}
    person_tu = p.pop("person_tax_unit_id")
    person_hh = p.pop("person_household_id")
    tu_ids = p.pop("tax_unit_id")
    role = pd.Series(p.pop(ROLE)).astype(str).to_numpy()
    members = _Members(pd.Index(tu_ids).get_indexer(person_tu), role == "HEAD",
                       role == "SPOUSE", len(tu_ids))
    person = {"household_id": person_hh, "tax_unit_id": person_tu,
              "is_tax_unit_head": members.head, "is_tax_unit_spouse": members.spouse,
              "is_tax_unit_dependent": role == "DEPENDENT"}
    units, first = np.unique(members.unit, return_index=True)  # each unit's first member
    if not np.array_equal(units, np.arange(len(tu_ids))):
        raise InputError(None, "person_tax_unit_id", "a tax unit has no members",
                         "rebuild the file with pipeline.microdata.write_h5")
    tu: dict[str, np.ndarray] = {"tax_unit_id": tu_ids, "household_id": person_hh[first]}

    deferral = {n: p[d] for n, d in GROSS_OF.items() if n in p and d in p}
    for name, (total, head, spouse) in SPLIT.items():
        if name not in p:
            continue
        values = p.pop(name) - deferral.get(name, 0.0)
        if PERSON_COLUMN.get(name):
            person[PERSON_COLUMN[name]] = values
        tu[head] = members.head_value(values)
        tu[spouse] = members.spouse_value(values)
        if total:
            tu[total] = members.total(values)
    parts = {}
    for name, col in ON_HEAD.items():
        if name in p:
            parts[col] = tu[col] = members.total(p.pop(name))
    for name, (total, part) in REMAINDER.items():
        if name in p:
            tu[total] = parts.get(part, 0.0) + members.total(p.pop(name))
    for name, col in TAX_UNIT_RENAMED.items():
        if name in p:
            tu[col] = p.pop(name)
    for name, col in HEAD_FLAGS.items():
        if name in p:
            tu[col] = members.head_value(p.pop(name).astype(np.int64))
    if "is_blind" in p:
        blind = p.pop("is_blind").astype(np.int64)
        tu[BLIND[0]], tu[BLIND[1]] = members.head_value(blind), members.spouse_value(blind)
    age = p["age"]
    tu[AGES[0]], tu[AGES[1]] = members.head_value(age), members.spouse_value(age)

    tables: dict[str, dict[str, np.ndarray]] = {"household": {}, "tax_unit": tu,
                                                "person": person}
    for name, values in p.items():
        if name in DERIVED:
            continue
        if name.startswith(PREFIX):
            tu[name[len(PREFIX):]] = values
        elif name in KEPT_TAX_UNIT or (name.startswith(TAKEUP)
                                       and entity_of[name] == "tax_unit"):
            tu[name] = values
        else:
            tables[ROW_ENTITY[entity_of[name]]][name] = values
    frames = {}
    for entity in ENTITIES:
        have = tables[entity]
        missing = [c for c in columns[entity] if c not in have]
        if missing:
            raise InputError(None, f"{entity}.{missing[0]}", "not in the file",
                             "rebuild the file with pipeline.microdata.write_h5")
        frame = pd.DataFrame({c: have[c] for c in columns[entity]})
        frames[entity] = frame.astype(dtypes.get(entity, {}))
    return Microdata(period, frames["household"], frames["tax_unit"], frames["person"])


def rebuilt_dtypes(md: Microdata) -> dict[str, dict[str, str]]:
    """The dtypes of the columns `from_policyengine` computes rather than reads."""
    read_as_is = {*KEPT_TAX_UNIT, "household_id",
                  *(c for c in md.tax_unit.columns if c.startswith(TAKEUP))}
    return {
        "tax_unit": {c: str(t) for c, t in md.tax_unit.dtypes.items() if c not in read_as_is},
        "person": {c: str(md.person[c].dtype) for c in
                   ("is_tax_unit_head", "is_tax_unit_spouse", "is_tax_unit_dependent",
                    *PERSON_COLUMN.values()) if c in md.person.columns},
    }


def check_lossless(md: Microdata, published: Published) -> None:
    """InputError naming the first column that would not read back bit for bit."""
    columns = {e: list(getattr(md, e).columns) for e in ENTITIES}
    back = from_policyengine(published, columns, rebuilt_dtypes(md), md.period)
    for entity in ENTITIES:
        ours, theirs = getattr(md, entity), getattr(back, entity)
        for col in ours.columns:
            if not _same(ours[col], theirs[col]):
                raise InputError(None, f"{entity}.{col}",
                                 "does not survive the policyengine-us mapping (a total that "
                                 "is not the sum of its parts, a spouse amount without a "
                                 "spouse, or amounts that are not whole dollars)",
                                 "make totals the exact sum of their head/spouse parts "
                                 "(pipeline.source rounds amounts to whole dollars)")


def _same(a: pd.Series, b: pd.Series) -> bool:
    x, y = a.to_numpy(), b.to_numpy()
    if x.dtype != y.dtype and not (x.dtype == object or y.dtype == object):
        return False
    if x.dtype.kind == "f":
        return bool(np.array_equal(x, y, equal_nan=True)
                    and np.array_equal(np.signbit(x), np.signbit(y)))
    return bool(np.array_equal(x.astype(str) if x.dtype == object else x,
                               y.astype(str) if y.dtype == object else y))


class _Members:
    """Each person's tax unit (row position) and role, for moving values between them."""

    def __init__(self, unit: np.ndarray, head: np.ndarray, spouse: np.ndarray, n_units: int):
        self.unit, self.head, self.spouse, self.n_units = unit, head, spouse, n_units

    @classmethod
    def of(cls, md: Microdata) -> _Members:
        p = md.person
        head = p["is_tax_unit_head"].to_numpy(bool)
        spouse = p["is_tax_unit_spouse"].to_numpy(bool)
        dependent = p["is_tax_unit_dependent"].to_numpy(bool)
        if np.any(head.astype(int) + spouse + dependent != 1):
            raise InputError(None, "person.is_tax_unit_head/spouse/dependent",
                             "a person is not exactly one of head, spouse, dependent",
                             "give every person one role in their tax unit")
        unit = pd.Index(md.tax_unit["tax_unit_id"]).get_indexer(p["tax_unit_id"])
        return cls(unit, head, spouse, len(md.tax_unit))

    @property
    def role(self) -> np.ndarray:
        return np.where(self.head, 0, np.where(self.spouse, 1, 2))

    def on_head(self, values: pd.Series | np.ndarray) -> np.ndarray:
        v = np.asarray(values)[self.unit]
        return np.where(self.head, v, np.zeros_like(v))

    def on_head_spouse(self, tu: pd.DataFrame, head: str, spouse: str) -> np.ndarray:
        zero = np.zeros(len(tu))
        h = tu[head].to_numpy() if head in tu.columns else zero
        s = tu[spouse].to_numpy() if spouse in tu.columns else zero
        out = np.where(self.head, h[self.unit], np.where(self.spouse, s[self.unit], 0))
        return out.astype(np.result_type(h, s))

    def total(self, values: np.ndarray) -> np.ndarray:
        """Per unit, the sum over its members (a head's amount plus zeros is exact)."""
        return np.bincount(self.unit, weights=values, minlength=self.n_units)

    def head_value(self, values: np.ndarray) -> np.ndarray:
        return self._pick(values, self.head)

    def spouse_value(self, values: np.ndarray) -> np.ndarray:
        return self._pick(values, self.spouse)

    def _pick(self, values: np.ndarray, who: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n_units, dtype=np.asarray(values).dtype)
        out[self.unit[who]] = np.asarray(values)[who]
        return out


def _derived_ids(md: Microdata, members: _Members) -> dict[str, np.ndarray]:
    """SPM unit and family are the household; a marital unit is a head with their spouse,
    and each dependent alone."""
    person = md.person
    hh = md.household["household_id"].to_numpy(np.int64)
    pid = person["person_id"].to_numpy(np.int64)
    head_of_unit = np.zeros(members.n_units, dtype=np.int64)
    head_of_unit[members.unit[members.head]] = pid[members.head]
    marital = np.where(members.spouse, head_of_unit[members.unit], pid)
    person_hh = person["household_id"].to_numpy(np.int64)
    return {
        "spm_unit_id": hh, "family_id": hh, "marital_unit_id": np.unique(marital),
        "person_spm_unit_id": person_hh, "person_family_id": person_hh,
        "person_marital_unit_id": marital,
    }
