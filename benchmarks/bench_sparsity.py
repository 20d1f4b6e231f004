"""Sparsity: records kept against training and split error, for a λ_L0 sweep, the record
budget, bisection on λ_L0, and the budget's temperature-schedule and hybrid options.

Run after `make run` (the demo package under the storage root), on the national fit's
target config:

    .venv/bin/python benchmarks/bench_sparsity.py --package storage/calibration_package \
        [--epochs 1000 --polish-epochs 300] [--budgets 20000 50000] [--out-dir benchmarks/results]

Every fit is the national preset (β 0.65, λ_L2 1e-12) on the national target config, with
the same seed; only λ_L0 or the budget changes. Errors are mean |rel error| of the exported
weights: "training" over the trained targets, "split" over the validation split targets of
the groups the config trains (`pipeline.targets.split.split_scope`), never trained.
Bisection is the hand method made systematic: one whole fit per λ_L0, halving the bracket
in log λ until the kept count is within ±2% of the budget (the sweep's fits are its first
bracket). Writes `sparsity.txt` and `sparsity.svg`.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.atomic import write_text
from pipeline.core.packaged import DEFAULT_NATIONAL_TARGET_CONFIG
from pipeline.core.svg import Series, scatter_svg
from pipeline.fit.package_fit import design_weights
from pipeline.fit.params import FitParams
from pipeline.fit.training import error_summary, fit
from pipeline.package.store import load_selection
from pipeline.targets.split import split_scope

RESULTS = Path(__file__).parent / "results"
TOLERANCE = 0.02  # the budget's promise, and bisection's stopping rule
SWEEP = (1e-8, 1e-4, 2e-2, 1e-1)  # the table: 1e-8 is the (nearly) unpruned fit
MAX_BISECTIONS = 6


@dataclass
class Point:
    method: str
    setting: str
    kept: int
    training: float
    split: float
    split_median: float
    seconds: float
    fits: int = 1


class Bench:
    def __init__(self, package: Path, config: Path, base: FitParams):
        pkg, self.selected = load_selection(package, config)
        self.X, self.y, self.w0 = pkg.X, pkg.targets["value"].to_numpy(), pkg.initial_weights
        self.scope = split_scope(pkg.targets, self.selected)
        self.design = design_weights(pkg)
        self.base = base
        self.n_columns = self.X.shape[1]

    def run(self, method: str, setting: str, **changes: object) -> Point:
        params = self.base.with_(**changes)
        started = time.perf_counter()
        result = fit(self.X, self.y, self.w0, params, selected=self.selected,
                     design_weights=self.design if params.hybrid_share > 0 else None)
        seconds = time.perf_counter() - started
        split = error_summary(result.estimates[self.scope], result.y[self.scope])
        point = Point(method, setting, result.kept, result.error_summaries["exported"]["mean"],
                      split["mean"], split["median"], seconds)
        print(f"{method:>12} {setting:>22}: kept {point.kept:>8,}  training "
              f"{point.training:.4%}  split {point.split:.4%} (median "
              f"{point.split_median:.4%})  {seconds:6.1f} s", flush=True)
        return point


def bisect(bench: Bench, budget: int, sweep: list[Point]) -> Point:
    """Whole fits at λ_L0 = √(lo·hi) until one keeps the budget ±2%."""
    by_lambda = {float(p.setting.split("=")[1]): p for p in sweep}
    lo = max((lam for lam, p in by_lambda.items() if p.kept > budget), default=SWEEP[0])
    hi = min((lam for lam, p in by_lambda.items() if p.kept < budget), default=1.0)
    fits, seconds, point = 0, 0.0, None
    for _ in range(MAX_BISECTIONS):
        lam = math.sqrt(lo * hi)
        point = bench.run("bisection", f"budget={budget} λ={lam:.3g}", lambda_l0=lam)
        fits, seconds = fits + 1, seconds + point.seconds
        if abs(point.kept / budget - 1) <= TOLERANCE:
            break
        lo, hi = (lam, hi) if point.kept > budget else (lo, lam)
    assert point is not None
    return Point("bisection", f"budget={budget}", point.kept, point.training, point.split,
                 point.split_median, seconds, fits)


def report(points: list[Point], args: argparse.Namespace, n_columns: int, wall: float) -> str:
    unpruned = next(p for p in points if p.setting == f"λ={SWEEP[0]:g}")
    lines = [
        "# bench_sparsity: records kept vs training and split error (national fit)",
        f"# package {args.package} ({n_columns:,} columns); config {args.config}",
        f"# national preset, {args.epochs} L0 + {args.polish_epochs} polish epochs, seed "
        f"{args.seed}; {platform.node()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.2f} at the end; {wall / 60:.1f} min in all",
        "",
        "| method | setting | records kept | vs budget | training mean |rel err| | "
        "split mean |rel err| | split median | split mean / unpruned's | fits | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        budget = next((int(s.split("=")[1].split()[0]) for s in [p.setting]
                       if s.startswith("budget=")), None)
        off = f"{p.kept / budget - 1:+.1%}" if budget else "-"
        lines.append(f"| {p.method} | {p.setting} | {p.kept:,} | {off} | {p.training:.3%} | "
                     f"{p.split:.3%} | {p.split_median:.3%} | "
                     f"{p.split / unpruned.split:.2f}× | {p.fits} | {p.seconds:.0f} |")
    return "\n".join(lines) + "\n"


def plot(points: list[Point]) -> str:
    series = []
    for method in dict.fromkeys(p.method for p in points):
        ps = [p for p in points if p.method == method]
        xs = [float(p.kept) for p in ps]
        series.append(Series(f"{method}: training", xs, [p.training for p in ps],
                             method == "λ sweep"))
        series.append(Series(f"{method}: split", xs, [p.split for p in ps],
                             method == "λ sweep"))
    return scatter_svg(series[:10], "national fit: records kept vs error", "records kept",
                       "mean |rel error|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("storage/calibration_package"))
    parser.add_argument("--config", type=Path, default=DEFAULT_NATIONAL_TARGET_CONFIG)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--polish-epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--budgets", type=int, nargs="+", default=[20_000, 50_000])
    parser.add_argument("--options-budget", type=int, default=50_000,
                        help="the budget the schedule and hybrid options are measured at")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    base = FitParams(preset="national", epochs=args.epochs, polish_epochs=args.polish_epochs,
                     seed=args.seed, device="cpu")
    bench = Bench(args.package, args.config, base)
    sweep = [bench.run("λ sweep", f"λ={lam:g}", lambda_l0=lam) for lam in SWEEP]
    budget = [bench.run("budget", f"budget={b}", records=b) for b in args.budgets]
    bisection = [bisect(bench, b, sweep) for b in args.budgets if b == args.options_budget]
    b = args.options_budget
    options = [
        bench.run("schedule", f"budget={b} cosine 2→0.65", records=b,
                  temperature_schedule="cosine", beta_start=2.0),
        bench.run("hybrid", f"budget={b} hybrid 20%", records=b, hybrid_share=0.2),
    ]
    points = sweep + budget + bisection + options
    wall = time.perf_counter() - started
    args.out_dir.mkdir(parents=True, exist_ok=True)
    text = report(points, args, bench.n_columns, wall)
    write_text(args.out_dir / "sparsity.txt", text)
    write_text(args.out_dir / "sparsity.svg", plot(points))
    print(text)


if __name__ == "__main__":
    main()
