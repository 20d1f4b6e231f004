"""The package build and the X·w check under an engine, on 1 and 2 Dask workers in one run.

    .venv/bin/python benchmarks/bench_engine.py build --profile ci [--engine policyengine]
        [--workers 1 2] [--work DIR] [--states AB ... --clones N] [--out results/engine.txt]
    .venv/bin/python benchmarks/bench_engine.py xw --root STORAGE [--workers 1 2]
    .venv/bin/python benchmarks/bench_engine.py blocks --root STORAGE [--file states/CA.h5]
        [--parts 128 64 32 16] [--dask-malloc]

`build`: the profile's base sample and target DB are made once under --work (not timed);
then, for each worker count, the package is built twice in a fresh process: cold (an empty
per-state cache) and warm (the cache the cold build filled: a rebuild with another clone
count, or a refit's, finds every state there). `--states` builds only those states
(`geography.states`; `--clones` at most their districts), for a per-state cost at
production size on a busy machine.
`xw`: the X·w check of a promoted storage root as the gate runs it (every published file
loaded in the release's engine, no walk cache), then the check of each fit.
`blocks`: one simulation of a published file's first slice, as the walk simulates it, for
slices of 1/128 to 1/16 of the file (California's 1/16 is the walk's ~25,000-household
block), each in a fresh process after one small simulation that warms it: seconds, peak
memory, and the fixed and per-household costs fitted through them (what decides how few
and how large the walk's simulations should be). `--dask-malloc` times each slice again
with the `MALLOC_TRIM_THRESHOLD_` Dask sets in its workers unless `connect` removes it.

Each measurement is a child process under `/usr/bin/time -v` (its own peak RSS, the largest
single process) while a sampler adds up the resident memory of the child and all its
descendants (the Dask workers) every 0.5 s: "tree GiB" is the peak of that sum.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from process_tree import Timeline

from pipeline.core.parallel import MALLOC_TRIM

HERE = Path(__file__).resolve().parent
DASK_MALLOC_TRIM = 65536  # what Dask's nanny sets in its workers (distributed.yaml)
RESULTS = HERE / "results"


def _measured(args: list[str], env: dict | None = None) -> dict:
    """Run this script in a child under /usr/bin/time -v: wall, peak tree RSS, max RSS."""
    started = time.time()
    proc = subprocess.Popen(["/usr/bin/time", "-v", sys.executable, __file__, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    timeline = Timeline(proc.pid, period=0.5)
    out, err = proc.communicate()
    timeline.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{err[-3000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    return {"seconds": time.time() - started, "tree_gib": timeline.peak() / 2**30,
            "max_rss_gib": int(rss.group(1)) / 2**20 if rss else float("nan"),
            **json.loads(out.strip().splitlines()[-1])}


def _inputs(profile, work: Path) -> tuple[Path, Path]:
    """The base sample and target database as a run makes them: the source goes through
    its H5 file first, as `stratified_cps` reads it (its weights are float32 there), so the
    base's sha256, and with it the per-state cache, is the one a run of the profile has."""
    from pipeline.microdata import read_h5, write_h5
    from pipeline.source.stratify import stratify
    from pipeline.source.taxcalc_cps import load_source_cps
    from pipeline.targets.etl import build_target_db

    base, db = work / "base.h5", work / "targets.db"
    if not base.exists():
        source = work / "source.h5"
        write_h5(load_source_cps(profile.period), source)
        write_h5(stratify(read_h5(source), profile.sample.households, profile.seed,
                          profile.sample.top_agi_quantile), base)
        source.unlink()
    if not db.exists():
        build_target_db(db, year=profile.period)
    return base, db


def _profile(name: str, engine: str, states: list[str] | None, clones: int | None = None):
    from pipeline.config import Profile, load_profile
    from pipeline.core.settings import parse_settings

    raw = load_profile(name).as_dict()
    raw["engine"] = engine
    if states:
        raw["geography"] = {"states": states}
    if clones:
        raw["package"] = {**raw["package"], "n_clones": clones}
    return parse_settings(Profile, raw, f"profile {name}")


def child_build(args: argparse.Namespace) -> None:
    """One package build; prints its metadata's numbers as the last line (JSON)."""
    from pipeline.core.parallel import make_runner
    from pipeline.package.build import build_package

    profile = _profile(args.profile, args.engine, args.states, args.clones)
    work = Path(args.work)
    runner = make_runner("local", args.workers)
    try:
        pkg = build_package(work / "base.h5", work / "targets.db", work / "package",
                            profile.geography, profile.package, profile.seed, runner,
                            profile_record=profile.as_dict(), engine=profile.engine,
                            cache_dir=args.cache)
    finally:
        runner.close()
    meta = pkg.metadata
    print(json.dumps({"build_seconds": meta["build_seconds"], "columns": pkg.X.shape[1],
                      "targets": pkg.X.shape[0], "state_seconds": meta["state_seconds"]}))


