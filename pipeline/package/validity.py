"""Package validity: targets no weighting can reach, and ones that need extreme weights.

Exit codes match production's validator: 0 pass, 1 impossible targets (or no package),
2 strict-ratio failures (only when asked for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.core.report import GateReport, Rule
from pipeline.package.store import CalibrationPackage

DEFAULT_STRICT_RATIO = 0.01


@dataclass(frozen=True)
class PackageReport:
    n_targets: int
    n_selected: int
    impossible: pd.DataFrame      # selected targets with row sum 0 and value != 0
    strict_failures: pd.DataFrame  # selected targets with row sum / |value| < strict_ratio
    strict_ratio: float

    @property
    def passed(self) -> bool:
        return self.impossible.empty

    def exit_code(self, strict: bool) -> int:
        if not self.impossible.empty:
            return 1
        return 2 if strict and not self.strict_failures.empty else 0

    def gate_report(self) -> GateReport:
        rule = Rule("no_impossible_target", self.passed,
                    f"{len(self.impossible)} selected targets have no record that could count "
                    "towards them (row sum 0, target not 0)",
                    tuple(self.impossible["target_name"].head(50)))
        weak = Rule("strict_ratio_report", True,
                    f"{len(self.strict_failures)} selected targets have a row sum below "
                    f"{self.strict_ratio:g} x the target: even every contributing record at "
                    f"weight 1 reaches under {self.strict_ratio:.0%} of it, so they need "
                    f"average weights above {1 / self.strict_ratio:g}. Normal for a package "
                    "whose records stand for hundreds of households each; reported, not "
                    "blocking (`calibrate validate-package --strict` fails on it)")
        return GateReport.of(
            [rule, weak],
            {"package_targets_selected": float(self.n_selected),
             "package_targets": float(self.n_targets),
             "impossible": float(len(self.impossible)),
             "below_strict_ratio": float(len(self.strict_failures))},
            {"worst_strict": self.strict_failures.head(10).to_dict("records")},
            summary=(f"{self.n_selected} of {self.n_targets} package targets selected; "
                     f"{len(self.impossible)} impossible; {len(self.strict_failures)} need "
                     f"average weights above {1 / self.strict_ratio:g} (reported only)"),
        )

    def summary(self) -> str:
        lines = [
            f"{self.n_selected} of {self.n_targets} package targets selected; "
            f"{len(self.impossible)} impossible (no record can count towards them); "
            f"{len(self.strict_failures)} below the strict ratio {self.strict_ratio:g} "
            f"(row sum / target: they need average weights above {1 / self.strict_ratio:g}, "
            "normal when records stand for hundreds of households; fails only with --strict)",
        ]
        for name in self.impossible["target_name"].head(20):
            lines.append(f"  IMPOSSIBLE {name}")
        for name, ratio in self.strict_failures[["target_name", "ratio"]].head(20).itertuples(
            index=False
        ):
            lines.append(f"  STRICT {name}: row sum / target = {ratio:.3g}")
        return "\n".join(lines)


def validate_package(
    pkg: CalibrationPackage,
    selected: np.ndarray | None = None,
    strict_ratio: float = DEFAULT_STRICT_RATIO,
) -> PackageReport:
    if selected is None:  # what a fit would train on: every target but the held-out ones
        selected = pkg.targets["holdout"].astype(int).to_numpy() == 0
    row_sum = np.asarray(pkg.X.sum(axis=1), dtype=np.float64).ravel()
    value = pkg.targets["value"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(value != 0, row_sum / np.abs(value), np.inf)
    frame = pd.DataFrame({
        "target_name": pkg.targets["target_name"], "value": value,
        "row_sum": row_sum, "ratio": ratio,
    })
    impossible = frame[selected & (row_sum == 0) & (value != 0)]
    strict = frame[selected & (row_sum != 0) & (ratio < strict_ratio)]
    return PackageReport(
        n_targets=len(frame), n_selected=int(selected.sum()),
        impossible=impossible.reset_index(drop=True),
        strict_failures=strict.sort_values("ratio").reset_index(drop=True),
        strict_ratio=strict_ratio,
    )
