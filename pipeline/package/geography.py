"""Clone-to-geography assignment.

Each cloned record is placed in a district drawn in proportion to district population,
so clones spread over the country the way people do; a record's clones get distinct
districts so no district sees the same household twice.

A record's county in a district is drawn once per (record, district) from P(county |
district), by a stable hash of the record's household id and the district: every clone of
a record that lands in a district gets the same county, whatever the seed or the number of
clones. So an engine that depends on the county (policyengine-us) computes a record's values
once per district of a state (`state_plan`), and those are the values of every column that
places it there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.core.geo import (
    COUNTY_FILE,
    COUNTY_FIPS_FILE,
    load_county_distributions,
    load_county_fips,
    load_districts,
)
from pipeline.core.packaged import SNAPSHOT_DIR
from pipeline.engine import StatePlan
from pipeline.engine.takeup import stream_seeds, stream_uniform

_CHUNK = 2048  # records per Gumbel block: bounds memory at ~2048 x 436 doubles
COUNTY_STREAM = "geography/county"


class Counties:
    """P(county | district) as one sorted CDF over the districts' rows, and the names."""

    def __init__(self, districts: pd.DataFrame, snapshot_dir: str | Path = SNAPSHOT_DIR):
        county = load_county_distributions(snapshot_dir)
        missing = set(districts["cd_geoid"]) - set(county["cd_geoid"])
        if missing:
            raise InputError(Path(snapshot_dir) / COUNTY_FILE, "cd_geoid",
                             f"no county distribution for districts {sorted(missing)[:5]}",
                             "rerun scripts/refresh_targets_snapshot.py")
        rank = pd.Series(np.arange(len(districts)), index=districts["cd_geoid"].to_numpy())
        county = county[county["cd_geoid"].isin(rank.index)]
        county = county.assign(rank=county["cd_geoid"].map(rank)).sort_values(["rank", "county"])
        cdf = county.groupby("rank")["probability"].cumsum().to_numpy(copy=True)
        cdf[~county["rank"].duplicated(keep="last").to_numpy()] = 1.0
        # Offsetting each district's CDF by its row makes one sorted array: a single
        # searchsorted serves every (record, district).
        self.cdf = cdf + county["rank"].to_numpy()
        self.rank = rank
        self.names, self.codes = np.unique(county["county"].to_numpy(str), return_inverse=True)
        fips = load_county_fips(snapshot_dir)
        unknown = sorted(set(self.names) - set(fips.index))
        if unknown:
            raise InputError(Path(snapshot_dir) / COUNTY_FIPS_FILE, "county",
                             f"no FIPS code for {unknown[:5]}",
                             "rerun scripts/snapshot_county_fips.py")
        self.fips = fips.reindex(self.names).to_numpy(dtype=object)

    def draw(self, household_ids: np.ndarray, cd_geoid: np.ndarray) -> np.ndarray:
        """Index into `names` of the county of each (household, district) pair."""
        geoid = np.asarray(cd_geoid, dtype=np.int64)
        u = stream_uniform(stream_seeds(COUNTY_STREAM, household_ids, geoid))
        rank = self.rank.reindex(geoid).to_numpy()
        rows = np.searchsorted(self.cdf, rank + u, side="right")
        return self.codes[rows].astype(np.int32)


def assign_geography(
    household_ids: np.ndarray, n_clones: int, seed: int,
    snapshot_dir: str | Path = SNAPSHOT_DIR, districts: pd.DataFrame | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Districts and counties for every (clone, record) column; column = clone*n_records + record.

    Districts: per record, Gumbel top-k over log(population) — sampling without
    replacement, clone 0 getting the first draw, so each clone's district is
    population-proportional given the districts earlier clones took.
    `districts` restricts the draw to a subset (a profile's states).
    Returns (cd_geoid int32, county_index int32, counties str array).
    """
    if districts is None:
        districts = load_districts(snapshot_dir)
    household_ids = np.asarray(household_ids, dtype=np.int64)
    n_records, n_districts = len(household_ids), len(districts)
    if n_records < 1 or not 1 <= n_clones <= n_districts:
        raise InputError(None, "n_clones", f"n_records={n_records}, n_clones={n_clones}",
                         f"use n_records >= 1 and 1 <= n_clones <= {n_districts}")
    counties = Counties(districts, snapshot_dir)
    rng = np.random.Generator(np.random.PCG64(seed))
    log_p = np.log(districts["population"].to_numpy(np.float64))
    picks = np.empty((n_clones, n_records), dtype=np.int32)  # district row index
    for start in range(0, n_records, _CHUNK):
        stop = min(start + _CHUNK, n_records)
        keys = log_p + rng.gumbel(size=(stop - start, n_districts))
        if n_clones < n_districts:
            top = np.argpartition(-keys, n_clones - 1, axis=1)[:, :n_clones]
        else:
            top = np.broadcast_to(np.arange(n_districts), keys.shape)
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
        picks[:, start:stop] = np.take_along_axis(top, order, axis=1).T
    cd_geoid = districts["cd_geoid"].to_numpy(np.int32)[picks.reshape(-1)]
    county_index = counties.draw(np.tile(household_ids, n_clones), cd_geoid)
    return cd_geoid, county_index, counties.names


def state_plan(household_ids: np.ndarray, state_fips: int, districts: pd.DataFrame,
               snapshot_dir: str | Path = SNAPSHOT_DIR) -> StatePlan:
    """Every record's county in each of the state's districts (the package's districts)."""
    household_ids = np.asarray(household_ids, dtype=np.int64)
    mine = districts[districts["state_fips"] == state_fips]
    geoids = mine["cd_geoid"].to_numpy(np.int64)
    counties = Counties(mine, snapshot_dir)
    index = counties.draw(np.tile(household_ids, len(geoids)),
                          np.repeat(geoids, len(household_ids))).reshape(len(geoids), -1)
    return StatePlan(int(state_fips), geoids, counties.names[index].astype(object),
                     counties.fips[index])