def child_xw(args: argparse.Namespace) -> None:
    """The X·w check of a storage root, with a fresh walk; prints its numbers (JSON)."""
    import numpy as np

    from pipeline.core.fit_table import FITS, published
    from pipeline.core.layout import Layout
    from pipeline.core.parallel import make_runner
    from pipeline.validate.consistency import xw_consistency
    from pipeline.validate.fit_views import load_fits
    from pipeline.validate.totals import validate_h5s, walk_published

    layout = Layout(Path(args.root))
    fits = published(FITS)
    pkg, views = load_fits(layout, fits, matrix=True)
    runner = make_runner("local", args.workers)
    try:
        started = time.perf_counter()
        walked = walk_published(layout.stacked_dir, views, lambda: None, runner)
        walk_seconds = time.perf_counter() - started
    finally:
        runner.close()
    totals = validate_h5s(walked, views)
    out = {"walk_seconds": walk_seconds, "files": len(walked.walk.totals),
           "engine": walked.engine.get("name", "builtin")}
    for fit, view in zip(fits, views, strict=True):
        weights = np.load(layout.weights(fit), allow_pickle=False)
        report = xw_consistency(pkg, weights, totals[totals["fit"] == fit.name],
                                view.selected)
        out[f"{fit.name}_max_rel"] = report.max_rel_deviation
        out[f"{fit.name}_mean_rel"] = report.mean_rel_deviation
    print(json.dumps(out))


