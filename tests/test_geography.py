"""Geography: districts, county distributions and clone assignment on the real snapshot."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core.errors import InputError
from pipeline.core.geo import STATES, load_county_distributions, load_districts
from pipeline.package.geography import assign_geography, state_plan


def test_states_are_50_plus_dc():
    fips = [f for f, _, _ in STATES]
    assert len(STATES) == 51 and len(set(fips)) == 51
    assert (11, "DC", "District of Columbia") in STATES
    assert 72 not in fips


def test_districts_match_acs_totals():
    d = load_districts()
    assert len(d) == 436
    assert list(d.columns) == ["cd_geoid", "state_fips", "population"]
    assert d["population"].sum() == 340_110_990  # ACS 2024 S0101 US total (50 states + DC)
    at_large = d.set_index("cd_geoid")
    assert at_large.loc[200, "state_fips"] == 2 and at_large.loc[1198, "state_fips"] == 11
    assert at_large.loc[101, "population"] == 760_389  # AL-1, S0101_C01_001E
    assert (d["cd_geoid"] // 100 == d["state_fips"]).all()
    assert d.groupby("state_fips").size()[6] == 52  # California


def test_county_distributions_sum_to_one():
    c = load_county_distributions()
    assert c["cd_geoid"].nunique() == 436
    np.testing.assert_allclose(c.groupby("cd_geoid")["probability"].sum(), 1.0, atol=1e-9)


def test_clones_get_distinct_districts_and_valid_counties():
    n_records, n_clones = 1500, 430
    cd, county_index, counties = assign_geography(np.arange(n_records), n_clones, seed=3)
    assert cd.shape == county_index.shape == (n_records * n_clones,)
    assert cd.dtype == np.int32 and county_index.dtype == np.int32
    per_record = np.sort(cd.reshape(n_clones, n_records), axis=0)
    assert (np.diff(per_record, axis=0) != 0).all()
    dist = load_county_distributions()
    allowed = set(zip(dist.loc[dist.probability > 0, "cd_geoid"],
                      dist.loc[dist.probability > 0, "county"], strict=True))
    pairs = set(zip(cd.tolist(), counties[county_index].tolist(), strict=True))
    assert pairs <= allowed
    # P(county | district): AL-1 puts 32.3% of its people in Baldwin County.
    in_al1 = counties[county_index[cd == 101]]
    assert len(in_al1) > 1000
    assert abs(np.mean(in_al1 == "BALDWIN_COUNTY_AL") - 0.3229) < 0.04


def test_first_clone_is_population_proportional():
    n = 50_000
    cd, _, _ = assign_geography(np.arange(n), 2, seed=11)
    d = load_districts()
    counts = pd.Series(cd[:n]).value_counts().reindex(d["cd_geoid"], fill_value=0).to_numpy()
    expected = n * d["population"].to_numpy() / d["population"].sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 435 + 5 * np.sqrt(2 * 435)  # 435 degrees of freedom, 5 sd margin
    state_share = pd.Series(counts, index=d["state_fips"]).groupby(level=0).sum() / n
    pop_share = d.groupby("state_fips")["population"].sum() / d["population"].sum()
    assert (state_share - pop_share).abs().max() < 0.006


def test_deterministic_given_seed():
    a = assign_geography(np.arange(300), 20, seed=5)
    b = assign_geography(np.arange(300), 20, seed=5)
    c = assign_geography(np.arange(300), 20, seed=6)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_a_records_county_in_a_district_is_the_same_in_every_clone_and_seed():
    """The county is drawn per (record, district), so the per-state engine values of each
    district (`state_plan`) are those of every column that places the record there."""
    ids = np.arange(1000, 1300)
    districts = load_districts()
    cd, county_index, counties = assign_geography(ids, 30, seed=5, districts=districts)
    other_cd, other_index, other_counties = assign_geography(ids, 12, seed=9,
                                                             districts=districts)
    first = {(hh, g): name for hh, g, name in zip(
        np.tile(ids, 30).tolist(), cd.tolist(), counties[county_index].tolist(), strict=True)}
    again = zip(np.tile(ids, 12).tolist(), other_cd.tolist(),
                other_counties[other_index].tolist(), strict=True)
    shared = [((hh, g), name) for hh, g, name in again if (hh, g) in first]
    assert len(shared) > 100 and all(first[key] == name for key, name in shared)
    plan = state_plan(ids, 37, districts)
    assert list(plan.districts) == sorted(districts.loc[districts.state_fips == 37, "cd_geoid"])
    for (hh, geoid), name in first.items():
        if geoid // 100 == 37:
            d = list(plan.districts).index(geoid)
            assert plan.counties[d, hh - 1000] == name
            assert plan.county_fips[d, hh - 1000].startswith("37")


def test_full_size_assignment():
    cd, county_index, _ = assign_geography(np.arange(12_000), 430, seed=1)
    assert cd.shape == (5_160_000,)
    assert cd.reshape(430, 12_000)[:, 0].size == np.unique(cd.reshape(430, 12_000)[:, 0]).size


@pytest.mark.parametrize("n_clones", [0, 437])
def test_too_many_clones_is_input_error(n_clones):
    with pytest.raises(InputError, match="n_clones"):
        assign_geography(np.arange(10), n_clones, seed=0)
