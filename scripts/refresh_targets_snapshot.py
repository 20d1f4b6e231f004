"""Rebuild the committed target snapshot (pipeline/data/targets/) from policyengine-us-data.

The raw public statistics ship inside the policyengine-us-data wheel. We never install it
(it drags in policyengine-us); we download the wheel, read the files straight from the zip
and keep only the compact slices our target DB needs, so a rebuild is reproducible offline
from the committed snapshot.

    .venv/bin/python scripts/refresh_targets_snapshot.py [--wheel PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_path, write_text
from pipeline.core.errors import InputError
from pipeline.core.geo import STATES
from pipeline.core.hashing import sha256_file

PACKAGE = "policyengine-us-data"
VERSION = "1.115.4"
STORAGE = "policyengine_us_data/storage/"
RAW = STORAGE + "calibration/raw_inputs/"
TARGETS = STORAGE + "calibration_targets/"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "targets"
STATE_FIPS = {abbr: fips for fips, abbr, _ in STATES}
AGE_LABEL = "Estimate!!Total!!Total population!!AGE!!"
TOTAL_LABEL = "Estimate!!Total!!Total population"
SNAP_LABEL = "Estimate!!Households receiving food stamps/SNAP!!Households"
HOUSEHOLDS_LABEL = "Estimate!!Total!!Households"
# IRS SOI national income components (Publication 1304, TY2023) -> the policyengine-us
# variable the engine computes per tax unit: returns with the item > 0 and its amount, by
# AGI band. Left out: capital gains, partnership/S-corp, rents, estates (the CPS file holds
# none of them, or only their net sum), the QBI deduction (no business detail), losses.
SOI_COMPONENTS = {
    "employment_income": "irs_employment_income",
    "taxable_interest_income": "taxable_interest_income",
    "exempt_interest": "tax_exempt_interest_income",
    "ordinary_dividends": "dividend_income",
    "qualified_dividends": "qualified_dividend_income",
    "business_net_profits": "self_employment_income",
    "ira_distributions": "taxable_ira_distributions",
    "total_pension_income": "pension_income",
    "taxable_pension_income": "taxable_pension_income",
    "total_social_security": "social_security",
    "taxable_social_security": "taxable_social_security",
    "unemployment_compensation": "unemployment_compensation",
    "itemized_deductions": "itemized_taxable_income_deductions",
    "taxable_income": "taxable_income",
    "income_tax_before_credits": "income_tax_before_credits",
}

# file -> (source, table, period, units, description); written to sources.csv and README.md.
SOURCES = {
    "districts.csv": (
        "Census ACS 1-year", "S0101 (S0101_C01_001E)", 2024, "persons",
        "436 districts of the 119th Congress; cd_geoid = state_fips*100 + Census district "
        "code (at-large 00 -> state*100, e.g. AK 200; DC delegate district 98 -> 1198, as "
        "county_cd_distributions.csv uses); population = S0101 total",
    ),
    "age_district.csv": (
        "Census ACS 1-year", "S0101 (S0101_C01_002E..019E)", 2024, "persons",
        "persons by 5-year age bin [age_lower, age_upper) per district; 85+ has upper inf",
    ),
    "age_state.csv": (
        "Census ACS 1-year", "S0101 (S0101_C01_002E..019E)", 2024, "persons",
        "persons by 5-year age bin per state (50 states + DC)",
    ),
    "age_national.csv": (
        "Census ACS 1-year", "S0101 (S0101_C01_002E..019E)", 2024, "persons",
        "persons by 5-year age bin, United States (50 states + DC)",
    ),
    "snap_district.csv": (
        "Census ACS 1-year", "S2201 (S2201_C03_001E)", 2024, "households",
        "households receiving food stamps/SNAP per district",
    ),
    "snap_state.csv": (
        "USDA FNS SNAP data tables (snap_state.csv)", "FY23 state summary", 2023,
        "households (monthly average); USD per year",
        "SNAP households (average monthly) and benefit cost per state",
    ),
    "eitc_state.csv": (
        "IRS SOI Historical Table 2 (eitc_state.csv)", "22in55cm N59660/A59660", 2022,
        "returns; USD", "returns with EITC and EITC amount per state",
    ),
    "agi_state.csv": (
        "IRS SOI Historical Table 2 (agi_state.csv)", "22in55cm N1/A00100 by AGI stub", 2022,
        "returns; USD", "returns filed and AGI by AGI band [agi_lower, agi_upper) per state",
    ),
    "population_state.csv": (
        "Census population estimates (population_by_state.csv)", "Vintage 2023, July 1",
        2023, "persons", "resident population per state",
    ),
    "soi_national.csv": (
        "IRS SOI Publication 1304 (soi_targets.csv)", "Table 1.1, all returns", 2023,
        "returns; USD",
        "national returns and AGI by AGI band (-inf..inf is the total), and total income "
        "tax after credits (measure income_tax, from Table 1.1/1.2)",
    ),
    "eitc_agi_children.csv": (
        "IRS SOI Publication 1304 (eitc_by_agi_and_children.csv)", "Table 2.5", 2022,
        "returns; USD",
        "national EITC returns and amount by AGI band and qualifying children "
        "(3 = three or more); held out of training",
    ),
    "households_district.csv": (
        "Census ACS 1-year", "S2201 (S2201_C01_001E)", 2024, "households",
        "total households per district",
    ),
    "households_state.csv": (
        "Census ACS 1-year", "S2201 (S2201_C01_001E), sum of the state's districts", 2024,
        "households",
        "total households per state (50 states + DC): the sum of its districts' estimates. "
        "ACS totals are sums of the same survey weights, so districts add up to the "
        "published state total; the script checks that they do for S0101's population",
    ),
    "households_national.csv": (
        "Census ACS 1-year", "S2201 (S2201_C01_001E), sum of the states", 2024,
        "households", "total households, United States (50 states + DC)",
    ),
    "soi_components_national.csv": (
        "IRS SOI Publication 1304 (soi_targets.csv)",
        "Tables 1.2 and 1.4, all returns (soi_table names each row's)", 2023, "returns; USD",
        "national returns with an income item or deduction > 0 and its amount, by AGI band "
        "[agi_lower, agi_upper); variable is the policyengine-us name the engine computes "
        "per tax unit, soi_variable and soi_table the source's",
    ),
    "county_cd_distributions.csv": (
        "policyengine-us-data (county_cd_distributions.csv)", "Census 2020 block crosswalk",
        2020, "probability", "P(county given district) for the 119th Congress districts",
    ),
    # Families only policyengine-us computes (issue 18): out of scope with the builtin engine.
    "state_income_tax_state.csv": (
        "Census Annual Survey of State Tax Collections "
        "(census_stc_individual_income_tax_2024.json)", "individual income tax (T40)", 2024,
        "USD", "state individual income tax collections per state (0 where none is levied)",
    ),
    "medicaid_state.csv": (
        "MACPAC enrollment tables (medicaid_enrollment_2024.csv)", "FFY 2024", 2024,
        "persons", "Medicaid enrollment per state",
    ),
    "aca_ptc_state.csv": (
        "IRS SOI Historical Table 2 (aca_ptc_state.csv)", "22in55cm N85770/A85770", 2022,
        "returns; USD", "returns with a premium tax credit and its total per state",
    ),
    "real_estate_taxes_state.csv": (
        "Census ACS 2024 1-year (acs_housing_costs_2024.csv)",
        "B25090_001E aggregate real estate taxes paid", 2024, "USD",
        "real estate taxes paid by owner-occupied housing units per state, as the production "
        "system's own targets now take them (not the wheel's older "
        "real_estate_taxes_by_state_acs.csv: no year, 43% of B25090's total)",
    ),
    "county_fips.csv": (
        "Census 2020 county list (national_county2020.txt) in the copy policyengine-us "
        "ships; scripts/snapshot_county_fips.py", "county FIPS codes", 2020, "codes",
        "5-digit FIPS of each county name county_cd_distributions.csv uses (not derived "
        "from the wheel)",
    ),
}


def fetch_wheel(dest: Path) -> Path:
    """Download the pinned wheel (no deps, never installed)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", f"{PACKAGE}=={VERSION}", "-d", str(dest)],
        check=True,
    )
    return next(dest.glob("policyengine_us_data-*.whl"))


