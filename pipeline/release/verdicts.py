"""Verdicts: what a gate decided, bound to the hashes of everything it judged, and the one
question promotion asks of them (`require_all_passed`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.core.atomic import write_json
from pipeline.core.fit_table import FITS, Fit
from pipeline.core.layout import Layout
from pipeline.core.lineage import artifact_hashes, artifacts, lineage_problems
from pipeline.core.report import GateReport
from pipeline.release.gates import CURRENT_RELEASE, Gate, gate_table
from pipeline.release.judges import GateContext
from pipeline.release.versions import current_release
from pipeline.release.waivers import Waiver, waive

NO_RELEASE = "none"


class GateError(RuntimeError):
    """Promotion was asked for without every blocking gate passed on the current artifacts."""


@dataclass(frozen=True)
class Verdict:
    gate: str
    passed: bool
    summary: str
    inputs: dict[str, str]  # artifact -> hash it had when judged
    report: dict[str, Any]
    recorded_at: str
    waiver: dict[str, Any] | None = None  # rules accepted on record for this run (waivers.py)


def input_hashes(layout: Layout, names: Iterable[str], fits: tuple[Fit, ...] = FITS
                 ) -> dict[str, str]:
    """Each gate input's current hash: an artifact's (`core.lineage`), or the version
    CURRENT names. A missing or dangling CURRENT next to releases raises (InputError with
    the repair), for every gate and for promotion alike."""
    names = list(names)
    out = artifact_hashes(layout, [n for n in names if n != CURRENT_RELEASE], fits)
    if CURRENT_RELEASE in names:
        release = current_release(layout.root)
        out[CURRENT_RELEASE] = NO_RELEASE if release is None else release.version
    return {n: out[n] for n in names}


def release_hashes(layout: Layout, fits: tuple[Fit, ...] = FITS) -> dict[str, str]:
    """Every artifact's hash and CURRENT's version: what a release records as its lineage."""
    return input_hashes(layout, (*artifacts(fits), CURRENT_RELEASE), fits)


def run_gate(gate: Gate, ctx: GateContext, waiver: Waiver | None = None
             ) -> tuple[GateReport, Verdict]:
    """Judge, and record the verdict with the hashes of everything judged, and the waiver
    where it accepted a failed rule of this gate.

    Hashes are taken before judging: an input replaced meanwhile leaves a stale verdict
    that promotion refuses, never a passed verdict about bytes nobody judged.
    """
    inputs = input_hashes(ctx.layout, gate.inputs, ctx.fits)
    report = waive(gate.judge(ctx), gate, waiver)
    used = waiver is not None and any(r.waived for r in report.rules)
    verdict = Verdict(gate.name, report.passed, report.summary, inputs, report.as_dict(),
                      datetime.now(UTC).isoformat(timespec="seconds"),
                      waiver.as_dict() if used else None)
    write_json(ctx.layout.gates_dir / f"{gate.name}.json", asdict(verdict))
    return report, verdict


def read_verdict(gates_dir: str | Path, gate: str) -> Verdict | None:
    path = Path(gates_dir) / f"{gate}.json"
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    known = {f.name for f in fields(Verdict)}
    required = {f.name for f in fields(Verdict) if f.default is MISSING}
    if not required <= set(raw) <= known:
        return None  # written by another version: judge again
    return Verdict(**raw)


def require_all_passed(layout: Layout, fits: tuple[Fit, ...] = FITS) -> list[Verdict]:
    """Every gate passed on exactly the artifacts on disk, all of one lineage; else GateError."""
    current = release_hashes(layout, fits)
    problems, verdicts = [], []
    for gate in gate_table(fits):
        verdict = read_verdict(layout.gates_dir, gate.name)
        if verdict is None:
            problems.append(f"{gate.name}: never ran")
            continue
        stale = sorted(k for k in gate.inputs if verdict.inputs.get(k) != current[k])
        if not verdict.passed:
            problems.append(f"{gate.name}: FAILED ({verdict.summary})")
        elif stale:
            problems.append(f"{gate.name}: judged other {', '.join(stale)} than the ones on "
                            "disk; run its check again")
        else:
            verdicts.append(verdict)
    problems += lineage_problems(layout, current, fits)
    if problems:
        raise GateError("promotion refused: " + "; ".join(problems))
    return verdicts
