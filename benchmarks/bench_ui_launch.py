"""A run launched from the UI against the same job run through `python -m assets.run`.

Run: .venv/bin/python benchmarks/bench_ui_launch.py [--profile demo] [--job refit]
(after one `make run` has built the storage root; prints a table and writes
results/ui_launch.txt). Goal: the UI-launched run takes no more than 1.2x the CLI run.

The UI path is what a user clicks: `dagster dev` (webserver and daemon) serves this project,
the job is submitted through its GraphQL API (what the launchpad's button sends), and the
clock runs from the submission until the run is finished, so the run worker's start and
code load are counted. The CLI path is timed from process start to exit. Both use the
project's instance and storage root; the CLI run goes first so both find the same state.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "ui_launch.txt"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, log: Path) -> None:
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.time() > deadline:
                raise SystemExit(f"dagster dev did not come up; see {log}") from None
            time.sleep(2)


def cli_run(profile: str, job: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "assets.run", "--profile", profile, "--job", job],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def ui_run(job: str, env: dict[str, str]) -> float:
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    port = _free_port()
    log = Path(tempfile.mkdtemp()) / "dagster_dev.log"
    # Started with SIGINT at its default, so it can be stopped (a non-interactive shell
    # would have it ignored); stopped by its process group.
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        _wait_for(f"http://127.0.0.1:{port}/server_info", log)
        deadline = time.time() + 180
        while True:  # the code location may still be loading behind the webserver
            started = time.perf_counter()
            try:
                run_id = client.submit_job_execution(job)
                break
            except DagsterGraphQLClientError:
                if time.time() > deadline:
                    raise
                time.sleep(2)
        while (status := client.get_run_status(run_id).value) not in (
                "SUCCESS", "FAILURE", "CANCELED"):
            time.sleep(1)
        elapsed = time.perf_counter() - started
        if status != "SUCCESS":
            raise SystemExit(f"UI run {run_id} ended {status}; see {log}")
        return elapsed
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--job", default="refit")
    args = parser.parse_args()
    env = {**os.environ, "CALIBRATION_PROFILE": args.profile,
           "DAGSTER_HOME": os.environ.get("DAGSTER_HOME", str(ROOT / ".dagster_home")),
           "CALIBRATION_STORAGE_ROOT": os.environ.get("CALIBRATION_STORAGE_ROOT",
                                                      str(ROOT / "storage"))}
    load = os.getloadavg()[0]
    cli = cli_run(args.profile, args.job, env)
    ui = ui_run(args.job, env)
    text = (f"# bench_ui_launch.py, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, "
            f"load average {load:.2f} at start\n"
            f"job {args.job}, profile {args.profile}\n"
            f"python -m assets.run      {cli:7.1f} s\n"
            f"launched from the UI       {ui:7.1f} s   ratio {ui / cli:.2f} (goal <= 1.20)\n")
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
