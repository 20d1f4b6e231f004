"""States and the 436 congressional districts of the 119th Congress: reference data every
stage shares (profiles name states, the target DB nests districts in states, the package
places clones in districts, validation labels areas)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.core.packaged import SNAPSHOT_DIR

DISTRICTS_FILE = "districts.csv"
COUNTY_FILE = "county_cd_distributions.csv"

# (FIPS, USPS abbreviation, name): the 50 states and DC.
STATES: tuple[tuple[int, str, str], ...] = (
    (1, "AL", "Alabama"), (2, "AK", "Alaska"), (4, "AZ", "Arizona"), (5, "AR", "Arkansas"),
    (6, "CA", "California"), (8, "CO", "Colorado"), (9, "CT", "Connecticut"),
    (10, "DE", "Delaware"), (11, "DC", "District of Columbia"), (12, "FL", "Florida"),
    (13, "GA", "Georgia"), (15, "HI", "Hawaii"), (16, "ID", "Idaho"), (17, "IL", "Illinois"),
    (18, "IN", "Indiana"), (19, "IA", "Iowa"), (20, "KS", "Kansas"), (21, "KY", "Kentucky"),
    (22, "LA", "Louisiana"), (23, "ME", "Maine"), (24, "MD", "Maryland"),
    (25, "MA", "Massachusetts"), (26, "MI", "Michigan"), (27, "MN", "Minnesota"),
    (28, "MS", "Mississippi"), (29, "MO", "Missouri"), (30, "MT", "Montana"),
    (31, "NE", "Nebraska"), (32, "NV", "Nevada"), (33, "NH", "New Hampshire"),
    (34, "NJ", "New Jersey"), (35, "NM", "New Mexico"), (36, "NY", "New York"),
    (37, "NC", "North Carolina"), (38, "ND", "North Dakota"), (39, "OH", "Ohio"),
    (40, "OK", "Oklahoma"), (41, "OR", "Oregon"), (42, "PA", "Pennsylvania"),
    (44, "RI", "Rhode Island"), (45, "SC", "South Carolina"), (46, "SD", "South Dakota"),
    (47, "TN", "Tennessee"), (48, "TX", "Texas"), (49, "UT", "Utah"), (50, "VT", "Vermont"),
    (51, "VA", "Virginia"), (53, "WA", "Washington"), (54, "WV", "West Virginia"),
    (55, "WI", "Wisconsin"), (56, "WY", "Wyoming"),
)
STATE_ABBR: dict[int, str] = {fips: abbr for fips, abbr, _ in STATES}
STATE_NAME: dict[int, str] = {fips: name for fips, _, name in STATES}
FIPS_BY_ABBR: dict[str, int] = {abbr: fips for fips, abbr, _ in STATES}


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.exists():
        raise InputError(path, None, "file not found",
                         "run scripts/refresh_targets_snapshot.py to rebuild the snapshot")
    df = pd.read_csv(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(path, missing[0], "column missing",
                         f"the file needs columns {columns}; rerun the snapshot refresh")
    return df


def load_districts(snapshot_dir: str | Path = SNAPSHOT_DIR) -> pd.DataFrame:
    """DataFrame(cd_geoid, state_fips, population), sorted by cd_geoid."""
    path = Path(snapshot_dir) / DISTRICTS_FILE
    df = _read_csv(path, ["cd_geoid", "state_fips", "population"])
    df = df[["cd_geoid", "state_fips", "population"]].sort_values("cd_geoid")
    if df["population"].isna().any() or (df["population"] <= 0).any():
        raise InputError(path, "population", "missing or non-positive population",
                         "every district needs its ACS S0101 total population")
    if (df["cd_geoid"] // 100 != df["state_fips"]).any() or df["cd_geoid"].duplicated().any():
        raise InputError(path, "cd_geoid", "GEOID outside its state or duplicated",
                         "cd_geoid must be state_fips*100 + district, once per district")
    return df.reset_index(drop=True)


def load_county_distributions(snapshot_dir: str | Path = SNAPSHOT_DIR) -> pd.DataFrame:
    """DataFrame(cd_geoid, county, probability): P(county | district), summing to 1."""
    path = Path(snapshot_dir) / COUNTY_FILE
    df = _read_csv(path, ["cd_geoid", "county", "probability"])
    if df["probability"].isna().any() or (df["probability"] < 0).any():
        raise InputError(path, "probability", "missing or negative probability",
                         "probabilities must be finite and >= 0")
    sums = df.groupby("cd_geoid")["probability"].sum()
    if not np.allclose(sums.to_numpy(), 1.0, atol=1e-6):
        bad = sums[~np.isclose(sums, 1.0, atol=1e-6)].index[:5].tolist()
        raise InputError(path, "probability", f"districts {bad} do not sum to 1",
                         "P(county | district) must sum to 1 within each district")
    return df[["cd_geoid", "county", "probability"]].sort_values(
        ["cd_geoid", "county"]).reset_index(drop=True)
