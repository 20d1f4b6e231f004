"""Both production fits on CUDA at the production package's shape, in one short script.

Run on a machine with an NVIDIA GPU (a few minutes; results/gpu.txt holds the runs):
    python benchmarks/bench_gpu.py [--package DIR --target-config YAML --profile demo]

1. A seeded problem of the production package's shape (10,760 targets x 5,160,000 columns,
   15 non-zeros a column: 77.4M). On CUDA: the local fit (the production profile's `fit`)
   and the national fit (its `national_fit`: a 50,000-record budget), end to end through
   `pipeline.fit.fit`, each with `stopping: converged` and `stopping: fixed`: wall time
   (goal: both fits within 1 minute), epochs, records kept, mean error, peak GPU memory.
2. One L0 epoch of each device at that shape (the CPU's fused kernel on every core).
3. With --package: the same fit on a real package on CUDA and on the CPU, and how far apart
   they are (both draw the same gate noise from the same parameters: they differ by float
   rounding, so their kept sets and totals agree closely, not bit for bit).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config.profile import load_profile  # noqa: E402
from pipeline.fit import fit  # noqa: E402
from pipeline.fit.backends import FusedBackend, TorchBackend  # noqa: E402
from pipeline.fit.model import initial_parameters  # noqa: E402
from pipeline.fit.package_fit import fit_package  # noqa: E402
from pipeline.fit.params import FitParams  # noqa: E402

PRODUCTION_SHAPE = (10_760, 5_160_000, 15)  # targets, columns, non-zeros per column


def production_problem(seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """A seeded problem of the production shape whose targets a sparse vector hits."""
    n_t, n_c, per_col = PRODUCTION_SHAPE
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.integers(0, n_t, size=(n_c, per_col), dtype=np.int32), axis=1)
    by_column = sp.csr_matrix(
        (rng.integers(1, 6, n_c * per_col).astype(np.float32), idx.ravel(),
         np.arange(0, n_c * per_col + 1, per_col, dtype=np.int64)), shape=(n_c, n_t))
    X = by_column.T.tocsr()  # noqa: N806
    truth = rng.gamma(2.0, 50.0, n_c) * (rng.random(n_c) < 0.3)
    return X, X @ truth


def production_fits(profile: str) -> None:
    X, y = production_problem()  # noqa: N806
    print(f"\nproduction shape: {X.shape[0]:,} targets x {X.shape[1]:,} columns, "
          f"{X.nnz:,} non-zeros; profile {profile}", flush=True)
    loaded = load_profile(profile)
    iw = np.full(X.shape[1], 100.0)
    for stopping in ("converged", "fixed"):
        total = 0.0
        for label, params in (("local", loaded.fit), ("national", loaded.national_fit)):
            p = params.with_(device="cuda", stopping=stopping, log_freq=10**6)
            torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            r = fit(X, y, iw, p)
            wall = time.perf_counter() - t
            total += wall
            s = r.stopping
            print(f"cuda {stopping:>9} {label:<8}: wall {wall:6.1f} s  L0 {s['l0']['epochs']:>5,}"
                  f" + polish {s['polish']['epochs']:>4,} epochs  kept {r.kept:>9,}  mean "
                  f"|rel err| {r.error_summaries['exported']['mean']:.4%}  peak GPU "
                  f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB  ({r.device})",
                  flush=True)
        print(f"cuda {stopping:>9} both fits: {total:.1f} s (goal: <= 60 s)", flush=True)
    epoch_times(X, y)


def _epoch_seconds(step: Any, device: torch.device, warm: int, timed: int) -> float:
    for e in range(warm):
        step(e)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for e in range(warm, warm + timed):
        step(e)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / timed


def epoch_times(X: sp.csr_matrix, y: np.ndarray) -> None:  # noqa: N803
    params = FitParams(preset="local")
    log_w, log_a = initial_parameters(np.full(X.shape[1], 100.0), params.seed)
    engines = {
        "cuda": lambda: TorchBackend(X, y, log_w.clone(), log_a.clone(), params,
                                    torch.device("cuda")),
        "cpu": lambda: FusedBackend(X, y, log_w.clone(), log_a.clone(), params),
    }
    seconds = {}
    for name, timed in (("cuda", 50), ("cpu", 5)):
        eng = engines[name]()
        seconds[name] = _epoch_seconds(lambda e: eng.l0_step(e, params.lambda_l0),  # noqa: B023
                                       torch.device(name), 3, timed)
        print(f"{name:>4}: L0 epoch {seconds[name] * 1000:8.1f} ms"
              f"{'' if name == 'cuda' else f'  ({torch.get_num_threads()} threads)'}",
              flush=True)
    print(f"CPU/CUDA epoch time: {seconds['cpu'] / seconds['cuda']:.1f}x")


def compare_fits(package: str, target_config: str, base: FitParams) -> None:
    results = {}
    for device in ("cuda", "cpu"):
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            results[device] = fit_package(package, target_config, out,
                                          base.with_(device=device))
            wall = time.perf_counter() - t
        r = results[device]
        err = r.error_summaries["exported"]
        print(f"{device:>4}: wall {wall:7.1f} s  L0 {r.stopping['l0']['epochs']:,} epochs  "
              f"kept {r.kept:>9,}  mean |rel err| {err['mean']:.4%}  "
              f"median {err['median']:.4%}  max {err['max']:.4%}", flush=True)
    gpu, cpu = results["cuda"], results["cpu"]
    sel = cpu.selected
    est = np.abs(gpu.estimates[sel] - cpu.estimates[sel]) / np.maximum(np.abs(cpu.y[sel]), 1.0)
    print(f"kept: CUDA/CPU {gpu.kept / cpu.kept:.4f}; records kept by only one device "
          f"{int(((gpu.weights > 0) != (cpu.weights > 0)).sum()):,}")
    print(f"estimates, |CUDA - CPU| / target: median {np.median(est):.2e}  max {est.max():.2e}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="production", help="whose fit and national_fit "
                    "the production-shape fits use")
    ap.add_argument("--package", help="also compare CUDA and CPU on this package")
    ap.add_argument("--target-config")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device here; run it on a machine with an NVIDIA GPU")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}; CPU threads "
          f"{torch.get_num_threads()}", flush=True)
    production_fits(args.profile)
    if args.package:
        compare_fits(args.package, args.target_config, load_profile(args.profile).fit)


if __name__ == "__main__":
    main()
