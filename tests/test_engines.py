"""The engine interface without policyengine-us: the builtin engine's per-state values, the
per-state cache (an entry of another engine or base sample is never read; `off` and `mixed`
values kept), how a clone's takeup draws apply to a state's values, what each engine leaves out of
scope, and the refusals that name the engine."""

import json

import numpy as np
import pandas as pd
import pytest
from factories import base_microdata

from pipeline.config import load_profile
from pipeline.core.errors import InputError
from pipeline.engine import StatePlan, load_engine, simulate
from pipeline.engine import policyengine as pe
from pipeline.engine.base import EngineIdentity, Mixed, StateValues
from pipeline.engine.builtin import BuiltinEngine, tax_cache
from pipeline.engine.state_cache import cache_key, cached_state_values, entry_path
from pipeline.engine.takeup import EITC, SNAP, draw_units
from pipeline.microdata import Microdata
from pipeline.package.build import in_scope, out_of_scope_summary
from pipeline.package.matrix import _Columns, _expanded_values
from pipeline.targets.target_config import apply_target_config
from resources import profile_with_engine

VARIABLES = ("adjusted_gross_income", "eitc", "person_count", "snap", "tax_unit_count")


def _plan(state: int = 2) -> StatePlan:
    districts = np.array([state * 100])
    return StatePlan(state, districts, np.full((1, 3), "X", dtype=object),
                     np.full((1, 3), "00000", dtype=object))


def test_builtin_values_are_simulate_in_the_state_with_takeup_on():
    md = base_microdata()
    values = BuiltinEngine().state_values(md, _plan(2), VARIABLES)
    placed = Microdata(md.period, md.household.assign(state_fips=2,
                                                      takes_up_snap_if_eligible=True),
                       md.tax_unit.assign(takes_up_eitc=True), md.person)
    sim = simulate(placed, tax_cache(md.period).taxes(placed.tax_unit))
    assert values.values["snap"].tolist() == sim.household["snap"].tolist()
    assert values.values["eitc"].tolist() == sim.tax_unit["eitc"].tolist()
    assert values.values["snap"][0] > 0 and values.values["eitc"][0] > 1000
    # Alaska's SNAP parameters differ from North Carolina's; federal taxes do not.
    nc = BuiltinEngine().state_values(md, _plan(37), VARIABLES)
    assert values.values["snap"][0] > nc.values["snap"][0]
    assert values.values["eitc"].tolist() == nc.values["eitc"].tolist()


def test_identities_name_engine_version_and_parameters():
    builtin = load_engine("builtin").identity()
    assert builtin.name == "builtin" and builtin.version.startswith("taxcalc ")
    assert len(builtin.parameters_sha256) == 64
    assert builtin == load_engine("builtin").identity()
    with pytest.raises(ValueError, match="unknown engine"):
        load_engine("openfisca")


class CountingEngine(BuiltinEngine):
    """The builtin engine, counting computations; its identity can be changed."""

    def __init__(self, version: str = "taxcalc test"):
        self.calls = 0
        self.version = version

    def identity(self) -> EngineIdentity:
        return EngineIdentity("builtin", self.version, "0" * 64)

    def state_values(self, base, plan, variables):
        self.calls += 1
        return super().state_values(base, plan, variables)


def test_a_state_is_computed_once_then_read(tmp_path):
    md, engine = base_microdata(), CountingEngine()
    first = cached_state_values(engine, md, "base-a", _plan(), VARIABLES, tmp_path)
    again = cached_state_values(engine, md, "base-a", _plan(), VARIABLES, tmp_path)
    assert engine.calls == 1
    for name, values in first.values.items():
        np.testing.assert_array_equal(values, again.values[name])


class OffEngine(CountingEngine):
    """The builtin engine with `off` values for AGI under SNAP takeup, as policyengine-us
    gives them for a state whose income tax reads SNAP (Idaho's grocery credit)."""

    def state_values(self, base, plan, variables):
        values = super().state_values(base, plan, variables)
        agi = values.values["adjusted_gross_income"]
        return StateValues(values.state_fips, values.districts, values.values,
                           {SNAP.variable: {"adjusted_gross_income": agi - 1000.0}})


