"""States and the 436 congressional districts of the 119th Congress: reference data every
stage shares (profiles name states, the target DB nests districts in states, the package
places clones in districts, validation labels areas)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipeline.core.contracts import FINITE, NON_NEGATIVE, check_table
from pipeline.core.errors import InputError
from pipeline.core.packaged import SNAPSHOT_DIR

DISTRICTS_FILE = "districts.csv"
COUNTY_FILE = "county_cd_distributions.csv"
COUNTY_FIPS_FILE = "county_fips.csv"

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


SNAPSHOT_FIX = "run scripts/refresh_targets_snapshot.py to rebuild the snapshot"

DISTRICTS = pa.DataFrameSchema({
    "cd_geoid": pa.Column("int64", unique=True),
    "state_fips": pa.Column("int64", pa.Check.isin([f for f, _, _ in STATES])),
    "population": pa.Column(None, pa.Check.gt(0), nullable=False),
}, checks=pa.Check(lambda df: df["cd_geoid"] // 100 == df["state_fips"],
                   error="cd_geoid = state_fips * 100 + district", name="cd_geoid"),
    name="districts")
COUNTY_DISTRIBUTIONS = pa.DataFrameSchema({
    "cd_geoid": pa.Column("int64"),
    "county": pa.Column(str),
    "probability": pa.Column(float, [FINITE, NON_NEGATIVE], nullable=False),
}, unique=["cd_geoid", "county"], name="county_distributions")
COUNTY_FIPS = pa.DataFrameSchema({
    "county": pa.Column(str, unique=True),
    "county_fips": pa.Column(str, pa.Check.str_matches(r"^[0-9]{5}$")),
}, name="county_fips")


def read_snapshot(path: Path, schema: pa.DataFrameSchema, **read: object) -> pd.DataFrame:
    """A snapshot CSV, checked against its schema (file, line and column named on error)."""
    if not path.is_file():
        raise InputError(path, None, "snapshot file missing", SNAPSHOT_FIX)
    return check_table(schema, pd.read_csv(path, **read), path, SNAPSHOT_FIX, csv=True)


def load_districts(snapshot_dir: str | Path = SNAPSHOT_DIR) -> pd.DataFrame:
    """DataFrame(cd_geoid, state_fips, population), sorted by cd_geoid."""
    df = read_snapshot(Path(snapshot_dir) / DISTRICTS_FILE, DISTRICTS)
    df = df[["cd_geoid", "state_fips", "population"]].sort_values("cd_geoid")
    return df.reset_index(drop=True)


def load_county_distributions(snapshot_dir: str | Path = SNAPSHOT_DIR) -> pd.DataFrame:
    """DataFrame(cd_geoid, county, probability): P(county | district), summing to 1."""
    path = Path(snapshot_dir) / COUNTY_FILE
    df = read_snapshot(path, COUNTY_DISTRIBUTIONS)
    sums = df.groupby("cd_geoid")["probability"].sum()
    if not np.allclose(sums.to_numpy(), 1.0, atol=1e-6):
        bad = sums[~np.isclose(sums, 1.0, atol=1e-6)].index[:5].tolist()
        raise InputError(path, "probability", f"districts {bad} do not sum to 1",
                         "P(county | district) must sum to 1 within each district")
    return df[["cd_geoid", "county", "probability"]].sort_values(
        ["cd_geoid", "county"]).reset_index(drop=True)


def load_county_fips(snapshot_dir: str | Path = SNAPSHOT_DIR) -> pd.Series:
    """Each county's 5-digit FIPS code (text, leading zeros kept), indexed by county name."""
    path = Path(snapshot_dir) / COUNTY_FIPS_FILE
    df = read_snapshot(path, COUNTY_FIPS, dtype={"county_fips": str})
    return df.set_index("county")["county_fips"]
