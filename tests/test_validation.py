import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from factories import CD, W, base_microdata, make_package

from pipeline.core.errors import InputError
from pipeline.core.fit_table import LOCAL, LOCAL_HELDOUT
from pipeline.engine import compute_taxes, simulate, takeup
from pipeline.engine.takeup import draw_takeup
from pipeline.publish.stacking import stack_h5s
from pipeline.targets.db import with_provenance
from pipeline.validate import published
from pipeline.validate.consistency import xw_consistency
from pipeline.validate.published import seed_cache
from pipeline.validate.totals import (
    COLUMNS,
    DistrictSample,
    FitTargets,
    sample_districts,
    validate_h5s,
    validate_matrix,
    walk_published,
    write_validation_csv,
)

# (name, variable, geo_level, geographic_id, constraints, value)
TARGETS = [
    ("nation/person_count/[age<18]", "person_count", "national", "US", [["age", "<", 18]], 6.0),
    ("state_37/person_count/[age>=18]", "person_count", "state", "37", [["age", ">=", 18]], 20.0),
    ("cd_3701/household_count/[snap>0]", "household_count", "district", "3701",
     [["snap", ">", 0]], 1.0),
    ("state_37/eitc", "eitc", "state", "37", [], 10_000.0),
    ("nation/eitc", "eitc", "national", "US", [], 30_000.0),
    ("state_6/household_count/[snap>0]", "household_count", "state", "6", [["snap", ">", 0]], 3.0),
    ("cd_602/person_count", "person_count", "district", "602", [], 4.0),
    ("cd_3702/snap", "snap", "district", "3702", [], 2_000.0),
]
SELECTED = np.array([True, True, True, True, True, False, True, True])


def _targets() -> pd.DataFrame:
    return with_provenance(pd.DataFrame({
        "target_id": range(len(TARGETS)),
        "target_name": [t[0] for t in TARGETS], "variable": [t[1] for t in TARGETS],
        "geo_level": [t[2] for t in TARGETS], "geographic_id": [t[3] for t in TARGETS],
        "domain_variable": [",".join(c[0] for c in t[4]) for t in TARGETS],
        "value": [t[5] for t in TARGETS], "period": 2024, "holdout": [0] * 5 + [1] + [0, 0],
        "constraints": [json.dumps(t[4]) for t in TARGETS],
    }))


