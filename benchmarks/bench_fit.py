"""The CPU fit kernel at the production package's shape, against the memory-bandwidth floor;
then, on a real package, epochs to convergence and error against the fixed schedule.

Run (results/fit.txt holds a run; timed parts belong under `flock -x /work/locks/cpu`):
    .venv/bin/python benchmarks/bench_fit.py [--package storage/calibration_package]
        [--speed-package PACKAGE]   (the speed table again on a real package's X)

Speed: a seeded problem of the production package's shape (10,760 targets x 5,160,000
columns, 15 non-zeros a column: 77.4M), each configuration in its own process under
`/usr/bin/time -v` (its peak RSS covers loading the problem as CSR, the backend and the
epochs).
Seconds per L0 epoch and per polish epoch at 1 and 2 threads, then with another process
spinning on one core. The floor is the issue's: the bytes of X that one X·w plus one Xᵀ·g
read as int32 CSR (8 bytes a non-zero, twice) over this machine's copy bandwidth, measured
in the same run. The kernel reads X once an epoch (6 bytes a non-zero: uint16 rows), so
it can beat that floor; the bytes it does move are printed beside it. The anchor is the
previous backend's two products alone (torch int32 CSR, MKL), timed in the same run.

Convergence (with --package and its target configs): every fit of the fit table (local,
national and their held-out twins, with the production profile's settings), each with
`stopping: fixed` (production's counts) and `stopping: converged`: epochs run, seconds,
records kept, mean error on the trained targets and, for a held-out twin, on the
validation split it leaves out (a published fit trains on it).

Accuracy (small, 1 thread): the exported weights against l0-python's on a 10K x 40K
problem, as before.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PRODUCTION = (10_760, 5_160_000, 15)  # targets, columns, non-zeros per column
SMALL = (10_000, 40_000, 30)
TIMED_EPOCHS = 8


def build(shape: tuple[int, int, int]) -> tuple[sp.csr_matrix, np.ndarray]:
    """A seeded problem whose targets some sparse weight vector hits exactly."""
    n_t, n_c, per_col = shape
    rng = np.random.default_rng(20240)
    idx = np.sort(rng.integers(0, n_t, size=(n_c, per_col), dtype=np.int32), axis=1)
    by_col = sp.csr_matrix((rng.integers(1, 6, n_c * per_col).astype(np.float32),
                            idx.ravel(), np.arange(0, n_c * per_col + 1, per_col)),
                           shape=(n_c, n_t))
    by_col.sum_duplicates()
    X = by_col.T.tocsr()  # noqa: N806
    truth = rng.gamma(2.0, 50.0, n_c) * (rng.random(n_c) < 0.3)
    return X, X @ truth


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def copy_bandwidth() -> float:
    """numpy copy, bytes read + written per second (best of 5 over 400 MB)."""
    a = np.ones(100_000_000, dtype=np.float32)
    b = np.empty_like(a)
    return 2 * a.nbytes / min(_timed(lambda: np.copyto(b, a)) for _ in range(5))


def _load(problem: str) -> tuple[sp.csr_matrix, np.ndarray]:
    with np.load(problem) as f:
        X = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))  # noqa: N806
        return X, f["y"]


def speed_worker(threads: int, problem: str) -> dict:
    """One configuration, in its own process: s/epoch of the fused backend, L0 and polish."""
    import torch

    torch.set_num_threads(threads)
    from pipeline.fit.backends import FusedBackend
    from pipeline.fit.model import initial_parameters
    from pipeline.fit.params import FitParams
    from pipeline.fit.stopping import PolishSchedule

    X, y = _load(problem)  # noqa: N806
    params = FitParams(preset="local", device="cpu", stopping="fixed")
    lw, la = initial_parameters(np.full(X.shape[1], 100.0), params.seed)
    t = time.perf_counter()
    backend = FusedBackend(X, y, lw, la, params, threads=threads)
    setup = time.perf_counter() - t
    del X
    for epoch in range(2):
        backend.l0_step(epoch, params.lambda_l0)
    times = []
    for epoch in range(2, 2 + TIMED_EPOCHS):
        times.append(_timed(lambda e=epoch: backend.l0_step(e, params.lambda_l0)))
    stamps: list[float] = []
    kept = np.arange(backend.n_cols)
    backend.polish(kept, torch.from_numpy(backend.lw.copy()),
                  PolishSchedule(params, TIMED_EPOCHS + 2),
                  lambda *_: stamps.append(time.perf_counter()))
    return {"l0": float(np.median(times)), "polish": float(np.median(np.diff(stamps)[1:])),
            "setup": setup, "nnz": backend.X.nnz, "pass_bytes": backend.X.bytes_per_pass,
            "state_bytes": backend.state.nbytes * 2}


def products_worker(threads: int, problem: str) -> dict:
    """The previous backend's products alone: torch int32 CSR X·w and Xᵀ·g (MKL)."""
    import torch

    torch.set_num_threads(threads)
    from pipeline.fit.operator import SparseOperator

    X, _ = _load(problem)  # noqa: N806
    op = SparseOperator(X, torch.device("cpu"))
    w, g = torch.ones(X.shape[1]), torch.ones(X.shape[0])
    op.matvec(w), op.rmatvec(g)
    return {"products": min(_timed(lambda: (op.matvec(w), op.rmatvec(g))) for _ in range(5))}


