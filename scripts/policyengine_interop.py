"""Load a release's published files in policyengine-us and compare its totals with the
release's own validation.

For every state file, the national file and the district files (all of them up to
`--max-districts`, else the largest and a seeded draw of the rest) of the release
`releases/CURRENT` names, the weighted households, persons, AGI, federal income tax, EITC,
SNAP and SNAP households as policyengine-us's `Microsimulation` computes them (offline:
HF_HUB_OFFLINE=1, dataset= the file, as a user loads it), next to the same totals from the
release's engine through our validation's aggregation (`pipeline.validate`). For a release
built with the `policyengine` engine both sides run policyengine-us, by separate code, and
must agree to float rounding; for a `builtin` release the gaps are the engines'
(docs/policyengine.md explains them). Needs the `policyengine` extra (`make interop`).

    .venv/bin/python scripts/policyengine_interop.py --storage storage

Writes benchmarks/results/policyengine_interop_<profile>_<engine>.{csv,md}: a run of one
profile and engine never overwrites another's committed results.

policyengine-us needs far more memory per household than our engine: files are loaded in a
child process whose resident memory is watched, and one that passes `--max-rss-gb` is
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
RESULTS = ROOT / "benchmarks" / "results"
STACKED_MANIFEST = "stacked_manifest.json"


def ours(path: Path, entry: dict, engine_name: str) -> dict[str, float]:
    """The release's engine on the file, block by block as validation walks it, summed by
    validation's own aggregation."""
    from pipeline.engine import load_engine
    from pipeline.microdata import read_h5
    from pipeline.validate.aggregate import EntityTables
    from pipeline.validate.published import simulation_blocks

    engine = load_engine(engine_name)
    variables = ("adjusted_gross_income", "eitc", "household_count", "income_tax",
                 "person_count", "snap")
    totals = dict.fromkeys(METRICS, 0.0)
    for block, whole in simulation_blocks(path, entry, engine):
        md = read_h5(path, block)
        tables = EntityTables(md, engine.simulate_published(path, None if whole else block, md,
                                                            variables))
        totals["households"] += tables.total("household_count", "[]")
        totals["persons"] += tables.total("person_count", "[]")
        totals["snap_households"] += tables.total("household_count", '[["snap", ">", 0]]')
        for variable in ("adjusted_gross_income", "eitc", "income_tax", "snap"):
            totals[variable] += tables.total(variable, "[]")
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
        result = json.loads(self.out.read_text())
        self.out.unlink()
        return result, stats


def _rss_gb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def choose_files(manifest: dict, max_districts: int) -> list[str]:
    """Every state file, the national file, and the district files (all up to
    `max_districts`, else the largest ten and a seeded draw of the rest)."""
    from pipeline.validate.totals import DistrictSample, sample_districts

    files = manifest["files"]
    states = sorted(rel for rel in files if rel.startswith("states/"))
    districts = sorted(rel for rel in files if rel.startswith("districts/"))
    if len(districts) > max_districts:
        districts = sample_districts(manifest, DistrictSample(size=max_districts - 10))
    return [*states, *districts, *[rel for rel in files if "/" not in rel]]


def compare(release: Path, files: list[str], max_rss_gb: float) -> pd.DataFrame:
    manifest = json.loads((release / STACKED_MANIFEST).read_text())
    period = int(manifest["period"])
    engine = manifest.get("engine", {}).get("name", "builtin")
    rows = []
    for group in (files[:-1], files[-1:]):  # the area files, then the national file alone
        watched = Watched([release / f for f in group], period, max_rss_gb, release.parent)
        try:
            our = {rel: ours(release / rel, manifest["files"][rel], engine)  # meanwhile
                   for rel in group}
        except BaseException:
            watched.child.kill()
            raise
        pe, stats = watched.result()
        if pe is None:
            print(f"policyengine-us stopped at {stats['peak_rss_gb']:.1f} GB resident after "
                  f"{stats['seconds']:.0f}s on {group[0]}...", flush=True)
            pe = [{"seconds": stats["seconds"]}] * len(group)
        for rel, theirs_row in zip(group, pe, strict=True):
            rows.append(_row(rel, our[rel], theirs_row, manifest["files"][rel],
                             stats["peak_rss_gb"]))
    return pd.DataFrame(rows)


