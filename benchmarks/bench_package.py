"""Build the production-profile calibration package and report wall time and peak memory.

Usage: python benchmarks/bench_package.py [--profile production] [--work DIR]
Builds (or reuses) the stratified base sample and the target DB under --work, then times
`build_package` alone. Goal (issue: inputs on real data): under 10 minutes and 16 GB on
this 2-core, 24 GB machine; production needs 64 GB / 8 CPUs and allows 14 hours.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

from pipeline.config import load_profile
from pipeline.core.layout import Layout
from pipeline.microdata import write_h5
from pipeline.package.build import build_package
from pipeline.source.stratify import stratify
from pipeline.source.taxcalc_cps import load_source_cps
from pipeline.targets.etl import build_target_db


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="production")
    parser.add_argument("--work", default="/tmp/calibration-bench")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    layout = Layout(Path(args.work))
    if not layout.base_h5.exists():
        md = load_source_cps(profile.period)
        write_h5(stratify(md, profile.sample.households, profile.seed,
                          profile.sample.top_agi_quantile),
                 layout.base_h5)
    if not layout.target_db.exists():
        build_target_db(layout.target_db)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    pkg = build_package(layout.base_h5, layout.target_db, layout.package_dir, profile.geography,
                        profile.package, profile.seed, profile_record=profile.as_dict())
    seconds = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    size = sum(p.stat().st_size for p in layout.package_dir.iterdir()) / 2**30
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at end")
    print(f"profile {profile.name}: {pkg.n_records:,} records x {pkg.n_clones} clones = "
          f"{pkg.X.shape[1]:,} columns, {pkg.X.shape[0]:,} targets, {pkg.X.nnz:,} non-zeros")
    print(f"build_package wall time: {seconds:.1f} s (goal < 600 s)")
    print(f"peak RSS of the process: {peak_gib:.2f} GiB (goal < 16 GiB; "
          f"{before / 2**20:.2f} GiB before the build)")
    print(f"package on disk: {size:.2f} GiB")


if __name__ == "__main__":
    main()