class Wheel:
    def __init__(self, path: Path):
        self.path = path
        self.zip = zipfile.ZipFile(path)

    def read(self, member: str) -> bytes:
        try:
            return self.zip.read(member)
        except KeyError:
            raise InputError(
                self.path, member, "file missing from the wheel",
                f"pin a {PACKAGE} version that ships {member}",
            ) from None

    def json(self, member: str):
        return json.loads(self.read(member))

    def csv(self, member: str) -> pd.DataFrame:
        return pd.read_csv(io.BytesIO(self.read(member)), comment="#")


def _age_bounds(label: str) -> tuple[int, float]:
    text = label.removeprefix(AGE_LABEL)
    if text == "Under 5 years":
        return 0, 5
    if m := re.fullmatch(r"(\d+) to (\d+) years", text):
        return int(m[1]), int(m[2]) + 1
    if m := re.fullmatch(r"(\d+) years and over", text):
        return int(m[1]), np.inf
    raise InputError(RAW + "census_docs_2024.json", label, "unrecognised S0101 age label",
                     "extend _age_bounds to the new label")


def age_columns(docs: dict) -> dict[str, tuple[int, float]]:
    """S0101 total-column age bins, found by label so a renumbered table cannot shift them."""
    cols = {
        k: _age_bounds(v["label"]) for k, v in docs["variables"].items()
        if k.startswith("S0101_C01_") and k.endswith("E") and v["label"].startswith(AGE_LABEL)
    }
    bins = sorted(cols.values())
    gaps = [a[1] != b[0] for a, b in zip(bins[:-1], bins[1:], strict=True)]
    if len(bins) != 18 or bins[0][0] != 0 or any(gaps):
        raise InputError(RAW + "census_docs_2024.json", "S0101 AGE", f"bins {bins}",
                         "S0101 must hold 18 contiguous five-year bins")
    return cols