def child_blocks(args: argparse.Namespace) -> None:
    """Simulate the file's first 1/`parts` slice in the release's engine; prints seconds."""
    from pipeline.core.layout import Layout
    from pipeline.engine import VARIABLES, load_engine
    from pipeline.microdata import read_h5, split_block, whole_file
    from pipeline.publish.stacking import load_manifest
    from pipeline.validate.published import engine_of

    stacked = Layout(Path(args.root)).stacked_dir
    manifest = load_manifest(stacked)
    engine = load_engine(engine_of(manifest))
    path = stacked / args.file
    whole = whole_file(manifest["files"][args.file]["row_offsets"])
    variables = tuple(sorted(set(VARIABLES) & engine.computes))

    def simulate(parts: int) -> tuple[float, int]:
        block = split_block(path, whole, -(-whole.households[1] // parts))[0]
        md = read_h5(path, block)
        started = time.perf_counter()
        engine.simulate_published(path, block, md, variables)
        return time.perf_counter() - started, len(md.household)

    simulate(1024)  # the import, the tax-benefit system and its parameters: a worker's state
    seconds, households = simulate(args.parts)
    print(json.dumps({"sim_seconds": seconds, "households": households}))


def run_blocks(args: argparse.Namespace) -> str:
    import numpy as np

    lines = [f"# one simulation of the first slice of {args.file} in {args.root}",
             f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start",
             f"{'slice':>7} {'households':>10} {'sim s':>7} {'ms/household':>12} "
             f"{'max RSS GiB':>11}" + (f" {'Dask malloc s':>13} {'ratio':>5} {'max RSS GiB':>11}"
                                       if args.dask_malloc else "")]
    points = []
    for parts in args.parts:
        child = ["child-blocks", "--root", args.root, "--file", args.file,
                 "--parts", str(parts)]
        r = _measured(child)
        points.append((r["households"], r["sim_seconds"]))
        lines.append(f"{'1/' + str(parts):>7} {r['households']:>10,} {r['sim_seconds']:>7.1f} "
                     f"{1000 * r['sim_seconds'] / r['households']:>12.3f} "
                     f"{r['max_rss_gib']:>11.2f}")
        if args.dask_malloc:
            d = _measured(child, env={MALLOC_TRIM: str(DASK_MALLOC_TRIM)})
            lines[-1] += (f" {d['sim_seconds']:>13.1f} {d['sim_seconds'] / r['sim_seconds']:>5.2f}"
                          f" {d['max_rss_gib']:>11.2f}")
        print(lines[-1], flush=True)
    slope, fixed = np.polyfit(*np.array(points).T, 1)
    lines.append(f"least squares: {fixed:.1f} s a simulation + {1000 * slope:.3f} ms a household; "
                 f"load average {os.getloadavg()[0]:.2f} at end")
    return "\n".join(lines) + "\n"


def run_build(args: argparse.Namespace) -> str:
    from pipeline.config import load_profile

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    _inputs(load_profile(args.profile), work)
    lines = [f"# package build, profile {args.profile}, engine {args.engine}"
             + (f", states {' '.join(args.states)}" if args.states else ""),
             f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start",
             f"{'workers':>7} {'cache':>5} {'seconds':>8} {'build s':>8} {'tree GiB':>9} "
             f"{'max RSS GiB':>11}  seconds per state (slowest first)"]
    for workers in args.workers:
        cache = work / f"cache-{workers}"
        shutil.rmtree(cache, ignore_errors=True)
        for label in ("cold", "warm"):
            child = ["child-build", "--profile", args.profile, "--engine", args.engine,
                     "--work", str(work), "--workers", str(workers), "--cache", str(cache),
                     *(["--states", *args.states] if args.states else []),
                     *(["--clones", str(args.clones)] if args.clones else [])]
            r = _measured(child)
            per_state = sorted(r["state_seconds"].items(), key=lambda kv: -kv[1])
            shown = ", ".join(f"{_abbr(k)} {v:.1f}" for k, v in per_state[:8])
            lines.append(f"{workers:>7} {label:>5} {r['seconds']:>8.1f} "
                         f"{r['build_seconds']:>8.1f} {r['tree_gib']:>9.2f} "
                         f"{r['max_rss_gib']:>11.2f}  {shown}"
                         + (f" ... ({len(per_state)} states, sum "
                            f"{sum(v for _, v in per_state):.0f} s)"))
            print(lines[-1], flush=True)
    lines.append(f"load average {os.getloadavg()[0]:.2f} at end; {r['columns']:,} columns, "
                 f"{r['targets']:,} targets")
    return "\n".join(lines) + "\n"


def run_xw(args: argparse.Namespace) -> str:
    lines = [f"# X·w check of {args.root}",
             f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start",
             f"{'workers':>7} {'seconds':>8} {'walk s':>7} {'tree GiB':>9} {'max RSS GiB':>11}"
             "  files, engine, max / mean relative deviation per fit"]
    for workers in args.workers:
        r = _measured(["child-xw", "--root", args.root, "--workers", str(workers)])
        fits = "; ".join(f"{k[:-8]} {r[k]:.2e} / {r[k[:-8] + '_mean_rel']:.2e}"
                         for k in r if k.endswith("_max_rel"))
        lines.append(f"{workers:>7} {r['seconds']:>8.1f} {r['walk_seconds']:>7.1f} "
                     f"{r['tree_gib']:>9.2f} {r['max_rss_gib']:>11.2f}  {r['files']} files, "
                     f"{r['engine']}, {fits}")
        print(lines[-1], flush=True)
    lines.append(f"load average {os.getloadavg()[0]:.2f} at end")
    return "\n".join(lines) + "\n"


def _abbr(fips: str) -> str:
    from pipeline.core.geo import STATE_ABBR

    return STATE_ABBR[int(fips)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("build", "child-build"):
        p = sub.add_parser(name)
        p.add_argument("--profile", default="ci")
        p.add_argument("--engine", default="policyengine")
        p.add_argument("--work", default="/tmp/calibration-bench-engine")
        p.add_argument("--states", nargs="*")
        p.add_argument("--clones", type=int, help="n_clones (at most the states' districts); "
                       "the engine's per-state cost does not depend on it")
        p.add_argument("--out")
        p.add_argument("--cache")
        p.add_argument("--workers", type=int, nargs="+" if name == "build" else None,
                       default=[1, 2] if name == "build" else 1)
    for name in ("xw", "child-xw"):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True)
        p.add_argument("--out")
        p.add_argument("--workers", type=int, nargs="+" if name == "xw" else None,
                       default=[1, 2] if name == "xw" else 1)
    for name in ("blocks", "child-blocks"):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True)
        p.add_argument("--file", default="states/CA.h5")
        p.add_argument("--out")
        p.add_argument("--parts", type=int, nargs="+" if name == "blocks" else None,
                       default=[128, 64, 32, 16] if name == "blocks" else 16)
        p.add_argument("--dask-malloc", action="store_true")
    args = parser.parse_args()
    children = {"child-build": child_build, "child-xw": child_xw,
                "child-blocks": child_blocks}
    if args.mode in children:
        return children[args.mode](args)
    runs = {"build": run_build, "xw": run_xw, "blocks": run_blocks}
    text = runs[args.mode](args)
    if args.out:
        out = Path(args.out)
        with out.open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
