"""The sparsity frontier: records kept against training and split error.

Every fit of one package under one target config adds its point to `frontier.csv` in its
directory (a rerun with the same hyperparameters replaces its point; another package or
config starts a new frontier), so trying budgets builds the curve a user chooses from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.core.atomic import atomic_path
from pipeline.core.layout import FRONTIER
from pipeline.core.svg import Series, scatter_svg
from pipeline.fit.training import FitResult

# Hyperparameters that do not change the weights do not make a new point.
_NOT_IN_KEY = ("device", "log_freq", "checkpoint_every")
COLUMNS = ["records_kept", "training_error", "split_error", "records", "lambda_l0",
           "temperature_schedule", "hybrid_share", "epochs", "seed", "package", "config",
           "key"]


def frontier_point(result: FitResult, lineage: dict[str, str | None]) -> dict[str, Any]:
    """This fit's point: kept records, mean |rel error| trained and on the split."""
    p = result.params
    budget = result.budget
    key = {k: v for k, v in p.model_dump().items() if k not in _NOT_IN_KEY}
    return {
        "records_kept": result.kept,
        "training_error": result.error_summaries["exported"]["mean"],
        "split_error": result.error_summaries["validation_split"]["mean"],
        "records": p.records,
        "lambda_l0": budget["lambda_l0"][-1] if budget["lambda_l0"] else p.lambda_l0,
        "temperature_schedule": p.temperature_schedule, "hybrid_share": p.hybrid_share,
        "epochs": p.epochs, "seed": p.seed,
        "package": str(lineage.get("calibration_package")),
        "config": str(next((v for k, v in lineage.items() if k != "calibration_package"),
                           None)),
        "key": json.dumps(key, sort_keys=True),
    }


def record_frontier(fit_dir: str | Path, point: dict[str, Any]) -> pd.DataFrame:
    """The fit directory's frontier with `point` added (or replacing its earlier self)."""
    path = Path(fit_dir) / FRONTIER
    frame = pd.read_csv(path, keep_default_na=False) if path.is_file() else None
    if frame is None or list(frame.columns) != COLUMNS:
        frame = pd.DataFrame(columns=COLUMNS)
    same = (frame["package"] == point["package"]) & (frame["config"] == point["config"])
    frame = frame[same & (frame["key"] != point["key"])]
    frame = pd.concat([frame, pd.DataFrame([point], columns=COLUMNS)], ignore_index=True)
    frame = frame.sort_values("records_kept", kind="stable").reset_index(drop=True)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return frame


def frontier_svg(frame: pd.DataFrame, kept: int, training_error: float, split_error: float,
                 title: str) -> str:
    """Training and split error against records kept; the current fit's two points ringed."""
    xs = frame["records_kept"].astype(float).tolist()
    return scatter_svg(
        [Series("training error", xs, frame["training_error"].astype(float).tolist(), True),
         Series("split error", xs, frame["split_error"].astype(float).tolist(), True)],
        title, "records kept", "mean |rel error|",
        marked=[(kept, training_error, "this fit"), (kept, split_error, "")])
