"""Optional: a published state file loads in policyengine-us (skipped when it is absent).

policyengine-us is AGPL-3.0, imports in ~20 s and needs 2-3 GB, so it is never a
dependency: `make interop` installs it in a venv of its own and runs this test there.
"""

import os

import numpy as np
import pytest
from factories import W, make_package

from pipeline.microdata import read_h5
from pipeline.publish.stacking import stack_h5s

policyengine_us = pytest.importorskip("policyengine_us")


def test_state_file_loads_in_microsimulation(tmp_path, monkeypatch):
    monkeypatch.setitem(os.environ, "HF_HUB_OFFLINE", "1")
    stack_h5s(make_package(tmp_path), W, tmp_path / "stacked")
    path = tmp_path / "stacked" / "states" / "NC.h5"
    sim = policyengine_us.Microsimulation(dataset=str(path))
    ours = read_h5(path)
    weights = np.asarray(sim.calculate("household_weight", 2024))
    assert weights.sum() == pytest.approx(ours.household["household_weight"].sum())
    ages = np.asarray(sim.calculate("age", 2024, map_to="person"))
    assert sorted(ages.tolist()) == sorted(ours.person["age"].tolist())
    # Person-level wages, our tax units' heads and spouses, and the formulas over them.
    wages = np.asarray(sim.calculate("employment_income", 2024, map_to="person"))
    assert wages.tolist() == ours.person["employment_income"].tolist()
    heads = np.asarray(sim.calculate("is_tax_unit_head", 2024, map_to="person"))
    assert heads.tolist() == ours.person["is_tax_unit_head"].tolist()
    spouses = np.asarray(sim.calculate("is_tax_unit_spouse", 2024, map_to="person"))
    assert spouses.tolist() == ours.person["is_tax_unit_spouse"].tolist()
    age_head = np.asarray(sim.calculate("age_head", 2024))
    assert age_head.tolist() == ours.tax_unit["age_head"].tolist()
    takeup = np.asarray(sim.calculate("takes_up_snap_if_eligible", 2024))
    assert takeup.tolist() == ours.household["takes_up_snap_if_eligible"].tolist()
    agi = np.asarray(sim.calculate("adjusted_gross_income", 2024))
    assert agi.tolist() == pytest.approx(ours.tax_unit["e00200"].tolist())  # wages only
