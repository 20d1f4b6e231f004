"""The matrix builder: each record's values land in the rows of the areas its clone is in."""

import json

import numpy as np
import pandas as pd
import pytest
from factories import CD, base_microdata

from pipeline.engine import compute_taxes, simulate, takeup
from pipeline.microdata import Microdata
from pipeline.package.matrix import (
    MatrixPlan,
    RowLookup,
    build_matrix,
    initial_weights,
    parse_features,
)

DISTRICTS = np.array([601, 602, 3701, 3702])


def _build(md: Microdata, targets: pd.DataFrame, engine: str = "builtin") -> np.ndarray:
    features, of_target = parse_features(targets)
    plan = MatrixPlan(md, "base-sha", engine, features,
                      RowLookup.of(targets, of_target, len(features), DISTRICTS),
                      pd.DataFrame({"cd_geoid": DISTRICTS, "state_fips": DISTRICTS // 100}),
                      None)
    X, seconds = build_matrix(plan, targets, CD, 3)
    assert set(seconds) == {6, 37}  # one task per state
    return X.toarray()


def _in_clone(md: Microdata, clone: int) -> Microdata:
    """The base records where clone `clone` places them, with that clone's draws."""
    cd = CD[clone * 3:(clone + 1) * 3]
    snap, eitc = takeup.draw_takeup(md.household["household_id"].to_numpy(),
                                    md.tax_unit["household_id"].to_numpy(), clone, cd // 100)
    return Microdata(md.period, md.household.assign(state_fips=cd // 100,
                                                    takes_up_snap_if_eligible=snap),
                     md.tax_unit.assign(takes_up_eitc=eitc), md.person)


def _targets() -> pd.DataFrame:
    rows = [
        ("national", "US", "person_count", [["age", "<", 18]], 10.0),
        ("state", "37", "person_count", [["age", ">=", 18]], 20.0),
        ("state", "6", "person_count", [["age", ">=", 18]], 20.0),
        ("district", "3701", "person_count", [], 30.0),
        ("district", "602", "person_count", [], 30.0),
        ("national", "US", "tax_unit_count", [["eitc", ">", 0]], 5.0),
        ("state", "37", "eitc", [["eitc", ">", 0]], 5000.0),
        ("national", "US", "household_count", [["snap", ">", 0]], 2.0),
    ]
    return pd.DataFrame({
        "geo_level": [r[0] for r in rows], "geographic_id": [r[1] for r in rows],
        "variable": [r[2] for r in rows], "constraints": [json.dumps(r[3]) for r in rows],
        "value": [r[4] for r in rows],
    })


@pytest.fixture(scope="module")
def built():
    # Full takeup, so the single parent's EITC reaches X in every NC clone.
    rates = takeup.load_rates().assign(snap_rate=1.0, eitc_rate=1.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(takeup, "load_rates", lambda path=None: rates)
        md = base_microdata()
        yield md, _build(md, _targets())


def test_people_land_in_their_clones_areas(built):
    _, X = built
    # Column = clone * 3 + record. Record 0: adult + 2 children; record 1: 3 adults;
    # record 2: one retiree. CD = [3701, 3702, 601 | 3702, 3701, 602 | 601, 3701, 3702].
    assert X[0].tolist() == [2, 0, 0, 2, 0, 0, 2, 0, 0]            # children, anywhere
    assert X[1].tolist() == [1, 3, 0, 1, 3, 0, 0, 3, 1]            # NC adults
    assert X[2].tolist() == [0, 0, 1, 0, 0, 1, 1, 0, 0]            # CA adults
    assert X[3].tolist() == [3, 0, 0, 0, 3, 0, 0, 3, 0]            # everyone in NC-01
    assert X[4].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0]            # everyone in CA-02


def test_takeup_dependent_rows_follow_each_clones_draws(built):
    md, X = built
    taxes = compute_taxes(md)
    for clone in range(3):
        sim = simulate(_in_clone(md, clone), taxes)
        tu, hh = sim.tax_unit, sim.household
        for record, hh_id in enumerate(md.household["household_id"]):
            col = clone * 3 + record
            eitc = tu.loc[tu["household_id"] == hh_id, "eitc"]
            assert X[5, col] == (eitc > 0).sum()
            expected = eitc[eitc > 0].sum() if CD[col] // 100 == 37 else 0.0
            assert X[6, col] == pytest.approx(expected, rel=1e-6)
            assert X[7, col] == float(hh["snap"].iloc[record] > 0)
    # The single parent's EITC is real money in both NC clones (columns 0 and 3).
    assert X[6, 0] == X[6, 3] > 1000
    assert X[6, 6] == 0  # clone 2 puts the family in California


def test_initial_weights_spread_each_districts_population():
    targets = _targets()
    w = initial_weights(targets, CD)
    # NC-01 has 3 columns and a 30-person target; CA-02 one column; others default to 100.
    assert w[CD == 3701].tolist() == [10.0, 10.0, 10.0]
    assert w[CD == 602].tolist() == [30.0]
    assert w[CD == 601].tolist() == [100.0, 100.0]