def _spawn(worker: str, threads: int, problem: str, busy: bool = False) -> dict:
    """Run a worker under /usr/bin/time -v; its JSON line plus the peak RSS in GiB."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        res = subprocess.run(["/usr/bin/time", "-v", sys.executable, __file__, "--worker",
                              worker, str(threads), problem], capture_output=True, text=True,
                             check=True, env=env)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    out = json.loads(res.stdout.strip().splitlines()[-1])
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1))
    out["peak_gib"] = kib / 2**20
    return out


def _save_problem(X: sp.csr_matrix, y: np.ndarray, problem: str) -> None:  # noqa: N803
    """A speed problem file: what each worker process loads (`_load`)."""
    np.savez(problem, data=X.data, indices=X.indices, indptr=X.indptr,
             shape=np.array(X.shape), y=y)


def _save_package_problem(package: str, problem: str) -> None:
    """A package's X (as float32 CSR) and targets as a speed problem file."""
    from pipeline.package.store import load_package

    pkg = load_package(package)
    _save_problem(sp.csr_matrix(pkg.X, dtype=np.float32),
                  pkg.targets["value"].to_numpy(np.float32), problem)


def speed(bw: float, problem: str, title: str) -> None:
    with np.load(problem) as f:
        (n_t, n_c), nnz = f["shape"], int(f["indptr"][-1])
    floor = 2 * nnz * 8 / bw
    print(f"\n## Speed {title}: {n_t:,} targets x {n_c:,} columns, "
          f"{nnz:,} non-zeros (local preset, every gate open)")
    print(f"floor = 2 products x {nnz:,} x 8 bytes (int32 CSR) / copy bandwidth = "
          f"{floor * 1000:.1f} ms")
    head = (f"{'configuration':<28}{'L0 s/ep':>9}{'/floor':>8}{'polish s/ep':>12}"
            f"{'/floor':>8}{'GB/s moved':>11}{'peak GiB':>10}{'CSR products s':>16}")
    print(head)
    for threads, busy in ((1, False), (2, False), (1, True), (2, True)):
        ours = _spawn("speed", threads, problem, busy)
        anchor = _spawn("products", threads, problem, busy)
        moved = (ours["pass_bytes"] + ours["state_bytes"]) / ours["l0"] / 1e9
        label = f"{threads} thread{'s' if threads > 1 else ''}" + (", 1 core busy" if busy
                                                                   else "")
        print(f"{label:<28}{ours['l0']:>9.4f}{ours['l0'] / floor:>7.2f}x"
              f"{ours['polish']:>12.4f}{ours['polish'] / floor:>7.2f}x{moved:>11.1f}"
              f"{ours['peak_gib']:>10.2f}{anchor['products']:>16.4f}", flush=True)
    print(f"(one epoch moves X once, {ours['pass_bytes'] / 1e9:.2f} GB, plus "
          f"{ours['state_bytes'] / 1e9:.2f} GB of per-column state read and written; "
          f"building the backend took {ours['setup']:.1f} s)")


