"""The target database: production's SQLite schema plus additive `targets` columns.

Keeping production's tables and views lets their tooling read our DB. The added columns:
`holdout` / `holdout_group` mark targets used only to validate, never to train, and name
the held-out group each belongs to; `original_value`, `original_period` and
`uprating_factor` record the published statistic behind a `value` uprated to `period`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipeline.core.contracts import FINITE, check_table
from pipeline.core.errors import InputError

GEO_VARIABLES = ("state_fips", "congressional_district_geoid")
OPERATIONS = ("==", "!=", ">", ">=", "<", "<=")  # also the order constraints print in
COUNT_VARIABLES = ("person_count", "household_count", "tax_unit_count")
GEO_PREFIX = {"national": "nation", "state": "state_", "district": "cd_"}

SCHEMA = """
CREATE TABLE strata (
    stratum_id INTEGER PRIMARY KEY,
    definition_hash TEXT NOT NULL UNIQUE,
    parent_stratum_id INTEGER REFERENCES strata(stratum_id),
    notes TEXT
);
CREATE TABLE stratum_constraints (
    stratum_id INTEGER NOT NULL REFERENCES strata(stratum_id),
    constraint_variable TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('==', '!=', '>', '>=', '<', '<=')),
    value TEXT NOT NULL,
    notes TEXT,
    PRIMARY KEY (stratum_id, constraint_variable, operation)
);
CREATE TABLE targets (
    target_id INTEGER PRIMARY KEY,
    variable TEXT NOT NULL,
    period INTEGER NOT NULL,
    stratum_id INTEGER NOT NULL REFERENCES strata(stratum_id),
    reform_id INTEGER NOT NULL DEFAULT 0,
    value REAL,
    active INTEGER NOT NULL DEFAULT 1,
    tolerance REAL,
    source TEXT,
    notes TEXT,
    holdout INTEGER NOT NULL DEFAULT 0,
    holdout_group TEXT NOT NULL DEFAULT '',
    original_value REAL,
    original_period INTEGER,
    uprating_factor REAL NOT NULL DEFAULT 1,
    UNIQUE (variable, period, stratum_id, reform_id)
);
CREATE VIEW stratum_domain AS
SELECT DISTINCT stratum_id, constraint_variable AS domain_variable
FROM stratum_constraints
WHERE constraint_variable NOT IN ('state_fips', 'congressional_district_geoid');
CREATE VIEW target_overview AS
SELECT
    t.target_id, t.stratum_id, t.variable, t.reform_id, t.value, t.period, t.active,
    CASE WHEN cd.value IS NOT NULL THEN 'district'
         WHEN st.value IS NOT NULL THEN 'state'
         ELSE 'national' END AS geo_level,
    COALESCE(cd.value, st.value, 'US') AS geographic_id,
    dom.domain_variable
FROM targets t
LEFT JOIN stratum_constraints cd
    ON cd.stratum_id = t.stratum_id AND cd.constraint_variable = 'congressional_district_geoid'
LEFT JOIN stratum_constraints st
    ON st.stratum_id = t.stratum_id AND st.constraint_variable = 'state_fips'
LEFT JOIN (
    SELECT stratum_id, group_concat(domain_variable, ',') AS domain_variable
    FROM (SELECT stratum_id, domain_variable FROM stratum_domain
          ORDER BY stratum_id, domain_variable)
    GROUP BY stratum_id
) dom ON dom.stratum_id = t.stratum_id;
"""

Constraint = tuple[str, str, float | int]

_POSITIVE = pa.Check(lambda s: s > 0, error="positive")
# The targets frame every later stage reads (the package stores it as targets.csv).
# value = original_value × uprating_factor × reconcile_factor: the published statistic,
# carried to the calibration year (`period`), then reconciled by the target config
# (`reconcile_rule` names the rule; "" and 1 until a config applies one).
TARGETS = pa.DataFrameSchema({
    "target_id": pa.Column("int64", unique=True),
    "target_name": pa.Column(str, unique=True),
    "variable": pa.Column(str),
    "period": pa.Column("int64"),
    "value": pa.Column(float, FINITE),
    "geo_level": pa.Column(str, pa.Check.isin(list(GEO_PREFIX))),
    "geographic_id": pa.Column(str),
    "domain_variable": pa.Column(str),
    "holdout": pa.Column("int64", pa.Check.isin([0, 1])),
    "holdout_group": pa.Column(str),
    "constraints": pa.Column(str),
    "original_value": pa.Column(float, FINITE),
    "original_period": pa.Column("int64"),
    "uprating_factor": pa.Column(float, [FINITE, _POSITIVE]),
    "reconcile_rule": pa.Column(str),
    "reconcile_factor": pa.Column(float, [FINITE, pa.Check.ge(0)]),
}, checks=[pa.Check(lambda df: (df["holdout"] == 1) == (df["holdout_group"] != ""),
                    error="holdout is 1 exactly when holdout_group is named",
                    name="holdout_group")], name="targets")


def with_provenance(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with whichever provenance columns it lacks, as for a statistic published for its
    own period and not reconciled; a held-out row's group is `holdout`. For frames made
    outside the target DB: a production package, a benchmark's synthetic targets."""
    held = df["holdout"].astype(int).to_numpy() == 1
    defaults = {"holdout_group": np.where(held, "holdout", ""), "original_value": df["value"],
                "original_period": df["period"], "uprating_factor": 1.0, "reconcile_rule": "",
                "reconcile_factor": 1.0}
    return df.assign(**{k: v for k, v in defaults.items() if k not in df.columns})


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def normalise_domain(text: str) -> str:
    """Domain lists compare as sets: 'is_tax_filer,adjusted_gross_income' == sorted form."""
    return ",".join(sorted(p.strip() for p in text.split(",") if p.strip()))


