"""Load published files in policyengine-us and compare its totals with our engine's.

For every state file and the national file of the last stacking (`make run` promotes
exactly those), the
weighted households, persons, AGI, federal income tax, EITC, SNAP and SNAP households as
policyengine-us's `Microsimulation` computes them (offline: HF_HUB_OFFLINE=1, dataset=
the file), next to the same totals from our validation's engine and aggregation
(`pipeline.validate`). Needs the `policyengine` extra (`make interop` installs it in its
own venv). Writes a CSV of every file and a Markdown summary; docs/policyengine.md explains
the differences.

    .venv-policyengine/bin/python scripts/policyengine_interop.py --storage storage

policyengine-us needs far more memory per household than our engine: a file is loaded in
a child process whose resident memory is watched, and one that passes `--max-rss-gb` is
stopped and reported as such (with the peak and the time it ran) instead of swapping the
machine to a halt.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

METRICS = ("households", "persons", "adjusted_gross_income", "income_tax", "eitc", "snap",
           "snap_households")
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "policyengine_interop"


_TAX_CACHES: dict = {}  # period -> TaxCache: every file's units are the base sample's


def ours(path: Path) -> dict[str, float]:
    """Our engine on the file, summed by validation's own aggregation."""
    from pipeline.engine import simulate
    from pipeline.engine.tax_cache import TaxCache
    from pipeline.microdata import read_h5
    from pipeline.validate.aggregate import EntityTables

    md = read_h5(path)
    cache = _TAX_CACHES.setdefault(md.period, TaxCache(md.period))
    tables = EntityTables(md, simulate(md, cache.taxes(md.tax_unit)))
    totals = {"households": tables.total("household_count", "[]"),
              "persons": tables.total("person_count", "[]"),
              "snap_households": tables.total("household_count", '[["snap", ">", 0]]')}
    for variable in ("adjusted_gross_income", "income_tax", "eitc", "snap"):
        totals[variable] = tables.total(variable, "[]")
    return totals


