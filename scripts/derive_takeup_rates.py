"""Derive state takeup rates for both engines.

    python scripts/derive_takeup_rates.py [SOURCE] [--out pipeline/data/takeup_rates.csv]
        [--policyengine-out pipeline/data/takeup_rates_policyengine.csv]

The builtin engine's rates are administrative participants ÷ engine-computed eligibles
(below). The policyengine engine draws with the production system's own rates, copied from
the wheel's `parameters/take_up/` (SNAP 0.82 nationally, Medicaid by state, ACA 0.672), the
latest value at or before the year: its eligibility is policyengine-us's, not ours.

SOURCE is the policyengine-us-data wheel (fetch it with `pip download --no-deps
--only-binary=:all: --python-version 3.12 policyengine-us-data==1.115.4`) or a directory
holding its `calibration_targets` CSVs. For each state s:
- snap_rate = clip(USDA SNAP households in s ÷ CPS-weighted households the engine finds
  SNAP-eligible in s, 0.2, 1.0);
- eitc_rate = clip(IRS EITC returns in s ÷ CPS-weighted tax units with an EITC entitlement
  in s, 0.2, 1.0).
Eligibility comes from `load_source_cps(draw_takeups=False)` (everyone takes up) and the
engine, so the rates match the engine that applies them.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.core.atomic import write_text
from pipeline.core.errors import InputError
from pipeline.core.geo import STATES
from pipeline.core.packaged import TAKEUP_RATES
from pipeline.engine import simulate
from pipeline.engine.policyengine import TAKEUP_RATES as POLICYENGINE_RATES
from pipeline.engine.policyengine import VOLUNTARY_FILING_RATES
from pipeline.source.taxcalc_cps import load_source_cps

WHEEL_DIR = "policyengine_us_data/storage/calibration_targets"
TAKE_UP_DIR = "policyengine_us_data/parameters/take_up"
POLICYENGINE_TAKEUPS = {"snap_rate": "snap.yaml", "medicaid_rate": "medicaid.yaml",
                        "aca_rate": "aca.yaml"}
DEFAULT_SOURCE = Path("/tmp/peusd/policyengine_us_data-1.115.4-py3-none-any.whl")
FLOOR, CAP = 0.2, 1.0


def read_statistics(source: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(snap_state, eitc_state) frames, each with a `state_fips` column."""
    frames = {}
    for name in ("snap_state.csv", "eitc_state.csv"):
        if source.suffix == ".whl":
            with zipfile.ZipFile(source) as whl:
                text = whl.read(f"{WHEEL_DIR}/{name}").decode()
        else:
            path = source / name
            if not path.exists():
                raise InputError(path, None, "file is missing",
                                 "pass the wheel or its storage/calibration_targets directory")
            text = path.read_text()
        df = pd.read_csv(io.StringIO(text), comment="#")
        if "GEO_ID" not in df.columns:
            raise InputError(source, f"{name}:GEO_ID", "column is missing", "use v1.115.4")
        df["state_fips"] = df["GEO_ID"].str[-2:].astype(int)
        frames[name] = df
    return frames["snap_state.csv"], frames["eitc_state.csv"]


def derive(source: Path, year: int = 2024) -> pd.DataFrame:
    snap_stats, eitc_stats = read_statistics(source)
    md = load_source_cps(year, draw_takeups=False)
    sim = simulate(md)
    hh = md.household
    weight = hh["household_weight"].to_numpy()
    state = hh["state_fips"].to_numpy()
    tu_pos = pd.Index(hh["household_id"]).get_indexer(sim.tax_unit["household_id"])
    snap_eligible = pd.Series(weight * (sim.household["snap"].to_numpy() > 0)).groupby(
        state).sum()
    eitc_eligible = pd.Series(weight[tu_pos] * (sim.tax_unit["eitc"].to_numpy() > 0)).groupby(
        state[tu_pos]).sum()
    states = np.unique(state)
    out = pd.DataFrame({"state_fips": states})
    snap = snap_stats.set_index("state_fips")["Households"].reindex(states)
    eitc = eitc_stats.set_index("state_fips")["Returns"].reindex(states)
    if snap.isna().any() or eitc.isna().any():
        raise InputError(source, "GEO_ID", "a CPS state has no statistic",
                         "use a source with all 50 states and DC")
    out["snap_households"] = snap.to_numpy()
    out["snap_eligible_weighted"] = snap_eligible.reindex(states).to_numpy()
    out["snap_rate"] = np.clip(out["snap_households"] / out["snap_eligible_weighted"],
                               FLOOR, CAP)
    out["eitc_returns"] = eitc.to_numpy()
    out["eitc_eligible_weighted"] = eitc_eligible.reindex(states).to_numpy()
    out["eitc_rate"] = np.clip(out["eitc_returns"] / out["eitc_eligible_weighted"], FLOOR, CAP)
    return out


