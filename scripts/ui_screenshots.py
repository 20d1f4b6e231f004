"""The operator's day in the Dagster UI, photographed with headless Chromium (docs/ui/).

Run: .venv/bin/python scripts/ui_screenshots.py [--out docs/ui] [--port 3190] [--keep DIR]

Needs Chromium (Debian: `apt-get install chromium`); nothing else beyond the project's
venv (the browser is driven over the DevTools protocol with `websockets`, which Dagster's
webserver already installs). About 15 minutes on 2 cores. In a fresh temporary directory
(a ci storage root, a Dagster instance with the project's dagster.yaml, a copy of the
shipped target config) it walks the config-change loop as an operator meets it:

1. `python -m assets.run --profile ci` promotes the first release;
2. the target config leaves out the district age targets;
3. `dagster dev` starts; its `target_config_changed` sensor launches `refit`, which gate 2
   refuses: 01-refused-run.png (the run's failure message), 02-gate2-refusal.png (the
   check's verdict, each rule over its limit marked OVER), 03-gate2-rules.png (its rules
   table: value and limit per rule);
4. the refit's launchpad with the waiver filled in (04-launchpad-waiver.png), launched
   from the launchpad's button;
5. 05-accepted-run.png (the run, promoted), 06-release-waiver.png (promoted_release's
   metadata, the waiver first), 07-gate2-waived.png (the check, passed with the waiver),
   08-gate2-waived-rules.png (the rule WAIVED), 09-fit-plots.png (calibration_weights:
   objective curve and frontier drawn in place), 10-lineage.png (the asset graph, every
   asset drawn).

The tests do not need Chromium: they walk the same loop through Dagster's API
(tests/test_e2e_dagster.py::test_a_refused_config_change_is_accepted_on_record_and_promoted).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EXCLUDE_DISTRICT_AGE = "  - {variable: person_count, geo_level: district, domain_variable: age}\n"
WAIVER = """resources:
  waiver:
    config:
      rules: [simulation_quality.heldout_regression]
      reason: district age targets left out of the local fit on purpose
      operator: Ada Lovelace
"""


class Browser:
    """Headless Chromium driven over the DevTools protocol: navigate, run JavaScript,
    capture PNGs."""

    def __init__(self, width: int = 1600, height: int = 1000):
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.time() > deadline:
                raise SystemExit(f"{CHROMIUM} did not start")
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
        page = next(p for p in pages if p["type"] == "page")
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(page["webSocketDebuggerUrl"],
                                                   max_size=2**28))
        self.ids = itertools.count(1)
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params) -> dict:
        call = next(self.ids)
        self.ws.send(json.dumps({"id": call, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        return result.get("result", {}).get("value")

    def goto(self, url: str, text: str, timeout: float = 90) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for(text, timeout)
        time.sleep(3)  # let the page finish drawing
        self.click("Skip")  # Dagster's first-visit newsletter dialog, where it appears

    def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while not self.js(f"!!document.body && document.body.innerText.includes("
                          f"{json.dumps(text)})"):
            if time.time() > deadline:
                raise TimeoutError(f"{text!r} never appeared")
            time.sleep(0.5)

    def click(self, text: str) -> bool:
        """Click the innermost element whose text is exactly `text`."""
        return bool(self.js(f"""(() => {{
            const hits = [...document.querySelectorAll('button, a, span, div')]
              .filter(e => e.innerText && e.innerText.trim() === {json.dumps(text)});
            if (!hits.length) return false;
            hits[hits.length - 1].click(); return true; }})()"""))

    def scroll_to(self, text: str) -> None:
        self.js(f"""(() => {{ const hits = [...document.querySelectorAll('td, div, span')]
            .filter(e => e.innerText && e.innerText.trim() === {json.dumps(text)});
            if (hits.length) hits[hits.length - 1].scrollIntoView({{block: 'start'}}); }})()""")
        time.sleep(1)

    def show_markdown(self, key: str) -> None:
        """Open the "[Show Markdown]" dialog of the metadata entry `key` (a Markdown entry
        over Dagster's 1,000-character inline limit, e.g. a gate's rules table)."""
        opened = self.js(f"""(() => {{
            const rows = [...document.querySelectorAll('tr')].filter(
              r => r.cells.length && r.cells[0].innerText.trim() === {json.dumps(key)});
            if (!rows.length) return false;
            const links = [...rows[rows.length - 1].querySelectorAll('a, button, span, div')]
              .filter(e => e.innerText && e.innerText.trim() === '[Show Markdown]');
            if (!links.length) return false;
            links[links.length - 1].click(); return true; }})()""")
        if not opened:
            raise RuntimeError(f"no [Show Markdown] for metadata entry {key!r}")
        time.sleep(2)

    def shot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        print(f"wrote {path}")

    def close(self) -> None:
        self.stack.close()
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                     json.dumps({"query": query}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def refit_runs(port: int) -> list[dict]:
    data = graphql(port, '{ runsOrError(filter: {pipelineName: "refit"}) { ... on Runs { '
                         "results { runId status tags { key value } } } } }")
    return data["runsOrError"]["results"]


def wait_for_run(port: int, done: set[str], timeout: float = 900) -> dict:
    """The first refit run not in `done` once it has finished."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for run in refit_runs(port):
            if run["runId"] not in done and run["status"] in ("SUCCESS", "FAILURE",
                                                               "CANCELED"):
                return run
        time.sleep(5)
    raise TimeoutError("no refit run finished")