def convergence(package: str, profile_name: str) -> None:
    from pipeline.config import load_profile
    from pipeline.core.fit_table import FITS
    from pipeline.core.layout import Layout
    from pipeline.fit.package_fit import fit_package

    profile = load_profile(profile_name)
    layout = Layout(Path(package).resolve().parent)
    print(f"\n## Convergence on {package} (profile {profile_name}; 2 threads)")
    print(f"{'fit':<17}{'stopping':<11}{'L0 ep':>7}{'polish ep':>10}{'seconds':>9}"
          f"{'kept':>11}{'trained mean':>14}{'split mean':>12}")
    for fit in FITS:
        for stopping in ("fixed", "converged"):
            p = getattr(profile, fit.section).with_(stopping=stopping, device="cpu")
            with tempfile.TemporaryDirectory() as out:
                t = time.perf_counter()
                r = fit_package(package, layout.target_config(fit.config), out, p, fit=fit)
                seconds = time.perf_counter() - t
            s = r.stopping
            split = r.error_summaries.get("validation_split")  # held-out fits only
            print(f"{fit.name:<17}{stopping:<11}{s['l0']['epochs']:>7,}"
                  f"{s['polish']['epochs']:>10,}{seconds:>9.0f}{r.kept:>11,}"
                  f"{r.error_summaries['exported']['mean']:>14.4%}"
                  + (f"{split['mean']:>12.4%}" if split else f"{'(trains it)':>12}"),
                  flush=True)


def accuracy() -> None:
    import torch

    torch.set_num_threads(1)
    from l0.calibration import SparseCalibrationWeights

    from pipeline.fit import FitParams, fit

    X, y = build(SMALL)  # noqa: N806
    n_c = X.shape[1]
    r = fit(X, y, np.full(n_c, 100.0), FitParams(preset="national", epochs=200,
                                                   polish_epochs=100, stopping="fixed",
                                                   log_freq=10**9, device="cpu"))
    model = SparseCalibrationWeights(n_c, beta=0.35, init_keep_prob=0.999, init_weights=100.0,
                                     log_weight_jitter_sd=0.05, seed=1)
    model.fit(X, y, lambda_l0=1e-4, lr=0.15, epochs=200, loss_type="relative")
    torch.manual_seed(1)
    with torch.no_grad():
        sampled = model.forward(X, deterministic=False).double().numpy()
    e = np.abs((sampled - y) / (y + 1))
    print(f"\n## Accuracy ({SMALL[0]:,} x {SMALL[1]:,}, national preset, 200 L0 epochs; ours "
          f"+ 100 polish; 1 thread): mean |rel error| of the exported weights "
          f"{r.error_summaries['exported']['mean']:.4%} ({r.kept:,} kept), l0-python's "
          f"sampled gates {e.mean():.4%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", help="a calibration package in a storage root (its "
                    "target_config and national_target_config beside it): convergence")
    ap.add_argument("--profile", default="production")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--speed-package", help="a calibration package: the speed table again "
                    "on its own X (e.g. production's, built under policyengine-us)")
    args = ap.parse_args()
    bw = copy_bandwidth()
    print(f"# bench_fit.py, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load "
          f"average {os.getloadavg()[0]:.2f} at start; numpy copy bandwidth "
          f"{bw / 1e9:.1f} GB/s (read + write)")
    if not args.skip_speed:
        with tempfile.TemporaryDirectory() as tmp:
            X, y = build(PRODUCTION)  # noqa: N806  (once; each worker loads it)
            problem = str(Path(tmp) / "problem.npz")
            _save_problem(X, y, problem)
            del X
            speed(bw, problem, "at the production shape")
    if args.speed_package:
        with tempfile.TemporaryDirectory() as tmp:
            problem = str(Path(tmp) / "problem.npz")
            _save_package_problem(args.speed_package, problem)
            speed(bw, problem, f"on {args.speed_package}'s X")
    if args.package:
        convergence(args.package, args.profile)
    accuracy()
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker = {"speed": speed_worker, "products": products_worker}[sys.argv[2]]
        print(json.dumps(worker(int(sys.argv[3]), sys.argv[4])))
    else:
        main()