def column_by_label(docs: dict, prefix: str, label: str) -> str:
    hits = [k for k, v in docs["variables"].items() if k.startswith(prefix)
            and k.endswith("E") and v["label"] == label]
    if len(hits) != 1:
        raise InputError(RAW + "census_docs_2024.json", label, f"found {hits}",
                         "check the ACS variable labels")
    return hits[0]


def acs_frame(rows: list[list], member: str) -> pd.DataFrame:
    """ACS API rows -> frame of the 50 states + DC (Puerto Rico is out of scope)."""
    df = pd.DataFrame(rows[1:], columns=rows[0])
    df["state_fips"] = df["state"].astype(int)
    df = df[df["state_fips"].isin(STATE_FIPS.values())].reset_index(drop=True)
    if df["state_fips"].nunique() != 51:
        raise InputError(RAW + member, "state", f"{df['state_fips'].nunique()} states",
                         "the file must cover 50 states + DC")
    return df


def long_age(df: pd.DataFrame, keys: list[str], cols: dict) -> pd.DataFrame:
    out = []
    for col, (lo, hi) in sorted(cols.items(), key=lambda kv: kv[1]):
        part = df[keys].copy()
        part["age_lower"], part["age_upper"] = lo, hi
        part["value"] = df[col].astype(np.int64)
        out.append(part)
    return pd.concat(out).sort_values([*keys, "age_lower"]).reset_index(drop=True)


def state_fips_from_geo_id(geo_id: pd.Series) -> pd.Series:
    return geo_id.str.removeprefix("0400000US").astype(int)


