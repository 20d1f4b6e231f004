"""Gate 2: judge the validation results against the current release before publishing.

Production leaves this to a person reading the validation CSV; here each rule is code and
the review says which target or group broke which rule, so a blocked release explains
itself. Every publishing fit is judged: a row is a (fit, target) pair, compared with the same pair
in CURRENT.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pydantic import Field

from pipeline.core.contracts import check_table
from pipeline.core.fit_table import LOCAL
from pipeline.core.report import GateReport, Rule, over
from pipeline.core.settings import Settings
from pipeline.targets.split import VALIDATION_SPLIT
from pipeline.validate.scoring import ABSOLUTE, IN_SCOPE, OUT_OF_SCOPE, domain_of
from pipeline.validate.totals import VALIDATION_RESULTS

# The columns of validation_results.csv this gate reads; the baseline (CURRENT) may be an
# older CSV without a score, judged by production's rel_abs_error instead.
REQUIRED = VALIDATION_RESULTS.select_columns(
    ["area_type", "area_id", "variable", "target_name", "target_value", "sim_value",
     "rel_abs_error", "sanity_check", "in_training", "holdout_group", "error_rule",
     "error_floor", "score", "scope", "fit"]
).update_columns({c: {"required": True}
                  for c in ("holdout_group", "error_rule", "error_floor", "score", "scope",
                            "fit")})
BASELINE = VALIDATION_RESULTS.select_columns(["target_name", "rel_abs_error", "score", "fit"])


class QualityThresholds(Settings):
    target_regression: float = Field(0.05, ge=0, description="allowed rise of one trained "
                                     "target's score against CURRENT")
    group_regression: float = Field(0.01, ge=0, description="allowed rise of a (variable, "
                                    "area_type) mean score against CURRENT")
    heldout_regression: float = Field(0.02, ge=0, description="allowed rise of a held-out "
                                      "group's median or p90 score against CURRENT, over the "
                                      "targets both runs validated")
    max_median_training_error: float = Field(0.10, ge=0, description="with no release yet: "
                                             "the median trained score allowed")
    top: int = Field(10, ge=1, description="offenders listed per rule")


def heldout_metrics(validation: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per fit and held-out group (`<fit>/<holdout_group>`): count, median and p90 of the
    in-scope scores.

    Median and p90, not the mean: one cell far off would swamp a mean. Every group is
    measured the same way: the validation split, the EITC-by-AGI-and-children table, the
    negative AGI totals.
    """
    groups = heldout_groups(validation)
    return {g: _stats(rows) for g, rows in validation["score"].groupby(groups) if g}


def heldout_groups(validation: pd.DataFrame) -> pd.Series:
    """Each row's held-out metric, `<fit>/<holdout_group>`, or "" where none counts it:
    trained rows (a published fit trains the validation split: its held-out twin's rows
    measure it), out-of-scope rows, and split targets of a (variable, area type, domain)
    the fit does not train on (`pipeline.targets.split.split_scope`: a split target of a
    group the config leaves out says nothing about how the fit generalizes)."""
    v = validation

    def key(frame: pd.DataFrame) -> pd.Series:
        return (frame["fit"] + "|" + frame["variable"] + "|" + frame["area_type"] + "|"
                + domain_of(frame["target_name"].astype(str)))

    in_training = v["in_training"].astype(bool)
    trained = set(key(v[in_training]))
    counted = (v["holdout_group"] != "") & ~in_training & (v["scope"] == IN_SCOPE) & (
        (v["holdout_group"] != VALIDATION_SPLIT) | key(v).isin(trained))
    return pd.Series(np.where(counted, v["fit"] + "/" + v["holdout_group"], ""),
                     index=v.index)


def _stats(score: pd.Series) -> dict[str, float]:
    x = score.to_numpy(dtype=np.float64)
    return {"count": float(len(x)), "median": float(np.median(x)),
            "p90": float(np.quantile(x, 0.9))}