def _row(rel: str, our: dict[str, float], pe: dict[str, float], entry: dict,
         peak_rss_gb: float) -> dict:
    row = {"file": rel, "households_in_file": entry["households"],
           "pe_seconds": round(pe.get("seconds", float("nan")), 1),
           "pe_peak_rss_gb": round(peak_rss_gb, 2)}
    for m in METRICS:
        row[f"ours_{m}"] = our[m]
        row[f"pe_{m}"] = pe.get(m, float("nan"))
    return row


def summary(df: pd.DataFrame, engine: str) -> str:
    """Per kind of file: the totals on both sides and the gap; the largest gap per file."""
    lines = ["| metric | files | release's validation | policyengine-us | PE / ours − 1 |",
             "|---|---|---|---|---|"]
    kinds = {"state": df["file"].str.startswith("states/"),
             "district": df["file"].str.startswith("districts/"),
             "national": df["file"] == "national.h5"}
    for kind, mask in kinds.items():
        part = df[mask]
        if part.empty:
            continue
        label = f"sum of {len(part)} {kind} files" if kind != "national" else "national.h5"
        for m in METRICS:
            a, b = part[f"ours_{m}"].sum(), part[f"pe_{m}"].sum(min_count=1)
            gap = f"{b / a - 1:+.2e}" if a and pd.notna(b) else "n/a"
            lines.append(f"| {m} | {label} | {_big(a)} | {_big(b)} | {gap} |")
    gaps = pd.DataFrame({m: (df[f"pe_{m}"] - df[f"ours_{m}"]).abs()
                         / df[f"ours_{m}"].abs().clip(lower=1.0) for m in METRICS})
    worst = gaps.max(axis=1)
    lines += ["", f"Largest relative gap on any metric, per file ({engine} release): "
              f"max {worst.max():.3g}, median {worst.median():.3g}; "
              f"{int((worst > 1e-6).sum())} of {len(df)} files beyond 1e-6."]
    if engine == "builtin":
        for m in METRICS:
            states = df[kinds["state"]]
            gap = (states[f"pe_{m}"] / states[f"ours_{m}"] - 1).abs()
            big = states.loc[gap > 0.05, "file"].str[7:-3].tolist()
            lines.append(f"- {m}: {len(big)} of {len(states)} states differ by more than 5%"
                         + (f" ({', '.join(big[:12])}{', ...' if len(big) > 12 else ''})"
                            if big else ""))
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--release", help="a release directory (default: the one "
                        "<storage>/releases/CURRENT names)")
    parser.add_argument("--max-districts", type=int, default=50,
                        help="load every district file up to this many, else a sample")
    parser.add_argument("--max-rss-gb", type=float, default=12.0,
                        help="stop policyengine-us on files past this resident memory")
    parser.add_argument("--out-dir", default=str(RESULTS), help="where the CSV and Markdown go")
    args = parser.parse_args(argv)
    from pipeline.core.atomic import write_text
    from pipeline.core.errors import InputError
    from pipeline.release.versions import current_release

    release_dir = Path(args.release) if args.release else None
    if release_dir is None:
        current = current_release(args.storage)
        if current is None:
            raise SystemExit(f"no release under {args.storage}: run `make run` first")
        release_dir = current.path
    if not (release_dir / STACKED_MANIFEST).is_file():
        raise InputError(release_dir, STACKED_MANIFEST, "the release has no stacking manifest "
                         "(promoted before issue 18)", "promote a release again (make run)")
    manifest = json.loads((release_dir / "manifest.json").read_text())
    stacked = json.loads((release_dir / STACKED_MANIFEST).read_text())
    engine = stacked.get("engine", {}).get("name", "builtin")
    profile = manifest["profile"]["name"]
    df = compare(release_dir.resolve(), choose_files(stacked, args.max_districts),
                 args.max_rss_gb)
    from importlib.metadata import version

    out = Path(args.out_dir) / f"policyengine_interop_{profile}_{engine}"
    write_text(out.with_suffix(".csv"), df.to_csv(index=False, float_format="%.10g"))
    text = (f"# policyengine-us {version('policyengine-us')} on release {manifest['version']}"
            f"\n\nProfile `{profile}`, engine `{engine}`"
            f" ({stacked.get('engine', {}).get('version', 'taxcalc')}). Regenerate: "
            f"`make interop` after `make run PROFILE={profile}`.\n\n{summary(df, engine)}")
    write_text(out.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
