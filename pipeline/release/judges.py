"""What each gate of the table (`gates.py`) judges: one function per gate, reading the
artifacts under a storage root with the profile's thresholds."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.core.fit_table import FITS, Fit, published
from pipeline.core.layout import RUN_CONFIG, Layout
from pipeline.core.parallel import InProcess, Runner
from pipeline.core.report import GateReport, Rule, combine
from pipeline.engine import VARIABLES
from pipeline.fit.review import review_fit
from pipeline.package.validity import validate_package
from pipeline.release.thresholds import GateSettings
from pipeline.release.versions import current_release, load_current_validation
from pipeline.targets.db import check_target_db
from pipeline.validate.consistency import xw_consistency
from pipeline.validate.fit_views import load_fits, walk_storage
from pipeline.validate.quality import review_quality
from pipeline.validate.sanity import sanity_report
from pipeline.validate.totals import engine_label, read_validation_csv, validate_h5s


@dataclass(frozen=True)
class GateContext:
    layout: Layout
    thresholds: GateSettings  # the profile's `gates` section
    runner: Runner = field(default_factory=InProcess)  # where per-file work runs
    fits: tuple[Fit, ...] = FITS
    profile: str | None = None  # the profile that set the thresholds (named in verdicts)


Judge = Callable[[GateContext], GateReport]


def target_db_integrity(ctx: GateContext) -> GateReport:
    problems = check_target_db(ctx.layout.target_db, VARIABLES)
    rule = Rule("integrity", not problems, f"{len(problems)} integrity problems",
                tuple(problems[:50]))
    return GateReport.of([rule], {"problems": float(len(problems))}, summary=rule.detail)


def package_validity(ctx: GateContext) -> GateReport:
    """Every fit's config: none may select a target no record can reach."""
    pkg, views = load_fits(ctx.layout, ctx.fits, matrix=True)
    return combine({v.fit: validate_package(replace(pkg, targets=v.targets), v.selected)
                    .gate_report() for v in views})


def fit_review(fit: Fit) -> Judge:
    """Gate 1 for one fit, against the same fit's record in CURRENT where it has one."""
    def judge(ctx: GateContext) -> GateReport:
        baseline = _current_run_config(ctx.layout, fit)
        return review_fit(ctx.layout.fit_dir(fit), ctx.thresholds.fit,
                          production_run_config=baseline)
    return judge


def _current_run_config(layout: Layout, fit: Fit) -> Path | None:
    """The fit's run config in CURRENT, where CURRENT has that fit and was built with this
    package's engine (another engine's X is another problem: its loss is no baseline)."""
    release = current_release(layout.root)
    if release is None or not same_engine(layout, release.manifest):
        return None
    path = release.path / fit.release_dir / RUN_CONFIG
    return path if path.is_file() else None


def same_engine(layout: Layout, manifest: dict) -> bool:
    """Whether a release was built with the engine of the package under `layout` (a release
    from before engines had names was builtin)."""
    package = json.loads((layout.package_dir / "metadata.json").read_text())
    ours = package.get("engine", {}).get("name", "builtin")
    return manifest.get("engine", {}).get("name", "builtin") == ours


def structural_sanity(ctx: GateContext) -> GateReport:
    pkg, views = load_fits(ctx.layout, published(ctx.fits))
    walked = walk_storage(ctx.layout, pkg, views, ctx.runner, ctx.thresholds.district_sample)
    return sanity_report(walked.walk.sanity)


def consistency(ctx: GateContext) -> GateReport:
    """Each publishing fit's X·w against the totals the files' engine computes from its own
    files (per file: max and mean relative deviation; the district files walked)."""
    layout, fits = ctx.layout, published(ctx.fits)
    pkg, views = load_fits(layout, fits, matrix=True)
    walked = walk_storage(layout, pkg, views, ctx.runner, ctx.thresholds.district_sample)
    totals = validate_h5s(walked, views)
    reports = {}
    for fit, view in zip(fits, views, strict=True):
        weights = np.load(layout.weights(fit), allow_pickle=False)
        files = dict(zip(view.rows["target_name"], walked.file_labels(fit.name), strict=True))
        reports[fit.name] = xw_consistency(
            pkg, weights, totals[totals["fit"] == fit.name], view.selected,
            tolerance=ctx.thresholds.consistency_tolerance, files=files,
            engine=engine_label(walked.engine),
            districts_walked=walked.districts_walked).gate_report()
    return combine(reports)


def rebudgeted(layout: Layout, fits: tuple[Fit, ...] = FITS) -> frozenset[str]:
    """The fits whose record budget differs from CURRENT's (a choice, not a regression)."""
    changed = set()
    for fit in fits:
        theirs, ours = _current_run_config(layout, fit), layout.run_config(fit)
        if theirs is None or not ours.is_file():
            continue
        budgets = [json.loads(p.read_text())["params"].get("records") for p in (theirs, ours)]
        if budgets[0] != budgets[1]:
            changed.add(fit.name)
    return frozenset(changed)


def simulation_quality(ctx: GateContext) -> GateReport:
    baseline = load_current_validation(ctx.layout.root)
    release = current_release(ctx.layout.root)
    other = release is not None and not same_engine(ctx.layout, release.manifest)
    if other:  # another engine computes every total differently: no per-target baseline
        baseline = None
    report = review_quality(read_validation_csv(ctx.layout.validation_csv), baseline,
                            ctx.thresholds.quality, rebudgeted(ctx.layout, ctx.fits))
    against = ("the CURRENT release" if baseline is not None
               else "absolute tolerances (CURRENT was built with another engine)" if other
               else "absolute tolerances (no release yet)")
    return GateReport(report.passed, f"judged against {against}: {report.summary}",
                      report.rules, report.metrics, report.details)
