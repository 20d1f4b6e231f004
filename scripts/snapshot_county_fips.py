"""Snapshot each county's 5-digit FIPS code, for the published files' `county_fips`.

policyengine-us's SPM poverty reads `county_fips` (a pure input, not derived from
`county`), so every published household carries both. The names are policyengine-us's
`County` enum names, as `county_cd_distributions.csv` uses them; the codes are the Census
2020 county list (national_county2020.txt, public domain), in the copy policyengine-us ships
(`policyengine_us/data/county_fips_2020.csv.gz`), matched to the enum names by
policyengine-us's own rule (`map_county_string_to_enum`). Run it with the interpreter of a
venv that has policyengine-us 2.68.0 (`make setup ENGINE=policyengine` builds one):

    .venv/bin/python scripts/snapshot_county_fips.py

It writes pipeline/data/targets/county_fips.csv (county, county_fips).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "pipeline" / "data" / "targets"


def main() -> int:
    from policyengine_us.tools.geography.county_helpers import (
        load_county_fips_dataset,
        map_county_string_to_enum,
    )
    from policyengine_us.variables.household.demographic.geographic.county.county_enum import (
        County,
    )

    census = load_county_fips_dataset()
    index = map_county_string_to_enum(census["county_name"], census["state"])
    census["county"] = [County._member_names_[i] for i in index]
    table = census.loc[census["county"] != "UNKNOWN", ["county", "county_fips"]]
    table = table.drop_duplicates("county").sort_values("county")
    wanted = set(pd.read_csv(SNAPSHOT / "county_cd_distributions.csv")["county"])
    missing = sorted(wanted - set(table["county"]))
    if missing:
        print(f"no FIPS code for {len(missing)} counties: {missing[:10]}", file=sys.stderr)
        return 1
    out = SNAPSHOT / "county_fips.csv"
    table[table["county"].isin(wanted)].to_csv(out, index=False)
    print(f"wrote {out}: {len(wanted)} counties")
    return 0


if __name__ == "__main__":
    sys.exit(main())