def format_value(value: float | int | str) -> str:
    """Constraint values as text: integral numbers without '.0' so names and hashes are stable."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def sort_constraints(constraints: Iterable[Constraint]) -> list[Constraint]:
    """By variable, then lower bound before upper bound (reads as `age>=5,age<10`)."""
    return sorted(constraints, key=lambda c: (c[0], OPERATIONS.index(c[1]), float(c[2])))


def definition_hash(constraints: Iterable[Constraint]) -> str:
    text = "\n".join(sorted(f"{v}|{op}|{format_value(x)}" for v, op, x in constraints))
    return hashlib.sha256(text.encode()).hexdigest()


def target_name(geo_level: str, geographic_id: str, variable: str,
                constraints: Iterable[Constraint]) -> str:
    geo = GEO_PREFIX[geo_level] + ("" if geo_level == "national" else geographic_id)
    parts = [f"{v}{op}{format_value(x)}" for v, op, x in sort_constraints(constraints)]
    return f"{geo}/{variable}" + (f"/[{','.join(parts)}]" if parts else "")


def _number(text: str) -> float | int:
    number = float(text)
    return int(number) if number.is_integer() else number


def _connect(db_path: str | Path) -> sqlite3.Connection:
    path = Path(db_path)
    if not path.is_file():
        raise InputError(path, None, "target database not found",
                         "build it with pipeline.targets.etl.build_target_db")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


@contextlib.contextmanager
def _reading(db_path: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection; a truncated or foreign file is an InputError naming it
    (pandas wraps SQLite's error in its own class, so both are caught)."""
    try:
        with contextlib.closing(_connect(db_path)) as conn:
            yield conn
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
        raise InputError(db_path, None, f"not a readable SQLite target database ({cause})",
                         "rebuild it: materialize target_db (the `target_db` asset, or "
                         "`make run`), which rewrites it from the committed snapshots"
                         ) from None


def _domain_constraints(conn: sqlite3.Connection) -> dict[int, list[Constraint]]:
    rows = conn.execute(
        "SELECT stratum_id, constraint_variable, operation, value FROM stratum_constraints "
        "WHERE constraint_variable NOT IN (?, ?)", GEO_VARIABLES,
    ).fetchall()
    out: dict[int, list[Constraint]] = {}
    for sid, var, op, value in rows:
        out.setdefault(sid, []).append((var, op, _number(value)))
    return {sid: sort_constraints(c) for sid, c in out.items()}


def load_targets(db_path: str | Path) -> pd.DataFrame:
    """Every active target with its name, geography, domain and non-geographic constraints."""
    with _reading(db_path) as conn:
        df = pd.read_sql_query(
            "SELECT o.target_id, o.stratum_id, o.variable, o.period, o.value, o.geo_level, "
            "o.geographic_id, o.domain_variable, t.holdout, t.holdout_group, "
            "t.original_value, t.original_period, t.uprating_factor FROM target_overview o "
            "JOIN targets t USING (target_id) WHERE o.active = 1 ORDER BY o.target_id",
            conn,
        )
        domains = _domain_constraints(conn)
    df["domain_variable"] = df["domain_variable"].fillna("")
    df["geographic_id"] = df["geographic_id"].astype(str)
    cons = [domains.get(sid, []) for sid in df["stratum_id"]]
    df["target_name"] = [
        target_name(g, gid, v, c)
        for g, gid, v, c in zip(df["geo_level"], df["geographic_id"], df["variable"], cons,
                                strict=True)
    ]
    df["constraints"] = [json.dumps([list(c) for c in cs]) for cs in cons]
    df["holdout"] = df["holdout"].astype(int)
    df["original_period"] = df["original_period"].astype("int64")
    df["reconcile_rule"], df["reconcile_factor"] = "", 1.0
    cols = ["target_id", "stratum_id", "target_name", "variable", "period", "value",
            "geo_level", "geographic_id", "domain_variable", "holdout", "holdout_group",
            "constraints", "original_value", "original_period", "uprating_factor",
            "reconcile_rule", "reconcile_factor"]
    return check_table(TARGETS, df[cols], db_path, "rebuild it with the target_db asset")