def theirs(paths: list[Path], period: int) -> list[dict[str, float]]:
    """policyengine-us's totals for each file (one tax-benefit system for all of them)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from policyengine_us import Microsimulation

    rows = []
    for path in paths:
        started = time.perf_counter()
        sim = Microsimulation(dataset=str(path))
        snap = sim.calculate("snap", period)
        rows.append({
            "households": float(sim.calculate("household_weight", period).values.sum()),
            "persons": float(sim.calculate("person_weight", period).values.sum()),
            "adjusted_gross_income": float(sim.calculate("adjusted_gross_income", period).sum()),
            "income_tax": float(sim.calculate("income_tax", period).sum()),
            "eitc": float(sim.calculate("eitc", period).sum()),
            "snap": float(snap.sum()),
            "snap_households": float((snap.values > 0)
                                     @ sim.calculate("spm_unit_weight", period).values),
            "seconds": time.perf_counter() - started,
        })
        print(f"policyengine-us: {path.name} in {rows[-1]['seconds']:.0f}s", flush=True)
        del sim
    return rows


def _child(paths: list[str], period: int, out: str) -> int:
    Path(out).write_text(json.dumps(theirs([Path(p) for p in paths], period)))
    return 0


class Watched:
    """`theirs` in a child process, stopped when its resident memory passes the cap; our
    side can be computed meanwhile."""

    def __init__(self, paths: list[Path], period: int, max_rss_gb: float, work: Path):
        self.out = work / f"pe-{os.getpid()}-{len(paths)}-{paths[0].stem}.json"
        self.child = subprocess.Popen([sys.executable, __file__, "--child", str(self.out),
                                       str(period), *map(str, paths)])
        self.max_rss_gb, self.peak, self.started = max_rss_gb, 0.0, time.monotonic()
        self.stopped = False
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def _watch(self) -> None:
        while self.child.poll() is None:
            self.peak = max(self.peak, _rss_gb(self.child.pid))
            if self.peak > self.max_rss_gb:
                self.stopped = True
                self.child.kill()
            time.sleep(1.0)

    def result(self) -> tuple[list[dict[str, float]] | None, dict[str, float]]:
        self.child.wait()
        self.watcher.join()
        stats = {"peak_rss_gb": self.peak, "seconds": time.monotonic() - self.started}
        if self.stopped:
            return None, stats
        if self.child.returncode != 0:
            raise RuntimeError(f"policyengine-us failed (exit {self.child.returncode})")
        return json.loads(self.out.read_text()), stats


def _rss_gb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def compare(stacked: Path, max_rss_gb: float, only: list[str] | None) -> pd.DataFrame:
    manifest = json.loads((stacked / "manifest.json").read_text())
    period = int(manifest["period"])
    files = [rel for rel in manifest["files"] if rel.startswith("states/")]
    files = [f for f in files if only is None or f in only]
    rows = []
    if files:
        watched = Watched([stacked / f for f in files], period, max_rss_gb, stacked.parent)
        our = {rel: ours(stacked / rel) for rel in files}  # while policyengine-us runs
        states, stats = watched.result()
        if states is None:
            raise RuntimeError(f"the state files passed {max_rss_gb} GB together: {stats}")
        for rel, pe in zip(files, states, strict=True):
            rows.append(_row(rel, our[rel], pe, manifest["files"][rel]))
    if only is None or "national.h5" in only:
        watched = Watched([stacked / "national.h5"], period, max_rss_gb, stacked.parent)
        our_national = ours(stacked / "national.h5")
        national, stats = watched.result()
        pe = national[0] if national else {"seconds": stats["seconds"]}
        rows.append(_row("national.h5", our_national, pe, manifest["files"]["national.h5"],
                         stats["peak_rss_gb"]))
        if national is None:
            print(f"policyengine-us stopped on national.h5 at {stats['peak_rss_gb']:.1f} GB "
                  f"resident after {stats['seconds']:.0f}s", flush=True)
    return pd.DataFrame(rows)


def _row(rel: str, our: dict[str, float], pe: dict[str, float], entry: dict,
         peak_rss_gb: float | None = None) -> dict:
    row = {"file": rel, "households_in_file": entry["households"],
           "pe_seconds": round(pe.get("seconds", float("nan")), 1)}
    if peak_rss_gb is not None:
        row["pe_peak_rss_gb"] = round(peak_rss_gb, 2)
    for m in METRICS:
        row[f"ours_{m}"] = our[m]
        row[f"pe_{m}"] = pe.get(m, float("nan"))
    return row


def summary(df: pd.DataFrame) -> str:
    """The sum of the state files and the national file: ours, policyengine-us's, the gap."""
    states = df[df["file"].str.startswith("states/")]
    lines = ["| metric | files | ours | policyengine-us | PE / ours − 1 |", "|---|---|---|---|---|"]
    for label, part in ((f"sum of {len(states)} state files", states),
                        ("national.h5", df[df["file"] == "national.h5"])):
        if part.empty:
            continue
        for m in METRICS:
            a, b = part[f"ours_{m}"].sum(), part[f"pe_{m}"].sum(min_count=1)
            gap = f"{b / a - 1:+.1%}" if a and pd.notna(b) else "n/a"
            lines.append(f"| {m} | {label} | {_big(a)} | {_big(b)} | {gap} |")
    over = []
    for m in METRICS:
        gap = states[f"pe_{m}"] / states[f"ours_{m}"] - 1
        big = states.loc[gap.abs() > 0.05, "file"].str[7:-3].tolist()
        over.append(f"- {m}: {len(big)} of {len(states)} states differ by more than 5%"
                    + (f" ({', '.join(big[:12])}{', ...' if len(big) > 12 else ''})"
                       if big else ""))
    return "\n".join(lines) + "\n\n" + "\n".join(over) + "\n"


def _big(v: float) -> str:
    if pd.isna(v):
        return "n/a"
    return f"{v / 1e9:,.2f}B" if abs(v) >= 1e9 else f"{v / 1e6:,.3f}M"


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        out, period, *paths = sys.argv[2:]
        return _child(paths, int(period), out)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", default=os.environ.get("CALIBRATION_STORAGE_ROOT",
                                                            "storage"))
    parser.add_argument("--stacked", help="a stacked directory (default: "
                        "<storage>/stacked_h5s)")
    parser.add_argument("--files", nargs="*", help="only these (e.g. states/DE.h5)")
    parser.add_argument("--max-rss-gb", type=float, default=12.0,
                        help="stop policyengine-us on a file past this resident memory")
    parser.add_argument("--out", default=str(OUT), help="CSV and Markdown path (no suffix)")
    args = parser.parse_args(argv)
    stacked = Path(args.stacked) if args.stacked else Path(args.storage) / "stacked_h5s"
    df = compare(stacked.resolve(), args.max_rss_gb, args.files)
    from importlib.metadata import version

    from pipeline.core.atomic import write_text

    out = Path(args.out)
    write_text(out.with_suffix(".csv"), df.to_csv(index=False, float_format="%.6g"))
    text = (f"# policyengine-us {version('policyengine-us')} against our engine\n\n"
            f"Files: {stacked.name} of the demo profile's run. Regenerate: `make interop`."
            f"\n\n{summary(df)}")
    write_text(out.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
