"""Gate 1: the fit review a person used to do by eye on the dashboard, as rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from pipeline.core.errors import InputError
from pipeline.core.layout import CALIBRATION_LOG, DIAGNOSTICS, RUN_CONFIG, WEIGHTS
from pipeline.core.report import GateReport, Rule
from pipeline.core.settings import Settings
from pipeline.fit.training import FitResult


class FitThresholds(Settings):
    tail_fraction: float = Field(0.2, gt=0, le=1, description='"the last part of training": '
                                 "this share of epochs and log points")
    loss_tolerance: float = Field(0.05, ge=0, description="max relative loss change over "
                                  "the tail")
    # 1e-6 per target is 0.1% RMS: near-zero losses move by large ratios, which is noise.
    loss_floor: float = Field(1e-6, ge=0, description="a tail change below this per selected "
                              "target (mean squared relative error) is noise")
    divergence_tolerance: float = Field(0.01, ge=0, description="max rise of a target group's "
                                        "mean |rel error| over the tail")
    production_tolerance: float = Field(0.10, ge=0, description="final loss per target may "
                                        "exceed the CURRENT release's by this share")
    budget_tolerance: float = Field(0.05, ge=0, description="with a record budget: the L0 "
                                    "phase's final expected open count may miss it by this "
                                    "share (the keep set is then cut to it)")
    # The absolute floor: relative rules alone pass a fit that learnt nothing (a NaN loss
    # is "converged", no group "diverges" from 100% error, and with no release yet there is
    # no production fit to be worse than).
    max_mean_error: float = Field(0.10, gt=0, description="ceiling on the trained targets' "
                                  "mean |relative error| (exported weights)")
    max_loss_per_target: float = Field(0.05, gt=0, description="ceiling on the final loss "
                                       "per trained target (mean squared relative error)")
    min_records_kept: int = Field(1, ge=1, description="a fit keeping fewer records fails")


def review_fit(
    fit: str | Path | FitResult,
    thresholds: FitThresholds | None = None,
    production_run_config: str | Path | dict[str, Any] | None = None,
) -> GateReport:
    t = thresholds or FitThresholds()
    weights, history, final_loss, log, groups, n_selected, budget, errors = _load(fit)
    kept = int(np.count_nonzero(weights > 0))
    checks = (
        _weights_rule(weights),
        _converged_rule(history, n_selected, t),
        _divergence_rule(log, groups, t),
        _production_rule(final_loss, n_selected, production_run_config, t,
                         budget.get("records")),
        _budget_rule(budget, t),
        _finite_rule(history, final_loss, errors),
        _ceiling_rule(errors, final_loss, n_selected, kept, t),
    )
    metrics = {"final_loss_per_target": final_loss / max(n_selected, 1),
               "targets_trained": float(n_selected),
               "records_kept": float(kept)}
    for _, figures in checks:
        metrics.update(figures)
    return GateReport.of([rule for rule, _ in checks], metrics)


def _load(fit: str | Path | FitResult):
    if isinstance(fit, FitResult):
        history = fit.loss_history
        names = np.asarray(fit.target_names, dtype=object)
        if fit.targets is not None:
            tg = fit.targets
            labels = tg["variable"].astype(str) + " × " + tg["geo_level"].astype(str)
            groups = dict(zip(names, labels, strict=True))
        else:
            groups = {n: _group_from_name(n) for n in names}
        return (fit.weights, history, fit.final_loss, fit.log, groups,
                int(fit.selected.sum()), fit.budget, fit.error_summaries["exported"])
    out = Path(fit)
    for name in (WEIGHTS, RUN_CONFIG, CALIBRATION_LOG, DIAGNOSTICS):
        if not (out / name).is_file():
            raise InputError(out / name, name, "missing from the fit directory",
                             "run `calibrate fit` to completion first")
    config = json.loads((out / RUN_CONFIG).read_text())
    diag = pd.read_csv(out / DIAGNOSTICS, keep_default_na=False)
    if {"variable", "geo_level"} <= set(diag.columns):
        labels = diag["variable"].astype(str) + " × " + diag["geo_level"].astype(str)
        groups = dict(zip(diag["target"].astype(str), labels, strict=True))
    else:
        groups = {n: _group_from_name(n) for n in diag["target"].astype(str)}
    log = pd.read_csv(out / CALIBRATION_LOG, keep_default_na=False, dtype={"target_name": str})
    weights = np.load(out / WEIGHTS, allow_pickle=False)
    return (weights, config["loss_history"], float(config["final_loss"]), log, groups,
            int(config["n_selected"]), config.get("budget") or {}, config["error_summary"])


def _group_from_name(name: str) -> str:
    """`cd_3701/household_count/[snap>0]` → `household_count × district` (no target frame)."""
    parts = name.split("/")
    geo = {"nation": "national", "state": "state", "cd": "district"}.get(
        parts[0].split("_")[0], parts[0])
    return f"{parts[1] if len(parts) > 1 else name} × {geo}"


Checked = tuple[Rule, dict[str, float]]  # a rule and the numbers it judged (for the UI)


def _finite_rule(history: dict[str, list[float]], final_loss: float,
                 errors: dict[str, float]) -> Checked:
    """Every loss the fit logged and every error it reports is a number."""
    bad = [f"{phase} loss" for phase, losses in history.items()
           if not np.isfinite(np.asarray(losses, dtype=float)).all()]
    bad += [] if np.isfinite(final_loss) else ["final loss"]
    bad += [f"{name} error" for name, value in errors.items() if not np.isfinite(value)]
    return (Rule("fit_finite", not bad, "every loss and error is finite" if not bad else
                 f"not finite: {', '.join(bad)}", tuple(bad)),
            {"non_finite_values": float(len(bad))})


def _ceiling_rule(errors: dict[str, float], final_loss: float, n_selected: int, kept: int,
                  t: FitThresholds) -> Checked:
    """The absolute floor: whatever the baseline, a fit must fit and keep records."""
    mean, loss = float(errors.get("mean", np.nan)), final_loss / max(n_selected, 1)
    failing = tuple(
        problem for problem, bad in (
            (f"mean |rel error| {mean:.4g} > {t.max_mean_error:g}",
             not mean <= t.max_mean_error),
            (f"loss per target {loss:.4g} > {t.max_loss_per_target:g}",
             not loss <= t.max_loss_per_target),
            (f"{kept:,} records kept < {t.min_records_kept:,}", kept < t.min_records_kept),
        ) if bad)
    detail = (f"trained mean |rel error| {mean:.4g} (ceiling {t.max_mean_error:g}), loss per "
              f"target {loss:.4g} (ceiling {t.max_loss_per_target:g}), {kept:,} records kept "
              f"(at least {t.min_records_kept:,})")
    if failing:
        detail += ("; the fit did not fit: check lambda_l0, lambda_l2 and the epochs against "
                   "the profile's (`calibrate fit --profile NAME`)")
    return (Rule("absolute_floor", not failing, detail, failing),
            {"mean_rel_error": mean, "loss_per_target": loss})


def _weights_rule(weights: np.ndarray) -> Checked:
    bad = int((~np.isfinite(weights)).sum())
    neg = int((weights < 0).sum())
    ok = bad == 0 and neg == 0
    return (Rule("weights_valid", ok, f"{bad} non-finite, {neg} negative of {len(weights)}"),
            {"weights_non_finite": float(bad), "weights_negative": float(neg)})


def _converged_rule(history: dict[str, list[float]], n_selected: int,
                    t: FitThresholds) -> Checked:
    """Judged on the final phase: the L0 term vanishes at the polish switch by design."""
    phase = "polish" if history.get("polish") else "l0"
    losses = np.asarray(history.get(phase, []), dtype=float)
    if len(losses) < 2:
        return Rule("loss_converged", False, f"only {len(losses)} {phase} epochs logged"), {}
    start = losses[max(0, int(len(losses) * (1 - t.tail_fraction)) - 1)]
    change = abs(losses[-1] - start) / max(abs(start), 1e-12)
    ok = bool(np.isfinite(change) and (change < t.loss_tolerance
                                        or abs(losses[-1] - start) < t.loss_floor * n_selected))
    return (Rule("loss_converged", ok,
                 f"{phase} loss {start:.6g} → {losses[-1]:.6g} over the last "
                 f"{t.tail_fraction:.0%}: relative change {change:.3g} "
                 f"(tolerance {t.loss_tolerance}, floor {t.loss_floor} x {n_selected} targets)"),
            {"tail_loss_change": float(change)})


def _divergence_rule(log: pd.DataFrame, groups: dict[str, str], t: FitThresholds) -> Checked:
    epochs = np.sort(log["epoch"].unique())
    if len(epochs) < 2:
        return (Rule("no_group_diverging", True, "fewer than 2 log points: nothing to compare"),
                {})
    tail = epochs[epochs >= epochs[max(0, int(len(epochs) * (1 - t.tail_fraction)) - 1)]]
    frame = log[log["epoch"].isin(tail)].assign(
        group=log["target_name"].astype(str).map(groups).fillna("unknown"))
    err = frame.groupby(["group", "epoch"])["rel_abs_error"].mean().unstack("epoch")
    rise = err[tail[-1]] - err.min(axis=1)
    failing = tuple(sorted(rise[rise > t.divergence_tolerance].index))
    worst = f"worst {rise.idxmax()} +{rise.max():.4g}" if len(rise) else "no groups"
    return (Rule("no_group_diverging", not failing,
                 f"mean |rel error| rise over epochs {tail[0]}–{tail[-1]}: {worst} "
                 f"(tolerance {t.divergence_tolerance})", failing),
            {"worst_group_rise": float(rise.max()) if len(rise) else 0.0,
             "groups_diverging": float(len(failing))})


def _production_rule(final_loss: float, n_selected: int,
                     production: str | Path | dict[str, Any] | None,
                     t: FitThresholds, records: int | None = None) -> Checked:
    """Compared per trained target: a config that adds targets adds loss terms, and one
    that drops targets would otherwise pass while fitting the rest worse.

    Skipped when the record budget changed: fewer records fit worse by design, a choice
    the user made; gate 2 still judges the published errors and the split's."""
    if production is None:
        return (Rule("not_worse_than_production", True,
                     "skipped: no production run config given"), {})
    if not isinstance(production, dict):
        path = Path(production)
        if not path.is_file():
            raise InputError(path, None, "production run config not found",
                             "pass the run_config.json of the current release")
        production = json.loads(path.read_text())
    theirs = (production.get("params") or {}).get("records")
    if theirs != records:
        return (Rule("not_worse_than_production", True,
                     f"skipped: the record budget changed ({theirs} in the production run, "
                     f"{records} here)"), {})
    for key in ("final_loss", "n_selected"):
        if key not in production:
            raise InputError(None, key, "missing from the production run config",
                             "pass a run_config.json written by `calibrate fit`")
    ours = final_loss / max(n_selected, 1)
    ref = float(production["final_loss"]) / max(int(production["n_selected"]), 1)
    limit = max(ref * (1 + t.production_tolerance), t.loss_floor)
    return (Rule("not_worse_than_production", ours <= limit,
                 f"final loss per trained target {ours:.6g} vs production {ref:.6g} "
                 f"(limit {limit:.6g}: {t.production_tolerance:.0%} worse, or the noise "
                 f"floor {t.loss_floor:g})"),
            {"production_loss_per_target": ref,
             "loss_vs_production": ours / ref if ref > 0 else float("inf")})


