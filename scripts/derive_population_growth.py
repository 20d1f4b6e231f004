"""Derive Tax-Calculator's population path: the persons and tax units its CPS weights represent.

    python scripts/derive_population_growth.py [--out pipeline/data/population_growth.csv]

For each year Y with a weight column `WT<Y>` in Tax-Calculator's `cps_weights.csv.gz`:
- persons   = Σ XTOT · WT<Y> / 100 (XTOT from `cps.csv.gz`: head, spouse and dependents);
- tax_units = Σ WT<Y> / 100.
The target DB uprates counts with the ratio of these levels between a statistic's year and
the calibration year: the same growth `load_source_cps` gives the microdata, which takes
its weights from the same file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd
import taxcalc

from pipeline.core.atomic import write_text
from pipeline.core.packaged import POPULATION_GROWTH


def derive() -> pd.DataFrame:
    directory = Path(os.path.dirname(taxcalc.__file__))
    weights = pd.read_csv(directory / "cps_weights.csv.gz")
    xtot = pd.read_csv(directory / "cps.csv.gz", usecols=["XTOT"])["XTOT"].to_numpy()
    years = sorted(int(c[2:]) for c in weights.columns if c.startswith("WT"))
    return pd.DataFrame({
        "year": years,
        "persons": [round(float((weights[f"WT{y}"] * xtot).sum()) / 100) for y in years],
        "tax_units": [round(float(weights[f"WT{y}"].sum()) / 100) for y in years],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=POPULATION_GROWTH)
    args = parser.parse_args()
    header = (f"# Tax-Calculator {taxcalc.__version__} CPS weights: persons = sum(XTOT * WT<year>)"
              " / 100, tax_units = sum(WT<year>) / 100.\n"
              "# Regenerate: python scripts/derive_population_growth.py\n")
    write_text(args.out, header + derive().to_csv(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
