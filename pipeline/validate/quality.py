"""Gate 2: judge the validation results against the current release before publishing.

Production leaves this to a person reading the validation CSV; here each rule is code and
the review says which target or group broke which rule, so a blocked release explains
itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from pipeline.core.report import GateReport, Rule
from pipeline.core.settings import Settings
from pipeline.core.tables import check_table
from pipeline.validate.totals import VALIDATION_RESULTS

# The columns of validation_results.csv this gate reads.
REQUIRED = VALIDATION_RESULTS.select_columns(["area_type", "area_id", "variable", "target_name",
                                              "sim_value", "rel_abs_error", "sanity_check",
                                              "in_training"])


class QualityThresholds(Settings):
    target_regression: float = Field(0.05, ge=0, description="allowed rise of one trained "
                                     "target's rel_abs_error against CURRENT")
    group_regression: float = Field(0.01, ge=0, description="allowed rise of a (variable, "
                                    "area_type) mean rel_abs_error against CURRENT")
    max_median_training_error: float = Field(0.10, ge=0, description="with no release yet: "
                                             "the median trained rel_abs_error allowed")
    top: int = Field(10, ge=1, description="offenders listed per rule")


def review_quality(
    validation: pd.DataFrame,
    baseline: pd.DataFrame | None,
    thresholds: QualityThresholds | None = None,
) -> GateReport:
    """Pass only when nothing is non-finite, no sanity check failed and nothing regressed.

    Targets are matched on `target_name`; targets new in this run cannot regress and
    targets the baseline had but this run lacks are reported, not failed. Regressions gate
    only the targets this run trained on: a held-out target, or one a config edit took out
    of training, is expected to drift and is reported in `worst_regressions` instead.
    """
    t = thresholds or QualityThresholds()
    _require(validation, "validation results")
    v = validation.assign(in_training=validation["in_training"].astype(bool))
    rules = [_finite(v), _sanity(v)]
    worst = pd.DataFrame(columns=["target_name", "variable", "area_type", "in_training",
                                  "baseline_rel_abs_error", "rel_abs_error", "increase"])
    if baseline is None:
        rules.append(_absolute(v, t))
    else:
        _require(baseline, "baseline validation results")
        merged = v.merge(baseline[["target_name", "rel_abs_error"]].rename(
            columns={"rel_abs_error": "baseline_rel_abs_error"}), on="target_name", how="inner")
        merged["increase"] = merged["rel_abs_error"] - merged["baseline_rel_abs_error"]
        worst = (merged.sort_values("increase", ascending=False, kind="stable")
                 .head(t.top)[list(worst.columns)].reset_index(drop=True))
        trained = merged[merged["in_training"]]
        rules.append(_target_regression(trained, t))
        rules.append(_group_regression(trained, t))
        dropped = sorted(set(baseline["target_name"]) - set(v["target_name"]))
        rules.append(Rule("coverage", True,
                                f"{len(merged)} targets compared, {len(v) - len(merged)} new, "
                                f"{len(dropped)} no longer validated {dropped[: t.top]}"))
    held = v.loc[~v["in_training"], "rel_abs_error"].to_numpy(dtype=np.float64)
    holdout = {"count": float(len(held))}
    if len(held):
        holdout.update(median_rel_abs_error=float(np.median(held)),
                       mean_rel_abs_error=float(np.mean(held)),
                       max_rel_abs_error=float(np.max(held)))
    trained = v.loc[v["in_training"], "rel_abs_error"].to_numpy(dtype=np.float64)
    metrics = {"trained_median_rel_abs_error": float(np.median(trained)) if len(trained) else 0.0,
               **{f"holdout_{k}": val for k, val in holdout.items()}}
    return GateReport.of(rules, metrics, {"worst_regressions": worst.to_dict(orient="records"),
                                          "holdout": holdout})


def _require(df: pd.DataFrame, what: str) -> None:
    check_table(REQUIRED, df, None,
                f"pass as the {what} the frame validate_h5s writes (validation_results.csv)")


def _finite(v: pd.DataFrame) -> Rule:
    bad = v.loc[~np.isfinite(v["sim_value"].to_numpy(dtype=np.float64)), "target_name"]
    return Rule("finite", bad.empty, f"{len(bad)} non-finite sim values {list(bad[:10])}")


def _sanity(v: pd.DataFrame) -> Rule:
    failed = v.loc[v["sanity_check"] == "FAIL"]
    areas = sorted(set(zip(failed["area_type"], failed["area_id"], strict=True)))
    return Rule("sanity", failed.empty, f"{len(areas)} areas with a sanity FAIL {areas[:10]}")


def _absolute(v: pd.DataFrame, t: QualityThresholds) -> Rule:
    train = v.loc[v["in_training"], "rel_abs_error"].to_numpy(dtype=np.float64)
    median = float(np.median(train)) if len(train) else 0.0
    return Rule("absolute", median <= t.max_median_training_error,
                      f"no baseline; median training rel_abs_error {median:.4g} "
                      f"(limit {t.max_median_training_error:.4g}, {len(train)} targets)")


def _target_regression(merged: pd.DataFrame, t: QualityThresholds) -> Rule:
    bad = merged.loc[merged["increase"] > t.target_regression, "target_name"]
    return Rule("target_regression", bad.empty,
                      f"{len(bad)} targets worse by more than {t.target_regression:.4g} "
                      f"{list(bad[: t.top])}")


def _group_regression(merged: pd.DataFrame, t: QualityThresholds) -> Rule:
    groups = merged.groupby(["variable", "area_type"])[["rel_abs_error", "baseline_rel_abs_error"]]
    delta = groups.mean().eval("rel_abs_error - baseline_rel_abs_error")
    bad = delta[delta > t.group_regression].sort_values(ascending=False)
    listed = [f"{var}/{area}: +{d:.4g}" for (var, area), d in bad.items()][: t.top]
    return Rule("group_regression", bad.empty,
                      f"{len(bad)} of {len(delta)} groups worse by more than "
                      f"{t.group_regression:.4g} {listed}")
