"""Target DB built from the committed snapshot: schema, real values, integrity, bad input."""

import hashlib
import json
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest

from pipeline.core.errors import InputError
from pipeline.core.hashing import sha256_file
from pipeline.core.packaged import SNAPSHOT_DIR
from pipeline.engine import VARIABLES as ENGINE
from pipeline.targets.db import check_target_db, load_targets
from pipeline.targets.etl import build_target_db


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "targets.db"
    summary = build_target_db(path)
    return path, summary, load_targets(path)


def test_summary_counts(built):
    _, summary, df = built
    # 10,760 of the builtin engine's families, and 5 x 51 state targets only the
    # policyengine engine computes (state income tax, Medicaid, ACA PTC amount and returns,
    # real estate taxes)
    assert summary["n_targets"] == len(df) == 10_760 + 5 * 51
    assert summary["by_geo_level"] == {"district": 8_284, "national": 283, "state": 2_193 + 255}
    # EITC by AGI x children; negative AGI totals; the 9 states without an income tax;
    # 10% of every variable x level's rest
    assert summary["n_holdout"] == 224 + 52 + 9 + 1073
    assert summary["by_holdout_group"] == {"eitc_agi_children": 224, "negative_total": 52,
                                           "validation_split": 1073, "zero_total": 9}
    assert df["target_name"].is_unique


def test_every_district_has_18_age_bins(built):
    _, _, df = built
    age = df[(df.geo_level == "district") & (df.domain_variable == "age")]
    assert len(age) == 436 * 18
    assert age.groupby("geographic_id").size().eq(18).all()
    snap = df[(df.geo_level == "district") & (df.variable == "household_count")]
    assert len(snap) == 436 and set(snap.domain_variable) == {"snap"}


def test_known_values_round_trip(built):
    _, _, df = built
    v = df.set_index("target_name")["value"]
    # AL-1: ACS 2024 S0101 total 760,389 over its 18 bins; S2201 SNAP households 34,742.
    assert df[df.target_name.str.startswith("cd_101/person_count/")]["value"].sum() == 760_389
    assert v["cd_101/person_count/[age>=0,age<5]"] == 39_908
    assert v["cd_101/household_count/[snap>0]"] == 34_742
    # IRS SOI TY2022 Alabama EITC: 440,510 returns, $1,262,145,000 (as published).
    published = df.set_index("target_name")["original_value"]
    assert published["state_1/tax_unit_count/[eitc>0]"] == 440_510
    assert published["state_1/eitc/[eitc>0]"] == 1_262_145_000
    assert published["state_1/tax_unit_count/[adjusted_gross_income<1,is_tax_filer==1]"] == 32_590
    assert published["nation/tax_unit_count/[is_tax_filer==1]"] == 160_602_107  # TY2023
    # ... and uprated to 2024: returns by tax-unit growth 2022->2024 (214,875,995 /
    # 209,663,831), the credit by that times its parameters' indexing (ACPIU of the years
    # before: 2022 1.079668 x 2023 1.041353).
    units = 214_875_995 / 209_663_831
    assert v["state_1/tax_unit_count/[eitc>0]"] == pytest.approx(440_510 * units)
    assert v["state_1/eitc/[eitc>0]"] == pytest.approx(1_262_145_000 * units * 1.079668
                                                       * 1.041353)
    # AGI bands move with AGI per return (ATXPY 2023 1.071685 x 2024 1.048148): Alabama's
    # TY2022 $75K-$100K band is 2024's $84,246-$112,328 band.
    band = "[adjusted_gross_income>=84246,adjusted_gross_income<112328,is_tax_filer==1]"
    assert published[f"state_1/tax_unit_count/{band}"] == 193_220
    assert v[f"state_1/tax_unit_count/{band}"] == pytest.approx(193_220 * units)
    assert v[f"state_1/adjusted_gross_income/{band}"] == pytest.approx(
        16_745_342_000 * units * 1.071685 * 1.048148)
    assert v["nation/tax_unit_count/[is_tax_filer==1]"] == pytest.approx(
        160_602_107 * 214_875_995 / 212_283_534)
    assert v["cd_1198/household_count/[snap>0]"] > 0 and v["cd_200/person_count/[age>=85]"] > 0


def test_national_age_total_is_s0101_total(built):
    _, _, df = built
    for level, n_geo in [("national", 1), ("state", 51), ("district", 436)]:
        age = df[(df.geo_level == level) & (df.domain_variable == "age")]
        assert age["value"].sum() == 340_110_990
        assert age["geographic_id"].nunique() == n_geo