def review_quality(
    validation: pd.DataFrame,
    baseline: pd.DataFrame | None,
    thresholds: QualityThresholds | None = None,
    rebudgeted: frozenset[str] = frozenset(),
) -> GateReport:
    """Pass only when nothing is non-finite, no sanity check failed and nothing regressed.

    Errors are the robust `score` (`pipeline.validate.scoring`); out-of-scope targets are
    reported, never judged. Rows are matched on (fit, target_name); targets new in this run
    cannot regress and targets the baseline had but this run lacks are reported, not
    failed. CURRENT is re-scored against this run's targets (`_baseline_scores`). Per-target
    and per-group regressions gate only the targets this run trained
    on (a target a config edit took out of training is expected to drift and is listed in
    `worst_regressions`); each held-out group's median and p90 gate generalization.
    """
    t = thresholds or QualityThresholds()
    _require(validation, REQUIRED, "validation results")
    v = validation.assign(in_training=validation["in_training"].astype(bool))
    v = v.assign(heldout=heldout_groups(v))
    scored = v[v["scope"] == IN_SCOPE]
    rules = [_finite(v), _sanity(v)]
    worst = pd.DataFrame(columns=["fit", "target_name", "variable", "area_type", "in_training",
                                  "baseline_score", "score", "increase"])
    heldout = heldout_metrics(v)
    if baseline is None:
        rules.append(_absolute(scored, t))
    else:
        if "fit" not in baseline:  # written before the national fit: one fit's files
            baseline = baseline.assign(fit=LOCAL.name)
        _require(baseline, BASELINE, "baseline validation results")
        base = _baseline_scores(baseline, scored)
        merged = scored.merge(base, on=["fit", "target_name"], how="inner")
        merged["increase"] = merged["score"] - merged["baseline_score"]
        worst = (merged.sort_values("increase", ascending=False, kind="stable")
                 .head(t.top)[list(worst.columns)].reset_index(drop=True))
        trained = merged[merged["in_training"]]
        rules.append(_target_regression(trained, t))
        rules.append(_group_regression(trained, t))
        rules.append(_heldout_regression(merged, heldout, t, rebudgeted))
        dropped = sorted(set(baseline["fit"] + "/" + baseline["target_name"])
                         - set(v["fit"] + "/" + v["target_name"]))
        rules.append(Rule("coverage", True,
                          f"{len(merged)} targets compared, {len(scored) - len(merged)} new "
                          f"or out of scope, {len(dropped)} no longer validated"
                          + _listed(dropped[: t.top])))
    trained = scored.loc[scored["in_training"], "score"].to_numpy(dtype=np.float64)
    metrics = {
        "trained_median_score": float(np.median(trained)) if len(trained) else 0.0,
        "trained_p90_score": float(np.quantile(trained, 0.9)) if len(trained) else 0.0,
        "trained_max_score": float(trained.max()) if len(trained) else 0.0,
        "largest_score_increase": float(worst["increase"].max()) if len(worst) else 0.0,
        "absolute_rule_targets": float((v["error_rule"] == ABSOLUTE).sum()),
        "out_of_scope_targets": float((v["scope"] == OUT_OF_SCOPE).sum()),
        **{f"heldout_{g.replace('/', '_')}_{k}": val for g, stats in heldout.items()
           for k, val in stats.items()},
    }
    return GateReport.of(rules, metrics, {"worst_regressions": worst.to_dict(orient="records"),
                                          "heldout": heldout})