def start_dagster(home: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`dagster dev` as `make ui` starts it: from inside DAGSTER_HOME, SIGINT at its default
    (a non-interactive shell would have it ignored), in its own process group."""
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", str(ROOT / "workspace.yaml"),
         "-p", str(port)], cwd=home, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                return server
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit(f"dagster dev did not come up; see {log}") from None
            time.sleep(2)


def stop(server: subprocess.Popen) -> None:
    """Stop `dagster dev` and everything it started (its process group): SIGINT, then
    SIGTERM, then SIGKILL for what is left."""
    for sig, grace in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(timeout=grace or None)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(grace / 4)  # its webserver and daemon follow it out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "ui"), help="PNG directory")
    parser.add_argument("--port", type=int, default=3190)
    parser.add_argument("--keep", help="work here (kept afterwards) instead of a temp dir")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.keep or tempfile.mkdtemp(prefix="ui-screenshots-"))
    home, config = work / "dagster_home", work / "targets.yaml"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    shutil.copy(ROOT / "pipeline" / "config" / "targets.yaml", config)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CALIBRATION_")},
           "DAGSTER_HOME": str(home), "CALIBRATION_STORAGE_ROOT": str(work / "storage"),
           "CALIBRATION_PROFILE": "ci", "CALIBRATION_TARGET_CONFIG": str(config),
           "CALIBRATION_DEVICE": "cpu"}
    subprocess.run([sys.executable, "-m", "assets.run", "--profile", "ci"], cwd=ROOT,
                   env=env, check=True)
    config.write_text(config.read_text().replace("exclude:\n",
                                                  "exclude:\n" + EXCLUDE_DISTRICT_AGE, 1))
    base = f"http://127.0.0.1:{args.port}"
    server = start_dagster(home, args.port, env, work / "dagster_dev.log")
    browser = Browser()
    try:
        refused = wait_for_run(args.port, set())  # the sensor's refit
        assert refused["status"] == "FAILURE", refused
        browser.goto(f"{base}/runs/{refused['runId']}", "RUN_FAILURE")
        browser.shot(out / "01-refused-run.png")
        browser.goto(f"{base}/assets/validation_results?view=checks", "simulation_quality")
        browser.shot(out / "02-gate2-refusal.png")
        browser.show_markdown("rules")
        browser.shot(out / "03-gate2-rules.png")

        browser.goto(f"{base}/locations/assets.definitions/jobs/refit/playground",
                     "Launch Run")
        browser.js(f"document.querySelector('.CodeMirror').CodeMirror.setValue("
                   f"{json.dumps(WAIVER)})")
        time.sleep(3)
        browser.shot(out / "04-launchpad-waiver.png")
        browser.click("Launch Run")
        accepted = wait_for_run(args.port, {refused["runId"]})
        assert accepted["status"] == "SUCCESS", accepted
        browser.goto(f"{base}/runs/{accepted['runId']}", "RUN_SUCCESS")
        browser.shot(out / "05-accepted-run.png")
        browser.goto(f"{base}/assets/promoted_release", "waivers")
        browser.scroll_to("Metadata")
        browser.shot(out / "06-release-waiver.png")
        browser.goto(f"{base}/assets/validation_results?view=checks", "passed with a waiver")
        browser.shot(out / "07-gate2-waived.png")
        browser.show_markdown("rules")
        browser.shot(out / "08-gate2-waived-rules.png")
        browser.goto(f"{base}/assets/calibration_weights", "objective_by_epoch")
        browser.scroll_to("Metadata")
        browser.shot(out / "09-fit-plots.png")
        browser.goto(f"{base}/asset-groups", "promoted_release")
        browser.shot(out / "10-lineage.png")
    finally:
        browser.close()
        stop(server)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