def _hand_matrix(targets: pd.DataFrame) -> sp.csr_matrix:
    """X by direct per-record computation: each clone's records simulated in its districts."""
    base = base_microdata()
    taxes = compute_taxes(base)
    X = np.zeros((len(targets), len(CD)))
    for clone in range(3):
        cd = CD[clone * 3:(clone + 1) * 3].astype(np.int64)
        snap_up, eitc_up = draw_takeup(base.household["household_id"].to_numpy(),
                                       base.tax_unit["household_id"].to_numpy(), clone, cd // 100)
        household = base.household.assign(state_fips=cd // 100, congressional_district_geoid=cd,
                                          takes_up_snap_if_eligible=snap_up)
        md = replace(base, household=household,
                     tax_unit=base.tax_unit.assign(takes_up_eitc=eitc_up))
        sim = simulate(md, taxes)
        for r in range(3):
            hh_id = base.household["household_id"][r]
            p = sim.person[sim.person["household_id"] == hh_id]
            t = sim.tax_unit[sim.tax_unit["household_id"] == hh_id]
            snap = sim.household["snap"][r]
            values = [(p["age"] < 18).sum(), (p["age"] >= 18).sum(), float(snap > 0),
                      t["eitc"].sum(), t["eitc"].sum(), float(snap > 0), len(p), snap]
            for i, (level, geo) in enumerate(zip(targets["geo_level"], targets["geographic_id"],
                                                 strict=True)):
                inside = (level == "national" or (level == "state" and int(geo) == cd[r] // 100)
                          or (level == "district" and int(geo) == cd[r]))
                X[i, clone * 3 + r] = values[i] if inside else 0.0
    return sp.csr_matrix(X.astype(np.float32))


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("v")
    targets = _targets()
    # Everyone eligible takes up, so EITC and SNAP dollars reach the files whatever the
    # published state rates are: the totals below are then real money, not takeup luck.
    rates = takeup.load_rates().assign(snap_rate=1.0, eitc_rate=1.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(takeup, "load_rates", lambda path=None: rates)
        pkg = make_package(tmp, X=_hand_matrix(targets), targets=targets)
        w = np.where(CD == 3702, 0.0, W)  # district 3702 ends up empty
        stack_h5s(pkg, w, tmp / "stacked")
        return pkg, w, tmp, _validate(tmp / "stacked", targets, SELECTED)


def _validate(stacked, targets, selected, cache=None, runner=None):
    views = [FitTargets.of(LOCAL, targets, selected)]
    published = walk_published(stacked, views, lambda: seed_cache(base_microdata()), runner,
                               cache)
    return validate_h5s(published, views)


PRODUCTION = ("area_type", "area_id", "display_name", "district", "variable", "target_name",
              "period", "target_value", "sim_value", "error", "rel_error", "abs_error",
              "rel_abs_error", "sanity_check", "sanity_reason", "in_training")


def test_validation_frame_has_production_columns_and_known_totals(validated):
    _, _, _, df = validated
    assert tuple(df.columns) == COLUMNS and COLUMNS[:len(PRODUCTION)] == PRODUCTION
    assert COLUMNS[len(PRODUCTION):] == (
        "holdout_group", "original_value", "original_period", "uprating_factor",
        "reconcile_rule", "reconcile_factor", "error_rule", "error_floor", "score", "scope", "fit",
        "engine")
    assert set(df["engine"]) == {"builtin"}  # files stacked without a named engine
    by = df.set_index("target_name")
    # children live only in record 0, kept in column 0 (w 2.5)
    assert by.at["nation/person_count/[age<18]", "sim_value"] == 2 * 2.5
    # NC adults: col 0 (1 adult x 2.5), col 4 (3 adults x 4.0)
    assert by.at["state_37/person_count/[age>=18]", "sim_value"] == 2.5 + 12.0
    assert by.at["cd_602/person_count", "sim_value"] == 3.0  # col 5: the retiree, w 3.0
    row = by.loc["state_37/person_count/[age>=18]"]
    assert row["error"] == -5.5 and row["rel_abs_error"] == pytest.approx(5.5 / 20)
    # one target in its table: scored relative to itself, in scope, published as is
    assert (row["error_rule"], row["score"], row["scope"]) == ("relative", 5.5 / 20, "in_scope")
    assert (row["original_value"], row["original_period"], row["uprating_factor"],
            row["reconcile_rule"]) == (20.0, 2024, 1.0, "")
    assert by.at["state_6/household_count/[snap>0]", "holdout_group"] == "holdout"
    assert (row["area_type"], row["area_id"], row["display_name"], row["district"]) == (
        "state", "37", "North Carolina", "")
    d = by.loc["cd_3701/household_count/[snap>0]"]
    assert (d["display_name"], d["district"], d["sanity_check"]) == ("NC-01", "NC-01", "PASS")
    empty = by.loc["cd_3702/snap"]
    assert empty["sim_value"] == 0.0 and empty["sanity_check"] == "WARN"
    assert "no households" in empty["sanity_reason"]
    assert df["in_training"].tolist() == SELECTED.tolist()


def test_xw_equals_totals_from_published_files(validated):
    pkg, w, _, df = validated
    report = xw_consistency(pkg, w, df, SELECTED)
    assert report.passed and report.missing == []
    assert report.max_rel_deviation < 1e-6
    # the check is not vacuous: the EITC totals are real dollars
    assert df.set_index("target_name").at["nation/eitc", "sim_value"] > 1_000


def test_write_csv_and_refuse_incomplete_directory(validated, tmp_path):
    _, _, tmp, df = validated
    path = write_validation_csv(df, tmp_path / "out" / "validation_results.csv")
    back = pd.read_csv(path)
    assert back["sim_value"].tolist() == df["sim_value"].tolist()
    (tmp_path / "half").mkdir()
    with pytest.raises(InputError, match="manifest"):
        _validate(tmp_path / "half", _targets(), SELECTED)
    with pytest.raises(InputError, match="cannot compute"):
        _validate(tmp / "stacked", _targets().assign(variable="wealth"), SELECTED)


def test_cached_walk_reads_back_the_same_frame(validated, tmp_path, monkeypatch):
    _, _, tmp, df = validated
    cache = tmp_path / "cache"
    first = _validate(tmp / "stacked", _targets(), SELECTED, cache)
    pd.testing.assert_frame_equal(first, df)
    # A second caller with the same files and targets walks no file, whatever it selects.
    monkeypatch.setattr(published, "walk", lambda *a: pytest.fail("walked again"))
    pd.testing.assert_frame_equal(_validate(tmp / "stacked", _targets(), SELECTED, cache), df)
    flipped = _validate(tmp / "stacked", _targets(), ~SELECTED, cache)
    assert flipped["in_training"].tolist() == (~SELECTED).tolist()
    # Other targets are another entry, and only the latest is kept.
    monkeypatch.undo()
    _validate(tmp / "stacked", _targets().iloc[:3], SELECTED[:3], cache)
    assert len(list(cache.glob("walk-*.json"))) == 1


def test_cache_does_not_hide_a_damaged_file(validated, tmp_path):
    _, _, tmp, _ = validated
    stacked = tmp_path / "stacked"
    shutil.copytree(tmp / "stacked", stacked)
    _validate(stacked, _targets(), SELECTED, tmp_path / "cache")
    victim = stacked / "states" / "CA.h5"
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(InputError, match="CA.h5.*differs"):
        _validate(stacked, _targets(), SELECTED, tmp_path / "cache")


def test_a_figures_only_fit_is_validated_on_the_matrix(validated):
    """A held-out fit publishes no files: its rows are X·w on the package's matrix, which
    equal what the files give for the same weights (the X·w gate's invariant)."""
    pkg, w, _, df = validated
    view = FitTargets.of(LOCAL_HELDOUT, pkg.targets, SELECTED)
    rows = validate_matrix(pkg.X, view, w, "builtin")
    assert tuple(rows.columns) == COLUMNS and (rows["fit"] == "local_heldout").all()
    assert (rows["engine"] == "builtin").all()
    assert rows["sim_value"].to_numpy() == pytest.approx(df["sim_value"].to_numpy(), rel=1e-6)
    # the same float64 sums as one product of the whole float64 matrix, computed in blocks
    whole = pkg.X.astype(np.float64) @ np.asarray(w, np.float64)
    assert np.array_equal(rows["sim_value"].to_numpy(), whole[view.validated])
    assert (rows["sanity_check"] == "PASS").all()
    assert rows["sanity_reason"].str.contains("X·w").all()
    assert rows["score"].to_numpy() == pytest.approx(df["score"].to_numpy(), rel=1e-5,
                                                     abs=1e-9)
    assert rows["in_training"].tolist() == SELECTED.tolist()


def test_the_base_samples_taxes_are_kept_on_disk_for_the_next_process(tmp_path):
    """A refit's first check reads the seed instead of running Tax-Calculator again: the
    same results, no row computed; another base sample gets its own entry."""
    from pipeline.microdata import write_h5

    base, cache_dir = tmp_path / "base.h5", tmp_path / "cache"
    md = base_microdata()
    write_h5(md, base)
    first = published.stored_seed(base, cache_dir)
    again = published.stored_seed(base, cache_dir)
    assert first.computed_rows == len(md.tax_unit) and again.computed_rows == 0
    pd.testing.assert_frame_equal(first.taxes(md.tax_unit).tax_unit,
                                  again.taxes(md.tax_unit).tax_unit)
    assert again.computed_rows == 0
    other = replace(md, household=md.household.assign(household_weight=2.0))
    write_h5(other, base)  # new bytes, the same tax units
    assert published.stored_seed(base, cache_dir).computed_rows == len(md.tax_unit)
    assert len(list(cache_dir.glob("tax_seed-*.npz"))) == 1  # the stale entry is gone


def test_a_district_sample_walks_the_largest_and_a_seeded_draw():
    """Production walks 10 + 40 of its 436 district files: the largest always, the rest
    by a seeded hash of the name, so two runs (and the checks and validation of one run)
    walk the same files, and another seed walks others."""
    manifest = {"files": {
        **{f"states/S{i}.h5": {"households": 10_000} for i in range(3)},
        **{f"districts/D{i:03d}.h5": {"households": 1_000 + i} for i in range(100)},
        "national.h5": {"households": 50}}}
    everyone = sample_districts(manifest, None)
    assert len(everyone) == 100 and everyone == sorted(everyone)
    picked = sample_districts(manifest, DistrictSample(size=40, largest=10, seed=0))
    assert len(picked) == 50 and picked == sorted(picked)
    assert {f"districts/D{i:03d}.h5" for i in range(90, 100)} <= set(picked)
    assert picked == sample_districts(manifest, DistrictSample(size=40, largest=10, seed=0))
    other = sample_districts(manifest, DistrictSample(size=40, largest=10, seed=1))
    assert set(other) != set(picked) and len(set(other) & set(picked)) >= 10
    assert sample_districts(manifest, DistrictSample(size=500, largest=10)) == everyone
