"""policyengine-us as the engine of record (skipped where the policyengine extra is absent;
`make test` installs it): the published files are a drop-in dataset, a per-clone takeup
off is what the engine's values say (its gates zero, its `off` values elsewhere), and a
district computed by re-running only what depends on the county equals a file loaded
afresh."""

import importlib.util
import logging
import os

import h5py
import numpy as np
import pandas as pd
import pytest
from factories import W, base_microdata, make_package

from pipeline.core.geo import load_districts
from pipeline.engine import VARIABLES
from pipeline.engine import policyengine as pe
from pipeline.microdata import Microdata, read_h5
from pipeline.package.geography import state_plan
from pipeline.publish.stacking import load_manifest, stack_h5s
from pipeline.validate.published import FileTask, simulation_blocks, walk_file

pytestmark = pytest.mark.skipif(importlib.util.find_spec("policyengine_us") is None,
                                reason="the policyengine extra is not installed")
PERIOD = 2024
# What an engine computes for the matrix: placing a record is the matrix builder's business.
COMPUTED = tuple(sorted(set(VARIABLES) - {"state_fips", "congressional_district_geoid"}))
IDS = ("household_id", "tax_unit_id", "person_id", "spm_unit_id", "family_id",
       "marital_unit_id")


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dropin")
    stack_h5s(make_package(tmp), W, tmp / "stacked")
    return tmp / "stacked"


@pytest.mark.parametrize("rel", ["states/NC.h5", "districts/3701.h5", "national.h5"])
def test_a_published_file_is_a_drop_in_dataset(stacked, rel, caplog, monkeypatch):
    """Loads with no warning, ids come back as written, SPM poverty computes."""
    monkeypatch.setitem(os.environ, "HF_HUB_OFFLINE", "1")
    from policyengine_us import Microsimulation

    path = stacked / rel
    with caplog.at_level(logging.WARNING):
        sim = Microsimulation(dataset=str(path))
        poverty = np.asarray(sim.calculate("in_poverty", PERIOD))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert poverty.dtype == bool and len(poverty) == len(read_h5(path).household)
    with h5py.File(path, "r") as f:
        for name in IDS:
            written = f[name][str(PERIOD)][:]
            assert written.max() < 2**24  # int32, and float32-exact for family_id
            np.testing.assert_array_equal(np.asarray(sim.calculate(name, PERIOD)), written)
        assert not [n for n in f if n.startswith("taxcalc_") or n in ("h_seq", "clone")]
    ours = read_h5(path)
    weights = np.asarray(sim.calculate("household_weight", PERIOD))
    assert weights.sum() == pytest.approx(ours.household["household_weight"].sum())
    fips = np.asarray(sim.calculate("county_fips", PERIOD)).astype(str)
    assert fips.tolist() == ours.household["county_fips"].tolist()
    wages = np.asarray(sim.calculate("employment_income", PERIOD, map_to="person"))
    assert wages.tolist() == ours.person["employment_income"].tolist()
    heads = np.asarray(sim.calculate("is_tax_unit_head", PERIOD, map_to="person"))
    assert heads.tolist() == ours.person["is_tax_unit_head"].tolist()
    takeup = np.asarray(sim.calculate("takes_up_snap_if_eligible", PERIOD))
    assert takeup.tolist() == ours.household["takes_up_snap_if_eligible"].tolist()


def test_a_file_walked_in_slices_gives_what_the_whole_file_loaded_gives(stacked, monkeypatch):
    """Validation simulates a file above the engine's block limit in slices of whole
    households: its totals and sanity are the file's loaded whole, as a user loads it."""
    entry = load_manifest(stacked)["files"]["national.h5"]
    constraints = ["[]"] * 8 + ['[["snap", ">", 0]]', '[["medicaid_enrolled", ">", 0]]']
    targets = pd.DataFrame({"variable": ["household_count", "person_count", "income_tax",
                                         "state_income_tax", "eitc", "snap", "aca_ptc",
                                         "adjusted_gross_income", "household_count",
                                         "person_count"], "constraints": constraints})
    task = FileTask("national.h5", entry, targets)
    whole_sanity, whole = walk_file(task, str(stacked), "policyengine", None)
    monkeypatch.setattr(pe.PolicyEngineUS, "max_block_households", 2)
    cuts = simulation_blocks(stacked / "national.h5", entry, pe.PolicyEngineUS())
    assert [(b.households, one) for b, one in cuts] == [((0, 1), False), ((1, 3), False),
                                                         ((3, 5), False)]
    sliced_sanity, sliced = walk_file(task, str(stacked), "policyengine", None)
    assert sliced_sanity == whole_sanity
    np.testing.assert_allclose(sliced, whole, rtol=1e-12)
    assert whole[0] == pytest.approx(W.sum()) and whole[1] > whole[0]
    assert whole[2] != 0 and whole[5] > 0 and 0 < whole[8] < whole[0]


def _variables(engine: pe.PolicyEngineUS, md, plan, district: int, tmp_path, **takeups):
    """Every target variable of `md` placed in `plan`'s district, some takeups set (False:
    off for everyone; an array: per unit)."""
    placed = pe.place(md, plan, district, engine)
    for takeup in (t for t in engine.takeups if t.variable in takeups):
        getattr(placed, takeup.entity)[takeup.variable] = takeups[takeup.variable]
    path = tmp_path / f"d{district}-{len(list(tmp_path.iterdir()))}.h5"
    pe.write_dataset(placed, path)
    sim = pe._microsimulation(path)
    return {v: pe._values(sim, v, PERIOD) for v in COMPUTED}


_STATE_VALUES: dict = {}


