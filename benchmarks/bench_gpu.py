"""The fit on CUDA against the same fit on CPU, on a real package and at production size.

Run on a machine with an NVIDIA GPU (results/gpu.txt holds a run on an H200):
    .venv/bin/python benchmarks/bench_gpu.py --package storage/calibration_package \
        --target-config pipeline/config/targets.yaml --profile demo [--national] [--set FIELD=VALUE]

Per device: wall time, L0 epochs per second, records kept and the error summary; then how
far the two fits are apart. Gate draws differ between the devices' random streams, so the
two fits keep different records: they must agree on the fit's quality (error summaries,
records kept, estimates), not weight by weight. Then one L0 epoch and one polish epoch on
a synthetic problem of the production package's shape (10,760 targets x 5.16M columns,
15 non-zeros per column), on each device.
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
from pipeline.fit.backends import FusedBackend, TorchBackend  # noqa: E402
from pipeline.fit.model import initial_parameters  # noqa: E402
from pipeline.fit.package_fit import fit_package  # noqa: E402
from pipeline.fit.params import FitParams  # noqa: E402

PRODUCTION_SHAPE = (10_760, 5_160_000, 15)  # targets, columns, non-zeros per column


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def compare_fits(package: str, target_config: str, base: FitParams,
                 changes: dict[str, Any]) -> None:
    results = {}
    for device in ("cuda", "cpu"):
        params = base.with_(**changes, device=device)
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            results[device] = fit_package(package, target_config, out, params)
            wall = time.perf_counter() - t
        r = results[device]
        err = r.error_summaries["exported"]
        print(f"{device:>4}: wall {wall:7.1f} s  L0 {r.epochs_per_second:7.1f} epochs/s  "
              f"kept {r.kept:>9,}  mean |rel err| {err['mean']:.4%}  "
              f"median {err['median']:.4%}  max {err['max']:.4%}", flush=True)
    gpu, cpu = results["cuda"], results["cpu"]
    sel = cpu.selected
    est = np.abs(gpu.estimates[sel] - cpu.estimates[sel]) / np.maximum(np.abs(cpu.y[sel]), 1.0)
    print(f"kept: CUDA/CPU {gpu.kept / cpu.kept:.4f}; records kept by only one device "
          f"{int(((gpu.weights > 0) != (cpu.weights > 0)).sum()):,}")
    print(f"total weight: CUDA/CPU {gpu.weights.sum() / cpu.weights.sum():.6f}")
    print(f"estimates, |CUDA - CPU| / target: median {np.median(est):.2e}  max {est.max():.2e}")
    gap = gpu.error_summaries["exported"]["mean"] - cpu.error_summaries["exported"]["mean"]
    print(f"mean |rel err|, CUDA - CPU: {gap:+.2e}")


def production_operator(seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    n_t, n_c, per_col = PRODUCTION_SHAPE
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.integers(0, n_t, size=(n_c, per_col), dtype=np.int32), axis=1)
    by_column = sp.csr_matrix(
        (rng.integers(1, 6, n_c * per_col).astype(np.float32), idx.ravel(),
         np.arange(0, n_c * per_col + 1, per_col, dtype=np.int64)), shape=(n_c, n_t))
    X = by_column.T.tocsr()  # noqa: N806
    truth = rng.gamma(2.0, 50.0, n_c) * (rng.random(n_c) < 0.3)
    return X, X @ truth


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


def time_production_epochs() -> None:
    X, y = production_operator()  # noqa: N806
    print(f"\nproduction shape: {X.shape[0]:,} targets x {X.shape[1]:,} columns, "
          f"{X.nnz:,} non-zeros")
    params = FitParams(preset="local")
    log_w, log_a = initial_parameters(np.full(X.shape[1], 100.0), params.seed)
    seconds = {}
    engines = {
        "cuda": lambda: TorchBackend(X, y, log_w.clone(), log_a.clone(), params,
                                    torch.device("cuda")),
        "cpu": lambda: FusedBackend(X, y, log_w.clone(), log_a.clone(), params),
    }
    for name, timed in (("cuda", 50), ("cpu", 5)):
        device = torch.device(name)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        eng = engines[name]()
        seconds[name] = _epoch_seconds(lambda e: eng.l0_step(e, params.lambda_l0),  # noqa: B023
                                       device, 3, timed)
        extra = (f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
                 if device.type == "cuda" else f"  {torch.get_num_threads()} threads")
        print(f"{name:>4}: L0 epoch {seconds[name] * 1000:8.1f} ms{extra}", flush=True)
    print(f"CPU/CUDA epoch time: {seconds['cpu'] / seconds['cuda']:.1f}x; "
          f"1000 L0 epochs on CUDA: {seconds['cuda'] * 1000:.0f} s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", required=True)
    ap.add_argument("--target-config", required=True)
    ap.add_argument("--profile", help="start from this profile's fit (e.g. demo); "
                    "default: FitParams' defaults")
    ap.add_argument("--national", action="store_true",
                    help="the profile's national fit instead of its local one")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a FitParams field for both fits (repeatable)")
    ap.add_argument("--skip-production-shape", action="store_true")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device here; run it on a machine with an NVIDIA GPU")
    changes = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}; "
          f"CPU threads {torch.get_num_threads()}", flush=True)
    if args.profile:
        profile = load_profile(args.profile)
        base = profile.national_fit if args.national else profile.fit
    else:
        base = FitParams()
    print(f"fit: {base.with_(**changes).to_dict()}", flush=True)
    compare_fits(args.package, args.target_config, base, changes)
    if not args.skip_production_shape:
        time_production_epochs()


if __name__ == "__main__":
    main()