def test_periods_sources_and_holdout(built):
    path, _, df = built
    assert set(df["period"]) == {2024}  # every value is uprated to the calibration year
    periods = df.groupby(["geo_level", "variable", "domain_variable"])["original_period"].unique()
    assert list(periods[("district", "person_count", "age")]) == [2024]
    assert list(periods[("state", "snap", "snap")]) == [2023]
    assert list(periods[("state", "eitc", "eitc")]) == [2022]
    assert list(periods[("national", "income_tax", "is_tax_filer")]) == [2023]
    same_year = df[df["original_period"] == 2024]
    assert (same_year["uprating_factor"] == 1).all()
    assert (same_year["value"] == same_year["original_value"]).all()
    hold = df[(df.holdout == 1) & (df.holdout_group != "validation_split")]
    assert len(hold) == 276 + 9
    assert set(hold.domain_variable) == {"adjusted_gross_income,eitc,eitc_child_count",
                                         "adjusted_gross_income,is_tax_filer", ""}
    assert hold.holdout_group.value_counts().to_dict() == {"eitc_agi_children": 224,
                                                           "negative_total": 52,
                                                           "zero_total": 9}
    zero = hold[hold.holdout_group == "zero_total"]  # states without an income tax
    assert (zero.variable == "state_income_tax").all() and (zero.value == 0).all()
    assert (df.loc[df.holdout == 0, "holdout_group"] == "").all()
    negative = hold[hold.holdout_group == "negative_total"]
    assert len(negative) == 52 and (negative.value < 0).all()
    assert (negative.variable == "adjusted_gross_income").all()
    with sqlite3.connect(path) as conn:
        sources = dict(conn.execute("SELECT variable, source FROM targets WHERE target_id=1"))
        notes = dict(conn.execute("SELECT notes, 1 FROM targets WHERE original_period = 2022 "
                                  "AND variable = 'eitc'"))
    assert "S0101" in sources["person_count"]
    assert set(notes) == {
        "snapshot eitc_state.csv; uprated 2022->2024 by tax_units x ACPIU of the year before",
        "snapshot eitc_agi_children.csv; uprated 2022->2024 by tax_units x ACPIU of the year "
        "before; adjusted_gross_income band edges x ATXPY"}


def test_constraints_json_and_definition_hash(built):
    path, _, df = built
    row = df[df.target_name == "state_37/person_count/[age>=5,age<10]"].iloc[0]
    assert json.loads(row["constraints"]) == [["age", ">=", 5], ["age", "<", 10]]
    assert row["geographic_id"] == "37"
    with sqlite3.connect(path) as conn:
        cons = conn.execute("SELECT constraint_variable, operation, value FROM "
                            "stratum_constraints WHERE stratum_id=?", (int(row.stratum_id),))
        text = "\n".join(sorted(f"{v}|{op}|{x}" for v, op, x in cons))
        stored = conn.execute("SELECT definition_hash FROM strata WHERE stratum_id=?",
                              (int(row.stratum_id),)).fetchone()[0]
    assert stored == hashlib.sha256(text.encode()).hexdigest()


def test_schema_matches_production(built):
    path, _, _ = built
    with sqlite3.connect(path) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(target_overview)")]
        assert cols == ["target_id", "stratum_id", "variable", "reform_id", "value", "period",
                        "active", "geo_level", "geographic_id", "domain_variable"]
        dup = conn.execute("SELECT variable, period, stratum_id, reform_id FROM targets "
                           "LIMIT 1").fetchone()
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO targets (variable, period, stratum_id, reform_id, value) "
                         "VALUES (?, ?, ?, ?, 1)", dup)
        dc = conn.execute("SELECT DISTINCT geo_level, geographic_id FROM target_overview "
                          "WHERE geographic_id IN ('1198', '200', 'US')").fetchall()
    assert sorted(dc) == [("district", "1198"), ("district", "200"), ("national", "US")]


def test_check_passes_clean_db_and_catches_corruption(built, tmp_path):
    path, _, _ = built
    assert check_target_db(path, ENGINE) == []
    assert check_target_db(path, {k: v for k, v in ENGINE.items() if k != "snap"}) == [
        "target variable 'snap' unknown to the engine",
        "constraint variable 'snap' unknown to the engine",
    ]
    bad = tmp_path / "bad.db"
    shutil.copy(path, bad)
    with sqlite3.connect(bad) as conn:
        conn.execute("UPDATE targets SET value = NULL WHERE target_id = 1")
        conn.execute("UPDATE targets SET value = -5 WHERE target_id = 2")
        conn.execute("UPDATE stratum_constraints SET value = '3799' "
                     "WHERE constraint_variable = 'congressional_district_geoid' "
                     "AND value = '101'")
        conn.execute("UPDATE targets SET value = value * 2 WHERE target_id = 3")
    problems = check_target_db(bad, ENGINE)
    assert "target 1: value is NaN or infinite" in problems
    assert "target 3: value is not original_value x uprating_factor" in problems
    assert "target 2: negative count -5.0" in problems
    assert sum("district 3799 is not inside state 1" in p for p in problems) >= 1


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_an_unreadable_db_is_bad_input_naming_the_file_and_the_fix(built, tmp_path, damage):
    """Was pandas' raw DatabaseError (loading) or a finding about targets (the check)."""
    path, _, _ = built
    data = path.read_bytes()
    bad = tmp_path / "targets.db"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not sqlite" * 500)
    for read in (lambda: load_targets(bad), lambda: check_target_db(bad, ENGINE)):
        with pytest.raises(InputError, match="not a readable SQLite target database") as err:
            read()
        assert err.value.file == str(bad) and "materialize target_db" in err.value.fix


