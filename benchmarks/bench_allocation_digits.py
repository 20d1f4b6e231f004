"""Allocation, the neural-network environment: an MLP of l0-python `L0Linear` layers on
scikit-learn's handwritten digits, compressed to 90% and 95% sparsity by the learned
allocation, against uniform magnitude pruning and uniform L0 at the same sparsity.

    .venv/bin/python benchmarks/bench_allocation_digits.py [--out-dir benchmarks/results]

Every method gets the same fine-tuning budget (`digits.BASELINE_EPOCHS`: an episode's
reset plus 5 epochs per operation). Validation accuracy is what the search's reward read;
test accuracy is on images neither the search nor the fine-tuning saw. Ablations at 90%:
the search without the reconstruction term, without the hierarchy, without the
curriculum. The same search code and settings as the calibration allocator, with the
digits problem behind the protocol.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pipeline.core.atomic import write_text
from pipeline.core.parallel import connect
from pipeline.sparsity.problems.digits import (
    BASELINE_EPOCHS,
    DigitsProblem,
    magnitude_pruning,
    test_accuracy,
    uniform_l0,
)
from pipeline.sparsity.search import SearchConfig, search

RESULTS = Path(__file__).parent / "results"
STEPS = 16  # operations per episode: BASELINE_EPOCHS is this episode's fine-tuning


@dataclass(frozen=True)
class DigitsFactory:
    seed: int

    def __call__(self) -> DigitsProblem:
        torch.set_num_threads(1)
        return DigitsProblem(seed=self.seed)


def learned(config: SearchConfig, runner, label: str) -> dict:
    t0 = time.perf_counter()
    result = search(DigitsFactory(0), f"digits-{label}-{config.budget}", config, runner=runner)
    problem = result.problem
    return {"method": label, "density": problem.kept() / problem.total,
            "accuracy_val": 1.0 - result.final["error"], "accuracy_test": test_accuracy(problem),
            "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--episodes", type=int, default=96)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    runner = connect(None, 2)
    base = SearchConfig(budget=0.1, episodes=args.episodes, parallel=8, steps=STEPS,
                        ops_per_layer=4, curriculum_start=0.5, seed=0)
    rows = []
    for density in (0.10, 0.05):
        config = SearchConfig(**{**asdict(base), "budget": density})
        for label, fn in (("magnitude pruning", magnitude_pruning), ("uniform L0", uniform_l0)):
            t0 = time.perf_counter()
            rows.append({"method": label, **fn(density), "seconds": time.perf_counter() - t0})
            print(rows[-1], flush=True)
        rows.append(learned(config, runner, "learned"))
        print(rows[-1], flush=True)
        if density == 0.10:
            for label, change in (("ablation: no reconstruction term",
                                   {"reconstruction_weight": 0.0}),
                                  ("ablation: no hierarchy (flat agent)", {"hierarchy": False}),
                                  ("ablation: no curriculum", {"curriculum_start": None})):
                rows.append(learned(SearchConfig(**{**asdict(config), **change}), runner,
                                    label))
                print(rows[-1], flush=True)
    runner.close()
    lines = [
        "# bench_allocation_digits: 64→64→32→10 L0Linear MLP on scikit-learn digits",
        f"# search: {asdict(base)} (budget per row); fine-tuning budget {BASELINE_EPOCHS} "
        "epochs for every method; seed 0",
        f"# {platform.node()}, {os.cpu_count()} cores, 2 Dask workers; "
        f"{(time.perf_counter() - started) / 60:.1f} min in all",
        "",
        "| sparsity | method | density | validation accuracy | test accuracy | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {1 - round(r['density'], 2):.0%} | {r['method']} | "
                     f"{r['density']:.4f} | {r['accuracy_val']:.4f} | "
                     f"{r['accuracy_test']:.4f} | {r['seconds']:.0f} |")
    text = "\n".join(lines) + "\n"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_text(args.out_dir / "allocation_digits.txt", text)
    print(text)


if __name__ == "__main__":
    main()
