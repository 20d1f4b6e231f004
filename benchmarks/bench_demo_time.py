"""`make run` (demo) against a baseline checkout's, back to back on the same machine.

Run (on a quiet machine, under `flock -x /work/locks/cpu` on the shared box):

    .venv/bin/python benchmarks/bench_demo_time.py --baseline /path/to/baseline/checkout \
        [--work /tmp/demo-time] [--profile demo]

Each checkout runs `python -m assets.run --profile demo` with its own venv in a fresh storage
root and Dagster instance under --work, one after the other; the baseline is the anchor, so
the ratio is what the goal judges (this checkout's wall time <= 1.5x the baseline's). Every
step's wall time comes from Dagster's own step durations; CPU seconds and the peak resident
memory cover the whole process tree (Dask workers included).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
from bench_production import step_windows
from process_tree import Timeline

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "demo_time.txt"
GOAL = 1.5


def run(checkout: Path, work: Path, profile: str) -> dict:
    """One run in a fresh storage root: wall seconds, peak RSS, step durations."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "dagster_home").mkdir(parents=True)
    shutil.copy(checkout / "dagster.yaml", work / "dagster_home" / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(work / "dagster_home"),
           "CALIBRATION_STORAGE_ROOT": str(work / "storage"), "CALIBRATION_PROFILE": profile}
    started = time.time()
    proc = subprocess.Popen([str(checkout / ".venv" / "bin" / "python"), "-m", "assets.run",
                             "--profile", profile], cwd=checkout, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timeline = Timeline(proc.pid, period=0.5)
    code = proc.wait()
    wall = time.time() - started
    timeline.stop()
    return {"code": code, "wall": wall, "peak": timeline.peak() / 2**30,
            "steps": {s: end - start for s, start, end in step_windows(work / "dagster_home")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True,
                        help="a checkout of the baseline with its own .venv (make setup)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/demo-time"))
    parser.add_argument("--profile", default="demo")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    cpu = [os.times()]  # children's CPU seconds accrue as each run is waited for
    base = run(args.baseline.resolve(), args.work / "baseline", args.profile)
    cpu.append(os.times())
    ours = run(ROOT, args.work / "this", args.profile)
    cpu.append(os.times())
    spent = [b.children_user + b.children_system - a.children_user - a.children_system
             for a, b in zip(cpu[:-1], cpu[1:], strict=True)]
    base["cpu"], ours["cpu"] = spent
    steps = sorted(set(base["steps"]) | set(ours["steps"]),
                   key=lambda s: (s not in base["steps"], s))
    lines = [f"# bench_demo_time.py, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
             f"{psutil.virtual_memory().total / 2**30:.0f} GiB, load average {load:.2f} at "
             f"start; baseline {args.baseline} ({args.profile} profile), then this checkout",
             f"{'step':<56} {'baseline s':>11} {'this s':>9}"]
    lines += [f"{s:<56} {base['steps'].get(s, float('nan')):>11.1f} "
              f"{ours['steps'].get(s, float('nan')):>9.1f}" for s in steps]
    for name, key, unit in (("wall", "wall", "s"), ("CPU (process tree)", "cpu", "s"),
                            ("peak RSS (process tree)", "peak", "GiB")):
        lines.append(f"{'whole run: ' + name:<56} {base[key]:>11.1f} {ours[key]:>9.1f} {unit}")
    ratio = ours["wall"] / base["wall"]
    lines.append(f"exit codes: baseline {base['code']}, this {ours['code']}; wall ratio "
                 f"{ratio:.2f}x (goal <= {GOAL}x): {'met' if ratio <= GOAL else 'NOT met'}; "
                 f"CPU ratio {ours['cpu'] / base['cpu']:.2f}x")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
