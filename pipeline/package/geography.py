"""Clone-to-geography assignment.

Each cloned record is placed in a district drawn in proportion to district population,
so clones spread over the country the way people do; a record's clones get distinct
districts so no district sees the same household twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.core.geo import COUNTY_FILE, load_county_distributions, load_districts
from pipeline.core.packaged import SNAPSHOT_DIR

_CHUNK = 2048  # records per Gumbel block: bounds memory at ~2048 x 436 doubles


def assign_geography(
    n_records: int, n_clones: int, seed: int, snapshot_dir: str | Path = SNAPSHOT_DIR,
    districts: pd.DataFrame | None = None,
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
    county = load_county_distributions(snapshot_dir)
    n_districts = len(districts)
    if n_records < 1 or not 1 <= n_clones <= n_districts:
        raise InputError(None, "n_clones", f"n_records={n_records}, n_clones={n_clones}",
                         f"use n_records >= 1 and 1 <= n_clones <= {n_districts}")
    missing = set(districts["cd_geoid"]) - set(county["cd_geoid"])
    if missing:
        raise InputError(Path(snapshot_dir) / COUNTY_FILE, "cd_geoid",
                         f"no county distribution for districts {sorted(missing)[:5]}",
                         "rerun scripts/refresh_targets_snapshot.py")

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
    picks = picks.reshape(-1)

    # County: inverse-CDF draw inside the district. Offsetting each district's CDF by its
    # row index makes one sorted array, so a single searchsorted serves every column.
    rank = pd.Series(np.arange(n_districts), index=districts["cd_geoid"])
    county = county[county["cd_geoid"].isin(rank.index)]
    county = county.assign(rank=county["cd_geoid"].map(rank)).sort_values(["rank", "county"])
    cdf = county.groupby("rank")["probability"].cumsum().to_numpy(copy=True)
    last = ~county["rank"].duplicated(keep="last").to_numpy()
    cdf[last] = 1.0
    cdf += county["rank"].to_numpy()
    rows = np.searchsorted(cdf, picks + rng.random(picks.size), side="right")
    counties, county_codes = np.unique(county["county"].to_numpy(str), return_inverse=True)
    county_index = county_codes[rows].astype(np.int32)
    cd_geoid = districts["cd_geoid"].to_numpy(np.int32)[picks]
    return cd_geoid, county_index, counties