def state_values(state: str, md, plan):
    """The engine's values for a placed sample, computed once per state for the module."""
    if state not in _STATE_VALUES:
        _STATE_VALUES[state] = pe.PolicyEngineUS().state_values(md, plan, COMPUTED)
    return _STATE_VALUES[state]


def _placed(state_fips: int, **tax_unit_columns):
    md = base_microdata()
    for name, values in tax_unit_columns.items():
        md.tax_unit[name] = values
    return md, state_plan(md.household["household_id"].to_numpy(), state_fips, load_districts())


@pytest.fixture(scope="module")
def north_carolina():
    return _placed(37)


@pytest.fixture(scope="module")
def washington():
    """The couple's mortgage interest ($27,500) plus their deductible sales tax (no income
    tax there; the rate follows the county) is about the standard deduction ($29,200): in
    King and Snohomish counties they itemize, in Kitsap they do not."""
    return _placed(53, e19200=[0.0, 27_500.0, 0.0, 0.0])


@pytest.fixture(scope="module")
def idaho():
    """Idaho's grocery credit, refundable against its income tax, is lost in the months a
    household gets SNAP."""
    return _placed(16)


@pytest.fixture(scope="module")
def colorado():
    """Colorado's Old Age Pension deems a spouse's income unless the spouse is on Medicaid,
    and SNAP counts the pension: the retiree (70) gets a spouse of 40 who earns $5,000."""
    md = base_microdata()
    md.tax_unit.loc[3, ["MARS", "XTOT", "age_spouse", "e00200", "e00200s"]] = [2, 2, 40,
                                                                              5_000.0, 5_000.0]
    spouse = md.person.iloc[[6]].assign(person_id=3001, age=40, is_tax_unit_head=False,
                                        is_tax_unit_spouse=True, employment_income=5_000.0)
    md = Microdata(md.period, md.household, md.tax_unit,
                   pd.concat([md.person, spouse], ignore_index=True))
    return md, state_plan(md.household["household_id"].to_numpy(), 8, load_districts())


def test_a_per_person_takeup_changing_a_households_value_has_it_per_combination(colorado,
                                                                                tmp_path):
    """The couple's SNAP reads both of their Medicaid draws: the engine gives it for each
    combination of them, and each is what a file with those draws computes."""
    md, plan = colorado
    engine, values = pe.PolicyEngineUS(), state_values("colorado", md, plan)
    assert values.off == {} and list(values.mixed) == [pe.MEDICAID.variable]
    mixed = values.mixed[pe.MEDICAID.variable]
    assert mixed.records.tolist() == [2] and mixed.units.tolist() == [[6, 7]]
    assert list(mixed.rows) == ["snap"] and mixed.rows["snap"].tolist() == [2]
    grid = mixed.values["snap"]
    assert grid.shape == (len(plan.districts), 1, 4)
    for district in (0, len(plan.districts) - 1):
        for combo in range(4):
            draws = np.ones(len(md.person), dtype=bool)
            draws[6], draws[7] = combo & 1, combo >> 1 & 1
            fresh = _variables(engine, md, plan, district, tmp_path,
                               takes_up_medicaid_if_eligible=draws)
            assert grid[district, 0, combo] == fresh["snap"][2]
    assert grid[0, 0, 0] > grid[0, 0, 2] > 0  # the spouse on Medicaid: more pension, less SNAP


@pytest.mark.parametrize(("state", "expected"), [
    ("north_carolina", {}),
    ("idaho", {"takes_up_snap_if_eligible": ["state_income_tax"]}),
])
def test_a_per_clone_takeup_off_is_its_gates_zero_and_the_engines_off_values(
        state, expected, request, tmp_path):
    """Turning a per-clone takeup off zeroes its gated variables, and changes exactly the
    other variables the engine gives `off` values for, to those values: so a clone's draws
    applied to the engine's values are what its file computes."""
    md, plan = request.getfixturevalue(state)
    engine, values = pe.PolicyEngineUS(), state_values(state, md, plan)
    assert {k: sorted(v) for k, v in values.off.items()} == expected
    for district in sorted({0, len(plan.districts) - 1} if values.off else {0}):
        on = _variables(engine, md, plan, district, tmp_path)
        assert on["snap"].sum() > 0 and on["medicaid_enrolled"].sum() > 0
        for takeup in engine.takeups:
            off = _variables(engine, md, plan, district, tmp_path, **{takeup.variable: False})
            changed = sorted(v for v in on if not np.array_equal(on[v], off[v]))
            found = values.off.get(takeup.variable, {})
            assert changed == sorted([*takeup.gates, *found])
            for gated in takeup.gates:
                assert (off[gated] == 0).all()
            for name, array in found.items():
                got = array[district] if array.ndim == 2 else array
                np.testing.assert_array_equal(got, off[name], err_msg=name)


@pytest.mark.parametrize("state", ["north_carolina", "washington"])
def test_a_district_by_partial_recompute_equals_a_fresh_load(state, request, tmp_path):
    """Washington has local sales taxes and no income tax: an itemizer's sales tax
    deduction, and so the itemization branches' income tax, changes with the county."""
    md, plan = request.getfixturevalue(state)
    engine, values = pe.PolicyEngineUS(), state_values(state, md, plan)
    assert any(v.ndim == 2 for v in values.values.values())  # something depends on county
    for district in (0, len(plan.districts) // 2, len(plan.districts) - 1):
        fresh = _variables(engine, md, plan, district, tmp_path)
        for name, array in values.values.items():
            got = array[district] if array.ndim == 2 else array
            np.testing.assert_array_equal(got, fresh[name], err_msg=name)
