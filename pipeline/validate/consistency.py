"""X·w consistency: the matrix's totals must equal what the engine computes from the files.

The two sides come from separate code (matrix builder vs. validation's own aggregation over
the published H5s, loaded in the engine of the release as a user loads them), so agreement
proves the files hold what the optimizer fitted, in the engine users run. The weights are
the published ones (`published_weights`: a kept column weighs at least the minimum
weight), rounded to float32 as the files store them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.core.report import GateReport, Rule
from pipeline.fit.training import products_f64
from pipeline.package.store import CalibrationPackage
from pipeline.publish.stacking import published_weights


@dataclass(frozen=True)
class ConsistencyReport:
    passed: bool
    tolerance: float
    n_targets: int
    max_rel_deviation: float
    mean_rel_deviation: float
    worst: pd.DataFrame  # target_name, xw, h5_total, abs_deviation, rel_deviation
    missing: list[str]
    by_file: pd.DataFrame  # file, targets, max_rel_deviation, mean_rel_deviation
    engine: str = ""
    districts_walked: tuple[str, ...] = ()

    def gate_report(self) -> GateReport:
        under = f" under {self.engine}" if self.engine else ""
        rules = [
            Rule("within_tolerance", self.max_rel_deviation <= self.tolerance,
                 f"{self.n_targets} selected targets{under}: max relative deviation "
                 f"{self.max_rel_deviation:.3g}, mean {self.mean_rel_deviation:.3g} "
                 f"(tolerance {self.tolerance:g})",
                 tuple(self.worst.loc[self.worst["rel_deviation"] > self.tolerance,
                                      "target_name"])),
            Rule("every_target_in_files", not self.missing,
                 f"{len(self.missing)} selected targets missing from the files",
                 tuple(self.missing[:50])),
        ]
        return GateReport.of(
            rules,
            {"max_rel_deviation": self.max_rel_deviation,
             "mean_rel_deviation": self.mean_rel_deviation, "targets": float(self.n_targets),
             "missing": float(len(self.missing)), "files": float(len(self.by_file))},
            {"worst": self.worst.to_dict(orient="records"),
             "by_file": self.by_file.to_dict(orient="records"), "engine": self.engine,
             "districts_walked": list(self.districts_walked)},
            summary=rules[0].detail + f"; {len(self.missing)} missing from the files",
        )


def xw_consistency(
    package: CalibrationPackage,
    weights: np.ndarray,
    h5_totals: pd.DataFrame,
    selected: np.ndarray,
    *,
    tolerance: float = 0.01,
    top: int = 10,
    files: dict[str, str] | None = None,
    engine: str = "",
    districts_walked: list[str] | None = None,
) -> ConsistencyReport:
    """Compare X·w with the H5 totals (`target_name` + `sim_value`) for every selected target.

    Weights are the published ones rounded to float32, as the H5 files store them, so the
    only remaining differences are X's float32 values and summation order (~1e-6
    relative). Relative deviation is |X·w − total| / max(|total|, 1). `files` names each
    target's file, for the per-file maximum and mean.
    """
    selected = np.asarray(selected, dtype=bool)
    weights = np.asarray(weights)
    if selected.shape != (package.X.shape[0],) or weights.shape != (package.X.shape[1],):
        raise InputError(package.path, "selected/weights",
                         f"shapes {selected.shape}/{weights.shape} do not fit X {package.X.shape}",
                         "pass the selection and weights made for this package")
    for col in ("target_name", "sim_value"):
        if col not in h5_totals.columns:
            raise InputError(None, col, "missing from the H5 totals",
                             "pass the validation results frame")
    rows = np.flatnonzero(selected)
    w = published_weights(weights).astype(np.float32).astype(np.float64)
    [xw] = products_f64(package.X, [w])  # float64 one row block at a time: bounded memory
    xw = xw[rows]
    names = package.targets["target_name"].to_numpy()[rows]
    totals = h5_totals.drop_duplicates("target_name").set_index("target_name")["sim_value"]
    h5 = totals.reindex(names).to_numpy(dtype=np.float64)
    missing = [str(n) for n in names[np.isnan(h5)]]
    dev = np.abs(xw - h5)
    rel = dev / np.maximum(np.abs(h5), 1.0)
    frame = pd.DataFrame({"target_name": names, "xw": xw, "h5_total": h5,
                          "abs_deviation": dev, "rel_deviation": rel})
    known = frame.dropna(subset=["h5_total"])
    worst = known.sort_values("rel_deviation", ascending=False, kind="stable").head(top)
    max_rel = float(known["rel_deviation"].max()) if len(known) else 0.0
    mean_rel = float(known["rel_deviation"].mean()) if len(known) else 0.0
    known = known.assign(file=known["target_name"].map(files or {}).fillna("?"))
    by_file = (known.groupby("file")["rel_deviation"]
               .agg(targets="size", max_rel_deviation="max", mean_rel_deviation="mean")
               .reset_index())
    return ConsistencyReport(
        passed=not missing and max_rel <= tolerance, tolerance=tolerance, n_targets=len(rows),
        max_rel_deviation=max_rel, mean_rel_deviation=mean_rel,
        worst=worst.reset_index(drop=True), missing=missing, by_file=by_file, engine=engine,
        districts_walked=tuple(districts_walked or ()),
    )
