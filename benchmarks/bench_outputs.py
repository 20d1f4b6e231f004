"""The outputs stage at the size the production run produces, on 1 and 2 Dask workers.

Run: .venv/bin/python benchmarks/bench_outputs.py [--work DIR] [--kept 4793974]
     [--configs "in-process, gzip-1" ...]
(prints a table and writes it to results/outputs.txt; ~30 min on the 2-core box).

The package is the real production package (12,000 base households x 430 clones, every
target of the DB; built under --work if missing, as bench_package.py does). The weights
are synthetic, at the production fit's size: `--kept` columns (4,793,974 of 5,160,000 is
what the production local fit kept) with the package's initial weights times a lognormal
jitter, so the published files hold as many households as the real run's. The benchmark
times the output side; it does not judge a fit.

Each configuration runs in its own subprocess; `process_tree.Timeline` adds up the resident
memory of that process and every child (the Dask workers) every 0.2 s, so "peak GiB" is
the whole process tree's, not only the parent's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from process_tree import Timeline

RESULTS = Path(__file__).parent / "results" / "outputs.txt"
COMPRESSION = {  # what h5py's create_dataset gets for each published dataset
    "gzip-1": {"chunks": True, "compression": "gzip", "compression_opts": 1, "shuffle": True},
    "lzf": {"chunks": True, "compression": "lzf", "shuffle": True},
    "none": {"chunks": True},
}
CONFIGS = (  # name, Dask setting, workers, compression
    ("in-process, gzip-1", "inprocess", 0, "gzip-1"),
    ("in-process, lzf", "inprocess", 0, "lzf"),
    ("in-process, uncompressed", "inprocess", 0, "none"),
    ("Dask, 1 worker, gzip-1", "local", 1, "gzip-1"),
    ("Dask, 2 workers, gzip-1", "local", 2, "gzip-1"),
)


def ensure_package(work: Path) -> None:
    """The production package under `work` (bench_package.py's build)."""
    if not (work / "calibration_package" / "metadata.json").exists():
        subprocess.run([sys.executable, str(Path(__file__).parent / "bench_package.py"),
                        "--work", str(work)], check=True)


def phase_child(work: Path, dask: str, workers: int, compression: str, kept: int) -> None:
    """One configuration, phase by phase; prints a JSON line per phase."""
    from pipeline.core.fit_table import LOCAL
    from pipeline.core.parallel import make_runner
    from pipeline.microdata import h5, read_h5
    from pipeline.package.store import load_package
    from pipeline.publish.stacking import stack_h5s
    from pipeline.validate.consistency import xw_consistency
    from pipeline.validate.published import seed_cache
    from pipeline.validate.totals import FitTargets, validate_h5s, walk_published

    h5.DATASET_OPTIONS = COMPRESSION[compression]
    runner = make_runner(dask, workers)
    pkg = load_package(work / "calibration_package", matrix=False)
    rng = np.random.default_rng(2026)
    weights = np.zeros(pkg.n_records * pkg.n_clones)
    keep = rng.choice(len(weights), size=kept, replace=False)
    weights[keep] = pkg.initial_weights[keep] * rng.lognormal(0.0, 0.3, kept)
    out = work / "stacked"
    shutil.rmtree(out, ignore_errors=True)

    def report(name: str, started: float, **extra: object) -> None:
        print(json.dumps({"phase": name, "seconds": time.perf_counter() - started, **extra}),
              flush=True)

    started = time.perf_counter()
    result = stack_h5s(pkg, weights, out, runner=runner)
    size = sum((out / rel).stat().st_size for rel in result.manifest["files"])
    report("stack", started, households=result.n_households, files=len(result.manifest["files"]),
           gib=size / 2**30)
    started = time.perf_counter()
    views = [FitTargets.of(LOCAL, pkg.targets, pkg.targets["holdout"].to_numpy() == 0)]
    published = walk_published(out, views, lambda: seed_cache(read_h5(pkg.base_h5)), runner)
    report("walk (sanity + totals)", started,
           fail=int((published.walk.sanity["status"] == "FAIL").sum()))
    started = time.perf_counter()
    full = load_package(work / "calibration_package")
    selected = full.targets["holdout"].to_numpy() == 0
    check = xw_consistency(full, weights, validate_h5s(published, views),
                           selected)
    report("X·w check", started, max_rel_deviation=check.max_rel_deviation)
    if hasattr(runner, "close"):
        runner.close()


def run_config(work: Path, name: str, dask: str, workers: int, compression: str,
               kept: int) -> list[dict]:
    cmd = [sys.executable, __file__, "--child", dask, str(workers), compression,
           "--work", str(work), "--kept", str(kept)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    timeline = Timeline(proc.pid)
    rows, since = [], time.time()
    for line in proc.stdout:
        if line.startswith("{"):
            row = json.loads(line)
            row.update(config=name, peak_gib=timeline.peak(since) / 2**30)
            since = time.time()
            rows.append(row)
            print(row, flush=True)
    timeline.stop()
    if proc.wait() != 0:
        raise SystemExit(f"{name} failed")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default="/tmp/calibration-bench")
    parser.add_argument("--kept", type=int, default=4_793_974)
    parser.add_argument("--child", nargs=3)
    parser.add_argument("--configs", nargs="+", metavar="NAME",
                        help="only these configurations (their names, as in CONFIGS)")
    args = parser.parse_args()
    work = Path(args.work)
    if args.child:
        dask, workers, compression = args.child
        phase_child(work, dask, int(workers), compression, args.kept)
        return
    ensure_package(work)
    load = os.getloadavg()[0]
    configs = [c for c in CONFIGS if not args.configs or c[0] in args.configs]
    if not configs:
        raise SystemExit(f"--configs: none of {args.configs} is one of {[c[0] for c in CONFIGS]}")
    rows = [r for config in configs for r in run_config(work, *config, args.kept)]
    lines = [f"# bench_outputs.py, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, "
             f"load average {load:.2f} at start",
             f"production package: 12,000 households x 430 clones; {args.kept:,} columns kept "
             "(the production local fit's count)",
             f"{'configuration':<26} {'phase':<24} {'seconds':>8} {'peak GiB':>9}  notes"]
    for r in rows:
        notes = {k: v for k, v in r.items()
                 if k not in ("config", "phase", "seconds", "peak_gib")}
        lines.append(f"{r['config']:<26} {r['phase']:<24} {r['seconds']:>8.1f} "
                     f"{r['peak_gib']:>9.2f}  {notes}")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