def _take_up_yaml(source: Path, name: str) -> dict:
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as whl:
            return yaml.safe_load(whl.read(f"{TAKE_UP_DIR}/{name}").decode())
    path = source.parent.parent / "parameters" / "take_up" / name
    if not path.exists():
        raise InputError(path, None, "file is missing", "pass the policyengine-us-data wheel")
    return yaml.safe_load(path.read_text())


def policyengine_rates(source: Path, year: int = 2024) -> pd.DataFrame:
    """Per state: the production system's SNAP, Medicaid and ACA takeup rates."""
    out = pd.DataFrame({"state_fips": [fips for fips, _, _ in STATES]})
    abbr = [a for _, a, _ in STATES]
    for column, name in POLICYENGINE_TAKEUPS.items():
        doc = _take_up_yaml(source, name)
        if "rates_by_state" in doc:
            by_state = doc["rates_by_state"]
            missing = sorted(set(abbr) - set(by_state))
            if missing:
                raise InputError(source, f"{name}:rates_by_state", f"no rate for {missing}",
                                 "use policyengine-us-data 1.115.4")
            out[column] = [float(by_state[a]) for a in abbr]
        else:
            dated = sorted((str(k), float(v)) for k, v in doc["values"].items()
                           if int(str(k)[:4]) <= year)
            out[column] = dated[-1][1]
    return out


def voluntary_filing_rates(source: Path) -> pd.DataFrame:
    """The production system's voluntary filing probabilities, one row per category."""
    doc = _take_up_yaml(source, "voluntary_filing.yaml")["rates"]
    return pd.DataFrame([(children, wages, age, float(rate))
                         for children, by_wages in doc.items()
                         for wages, by_age in by_wages.items()
                         for age, rate in by_age.items()],
                        columns=["children", "wages", "age", "rate"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=TAKEUP_RATES)
    parser.add_argument("--policyengine-out", type=Path, default=POLICYENGINE_RATES)
    parser.add_argument("--year", type=int, default=2024)
    args = parser.parse_args()
    pe = policyengine_rates(args.source, args.year)
    write_text(args.policyengine_out, (
        "# policyengine engine takeup rates: the production system's (policyengine-us-data"
        " 1.115.4 parameters/take_up: snap.yaml, medicaid.yaml by state, aca.yaml), latest"
        f" value at or before {args.year}.\n"
        "# Regenerate: python scripts/derive_takeup_rates.py [WHEEL]\n"
    ) + pe.to_csv(index=False, float_format="%.6g"))
    print(f"wrote {args.policyengine_out}: {len(pe)} states")
    voluntary = voluntary_filing_rates(args.source)
    write_text(VOLUNTARY_FILING_RATES, (
        "# The production system's probability that a tax unit files voluntarily"
        " (policyengine-us-data 1.115.4 parameters/take_up/voluntary_filing.yaml): by child"
        " dependents, wages (zero, low < $15K, medium < $30K, high) and the head's age.\n"
        "# Regenerate: python scripts/derive_takeup_rates.py [WHEEL]\n"
    ) + voluntary.to_csv(index=False, float_format="%.6g"))
    table = derive(args.source, args.year)
    header = (
        "# State takeup rates = clip(administrative count / engine-eligible CPS-weighted count,"
        f" {FLOOR}, {CAP}).\n"
        "# SNAP: USDA FNS FY2023 average monthly households by state (policyengine-us-data"
        " 1.115.4 storage/calibration_targets/snap_state.csv).\n"
        "# EITC: IRS SOI Historical Table 2, TY2022, returns with EIC (eitc_state.csv).\n"
        f"# Eligible counts: Tax-Calculator CPS uprated to {args.year}, pipeline.engine,"
        " everyone taking up.\n"
        "# Regenerate: python scripts/derive_takeup_rates.py [WHEEL_OR_DIR]\n"
    )
    write_text(args.out, header + table.to_csv(index=False, float_format="%.6g"))
    print(f"wrote {args.out}: {len(table)} states")


if __name__ == "__main__":
    main()