_REQUIRED = {
    "strata": {"stratum_id", "definition_hash", "parent_stratum_id", "notes"},
    "stratum_constraints": {"stratum_id", "constraint_variable", "operation", "value", "notes"},
    "targets": {"target_id", "variable", "period", "stratum_id", "reform_id", "value", "active",
                "tolerance", "source", "notes", "holdout", "holdout_group", "original_value",
                "original_period", "uprating_factor"},
    "target_overview": {"target_id", "stratum_id", "variable", "reform_id", "value", "period",
                        "active", "geo_level", "geographic_id", "domain_variable"},
    "stratum_domain": {"stratum_id", "domain_variable"},
}


def check_target_db(db_path: str | Path, engine_variables: Mapping[str, str]) -> list[str]:
    """Integrity problems that would make a fit meaningless; an empty list means sound.
    An unreadable file is no finding about targets but bad input: InputError."""
    with _reading(db_path) as conn:
        return _check(conn, engine_variables)


def _check(conn: sqlite3.Connection, engine_variables: Mapping[str, str]) -> list[str]:
    problems = []
    for table, cols in _REQUIRED.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not have:
            problems.append(f"schema: {table} missing")
        elif missing := sorted(cols - have):
            problems.append(f"schema: {table} lacks columns {missing}")
    if problems:
        return problems

    targets = pd.read_sql_query(
        "SELECT o.target_id, o.stratum_id, o.variable, o.value, o.geo_level, o.geographic_id "
        "FROM target_overview o", conn)
    values = pd.to_numeric(targets["value"], errors="coerce")
    bad = targets[values.isna() | ~values.map(math.isfinite)]
    problems += [f"target {t}: value is NaN or infinite" for t in bad["target_id"]]
    neg = targets[targets["variable"].isin(COUNT_VARIABLES) & (values < 0)]
    problems += [f"target {t}: negative count {v}"
                 for t, v in zip(neg["target_id"], neg["value"], strict=True)]
    unknown = sorted(set(targets["variable"]) - set(engine_variables))
    problems += [f"target variable {v!r} unknown to the engine" for v in unknown]
    uprated = pd.read_sql_query(
        "SELECT target_id, value, original_value, uprating_factor FROM targets", conn)
    drift = ~np.isclose(uprated["value"], uprated["original_value"] * uprated["uprating_factor"],
                        rtol=1e-9, atol=0)
    problems += [f"target {t}: value is not original_value x uprating_factor"
                 for t in uprated.loc[drift, "target_id"]]

    cons = pd.read_sql_query("SELECT * FROM stratum_constraints", conn)
    unknown = sorted(set(cons["constraint_variable"]) - set(engine_variables))
    problems += [f"constraint variable {v!r} unknown to the engine" for v in unknown]
    bad_ops = sorted(set(cons["operation"]) - set(OPERATIONS))
    problems += [f"constraint operation {op!r} not one of {OPERATIONS}" for op in bad_ops]
    nonnumeric = cons[pd.to_numeric(cons["value"], errors="coerce").isna()]
    problems += [f"stratum {s}: constraint {v} value {x!r} is not a number"
                 for s, v, x in nonnumeric[["stratum_id", "constraint_variable", "value"]].values]

    geo = cons[cons["constraint_variable"].isin(GEO_VARIABLES)].pivot_table(
        index="stratum_id", columns="constraint_variable", values="value", aggfunc="first")
    if "congressional_district_geoid" in geo:
        cds = geo[geo["congressional_district_geoid"].notna()]
        state = cds.get("state_fips", pd.Series(index=cds.index, dtype=object))
        outside = cds[state.isna() | (pd.to_numeric(cds["congressional_district_geoid"],
                                                     errors="coerce") // 100
                                      != pd.to_numeric(state, errors="coerce"))]
        problems += [
            f"stratum {s}: district {row['congressional_district_geoid']} is not inside "
            f"state {row.get('state_fips')}" for s, row in outside.iterrows()]
    names = _load_names(conn)
    dups = sorted(names[names.duplicated()].unique())
    problems += [f"duplicate target name {n}" for n in dups[:20]]
    return problems


def _load_names(conn: sqlite3.Connection) -> pd.Series:
    """Target names of every target (active or not), for the uniqueness check."""
    df = pd.read_sql_query(
        "SELECT stratum_id, variable, geo_level, geographic_id FROM target_overview", conn)
    domains = _domain_constraints(conn)
    return pd.Series([
        target_name(g, str(gid), v, domains.get(sid, []))
        for sid, v, g, gid in df[["stratum_id", "variable", "geo_level", "geographic_id"]].values
    ])
