"""Build the target database from the committed snapshot (pipeline/data/targets/).

Every statistic becomes a target on a stratum: geographic constraints (`state_fips`,
`congressional_district_geoid`) plus a domain (age band, snap>0, AGI band, ...).
Strata nest district -> state -> nation so production's hierarchy queries work.
Each value is uprated to the calibration year (`pipeline.targets.uprating`); the published
value, its year and the factor are stored beside it.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipeline.core.atomic import atomic_path
from pipeline.core.contracts import FINITE, NON_NEGATIVE, NUMBER
from pipeline.core.errors import InputError
from pipeline.core.geo import STATE_ABBR, load_districts, read_snapshot
from pipeline.core.packaged import SNAPSHOT_DIR
from pipeline.targets.db import (
    Constraint,
    create_schema,
    definition_hash,
    format_value,
    target_name,
)
from pipeline.targets.split import VALIDATION_SPLIT, split_mask
from pipeline.targets.uprating import BASIS, DOLLAR_BANDS, Uprating, load_uprating

STATE_FIPS = frozenset(STATE_ABBR)
FILER = ("is_tax_filer", "==", 1)
SNAP = ("snap", ">", 0)
EITC = ("eitc", ">", 0)
MEDICAID = ("medicaid_enrolled", ">", 0)
ACA_PTC = ("aca_ptc", ">", 0)

_COUNT = pa.Column(None, [FINITE, NON_NEGATIVE])  # counts and dollar totals
_BOUND = pa.Column(None, NUMBER)  # band edges: -inf and inf mark open bands
_STATE = pa.Column("int64", pa.Check.isin(sorted(STATE_FIPS)))


def _schema(name: str, columns: dict[str, pa.Column], unique: list[str],
            checks: list[pa.Check] | None = None) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(columns, unique=unique, checks=checks, name=name)


def _negative_only_below_1(column: str, where: str = "") -> pa.Check:
    """A net total may be negative only in the below-$1 AGI band (losses), nowhere else."""
    def check(df: pd.DataFrame) -> pd.Series:
        ok = (pd.to_numeric(df[column], errors="coerce") >= 0) | (
            pd.to_numeric(df["agi_upper"], errors="coerce") <= 1)
        return ok | (df["measure"] != where) if where else ok
    return pa.Check(check, error=f"{column} negative outside the below-$1 AGI band",
                    name=column)


# file -> its contract; every numeric column is checked row by row.
SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "age_district.csv": _schema("age_district", {
        "cd_geoid": pa.Column("int64"), "age_lower": _BOUND, "age_upper": _BOUND,
        "value": _COUNT}, ["cd_geoid", "age_lower"]),
    "age_state.csv": _schema("age_state", {
        "state_fips": _STATE, "age_lower": _BOUND, "age_upper": _BOUND, "value": _COUNT},
        ["state_fips", "age_lower"]),
    "age_national.csv": _schema("age_national", {
        "age_lower": _BOUND, "age_upper": _BOUND, "value": _COUNT}, ["age_lower"]),
    "snap_district.csv": _schema("snap_district", {
        "cd_geoid": pa.Column("int64"), "households": _COUNT}, ["cd_geoid"]),
    "snap_state.csv": _schema("snap_state", {
        "state_fips": _STATE, "households": _COUNT, "cost": _COUNT}, ["state_fips"]),
    "eitc_state.csv": _schema("eitc_state", {
        "state_fips": _STATE, "returns": _COUNT, "amount": _COUNT}, ["state_fips"]),
    "agi_state.csv": _schema("agi_state", {
        "state_fips": _STATE, "agi_lower": _BOUND, "agi_upper": _BOUND, "returns": _COUNT,
        "amount": pa.Column(None, FINITE)}, ["state_fips", "agi_lower"],
        [_negative_only_below_1("amount")]),
    "population_state.csv": _schema("population_state", {
        "state_fips": _STATE, "population": _COUNT}, ["state_fips"]),
    "soi_national.csv": _schema("soi_national", {
        "measure": pa.Column(str, pa.Check.isin(["returns", "agi", "income_tax"])),
        "agi_lower": _BOUND, "agi_upper": _BOUND, "value": pa.Column(None, FINITE)},
        ["measure", "agi_lower", "agi_upper"],
        [_negative_only_below_1("value", "agi"),
         pa.Check(lambda df: (df["measure"] == "agi")
                  | (pd.to_numeric(df["value"], errors="coerce") >= 0),
                  error="returns and income_tax are never negative", name="value")]),
    "eitc_agi_children.csv": _schema("eitc_agi_children", {
        "count_children": pa.Column("int64", pa.Check.isin([0, 1, 2, 3])),
        "agi_lower": _BOUND, "agi_upper": _BOUND, "returns": _COUNT, "amount": _COUNT},
        ["count_children", "agi_lower"]),
    # Families only policyengine-us computes (out of scope with the builtin engine).
    "state_income_tax_state.csv": _schema("state_income_tax_state", {
        "state_fips": _STATE, "amount": _COUNT}, ["state_fips"]),
    "medicaid_state.csv": _schema("medicaid_state", {
        "state_fips": _STATE, "enrollment": _COUNT}, ["state_fips"]),
    "aca_ptc_state.csv": _schema("aca_ptc_state", {
        "state_fips": _STATE, "returns": _COUNT, "amount": _COUNT}, ["state_fips"]),
    "real_estate_taxes_state.csv": _schema("real_estate_taxes_state", {
        "state_fips": _STATE, "amount": _COUNT}, ["state_fips"]),
}
# Held-out groups: a whole validation file (named after it), and negative totals.
HOLDOUT_FILES = frozenset({"eitc_agi_children.csv"})
NEGATIVE_TOTAL = "negative_total"
ZERO_TOTAL = "zero_total"
COUNTS = ("person_count", "household_count", "tax_unit_count")


@dataclass(frozen=True)
class Row:
    geo: tuple[str, int | None]  # ("national", None) | ("state", fips) | ("district", geoid)
    variable: str
    domain: tuple[Constraint, ...]
    value: float
    file: str


def _holdout_group(row: Row) -> str:
    """Held out of training ("" when trained on): a whole validation file, a negative
    total (the net AGI of the below-$1 band), which the fit's relative loss (y − ŷ)/(y + 1)
    cannot use, or a dollar total of zero (a state without an income tax): nothing to fit,
    and where the engine still finds some (policyengine-us taxes New Hampshire's interest
    and dividends, which the Census counts as none) training would zero those records."""
    if row.file in HOLDOUT_FILES:
        return Path(row.file).stem
    if row.value < 0:
        return NEGATIVE_TOTAL
    return ZERO_TOTAL if row.value == 0 and row.variable not in COUNTS else ""


def _bounds(var: str, lower: float, upper: float) -> tuple[Constraint, ...]:
    """[lower, upper) as constraints; infinite ends impose nothing."""
    out: list[Constraint] = []
    if math.isfinite(lower):
        out.append((var, ">=", lower))
    if math.isfinite(upper):
        out.append((var, "<", upper))
    return tuple(out)


def _read(snapshot: Path, name: str) -> pd.DataFrame:
    """One snapshot file, checked row by row; numeric columns come back as float."""
    df = read_snapshot(snapshot / name, SCHEMAS[name])
    numeric = [c for c, col in SCHEMAS[name].columns.items() if col.dtype is None]
    return df.assign(**{c: pd.to_numeric(df[c]).astype(float) for c in numeric})


def _periods(snapshot: Path) -> pd.DataFrame:
    path = snapshot / "sources.csv"
    if not path.is_file():
        raise InputError(path, None, "snapshot file missing",
                         "run scripts/refresh_targets_snapshot.py to restore the snapshot")
    src = pd.read_csv(path).set_index("file")
    missing = sorted(set(SCHEMAS) - set(src.index))
    if missing or src["period"].isna().any():
        raise InputError(path, "period", f"no period for {missing or 'some files'}",
                         "every snapshot file needs a row with its period and source")
    return src


def _check_districts(snapshot: Path, districts: pd.DataFrame, df: pd.DataFrame,
                     name: str) -> None:
    known = set(districts["cd_geoid"])
    bad = sorted(set(df["cd_geoid"]) - known)
    if bad:
        outside = [g for g in bad if g // 100 not in STATE_FIPS]
        raise InputError(snapshot / name, "cd_geoid",
                         f"GEOIDs {bad[:5]} are not districts of districts.csv"
                         + (f" ({outside[:5]} lie outside every state)" if outside else ""),
                         "use state_fips*100 + district of the 119th Congress")
    if len(set(df["cd_geoid"])) != len(known):
        raise InputError(snapshot / name, "cd_geoid",
                         f"{len(set(df['cd_geoid']))} of {len(known)} districts present",
                         "every district needs its statistics")


def _rows(snapshot: Path) -> list[Row]:
    districts = load_districts(snapshot)
    if not districts["state_fips"].isin(STATE_FIPS).all():
        bad = sorted(set(districts["state_fips"]) - STATE_FIPS)
        raise InputError(snapshot / "districts.csv", "state_fips", f"unknown states {bad}",
                         "keep only districts of the 50 states and DC")
    frames = {name: _read(snapshot, name) for name in SCHEMAS}
    for name in ("age_district.csv", "snap_district.csv"):
        _check_districts(snapshot, districts, frames[name], name)

    rows: list[Row] = []
    nat = ("national", None)

    def age(geo, df, name):
        for lo, hi, v in df[["age_lower", "age_upper", "value"]].itertuples(index=False):
            rows.append(Row(geo, "person_count", _bounds("age", lo, hi), v, name))

    def agi(geo, lo, hi, returns, amount, name):
        dom = (FILER, *_bounds("adjusted_gross_income", lo, hi))
        rows.append(Row(geo, "tax_unit_count", dom, returns, name))
        rows.append(Row(geo, "adjusted_gross_income", dom, amount, name))

    age(nat, frames["age_national.csv"], "age_national.csv")
    soi = frames["soi_national.csv"].set_index(["measure", "agi_lower", "agi_upper"])["value"]
    bands = soi.loc["returns"].index
    for lo, hi in bands:
        agi(nat, lo, hi, soi[("returns", lo, hi)], soi[("agi", lo, hi)], "soi_national.csv")
    rows.append(Row(nat, "income_tax", (FILER,),
                    soi[("income_tax", -np.inf, np.inf)], "soi_national.csv"))
    for k, lo, hi, n, amount in frames["eitc_agi_children.csv"][
            ["count_children", "agi_lower", "agi_upper", "returns", "amount"]].itertuples(
            index=False):
        kids = ("eitc_child_count", ">=" if k == 3 else "==", int(k))
        dom = (EITC, kids, *_bounds("adjusted_gross_income", lo, hi))
        rows.append(Row(nat, "tax_unit_count", dom, n, "eitc_agi_children.csv"))
        rows.append(Row(nat, "eitc", dom, amount, "eitc_agi_children.csv"))

    by_state = {name: frames[name].groupby("state_fips") for name in SCHEMAS
                if name.endswith("_state.csv")}
    for fips in sorted(STATE_FIPS):
        geo = ("state", fips)
        for name, grouped in by_state.items():
            if fips not in grouped.groups:
                raise InputError(snapshot / name, "state_fips", f"state {fips} missing",
                                 "every state and DC needs its statistics")
        g = {name: grouped.get_group(fips) for name, grouped in by_state.items()}
        age(geo, g["age_state.csv"], "age_state.csv")
        rows.append(Row(geo, "person_count", (), g["population_state.csv"]["population"].iat[0],
                        "population_state.csv"))
        snap = g["snap_state.csv"].iloc[0]
        rows.append(Row(geo, "household_count", (SNAP,), snap["households"], "snap_state.csv"))
        rows.append(Row(geo, "snap", (SNAP,), snap["cost"], "snap_state.csv"))
        eitc = g["eitc_state.csv"].iloc[0]
        rows.append(Row(geo, "tax_unit_count", (EITC,), eitc["returns"], "eitc_state.csv"))
        rows.append(Row(geo, "eitc", (EITC,), eitc["amount"], "eitc_state.csv"))
        for lo, hi, n, amount in g["agi_state.csv"][
                ["agi_lower", "agi_upper", "returns", "amount"]].itertuples(index=False):
            agi(geo, lo, hi, n, amount, "agi_state.csv")
        rows.extend(_policyengine_rows(geo, g))

    age_cd = frames["age_district.csv"].groupby("cd_geoid")
    snap_cd = frames["snap_district.csv"].set_index("cd_geoid")["households"]
    for geoid in districts["cd_geoid"]:
        geo = ("district", int(geoid))
        age(geo, age_cd.get_group(geoid), "age_district.csv")
        rows.append(Row(geo, "household_count", (SNAP,), snap_cd[geoid], "snap_district.csv"))
    return rows


def _policyengine_rows(geo: tuple[str, int | None], g: dict[str, pd.DataFrame]) -> list[Row]:
    """A state's state income tax, Medicaid enrollment, premium tax credits and real estate
    taxes (targets only the policyengine engine computes)."""
    aca = g["aca_ptc_state.csv"].iloc[0]
    return [
        Row(geo, "state_income_tax", (), g["state_income_tax_state.csv"]["amount"].iat[0],
            "state_income_tax_state.csv"),
        Row(geo, "person_count", (MEDICAID,), g["medicaid_state.csv"]["enrollment"].iat[0],
            "medicaid_state.csv"),
        Row(geo, "tax_unit_count", (ACA_PTC,), aca["returns"], "aca_ptc_state.csv"),
        Row(geo, "aca_ptc", (ACA_PTC,), aca["amount"], "aca_ptc_state.csv"),
        Row(geo, "real_estate_taxes", (), g["real_estate_taxes_state.csv"]["amount"].iat[0],
            "real_estate_taxes_state.csv"),
    ]


def _geo_constraints(geo: tuple[str, int | None]) -> tuple[Constraint, ...]:
    level, gid = geo
    if level == "state":
        return (("state_fips", "==", gid),)
    if level == "district":
        return (("state_fips", "==", gid // 100), ("congressional_district_geoid", "==", gid))
    return ()


def _parent_geo(geo: tuple[str, int | None]) -> tuple[str, int | None] | None:
    level, gid = geo
    if level == "district":
        return ("state", gid // 100)
    return ("national", None) if level == "state" else None


class _Writer:
    """Inserts strata on first use so each constraint set appears exactly once."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.ids: dict[str, int] = {}

    def stratum(self, geo: tuple[str, int | None], domain: tuple[Constraint, ...]) -> int:
        constraints = (*_geo_constraints(geo), *domain)
        key = definition_hash(constraints)
        if key in self.ids:
            return self.ids[key]
        if domain:
            parent = self.stratum(geo, ())
        else:
            up = _parent_geo(geo)
            parent = self.stratum(up, ()) if up else None
        sid = len(self.ids) + 1
        level, gid = geo
        notes = f"{level} {gid}" if gid is not None else "United States"
        self.conn.execute("INSERT INTO strata VALUES (?, ?, ?, ?)", (sid, key, parent, notes))
        self.conn.executemany(
            "INSERT INTO stratum_constraints VALUES (?, ?, ?, ?, NULL)",
            [(sid, v, op, format_value(x)) for v, op, x in constraints],
        )
        self.ids[key] = sid
        return sid


