"""Stacking and validation at the production profile: 12K base households x 430 clones.

Run: .venv/bin/python benchmarks/bench_outputs.py [--nonzero 400000] [--out DIR]
(prints a table and writes it to results/outputs.txt).

The base is the real stratified CPS sample (pipeline.sources + pipeline.source.stratify) and the
geography the real population-weighted assignment; the weights are synthetic (a seeded random
set of nonzero columns, lognormal values) and so are the target values: the benchmark times
the output side, it does not judge a fit. Each phase runs in its own subprocess so its peak
RSS (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipeline.core.atomic import write_text
from pipeline.targets.db import with_provenance

N_RECORDS, N_CLONES, SEED = 12_000, 430, 0
RESULTS = Path(__file__).parent / "results" / "outputs.txt"


def _targets(districts: np.ndarray) -> pd.DataFrame:
    """A production-shaped target set: ages and SNAP by district, money by state, national."""
    rows = []
    per_district = [("person_count", [["age", "<", 18]]),
                    ("person_count", [["age", ">=", 18], ["age", "<", 65]]),
                    ("person_count", [["age", ">=", 65]]),
                    ("household_count", [["snap", ">", 0]])]
    per_state = [("eitc", []), ("snap", []), ("household_count", [["snap", ">", 0]]),
                 ("tax_unit_count", [["adjusted_gross_income", ">=", 75_000]]),
                 ("adjusted_gross_income", [["adjusted_gross_income", ">=", 75_000]])]
    national = [("income_tax", []), ("ctc", []), ("eitc", [["eitc_child_count", ">=", 2]]),
                ("person_count", []), ("tax_unit_count", [["is_tax_filer", "==", 1]])]
    for level, areas, specs in (("district", [str(d) for d in districts], per_district),
                                ("state", [str(s) for s in np.unique(districts // 100)],
                                 per_state),
                                ("national", ["US"], national)):
        for area in areas:
            for variable, constraints in specs:
                rows.append({"target_name": f"{level}_{area}/{variable}/{constraints}",
                             "variable": variable, "geo_level": level, "geographic_id": area,
                             "value": 1.0e6, "period": 2024, "holdout": 0,
                             "constraints": json.dumps(constraints)})
    df = pd.DataFrame(rows)
    df.insert(0, "target_id", np.arange(len(df)))
    df["domain_variable"] = [",".join(sorted({c[0] for c in json.loads(x)}))
                             for x in df["constraints"]]
    return with_provenance(df)


def prepare(work: Path, nonzero: int) -> dict:
    from pipeline.microdata import write_h5
    from pipeline.package.geography import assign_geography
    from pipeline.source.stratify import stratify
    from pipeline.source.taxcalc_cps import load_source_cps

    t = time.perf_counter()
    base = stratify(load_source_cps(2024), N_RECORDS, seed=SEED)
    if "h_seq" in base.household.columns and "h_seq" in base.tax_unit.columns:
        # the source repeats h_seq at both levels; write_h5 wants one entity per variable
        base = replace(base, tax_unit=base.tax_unit.drop(columns="h_seq"))
    write_h5(base, work / "base.h5")
    cd, county_index, counties = assign_geography(N_RECORDS, N_CLONES, SEED)
    n_cols = N_RECORDS * N_CLONES
    rng = np.random.default_rng(SEED)
    weights = np.zeros(n_cols)
    cols = rng.choice(n_cols, size=nonzero, replace=False)
    weights[cols] = rng.lognormal(np.log(130e6 / nonzero), 1.0, size=nonzero)
    np.save(work / "weights.npy", weights)
    np.savez(work / "geography.npz", cd_geoid=cd, county_index=county_index, counties=counties)
    _targets(np.unique(cd)).to_csv(work / "targets.csv", index=False)
    return {"prepare_s": time.perf_counter() - t, "base_households": len(base.household),
            "base_tax_units": len(base.tax_unit), "base_persons": len(base.person)}


def _package(work: Path):
    from pipeline.package.store import CalibrationPackage

    geo = np.load(work / "geography.npz")
    targets = pd.read_csv(work / "targets.csv", dtype={"geographic_id": str})
    n_cols = N_RECORDS * N_CLONES
    return CalibrationPackage(
        X=sp.csr_matrix((len(targets), n_cols), dtype=np.float32), targets=targets,
        initial_weights=np.ones(n_cols), cd_geoid=geo["cd_geoid"],
        county_index=geo["county_index"], counties=geo["counties"],
        metadata={"n_records": N_RECORDS, "n_clones": N_CLONES, "seed": SEED}, path=work)


def stack(work: Path) -> dict:
    from pipeline.publish.stacking import stack_h5s

    pkg, weights = _package(work), np.load(work / "weights.npy")
    t = time.perf_counter()
    result = stack_h5s(pkg, weights, work / "stacked")
    m = result.manifest
    size = sum(p.stat().st_size for p in (work / "stacked").rglob("*.h5"))
    return {"stack_s": time.perf_counter() - t, "households": m["households"],
            "tax_units": m["tax_units"], "persons": m["persons"], "files": len(m["files"]),
            "empty_districts": len(m["empty_districts"]), "h5_GiB": size / 2**30}


def validate(work: Path) -> dict:
    from pipeline.validate.totals import validate_h5s

    targets = pd.read_csv(work / "targets.csv", dtype={"geographic_id": str})
    t = time.perf_counter()
    df = validate_h5s(work / "stacked", targets, np.ones(len(targets), dtype=bool))
    return {"validate_s": time.perf_counter() - t, "targets": len(df),
            "sanity": df.drop_duplicates(["area_type", "area_id"])["sanity_check"]
            .value_counts().to_dict()}


def _phase(name: str, work: Path, *extra: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", name, "--out", str(work), *extra],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nonzero", type=int, default=400_000)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--phase", choices=("prepare", "stack", "validate"))
    args = parser.parse_args()
    if args.phase:
        fn = {"prepare": lambda w: prepare(w, args.nonzero), "stack": stack,
              "validate": validate}[args.phase]
        result = fn(args.out)
        result["peak_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    work = args.out or Path(tempfile.mkdtemp(prefix="bench_outputs."))
    work.mkdir(parents=True, exist_ok=True)
    lines = [f"# bench_outputs.py, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs",
             f"profile: {N_RECORDS} base households x {N_CLONES} clones = "
             f"{N_RECORDS * N_CLONES:,} columns, {args.nonzero:,} nonzero weights"]
    print("\n".join(lines))
    for phase in ("prepare", "stack", "validate"):
        extra = ("--nonzero", str(args.nonzero)) if phase == "prepare" else ()
        r = _phase(phase, work, *extra)
        lines.append(f"{phase:9s} " + "  ".join(
            f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
        print(lines[-1])
    write_text(RESULTS, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
