"""The production profile end to end, as `make run PROFILE=production` runs it.

Run: .venv/bin/python benchmarks/bench_production.py [--work DIR] [--dask local]
[--engine builtin|policyengine] (default: the profile's, policyengine) [--engine-cache DIR]
[--out FILE]
(~20 min on the 2-core, 24 GB box; run it on a quiet machine; prints a table and writes
results/production.txt, or --out FILE). Goals: the run finishes and promotes; peak resident memory
<= 8 GB; wall time <= 20 min.

`python -m assets.run --profile production` runs in a fresh storage root and Dagster
instance under --work. A sampler adds up the resident memory of that process and all its
children (the Dask workers) every 0.5 s; each stage's peak is the largest sum seen while its
step ran, and its wall time is Dagster's own step duration.

--engine-cache copies a directory of per-state engine values (a `bench_engine.py build
--profile production` work directory's cache) into the run's storage before it starts: the
policyengine-us package build then reads its states instead of computing them for half an
hour (timed cold on its own in results/engine_production.txt); entries for other inputs are
never read (the cache checks its key), so a wrong directory only makes the build cold.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
from process_tree import Timeline

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "production.txt"


def step_windows(home: Path) -> list[tuple[str, float, float]]:
    """(step, start, end) of the newest run in the instance at `home`."""
    from dagster import DagsterEventType, DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_runs(limit=1)[0]
        starts: dict[str, float] = {}
        windows = []
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type == DagsterEventType.STEP_START:
                starts[event.step_key] = record.timestamp
            elif event.event_type in (DagsterEventType.STEP_SUCCESS,
                                      DagsterEventType.STEP_FAILURE):
                windows.append((event.step_key, starts[event.step_key], record.timestamp))
    return windows


def end_message(output: list[str]) -> list[str]:
    """The run's closing message, whole: the promoted release, or why nothing was."""
    own = [line.rstrip() for line in output if not line.startswith("\t")]  # not time -v's
    starts = [i for i, line in enumerate(own)
              if line.startswith("Promoted release") or line.endswith("promoted nothing.")]
    return own[starts[-1]:] if starts else own[-14:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default="/tmp/calibration-production")
    parser.add_argument("--dask", default="local")
    parser.add_argument("--engine", choices=["builtin", "policyengine"])
    parser.add_argument("--engine-cache", type=Path,
                        help="per-state engine values to start from (see the docstring)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    (work / "dagster_home").mkdir(parents=True)
    if args.engine_cache:
        shutil.copytree(args.engine_cache, work / "storage" / "engine_cache")
    env = {**os.environ, "DAGSTER_HOME": str(work / "dagster_home"),
           "CALIBRATION_STORAGE_ROOT": str(work / "storage"), "CALIBRATION_DASK": args.dask}
    load = os.getloadavg()[0]
    started = time.time()
    proc = subprocess.Popen(["/usr/bin/time", "-v", sys.executable, "-m", "assets.run",
                             "--profile", "production",
                             *(["--engine", args.engine] if args.engine else [])],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    timeline = Timeline(proc.pid, period=0.5)
    tail = [line for line in proc.stdout if "DEBUG" not in line]
    code = proc.wait()
    elapsed = time.time() - started
    timeline.stop()
    rows = [(step, end - start, timeline.peak(start, end) / 2**30)
            for step, start, end in step_windows(work / "dagster_home")]
    lines = [f"# bench_production.py, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, "
             f"{psutil.virtual_memory().total / 2**30:.0f} GiB, load average {load:.2f} at "
             f"start; CALIBRATION_DASK={args.dask}; engine {args.engine or 'of the profile'}"
             + (f"; engine cache from {args.engine_cache}" if args.engine_cache else ""),
             f"{'stage':<44} {'seconds':>9} {'peak GiB':>9}"]
    lines += [f"{step:<44} {sec:>9.1f} {gib:>9.2f}" for step, sec, gib in rows]
    lines.append(f"{'whole run (exit ' + str(code) + ')':<44} {elapsed:>9.1f} "
                 f"{timeline.peak() / 2**30:>9.2f}")
    largest = next((int(line.split(":")[1]) for line in tail
                    if "Maximum resident set size" in line), 0)
    lines.append(f"/usr/bin/time -v: largest single process {largest / 2**20:.2f} GiB "
                 "(the table's peaks add up every process of the tree)")
    lines.append("goals: finishes and promotes; peak <= 8 GB (7.45 GiB); wall <= 20 min")
    lines += ["", "run summary:", *end_message(tail)]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
