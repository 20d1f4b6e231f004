"""The fit's files; each is written under a temporary name and renamed into place.

`checkpoint.pt` is written by the fit itself (periodically and at the end of the L0 phase).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_path, write_json
from pipeline.core.layout import CALIBRATION_LOG, DIAGNOSTICS, RUN_CONFIG, WEIGHTS
from pipeline.fit.training import FitResult, rel_error


def diagnostics_frame(result: FitResult) -> pd.DataFrame:
    """Production's unified_diagnostics columns for every target, plus selection and group."""
    rel = rel_error(result.estimates, result.y)
    frame = pd.DataFrame({
        "target": result.target_names, "true_value": result.y, "estimate": result.estimates,
        "rel_error": rel, "abs_rel_error": np.abs(rel), "achievable": result.achievable,
        "selected": result.selected,
    })
    if result.targets is not None:
        for col in ("variable", "geo_level", "holdout_group"):
            frame[col] = result.targets[col].astype(str).to_numpy()
    return frame


def run_config(result: FitResult, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "params": result.params.to_dict(),
        "n_targets": int(len(result.y)),
        "n_selected": int(result.selected.sum()),
        "n_columns": int(len(result.weights)),
        "records_kept": result.kept,
        "final_loss": result.final_loss,
        "error_summary": result.error_summaries["exported"],
        "error_summaries": result.error_summaries,
        # Generalization: the held-out split targets of the groups this fit trains on.
        "validation_split": result.error_summaries.get("validation_split"),
        "budget": result.budget,
        "stopping": result.stopping,
        "identity": result.identity,
        "device": result.device,
        "epochs_per_second": result.epochs_per_second,
        "loss_history": result.loss_history,
        "relative_error": "(estimate - true_value) / (true_value + 1), as in the loss",
        **extra,
    }


def write_outputs(result: FitResult, out_dir: str | Path, extra: dict[str, Any]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / WEIGHTS) as tmp, open(tmp, "wb") as f:
        np.save(f, result.weights.astype(np.float64))
    with atomic_path(out / DIAGNOSTICS) as tmp:
        diagnostics_frame(result).to_csv(tmp, index=False)
    with atomic_path(out / CALIBRATION_LOG) as tmp:
        result.log.to_csv(tmp, index=False)
    write_json(out / RUN_CONFIG, run_config(result, extra))  # last: its presence means done
    return out