def test_off_values_are_cached_with_the_state(tmp_path):
    md, engine = base_microdata(), OffEngine()
    first = cached_state_values(engine, md, "base-a", _plan(), VARIABLES, tmp_path)
    again = cached_state_values(engine, md, "base-a", _plan(), VARIABLES, tmp_path)
    assert engine.calls == 1 and list(again.off) == [SNAP.variable]
    np.testing.assert_array_equal(again.off[SNAP.variable]["adjusted_gross_income"],
                                  first.values["adjusted_gross_income"] - 1000.0)


def test_a_clones_draw_zeroes_what_its_takeup_gates_and_picks_on_or_off_values():
    md, engine = base_microdata(), OffEngine()
    values = engine.state_values(md, _plan(2), VARIABLES)
    cols = np.arange(3 * 40)  # the 3 records, 40 clones, all in district 200
    columns = _Columns.of(md, cols, np.full(len(cols), 200), np.array([200]))
    out = _expanded_values(values, columns, engine, md, 2)
    draws = draw_units(SNAP, md.household["household_id"].to_numpy()[columns.record],
                       columns.col["household"], columns.clone, np.full(len(cols), 2))
    assert draws.any() and not draws.all()
    snap = values.values["snap"][columns.rows["household"]]
    np.testing.assert_array_equal(out["snap"], snap * draws)
    agi = values.values["adjusted_gross_income"][columns.rows["tax_unit"]]
    takes_up = draws[columns.col["tax_unit"]]  # each tax unit follows its household's draw
    np.testing.assert_array_equal(out["adjusted_gross_income"],
                                  np.where(takes_up, agi, agi - 1000.0))
    assert (out["adjusted_gross_income"] != agi).any()


class MixedEngine(CountingEngine):
    """The builtin engine where EITC takeup, drawn per tax unit, changes the SNAP of the
    household with two tax units (as Colorado's Old Age Pension makes a spouse's Medicaid
    takeup change SNAP): 1000 plus the combination of the two tax units' draws."""

    def state_values(self, base, plan, variables):
        values = super().state_values(base, plan, variables)
        mixed = Mixed(np.array([1]), np.array([[1, 2]]), {"snap": np.array([1])},
                      {"snap": np.arange(1000.0, 1004.0).reshape(1, 1, 4)})
        return StateValues(values.state_fips, values.districts, values.values, {},
                           {EITC.variable: mixed})


def test_a_clones_draws_pick_the_value_of_their_combination_where_a_unit_holds_several():
    md, engine = base_microdata(), MixedEngine()
    values = engine.state_values(md, _plan(2), VARIABLES)
    cols = np.arange(3 * 40)
    columns = _Columns.of(md, cols, np.full(len(cols), 200), np.array([200]))
    out = _expanded_values(values, columns, engine, md, 2)
    hh_ids, state = md.household["household_id"].to_numpy()[columns.record], np.full(120, 2)
    snap_draw = draw_units(SNAP, hh_ids, columns.col["household"], columns.clone, state)
    eitc_draw = draw_units(EITC, hh_ids, columns.col["tax_unit"], columns.clone, state)
    couple = np.flatnonzero(columns.record == 1)
    first = np.searchsorted(columns.col["tax_unit"], couple)  # its tax units 200 and 201
    combo = eitc_draw[first] + 2 * eitc_draw[first + 1]
    assert set(combo.tolist()) == {0, 1, 2, 3}  # 40 clones meet every combination
    np.testing.assert_array_equal(out["snap"][couple], (1000.0 + combo) * snap_draw[couple])
    others = np.flatnonzero(columns.record != 1)
    np.testing.assert_array_equal(out["snap"][others], values.values["snap"][
        columns.record[others]] * snap_draw[others])


def test_mixed_values_are_cached_with_the_state(tmp_path):
    md, engine = base_microdata(), MixedEngine()
    cached_state_values(engine, md, "base-a", _plan(), VARIABLES, tmp_path)
    again = cached_state_values(engine, md, "base-a", _plan(), VARIABLES, tmp_path)
    assert engine.calls == 1 and list(again.mixed) == [EITC.variable]
    mixed = again.mixed[EITC.variable]
    assert mixed.records.tolist() == [1] and mixed.units.tolist() == [[1, 2]]
    assert mixed.rows["snap"].tolist() == [1]
    assert mixed.values["snap"].tolist() == [[[1000.0, 1001.0, 1002.0, 1003.0]]]