def build(wheel: Wheel) -> dict[str, pd.DataFrame]:
    docs = wheel.json(RAW + "census_docs_2024.json")
    ages = age_columns(docs)
    total = column_by_label(docs, "S0101_C01_", TOTAL_LABEL)
    snap_col = column_by_label(docs, "S2201_C03_", SNAP_LABEL)

    cd = acs_frame(wheel.json(RAW + "acs_S0101_district_2024.json"), "acs_S0101_district")
    cd["cd_geoid"] = cd["state_fips"] * 100 + cd["congressional district"].astype(int)
    districts = cd[["cd_geoid", "state_fips", "NAME"]].rename(columns={"NAME": "name"})
    districts["population"] = cd[total].astype(np.int64)
    districts = districts.sort_values("cd_geoid").reset_index(drop=True)
    if len(districts) != 436:
        raise InputError(RAW + "acs_S0101_district_2024.json", "congressional district",
                         f"{len(districts)} districts", "expected 436 (119th Congress)")

    snap = acs_frame(wheel.json(RAW + "acs_S2201_district_2024.json"), "acs_S2201_district")
    snap["cd_geoid"] = snap["state_fips"] * 100 + snap["congressional district"].astype(int)
    snap_district = pd.DataFrame(
        {"cd_geoid": snap["cd_geoid"], "households": snap[snap_col].astype(np.int64)}
    ).sort_values("cd_geoid")

    st = acs_frame(wheel.json(RAW + "acs_S0101_state_2024.json"), "acs_S0101_state")
    us_rows = wheel.json(RAW + "acs_S0101_national_2024.json")
    us = pd.DataFrame(us_rows[1:], columns=us_rows[0])
    age_national = long_age(us, [], ages)

    snap_state = wheel.csv(TARGETS + "snap_state.csv")
    snap_state = pd.DataFrame({"state_fips": state_fips_from_geo_id(snap_state["GEO_ID"]),
                               "households": snap_state["Households"],
                               "cost": snap_state["Cost"]})
    eitc = wheel.csv(TARGETS + "eitc_state.csv")
    eitc_state = pd.DataFrame({"state_fips": state_fips_from_geo_id(eitc["GEO_ID"]),
                               "returns": eitc["Returns"], "amount": eitc["Amount"]})

    agi = wheel.csv(TARGETS + "agi_state.csv")
    agi["state_fips"] = state_fips_from_geo_id(agi["GEO_ID"])
    agi["measure"] = np.where(agi["IS_COUNT"] == 1, "returns", "amount")
    agi_state = agi.pivot_table(
        index=["state_fips", "AGI_LOWER_BOUND", "AGI_UPPER_BOUND"], columns="measure",
        values="VALUE", aggfunc="first",
    ).reset_index().rename(columns={"AGI_LOWER_BOUND": "agi_lower",
                                    "AGI_UPPER_BOUND": "agi_upper"})
    agi_state = agi_state[["state_fips", "agi_lower", "agi_upper", "returns", "amount"]]

    pop = wheel.csv(TARGETS + "population_by_state.csv")
    pop = pop[pop["state"].isin(STATE_FIPS)]
    population_state = pd.DataFrame({"state_fips": pop["state"].map(STATE_FIPS),
                                     "population": pop["population"].round().astype(np.int64)})

    eitc_children = wheel.csv(TARGETS + "eitc_by_agi_and_children.csv")
    hh_district, hh_state, hh_national = households(
        wheel.json(RAW + "acs_S2201_district_2024.json"), docs, cd, st, total)
    soi = wheel.csv(TARGETS + "soi_targets.csv")

    frames = {
        "districts.csv": districts,
        "age_district.csv": long_age(cd, ["cd_geoid"], ages),
        "age_state.csv": long_age(st, ["state_fips"], ages),
        "age_national.csv": age_national,
        "snap_district.csv": snap_district,
        "snap_state.csv": snap_state,
        "eitc_state.csv": eitc_state,
        "agi_state.csv": agi_state,
        "population_state.csv": population_state,
        "soi_national.csv": soi_national(soi),
        "eitc_agi_children.csv": eitc_children[
            ["count_children", "agi_lower", "agi_upper", "returns", "amount"]],
        "households_district.csv": hh_district,
        "households_state.csv": hh_state,
        "households_national.csv": hh_national,
        "soi_components_national.csv": soi_components(soi),
        "county_cd_distributions.csv": wheel.csv(STORAGE + "county_cd_distributions.csv")
        .rename(columns={"county_name": "county"}),
    }
    frames.update(policyengine_families(wheel))
    national_total = int(us[total].iloc[0])
    if int(age_national["value"].sum()) != national_total:
        raise InputError(RAW + "acs_S0101_national_2024.json", total,
                         "age bins do not add up to the total population",
                         "check the S0101 column selection")
    return {k: v.sort_values(list(v.columns[:3])).reset_index(drop=True)
            for k, v in frames.items()}