def _baseline_scores(baseline: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """CURRENT's simulated totals scored against this run's target values and floors, and
    whether CURRENT trained on each target (`baseline_trained`).

    A target DB change (new statistics, uprating to another year) moves the targets under
    both releases alike; judged against its own old targets, CURRENT would look better than
    it is and the new run would read as a regression. A baseline CSV without `sim_value`
    keeps its own scores (or production's rel_abs_error).
    """
    key = ["fit", "target_name"]
    base = baseline.assign(baseline_trained=baseline["in_training"].astype(bool)
                           if "in_training" in baseline else False)
    if "sim_value" not in base:
        own = base["score"] if "score" in base else base["rel_abs_error"]
        return base.assign(baseline_score=own)[[*key, "baseline_score", "baseline_trained"]]
    now = scored[[*key, "target_value", "error_floor"]]
    both = base[[*key, "sim_value", "baseline_trained"]].merge(now, on=key, how="inner")
    target = both["target_value"].to_numpy(np.float64)
    gap = np.abs(both["sim_value"].to_numpy(np.float64) - target)
    score = gap / np.maximum(np.abs(target), both["error_floor"].to_numpy(np.float64))
    return both.assign(baseline_score=score)[[*key, "baseline_score", "baseline_trained"]]


def _require(df: pd.DataFrame, schema: pa.DataFrameSchema, what: str) -> None:
    check_table(schema, df, None,
                f"pass as the {what} the frame validate_h5s writes (validation_results.csv)")


def _finite(v: pd.DataFrame) -> Rule:
    bad = v.loc[~np.isfinite(v["sim_value"].to_numpy(dtype=np.float64)), "target_name"]
    return Rule("finite", bad.empty, f"{len(bad)} non-finite sim values" + _listed(bad[:10]),
                tuple(bad[:10]), value=float(len(bad)), limit=0.0)


def _sanity(v: pd.DataFrame) -> Rule:
    failed = v.loc[v["sanity_check"] == "FAIL"]
    areas = sorted(set(zip(failed["area_type"], failed["area_id"], strict=True)))
    return Rule("sanity", failed.empty, f"{len(areas)} areas with a sanity FAIL"
                + _listed(f"{a} {i}" for a, i in areas[:10]),
                tuple(f"{a} {i}" for a, i in areas[:10]), value=float(len(areas)), limit=0.0)


def _listed(names) -> str:
    """`: a, b, c` after a count, nothing when there are none."""
    names = [str(n) for n in names]
    return f": {', '.join(names)}" if names else ""


def _absolute(v: pd.DataFrame, t: QualityThresholds) -> Rule:
    train = v.loc[v["in_training"], "score"].to_numpy(dtype=np.float64)
    median = float(np.median(train)) if len(train) else 0.0
    return Rule("absolute", median <= t.max_median_training_error,
                f"no baseline; median training score {median:.4g} "
                f"(limit {t.max_median_training_error:.4g}, {len(train)} targets)",
                value=median, limit=t.max_median_training_error)


def _target_regression(merged: pd.DataFrame, t: QualityThresholds) -> Rule:
    worst = merged.sort_values("increase", ascending=False, kind="stable")
    bad = worst[worst["increase"] > t.target_regression]
    listed = tuple(f"{r.fit}/{r.target_name}: {over(r.increase, t.target_regression, True)}"
                   for r in bad.head(t.top).itertuples())
    return Rule("target_regression", bad.empty,
                f"{len(bad)} of {len(merged)} trained targets worse by more than "
                f"{t.target_regression:.4g}" + (f": {'; '.join(listed)}" if listed else ""),
                listed, value=float(worst["increase"].max()) if len(worst) else 0.0,
                limit=t.target_regression)


def _group_regression(merged: pd.DataFrame, t: QualityThresholds) -> Rule:
    groups = merged.groupby(["fit", "variable", "area_type"])[["score", "baseline_score"]]
    delta = groups.mean().eval("score - baseline_score").sort_values(ascending=False)
    bad = delta[delta > t.group_regression]
    listed = tuple(f"{fit} {var}/{area}: {over(d, t.group_regression, True)}"
                   for (fit, var, area), d in bad.items())[: t.top]
    return Rule("group_regression", bad.empty,
                f"{len(bad)} of {len(delta)} groups worse by more than "
                f"{t.group_regression:.4g}" + (f": {'; '.join(listed)}" if listed else ""),
                listed, value=float(delta.max()) if len(delta) else 0.0,
                limit=t.group_regression)


def _heldout_regression(merged: pd.DataFrame, heldout: dict[str, dict[str, float]],
                        t: QualityThresholds, rebudgeted: frozenset[str] = frozenset()
                        ) -> Rule:
    """Each held-out group's median and p90 against the baseline's over the targets both
    runs held out (a CURRENT from before a split trained on today's split targets); each
    pair marked OVER where its rise broke the tolerance.

    A fit whose record budget differs from CURRENT's (`rebudgeted`) is reported, not
    judged: fewer records generalize worse by design, and the user chose that trade-off
    (its trained targets are still judged, and the frontier shows what the budget costs).
    """
    lines, failing, rises = [], [], []
    both_held_out = (merged["heldout"] != "") & ~merged["baseline_trained"].astype(bool)
    for group, rows in merged[both_held_out].groupby("heldout"):
        now, before = _stats(rows["score"]), _stats(rows["baseline_score"])
        heldout[group].update(baseline_median=before["median"], baseline_p90=before["p90"])
        judged = group.split("/")[0] not in rebudgeted
        for stat in ("median", "p90"):
            rise = now[stat] - before[stat]
            pair = f"{group} {stat} {before[stat]:.4g} -> {now[stat]:.4g}"
            if not judged:
                lines.append(f"{pair} (record budget changed: not judged)")
                continue
            rises.append(rise)
            lines.append(f"{pair} ({over(rise, t.heldout_regression, True)})")
            if rise > t.heldout_regression:
                failing.append(f"{pair} ({over(rise, t.heldout_regression, True)})")
    shown = failing + [line for line in lines if "OVER" not in line]
    return Rule("heldout_regression", not failing,
                f"held-out scores against CURRENT (tolerance +{t.heldout_regression:.4g}): "
                + ("; ".join(shown) or "no held-out target in both runs"), tuple(failing),
                value=max(rises) if rises else None, limit=t.heldout_regression)