KEPT_TOLERANCE = 0.02  # the promise a record budget makes: kept records within ±2%


def _budget_rule(budget: dict[str, Any], t: FitThresholds) -> tuple[Rule, dict[str, float]]:
    """Kept within ±2% of the budget, and the L0 phase itself near it: a keep set cut far
    from where training ended was chosen by the cut, not by the fit."""
    records = budget.get("records")
    if records is None:
        return Rule("record_budget", True, "no record budget"), {}
    kept, expected = budget["kept"], budget["expected_open"][-1]
    kept_off, l0_off = kept / records - 1, expected / records - 1
    allocated = budget.get("allocation_records")
    if allocated is None:
        ok = abs(kept_off) <= KEPT_TOLERANCE
        detail = (f"{kept:,} records kept for a budget of {records:,} ({kept_off:+.1%}, "
                  f"tolerance ±{KEPT_TOLERANCE:.0%})")
    else:  # a learned allocation may spend less than the budget, never more
        ok = kept == allocated and kept_off <= KEPT_TOLERANCE
        detail = (f"{kept:,} records kept, the learned allocation's {allocated:,}, for a "
                  f"budget of {records:,} ({kept_off:+.1%}, at most +{KEPT_TOLERANCE:.0%})")
    ok = ok and abs(l0_off) <= t.budget_tolerance
    detail += (f"; the L0 phase ended with {expected:,.0f} gates expected open "
               f"({l0_off:+.1%}, tolerance ±{t.budget_tolerance:.0%})")
    if abs(l0_off) > t.budget_tolerance:
        detail += ("; the budget was not reached within the epochs: give more epochs, or a "
                   "budget nearer the records the fit keeps")
    return (Rule("record_budget", ok, detail),
            {"record_budget": float(records), "budget_kept_off": kept_off,
             "budget_l0_off": l0_off})