def test_cache_entries_of_another_engine_method_or_base_sample_are_never_read(tmp_path):
    md = base_microdata()
    a, b = CountingEngine("taxcalc A"), CountingEngine("taxcalc B")
    cached_state_values(a, md, "base-a", _plan(), VARIABLES, tmp_path)
    cached_state_values(b, md, "base-a", _plan(), VARIABLES, tmp_path)  # another engine
    cached_state_values(a, md, "base-b", _plan(), VARIABLES, tmp_path)  # another base
    assert (a.calls, b.calls) == (2, 1)
    a.state_method = 2  # the same engine computing states another way
    cached_state_values(a, md, "base-a", _plan(), VARIABLES, tmp_path)
    assert a.calls == 3
    a.state_method = 1
    # An entry renamed to another key's file name is refused by the key stored inside it.
    key_a = cache_key(a, "base-a", _plan(), VARIABLES)
    key_c = cache_key(a, "base-c", _plan(), VARIABLES)
    entry_path(tmp_path, a, key_a).rename(entry_path(tmp_path, a, key_c))
    cached_state_values(a, md, "base-c", _plan(), VARIABLES, tmp_path)
    assert a.calls == 4
    stored = np.load(entry_path(tmp_path, a, key_c), allow_pickle=False)
    assert json.loads(str(stored["__key__"]))["base_sha256"] == "base-c"


def test_builtin_leaves_the_policyengine_families_out_of_scope_and_says_so():
    targets = pd.DataFrame({
        "target_name": ["s/snap", "s/state_income_tax", "s/person_count/[medicaid]"],
        "variable": ["snap", "state_income_tax", "person_count"],
        "constraints": ["[]", "[]", json.dumps([["medicaid_enrolled", ">", 0]])],
    })
    builtin = load_engine("builtin")
    kept, skipped = in_scope(targets, builtin)
    assert kept["variable"].tolist() == ["snap"]
    summary = out_of_scope_summary(skipped, builtin)
    assert summary["engine"] == "builtin" and summary["targets"] == 2
    assert summary["variables"] == ["medicaid_enrolled", "state_income_tax"]
    kept, skipped = in_scope(targets, load_engine("policyengine"))
    assert len(kept) == 3 and skipped.empty


def test_a_config_naming_a_variable_the_engine_lacks_is_refused_naming_both(tmp_path):
    path = tmp_path / "targets.yaml"
    path.write_text("include:\n  - {variable: state_income_tax}\n")
    targets = pd.DataFrame({"variable": ["state_income_tax"], "geo_level": ["state"],
                            "domain_variable": [""], "holdout": [0], "value": [1.0]})
    with pytest.raises(InputError) as err:
        apply_target_config(path, targets, engine=load_engine("builtin"))
    assert err.value.file == str(path) and err.value.field == "include[0].variable"
    assert "'state_income_tax'" in err.value.problem and "'builtin'" in err.value.problem
    assert "ENGINE=policyengine" in err.value.fix


def test_policyengine_not_installed_or_another_version_is_refused(monkeypatch):
    engine = load_engine("policyengine")
    monkeypatch.setattr(pe, "_installed_version", lambda: None)
    with pytest.raises(InputError) as err:
        engine.require()
    assert err.value.field == "engine" and "not installed" in err.value.problem
    assert "make setup ENGINE=policyengine" in err.value.fix
    monkeypatch.setattr(pe, "_installed_version", lambda: "2.67.0")
    with pytest.raises(InputError) as err:
        engine.state_values(base_microdata(), _plan(), VARIABLES)
    assert "2.67.0" in err.value.problem and "2.68.0" in err.value.problem


def test_an_engine_override_keeps_the_profile_and_what_its_presets_filled():
    """ENGINE= changes the engine only: the national fit still records that its λ_L0 came
    from the national preset (the run config's preset_source)."""
    plain = load_profile("ci")
    switched = profile_with_engine("ci", "policyengine")
    assert (plain.engine, switched.engine) == ("builtin", "policyengine")
    assert switched.national_fit.to_dict() == plain.national_fit.to_dict()
    assert "orchestration" in switched.national_fit.to_dict()["preset_source"]
    with pytest.raises(InputError) as err:
        profile_with_engine("ci", "openfisca")
    assert err.value.field == "engine" and "policyengine" in err.value.fix