def build_target_db(path: str | Path, snapshot_dir: str | Path = SNAPSHOT_DIR, *,
                    year: int = 2024, uprating: Uprating | None = None,
                    split_share: float = 0.1, split_seed: int = 0) -> dict:
    """Write the target DB atomically, every value uprated to `year` and `split_share` of
    each variable × geo level's trainable targets held out as the validation split
    (`pipeline.targets.split`); return counts by geo level, holdout and source, and the
    factors used."""
    snapshot = Path(snapshot_dir)
    sources = _periods(snapshot)
    rows = _rows(snapshot)
    uprating = uprating or load_uprating()
    factors = {(r.variable, r.file): uprating.factor(
        r.variable, int(sources.at[r.file, "period"]), year, snapshot / r.file) for r in rows}
    domains = [tuple((v, op, uprating.edge(v, x, int(sources.at[r.file, "period"]), year))
                     for v, op, x in r.domain) for r in rows]
    groups = _groups(rows, domains, split_share, split_seed)
    with atomic_path(path) as tmp:
        tmp.unlink()  # sqlite wants to create the file itself
        conn = sqlite3.connect(tmp)
        try:
            create_schema(conn)
            writer = _Writer(conn)
            for row, domain, group in zip(rows, domains, groups, strict=True):
                sid = writer.stratum(row.geo, domain)
                src = sources.loc[row.file]
                factor = factors[(row.variable, row.file)]
                conn.execute(
                    "INSERT INTO targets (variable, period, stratum_id, reform_id, value, active,"
                    " source, notes, holdout, holdout_group, original_value, original_period,"
                    " uprating_factor) VALUES (?, ?, ?, 0, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
                    (row.variable, year, sid, float(row.value) * factor,
                     f"{src['source']}: {src['table']}", _notes(row, int(src["period"]), year),
                     int(group != ""), group, float(row.value), int(src["period"]), factor),
                )
            conn.commit()
        finally:
            conn.close()
    levels = pd.Series([r.geo[0] for r in rows])
    return {
        "path": str(path),
        "n_targets": len(rows),
        "n_strata": len(writer.ids),
        "by_geo_level": {k: int(v) for k, v in levels.value_counts().sort_index().items()},
        "n_holdout": sum(g != "" for g in groups),
        "by_holdout_group": {k: int(v) for k, v in
                             pd.Series([g for g in groups if g]).value_counts().sort_index()
                             .items()},
        "by_file": {k: int(v) for k, v in
                    pd.Series([r.file for r in rows]).value_counts().sort_index().items()},
        "uprating": [{"file": f, "variable": v, "period": int(sources.at[f, "period"]),
                      "factor": factors[(v, f)]}
                     for v, f in sorted(factors, key=lambda k: k[::-1])],
    }


def _groups(rows: list[Row], domains: list[tuple[Constraint, ...]], share: float,
            seed: int) -> list[str]:
    """Each row's holdout group: its own (`_holdout_group`), else the validation split's
    for the rows the split draws from the trainable ones, else ""."""
    groups = [_holdout_group(r) for r in rows]
    trainable = [i for i, g in enumerate(groups) if not g]
    names = [target_name(rows[i].geo[0], str(rows[i].geo[1]), rows[i].variable, domains[i])
             for i in trainable]
    levels = [f"{rows[i].variable}|{rows[i].geo[0]}" for i in trainable]
    for i, drawn in zip(trainable, split_mask(names, levels, share, seed), strict=True):
        if drawn:
            groups[i] = VALIDATION_SPLIT
    return groups


def _notes(row: Row, period: int, year: int) -> str:
    if period == year:
        return f"snapshot {row.file}"
    basis = BASIS[row.variable]
    edges = sorted({f"{v} band edges x {DOLLAR_BANDS[v]}" for v, _, _ in row.domain
                    if v in DOLLAR_BANDS})
    return "; ".join([f"snapshot {row.file}", f"uprated {period}->{year} by {basis}", *edges])
