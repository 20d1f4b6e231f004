"""Optional: a published state file loads in policyengine-us (skipped when it is absent).

policyengine-us is AGPL-3.0, imports in ~20 s and needs 2-3 GB, so it is never a
dependency; install it by hand to run this check.
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