def test_build_is_deterministic(built, tmp_path):
    path, _, _ = built
    build_target_db(tmp_path / "again.db")
    assert sha256_file(tmp_path / "again.db") == sha256_file(path)


def _snapshot_copy(tmp_path):
    snap = tmp_path / "snap"
    shutil.copytree(SNAPSHOT_DIR, snap)
    return snap


def _edit(path, fn):
    df = pd.read_csv(path)
    fn(df)
    df.to_csv(path, index=False)


@pytest.mark.parametrize(("file", "field", "edit"), [
    ("snap_state.csv", "cost", lambda df: df.__setitem__("cost", np.where(
        df.index == 3, np.nan, df["cost"]))),
    ("age_state.csv", "value", lambda df: df.__setitem__("value", np.where(
        df.index == 0, -1, df["value"]))),
    ("age_district.csv", "cd_geoid", lambda df: df.__setitem__("cd_geoid", np.where(
        df.index == 0, 9901, df["cd_geoid"]))),
    ("districts.csv", "cd_geoid", lambda df: df.__setitem__("cd_geoid", np.where(
        df.index == 0, 201, df["cd_geoid"]))),
    # Each bad value is refused by the ETL itself, before any target is written.
    ("agi_state.csv", "returns", lambda df: df.__setitem__("returns", np.where(
        df.index == 4, np.inf, df["returns"]))),
    ("soi_national.csv", "value", lambda df: df.__setitem__("value", np.where(
        df["measure"] == "returns", -df["value"], df["value"]))),
    ("agi_state.csv", "amount", lambda df: df.__setitem__("amount", np.where(
        df.index == 5, -1e9, df["amount"]))),
    ("soi_national.csv", "value", lambda df: df.__setitem__("value", np.where(
        df["measure"] == "income_tax", -1.0, df["value"]))),
    ("eitc_state.csv", "amount", lambda df: df.__setitem__("amount", np.where(
        df.index == 2, "n/a", df["amount"].astype(str)))),
    ("snap_district.csv", "cd_geoid", lambda df: df.__setitem__("cd_geoid", np.where(
        df.index == 1, df["cd_geoid"].iloc[0], df["cd_geoid"]))),
])
def test_bad_input_names_file_field_and_leaves_nothing(tmp_path, file, field, edit):
    snap = _snapshot_copy(tmp_path)
    _edit(snap / file, edit)
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        build_target_db(out / "targets.db", snap)
    assert err.value.file.endswith(file) and err.value.field == field and err.value.fix
    assert not out.exists() or list(out.iterdir()) == []


def test_missing_source_file(tmp_path):
    snap = _snapshot_copy(tmp_path)
    (snap / "eitc_state.csv").unlink()
    with pytest.raises(InputError, match="eitc_state.csv"):
        build_target_db(tmp_path / "targets.db", snap)
    assert not (tmp_path / "targets.db").exists()


def test_uprating_to_another_year_and_its_factors(tmp_path):
    build_target_db(tmp_path / "t.db", year=2023)
    df = load_targets(tmp_path / "t.db").set_index("target_name")
    row = df.loc["state_1/eitc/[eitc>0]"]
    assert row["period"] == 2023 and row["original_period"] == 2022
    assert row["uprating_factor"] == pytest.approx(212_283_534 / 209_663_831 * 1.079668)
    # ACS 2024 age bins go back to 2023 with the population's growth
    age = df.loc["cd_101/person_count/[age>=0,age<5]"]
    assert age["uprating_factor"] == pytest.approx(389_735_172 / 393_983_755)
    assert age["value"] == pytest.approx(39_908 * 389_735_172 / 393_983_755)


def _growth_copy(tmp_path, name, edit):
    from pipeline.core.packaged import POPULATION_GROWTH
    from pipeline.targets.uprating import GROWFACTORS

    source = {"population": POPULATION_GROWTH, "growfactors": GROWFACTORS}[name]
    path = tmp_path / source.name
    lines = source.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")
    return {"population": POPULATION_GROWTH, "growfactors": GROWFACTORS, name: path}, path


@pytest.mark.parametrize(("name", "edit", "field", "problem"), [
    ("growfactors", lambda lines: [ln for ln in lines if not ln.startswith("2023,")],
     "year", "no row for 2023"),
    ("population", lambda lines: [ln for ln in lines if not ln.startswith("2022,")],
     "year", "no row for 2022"),
    ("growfactors", lambda lines: [ln.replace("2024,1.048148", "2024,-1.048148")
                                   for ln in lines], "ATXPY", "positive factor"),
    ("population", lambda lines: [ln.replace("2022,385453928", "2022,-385453928")
                                  for ln in lines], "persons", "positive factor"),
])
def test_bad_growth_factors_name_file_year_and_fix(tmp_path, name, edit, field, problem):
    from pipeline.targets.uprating import load_uprating

    files, path = _growth_copy(tmp_path, name, edit)
    with pytest.raises(InputError) as err:
        build_target_db(tmp_path / "out" / "t.db", uprating=load_uprating(**files))
    assert err.value.file == str(path) and err.value.field == field
    assert problem in err.value.problem and err.value.fix
    assert not (tmp_path / "out").exists()