def households(rows: list[list], docs: dict, cd: pd.DataFrame, st: pd.DataFrame,
               population: str) -> tuple[pd.DataFrame, ...]:
    """S2201 total households per district, and their sums per state and for the nation.

    The wheel ships S2201 by district only. An ACS total is a sum of survey weights, so a
    state's districts add up to its published total: refused unless S0101's district
    populations sum exactly to the published state populations (the same weighting)."""
    by_district = cd.groupby("state_fips")[population].apply(lambda s: s.astype(np.int64).sum())
    published = st.set_index("state_fips")[population].astype(np.int64)
    if not by_district.equals(published.reindex(by_district.index)):
        raise InputError(RAW + "acs_S0101_district_2024.json", population,
                         "district populations do not add up to the state totals",
                         "ACS district totals are no longer additive: take S2201 by state "
                         "from the Census API instead of summing districts")
    col = column_by_label(docs, "S2201_C01_", HOUSEHOLDS_LABEL)
    hh = acs_frame(rows, "acs_S2201_district")
    district = pd.DataFrame({
        "cd_geoid": hh["state_fips"] * 100 + hh["congressional district"].astype(int),
        "households": hh[col].astype(np.int64)}).sort_values("cd_geoid")
    state = (district.assign(state_fips=district["cd_geoid"] // 100)
             .groupby("state_fips", as_index=False)["households"].sum())
    national = pd.DataFrame({"households": [int(state["households"].sum())]})
    return district, state, national


def soi_components(soi: pd.DataFrame) -> pd.DataFrame:
    """`SOI_COMPONENTS` by AGI band, latest year, all returns and filing statuses."""
    year = SOURCES["soi_components_national.csv"][2]
    t = soi[(soi["Year"] == year) & (soi["Filing status"] == "All") & ~soi["Taxable only"]
            & ~soi["Full population"] & soi["Variable"].isin(SOI_COMPONENTS)
            & soi["SOI table"].isin(["Table 1.2", "Table 1.4"])]
    t = t.assign(measure=np.where(t["Count"], "returns", "amount")).pivot_table(
        index=["Variable", "SOI table", "AGI lower bound", "AGI upper bound"],
        columns="measure", values="Value", aggfunc="first").reset_index()
    missing = sorted(set(SOI_COMPONENTS) - set(t["Variable"]))
    bands = t.groupby("Variable").size()
    if missing or (bands != 19).any() or t[["returns", "amount"]].isna().any().any():
        raise InputError(TARGETS + "soi_targets.csv", "Variable",
                         f"TY{year}: missing {missing}, bands per item {bands.to_dict()}",
                         "every component needs returns and amount in each of 19 AGI bands")
    out = pd.DataFrame({
        "variable": t["Variable"].map(SOI_COMPONENTS), "agi_lower": t["AGI lower bound"],
        "agi_upper": t["AGI upper bound"], "returns": t["returns"], "amount": t["amount"],
        "soi_variable": t["Variable"], "soi_table": t["SOI table"]})
    # As in soi_national: the "No adjusted gross income" band (-inf, 0] is [-inf, 1).
    out.loc[np.isneginf(out["agi_lower"]) & (out["agi_upper"] == 0), "agi_upper"] = 1.0
    return out


def _by_abbreviation(df: pd.DataFrame, column: str, member: str) -> pd.Series:
    """A state column of USPS abbreviations as FIPS, every state and DC present."""
    fips = df[column].map(STATE_FIPS)
    if fips.isna().any() or fips.nunique() != 51:
        raise InputError(member, column, f"{fips.nunique()} known states",
                         "the file must cover 50 states + DC by abbreviation")
    return fips.astype(np.int64)


def policyengine_families(wheel: Wheel) -> dict[str, pd.DataFrame]:
    """The state statistics only policyengine-us computes: state income tax, Medicaid
    enrollment, ACA premium tax credits, real estate taxes."""
    stc = pd.DataFrame(wheel.json(RAW + "census_stc_individual_income_tax_2024.json"))
    stc = stc[stc["state_abbrev"].isin(STATE_FIPS)]
    medicaid = wheel.csv(TARGETS + "medicaid_enrollment_2024.csv")
    aca = wheel.csv(TARGETS + "aca_ptc_state.csv")
    ret = wheel.csv(TARGETS + "acs_housing_costs_2024.csv")
    return {
        "state_income_tax_state.csv": pd.DataFrame({
            "state_fips": _by_abbreviation(stc, "state_abbrev", RAW + "census_stc"),
            "amount": stc["income_tax_collections"].astype(np.int64)}),
        "medicaid_state.csv": pd.DataFrame({
            "state_fips": _by_abbreviation(medicaid, "state", TARGETS + "medicaid"),
            "enrollment": medicaid["enrollment"].astype(np.int64)}),
        "aca_ptc_state.csv": pd.DataFrame({
            "state_fips": state_fips_from_geo_id(aca["GEO_ID"]),
            "returns": aca["Returns"].astype(np.int64),
            "amount": aca["TotalPTCAmount"].astype(np.int64)}),
        "real_estate_taxes_state.csv": pd.DataFrame({
            "state_fips": _by_abbreviation(ret, "state_code", TARGETS + "acs_housing_costs"),
            "amount": ret["real_estate_taxes"].astype(np.int64)}),
    }


def soi_national(soi: pd.DataFrame) -> pd.DataFrame:
    """Latest year of Table 1.1 (all returns, all filing statuses): what the engine computes."""
    year = int(soi["Year"].max())
    t = soi[(soi["Year"] == year) & (soi["SOI table"] == "Table 1.1")
            & (soi["Filing status"] == "All") & ~soi["Taxable only"]]
    measures = {("count", True): "returns", ("adjusted_gross_income", False): "agi"}
    out = []
    for (var, is_count), measure in measures.items():
        part = t[(t["Variable"] == var) & (t["Count"] == is_count)]
        out.append(pd.DataFrame({"measure": measure, "agi_lower": part["AGI lower bound"],
                                 "agi_upper": part["AGI upper bound"], "value": part["Value"]}))
    # Non-taxable returns owe no income tax after credits, so SOI files the all-returns
    # total under "taxable only" in Table 1.1 and under all returns in Table 1.2.
    y = soi[(soi["Year"] == year) & (soi["Filing status"] == "All")]
    tax = y[(y["Variable"] == "income_tax_after_credits") & ~y["Count"]
            & np.isinf(y["AGI lower bound"]) & np.isinf(y["AGI upper bound"])]["Value"].unique()
    if len(tax) != 1:
        raise InputError(TARGETS + "soi_targets.csv", "income_tax_after_credits",
                         f"{len(tax)} distinct national totals for {year}",
                         "pick the total income tax row by hand")
    out.append(pd.DataFrame({"measure": ["income_tax"], "agi_lower": [-np.inf],
                             "agi_upper": [np.inf], "value": tax}))
    df = pd.concat(out, ignore_index=True)
    # SOI's "No adjusted gross income" row is stored as (-inf, 0]; the next band starts at
    # $1, so [-inf, 1) covers it without a gap (agi_state.csv uses the same convention).
    df.loc[np.isneginf(df["agi_lower"]) & (df["agi_upper"] == 0), "agi_upper"] = 1.0
    if year != SOURCES["soi_national.csv"][2]:
        raise InputError(TARGETS + "soi_targets.csv", "Year", f"latest year is {year}",
                         "update SOURCES['soi_national.csv'] to the new year")
    return df


def readme(wheel_path: Path) -> str:
    lines = [
        "# Target snapshot",
        "",
        f"Derived by `scripts/refresh_targets_snapshot.py` from the {PACKAGE} {VERSION} wheel",
        f"(`{wheel_path.name}`, sha256 `{sha256_file(wheel_path)}`); do not edit by hand.",
        "Only the 50 states and DC are kept (Puerto Rico is out of scope). Geography keys:",
        "`state_fips` (int) and `cd_geoid` (int, state_fips*100 + district).",
        "`sources.csv` holds the same table in machine-readable form; the ETL takes each",
        "target's period and source from it.",
        "",
        "| file | source | table | year | units | contents |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {f} | {s} | {t} | {y} | {u} | {d} |" for f, (s, t, y, u, d) in SOURCES.items()]
    return "\n".join(lines) + "\n"


def write(frames: dict[str, pd.DataFrame], out: Path, wheel_path: Path) -> None:
    for name, df in frames.items():
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False)
    sources = pd.DataFrame(
        [(f, *row) for f, row in SOURCES.items()],
        columns=["file", "source", "table", "period", "units", "description"],
    )
    with atomic_path(out / "sources.csv") as tmp:
        sources.to_csv(tmp, index=False)
    write_text(out / "README.md", readme(wheel_path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="use this wheel instead of downloading")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel_path = args.wheel or fetch_wheel(Path(tmp))
        frames = build(Wheel(wheel_path))
        write(frames, args.out, wheel_path)
    for name, df in frames.items():
        print(f"{name}: {len(df)} rows")


if __name__ == "__main__":
    main()
