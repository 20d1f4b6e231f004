"""Allocation: the learned allocation against uniform λ, the budget method and magnitude
pruning, at the same record budget, on the demo package; ablations; Dask speed-up.

Run after `make run` (the demo package under the storage root):

    .venv/bin/python benchmarks/bench_allocation.py --package storage/calibration_package \
        [--budgets 50000 20000] [--fewer 0.8] [--out-dir benchmarks/results]

Every fit is the demo profile's national fit (national preset, 1000 L0 + 500 polish
epochs, seed 42) on the national target config. Per budget B:
- budget method: the fit under `records: B` (also the search's trained model);
- uniform λ: one λ_L0 for every column, bisected (whole fits) until B ±2% are kept;
- magnitude pruning: the B largest weights of the dense fit (λ_L0 1e-8, nearly every
  column kept), polished from that fit's L0 phase;
- learned: the search's allocation (profile `allocation` settings, seed 0), polished.
The masks are polished by the same fit, resumed after its L0 phase. Errors are mean
|relative error| of the exported weights over the validation split targets in the fit's
scope; "report half" is the half of the split the search's reward never read: the fair
comparison for the learned allocation. "Fewer records": the learned allocation at
`fewer`·B against uniform λ at B. Ablations (at the first budget): the search without the
reconstruction term, without the hierarchy, without the curriculum. Speed-up: the first
search with 1 Dask worker against 2, and the allocations compared bit for bit.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import load_profile
from pipeline.core.atomic import write_text
from pipeline.core.packaged import DEFAULT_NATIONAL_TARGET_CONFIG
from pipeline.core.parallel import connect
from pipeline.fit.allocation import Allocation
from pipeline.fit.training import FitResult, error_summary, fit, identity_digest
from pipeline.sparsity.allocate import run_search
from pipeline.sparsity.problems.calibration_model import (
    CHECKPOINT_NAME,
    TrainedCalibration,
    train_calibration,
)

RESULTS = Path(__file__).parent / "results"
BRACKET = (1e-4, 2e-2)  # λ_L0 keeping about 150K and 10K of the demo's 240K columns
TOLERANCE = 0.02
MAX_BISECTIONS = 6
DENSE_LAMBDA = 1e-8  # the (nearly) unpruned fit whose largest weights magnitude pruning keeps
DENSE_CHECKPOINT = "dense.pt"  # its L0 phase: magnitude pruning polishes from its weights


@dataclass
class Row:
    budget: int
    method: str
    kept: int
    training: float
    split: float
    report: float
    seconds: float
    note: str = ""


def errors(trained: TrainedCalibration, result: FitResult) -> tuple[float, float, float]:
    report = trained.scope & ~trained.reward
    return (result.error_summaries["exported"]["mean"],
            error_summary(result.estimates[trained.scope], result.y[trained.scope])["mean"],
            error_summary(result.estimates[report], result.y[report])["mean"])


def polish_mask(trained: TrainedCalibration, params, work: Path, keep: np.ndarray,
                integer: np.ndarray, start: FitResult | None = None) -> FitResult:
    """The fit with this keep set: an L0 phase (the trained one, or `start`'s), resumed
    from its checkpoint, then the polish."""
    pkg = trained.package
    identity = (start or trained.result).identity
    allocation = Allocation(keep=keep, integer=integer & keep, sha256="",
                            meta={"lineage": {"trained_model": identity_digest(identity)}})
    return fit(pkg.X, pkg.targets["value"].to_numpy(np.float64), pkg.initial_weights,
               params if start is None else start.params, selected=trained.selected,
               allocation=allocation,
               resume_from=work / (CHECKPOINT_NAME if start is None else DENSE_CHECKPOINT))


def row(budget: int, method: str, trained: TrainedCalibration, result: FitResult, seconds: float,
        note: str = "") -> Row:
    r = Row(budget, method, result.kept, *errors(trained, result), seconds, note)
    print(f"{budget:>7,} {method:>28}: kept {r.kept:>7,}  training {r.training:.3%}  split "
          f"{r.split:.3%}  report half {r.report:.3%}  {seconds:6.0f} s {note}", flush=True)
    return r


class Uniform:
    """One λ_L0 for every column, no budget: whole fits, bisected in log λ."""

    def __init__(self, trained: TrainedCalibration, base):
        self.trained, self.base = trained, base.with_(records=None)
        self.kept: dict[float, int] = {}

    def run(self, lam: float, checkpoint: Path | None = None) -> FitResult:
        pkg = self.trained.package
        result = fit(pkg.X, pkg.targets["value"].to_numpy(np.float64), pkg.initial_weights,
                     self.base.with_(lambda_l0=lam), selected=self.trained.selected,
                     checkpoint_path=checkpoint)
        self.kept[lam] = result.kept
        print(f"  uniform λ={lam:.3g}: kept {result.kept:,}", flush=True)
        return result

    def bisect(self, budget: int) -> tuple[FitResult, int, float]:
        t0, fits = time.perf_counter(), 0
        for lam in BRACKET:
            if lam not in self.kept:
                self.run(lam)
                fits += 1
        lo = max((lam for lam, k in self.kept.items() if k > budget), default=1e-8)
        hi = min((lam for lam, k in self.kept.items() if k < budget), default=1.0)
        result = None
        for _ in range(MAX_BISECTIONS):
            lam = math.sqrt(lo * hi)
            result = self.run(lam)
            fits += 1
            if abs(result.kept / budget - 1) <= TOLERANCE:
                break
            lo, hi = (lam, hi) if result.kept > budget else (lo, lam)
        return result, fits, time.perf_counter() - t0


def learned(trained: TrainedCalibration, params, settings, work: Path, runner, budget: int,
            label: str = "learned") -> tuple[Row, object]:
    t0 = time.perf_counter()
    search = run_search(trained, params, settings, None, runner)
    t1 = time.perf_counter()
    a = search.allocation
    result = polish_mask(trained, params, work, a["keep"], a["integer"])
    note = (f"search {t1 - t0:.0f} s, {len(search.history)} episodes; "
            f"{int(a['integer'].sum()):,} integer")
    return row(budget, label, trained, result, time.perf_counter() - t0, note), search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("storage/calibration_package"))
    parser.add_argument("--config", type=Path, default=DEFAULT_NATIONAL_TARGET_CONFIG)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50_000, 20_000])
    parser.add_argument("--fewer", type=float, default=0.8)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_allocation"))
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--skip-ablations", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny fits and searches: checks "
                        "the script runs, measures nothing")
    args = parser.parse_args()
    started = time.perf_counter()
    profile = load_profile(args.profile)
    base = profile.national_fit.with_(device="cpu")
    settings = profile.allocation
    if args.smoke:
        base = base.with_(epochs=40, polish_epochs=20)
        settings = settings.model_copy(update={"episodes": 4, "parallel": 2, "steps": 4})
    two = connect(None, 2)
    rows: list[Row] = []
    extra: list[str] = []
    uniform: Uniform | None = None
    dense: FitResult | None = None
    for i, budget in enumerate(args.budgets):
        params = base.with_(records=budget)
        work = args.work / str(budget)
        t0 = time.perf_counter()
        trained = train_calibration(args.package, args.config, params, work, seed=settings.seed)
        rows.append(row(budget, "budget method", trained, trained.result,
                        time.perf_counter() - t0))
        uniform = uniform or Uniform(trained, base)
        result, fits, seconds = uniform.bisect(budget)
        rows.append(row(budget, "uniform λ (bisection)", trained, result, seconds,
                        f"{fits} whole fits"))
        t0 = time.perf_counter()
        if dense is None:
            dense = uniform.run(DENSE_LAMBDA, args.work / DENSE_CHECKPOINT)
        keep = np.zeros(trained.data.n_columns, dtype=bool)
        keep[np.argsort(-dense.weights, kind="stable")[:budget]] = True
        rows.append(row(budget, "magnitude pruning", trained, polish_mask(
            trained, params, args.work, keep, np.zeros_like(keep), dense),
            time.perf_counter() - t0))
        learned_row, search = learned(trained, params, settings, work, two, budget)
        rows.append(learned_row)
        if i == 0:
            one = connect(None, 1)
            t0 = time.perf_counter()
            single = run_search(trained, params, settings, None, one)
            one.close()
            same = np.array_equal(single.allocation["keep"], search.allocation["keep"])
            speedup = single.seconds / search.seconds
            extra.append(f"Dask speed-up (budget {budget:,}, {settings.episodes} episodes, "
                         f"{settings.parallel} per round): 1 worker {single.seconds:.0f} s, "
                         f"2 workers {search.seconds:.0f} s: {speedup:.2f}x; allocations "
                         f"identical: {same}")
            print(extra[-1], flush=True)
            if not args.skip_ablations:
                for label, change in (("no reconstruction term", {"reconstruction_weight": 0.0}),
                                      ("no hierarchy (flat agent)", {"hierarchy": False}),
                                      ("no curriculum", {"curriculum_start": None})):
                    s = settings.model_copy(update=change)
                    rows.append(learned(trained, params, s, work, two, budget,
                                        f"ablation: {label}")[0])
            fewer = round(args.fewer * budget)
            p_few = base.with_(records=fewer)
            w_few = args.work / str(fewer)
            t0 = time.perf_counter()
            t_few = train_calibration(args.package, args.config, p_few, w_few, seed=settings.seed)
            rows.append(row(fewer, "budget method", t_few, t_few.result,
                            time.perf_counter() - t0, f"{args.fewer:.0%} of {budget:,}"))
            rows.append(learned(t_few, p_few, settings, w_few, two, fewer,
                                f"learned ({args.fewer:.0%} of {budget:,})")[0])
    two.close()
    text = render(rows, extra, args, time.perf_counter() - started, settings)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_text(args.out_dir / ("allocation_smoke.txt" if args.smoke else "allocation.txt"), text)
    print(text)


def render(rows: list[Row], extra: list[str], args, wall: float, settings) -> str:
    lines = [
        "# bench_allocation: learned record allocation vs uniform λ, budget, magnitude",
        f"# package {args.package}; config {args.config}; profile {args.profile}'s national "
        f"fit (seed 42) and allocation settings {settings.model_dump()}",
        f"# {platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the "
        f"end; {wall / 60:.1f} min in all",
        "",
        "| budget | method | records kept | training mean | split mean | report half mean | "
        "split vs uniform λ | seconds | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    uniform = {r.budget: r.split for r in rows if r.method.startswith("uniform")}
    first = rows[0].budget
    for r in rows:
        ref = uniform.get(r.budget, uniform.get(first))
        vs = f"{r.split / ref - 1:+.1%}" if ref else "-"
        lines.append(f"| {r.budget:,} | {r.method} | {r.kept:,} | {r.training:.3%} | "
                     f"{r.split:.3%} | {r.report:.3%} | {vs} | {r.seconds:.0f} | {r.note} |")
    return "\n".join(lines + [""] + extra) + "\n"


if __name__ == "__main__":
    main()
