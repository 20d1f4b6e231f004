"""The calibration distance's strength, chosen on the validation split: held-out twin fits
of the local and national fits at several strengths, on one package.

Run after `make run` (demo) has built the package:

    .venv/bin/python benchmarks/bench_calibration_distance.py \
        [--package storage/calibration_package] [--profile demo] [--strengths 0 1 10 100]

Each fit is the profile's fit (the national one with its budget and hybrid draw) with the
split held out, as its held-out twin runs it, at `calibration_distance` λ. Printed per fit
and λ: the split error (what λ is chosen on), the trained error, the spread of the kept
weights around their references (w / (scale · design weight): its coefficient of
variation and 99th percentile) and Kish's effective sample size (Σw)² / Σw².
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from pipeline.config import load_profile
from pipeline.core.atomic import write_text
from pipeline.core.fit_table import LOCAL, LOCAL_HELDOUT, NATIONAL, NATIONAL_HELDOUT
from pipeline.fit.package_fit import fit_package, reference_weights
from pipeline.package.store import load_package

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "calibration_distance.txt"
CONFIGS = {LOCAL.name: ROOT / "pipeline/config/targets.yaml",
           NATIONAL.name: ROOT / "pipeline/config/targets_national.yaml"}


def one(package: Path, profile: str, published, twin, strength: float, out: Path) -> dict:
    params = load_profile(profile).fit_params(published).with_(
        calibration_distance=strength, device="cpu")
    started = time.time()
    result = fit_package(package, CONFIGS[published.name], out, params, fit=twin)
    seconds = time.time() - started
    reference = reference_weights(load_package(package))
    w = result.weights
    kept = w > 0
    ratio = w[kept] / (reference[kept] * reference.sum() / reference[kept].sum())
    return {"fit": published.name, "strength": strength, "kept": result.kept,
            "seconds": seconds, "split": result.error_summaries["validation_split"],
            "trained": result.error_summaries["exported"], "cv": float(np.std(ratio)),
            "p99": float(np.quantile(ratio, 0.99)),
            "n_eff": float(w.sum() ** 2 / np.square(w).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=ROOT / "storage" / "calibration_package")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 1.0, 10.0, 100.0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-calibration-distance"))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = [one(args.package, args.profile, published, twin, s,
                args.work / f"{published.name}-{s:g}")
            for published, twin in ((LOCAL, LOCAL_HELDOUT), (NATIONAL, NATIONAL_HELDOUT))
            for s in args.strengths]
    lines = [f"# bench_calibration_distance.py, {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{os.cpu_count()} CPUs, load average {load:.2f} at start; package "
             f"{args.package} ({args.profile} profile); each fit its held-out twin "
             "(the split held out)",
             f"{'fit':<9}{'λ':>6}{'kept':>9}{'split med':>11}{'split p90':>11}"
             f"{'split mean':>12}{'trained mean':>14}{'trained med':>13}{'w/ref cv':>10}"
             f"{'w/ref p99':>11}{'Kish n_eff':>12}{'fit s':>8}"]
    for r in rows:
        s, t = r["split"], r["trained"]
        lines.append(f"{r['fit']:<9}{r['strength']:>6g}{r['kept']:>9,}{s['median']:>11.2%}"
                     f"{s['p90']:>11.2%}{s['mean']:>12.2%}{t['mean']:>14.3%}"
                     f"{t['median']:>13.3%}{r['cv']:>10.2f}{r['p99']:>11.1f}"
                     f"{r['n_eff']:>12,.0f}{r['seconds']:>8.1f}")
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(RESULTS, text)


if __name__ == "__main__":
    main()
