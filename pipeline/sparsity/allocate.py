"""`calibrate allocate` and the `sparsity_allocation` asset: search, then save.

The search spends the national fit's record budget (`records`): it trains the national
model once, runs the RL search over states and strata (`problems/calibration.py`,
`search.py`) and saves the final episode's keep and integer masks
(`pipeline.fit.allocation`). A national fit with `allocation: learned` then keeps exactly
those records (`pipeline.fit.training.fit`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.core.fit_table import allocated
from pipeline.core.hashing import sha256_array, sha256_text
from pipeline.core.lineage import ALLOCATION, record_parents
from pipeline.core.parallel import Runner
from pipeline.fit.allocation import save_allocation
from pipeline.fit.params import FitParams
from pipeline.fit.training import error_summary, identity_digest
from pipeline.sparsity.allocation_settings import AllocationSettings
from pipeline.sparsity.problems.calibration import (
    INCOME_BANDS,
    SIZE_CUT,
    CalibrationData,
    CalibrationProblem,
    torch_threads,
)
from pipeline.sparsity.problems.calibration_model import TrainedCalibration, train_calibration
from pipeline.sparsity.search import SearchConfig, SearchResult, search

SEARCH_CHECKPOINT = "search.pt"
HISTORY = "history.csv"


@dataclass
class CalibrationFactory:
    """Builds an episode's problem on a worker (picklable: Dask ships it once per round)."""

    data: CalibrationData
    use_reconstruction: bool

    def __call__(self) -> CalibrationProblem:
        torch_threads()
        return CalibrationProblem(self.data, use_reconstruction=self.use_reconstruction)


def search_config(settings: AllocationSettings, budget: float) -> SearchConfig:
    return SearchConfig(budget=budget, **settings.model_dump())


def run_search(trained: TrainedCalibration, params: FitParams, settings: AllocationSettings,
               out: Path | None, runner: Runner | None) -> SearchResult:
    config = search_config(settings, params.records / trained.data.n_columns)
    data = trained.data  # the episodes' data too: a checkpoint resumes only the same search
    key = sha256_text("|".join([identity_digest(trained.result.identity), repr(asdict(config)),
                                sha256_array(data.start_weight), sha256_array(data.log_alpha)]))
    factory = CalibrationFactory(trained.data, settings.reconstruction_weight > 0)
    return search(factory, key, config, runner=runner,
                  checkpoint=None if out is None else out / SEARCH_CHECKPOINT)


def allocate(package_dir: str | Path, config_path: str | Path, params: FitParams,
             settings: AllocationSettings, out_dir: str | Path, *,
             runner: Runner | None = None) -> dict[str, Any]:
    """Search and save; returns allocation.json's content. Resumes an interrupted search
    from `out_dir`'s checkpoint."""
    if params.records is None:
        raise InputError(None, "national_fit.records", "the allocation spends a record "
                         "budget, and none is set", "set national_fit.records (e.g. 50000)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trained = train_calibration(package_dir, config_path, params.with_(allocation="budget"), out,
                    seed=settings.seed)
    result = run_search(trained, params, settings, out, runner)
    budgets = budget_table(trained, result.allocation)
    problem = result.problem
    meta = {
        "lineage": {**record_parents(ALLOCATION, {"calibration_package": package_dir,
                                                  allocated().config.asset: config_path}),
                    "trained_model": identity_digest(trained.result.identity)},
        "records": int(result.allocation["keep"].sum()),
        "record_budget": params.records,
        "columns": trained.data.n_columns,
        "integer_records": int(result.allocation["integer"].sum()),
        "search": asdict(result.config),
        "settings": settings.model_dump(),
        "fit_params": params.to_dict(),
        "seconds": result.seconds,
        "resumed_from_round": result.resumed_from_round,
        "final_episode": result.final,
        "budget_method": _budget_method(trained),
        "episodes": len(result.history),
        "reward_targets": int(trained.reward.sum()),
        "report_targets": int((trained.scope & ~trained.reward).sum()),
        "env_report_error": problem.report_error() if problem is not None else None,
    }
    result.history.to_csv(out / HISTORY, index=False)
    save_allocation(out, result.allocation, budgets, meta)
    (out / SEARCH_CHECKPOINT).unlink(missing_ok=True)  # complete: nothing left to resume
    return meta


def _budget_method(trained: TrainedCalibration) -> dict[str, float]:
    """The trained model's own fit: the budget method at the same budget."""
    r = trained.result
    report = trained.scope & ~trained.reward
    return {"records": r.kept, "training_error": r.error_summaries["exported"]["mean"],
            "split_error": error_summary(r.estimates[trained.scope], r.y[trained.scope])["mean"],
            "report_error": error_summary(r.estimates[report], r.y[report])["mean"]}


def group_labels() -> list[str]:
    edges = [0, *INCOME_BANDS]
    bands = [f"income {edges[i] / 1000:.0f}K-{edges[i + 1] / 1000:.0f}K"
             for i in range(len(INCOME_BANDS))] + [f"income {INCOME_BANDS[-1] / 1000:.0f}K+"]
    return [f"{band}, {size}" for band in bands
            for size in (f"1-{SIZE_CUT - 1} people", f"{SIZE_CUT}+ people")]


def budget_table(trained: TrainedCalibration, allocation: dict[str, np.ndarray]) -> pd.DataFrame:
    """Records per state × stratum: learned, and under the budget method (the trained
    fit's own keep set)."""
    d = trained.data
    uniform = np.zeros_like(allocation["cell_records"])
    kept = trained.result.weights > 0
    np.add.at(uniform, (d.layer[kept], d.group[kept]), 1)
    integer = np.zeros_like(uniform)
    np.add.at(integer, (d.layer[allocation["integer"]], d.group[allocation["integer"]]), 1)
    labels = group_labels()
    rows = [{"state": d.layer_names[s], "group": labels[g],
             "records": int(allocation["cell_records"][s, g]),
             "budget_method_records": int(uniform[s, g]),
             "integer_records": int(integer[s, g])}
            for s in range(len(d.layer_names)) for g in range(d.n_groups)]
    return pd.DataFrame(rows)
