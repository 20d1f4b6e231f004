"""X·w consistency: the matrix's totals must equal what the engine computes from the files.

The two sides come from separate code (matrix builder vs. validation's own aggregation over
the published H5s), so agreement proves the files hold what the optimizer fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.core.report import GateReport, Rule
from pipeline.fit.training import products_f64
from pipeline.package.store import CalibrationPackage


@dataclass(frozen=True)
class ConsistencyReport:
    passed: bool
    tolerance: float
    n_targets: int
    max_rel_deviation: float
    mean_rel_deviation: float
    worst: pd.DataFrame  # target_name, xw, h5_total, abs_deviation, rel_deviation
    missing: list[str]

    def gate_report(self) -> GateReport:
        rules = [
            Rule("within_tolerance", self.max_rel_deviation <= self.tolerance,
                 f"{self.n_targets} selected targets: max relative deviation "
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
             "missing": float(len(self.missing))},
            {"worst": self.worst.to_dict(orient="records")},
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
) -> ConsistencyReport:
    """Compare X·w with the H5 totals (`target_name` + `sim_value`) for every selected target.

    Weights are rounded to float32 first, as the H5 files store them, so the only remaining
    differences are X's float32 values and summation order (~1e-6 relative).
    Relative deviation is |X·w − total| / max(|total|, 1).
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
    w = weights.astype(np.float32).astype(np.float64)
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
    return ConsistencyReport(
        passed=not missing and max_rel <= tolerance, tolerance=tolerance, n_targets=len(rows),
        max_rel_deviation=max_rel, mean_rel_deviation=mean_rel,
        worst=worst.reset_index(drop=True), missing=missing,
    )
