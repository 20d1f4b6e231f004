"""Verdicts: what a gate decided, bound to every byte it judged and the thresholds it
judged with, and the one question promotion asks of them (`require_all_passed`).

A verdict records, when its gate runs: the hash of each input artifact (the lineage),
the sha256 of every file those inputs consist of (`evidence`), the thresholds it judged
with, and the baseline release it compared against, after verifying that release against
its own manifest. Promotion re-hashes every one of those files, refuses naming the file
that changed, and accepts a verdict only when the thresholds it judged with are the ones
promoted under and (in Dagster) when its file is byte for byte the one the check recorded.
The format is a plain record with a version (`FORMAT`): a later field (e.g. waivers) is one
more attribute with a default.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.core.atomic import write_json
from pipeline.core.fit_table import FITS, Fit
from pipeline.core.layout import Layout
from pipeline.core.lineage import artifact_hashes, artifacts, lineage_problems
from pipeline.core.report import GateReport, Rule
from pipeline.release.evidence import changed_files, input_problems, judged_files, stray_files
from pipeline.release.gates import CURRENT_RELEASE, Gate, gate_table
from pipeline.release.judges import GateContext
from pipeline.release.thresholds import GateSettings
from pipeline.release.versions import current_release
from pipeline.release.waivers import Waiver, waive, waiver_problems

FORMAT = 2  # 2: files, judged_with; a verdict of another format is judged again
NO_RELEASE = "none"


class GateError(RuntimeError):
    """Promotion was asked for without every blocking gate passed on the current artifacts."""


@dataclass(frozen=True)
class Verdict:
    gate: str
    passed: bool
    summary: str
    inputs: dict[str, str]  # artifact -> hash it had when judged (the lineage)
    files: dict[str, str]  # path under the storage root -> sha256 of every file judged
    judged_with: dict[str, str]  # the thresholds' sha256 and the profile that set them
    report: dict[str, Any]
    recorded_at: str
    format: int = FORMAT
    waiver: dict[str, Any] | None = None  # rules accepted on record for this run (waivers.py)


def thresholds_sha256(thresholds: GateSettings) -> str:
    """The gate thresholds as judged: a profile that differs only elsewhere judges alike."""
    text = json.dumps(thresholds.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def judged_with(ctx: GateContext) -> dict[str, str]:
    return {"thresholds_sha256": thresholds_sha256(ctx.thresholds),
            "profile": ctx.profile or "unnamed"}


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
    that promotion refuses, never a passed verdict about bytes nobody judged. Inputs unfit
    to be judged (a stray file among the published ones, a baseline that fails its own
    manifest) fail the gate without judging.
    """
    inputs = input_hashes(ctx.layout, gate.inputs, ctx.fits)
    files = judged_files(ctx.layout, gate.inputs, ctx.fits)
    unfit = input_problems(ctx.layout, gate.inputs)
    if unfit:
        rule = Rule("inputs_intact", False, f"{len(unfit)} problems with what this gate "
                    f"would judge: {unfit[0]}", tuple(unfit))
        report = GateReport.of([rule], {"input_problems": float(len(unfit))},
                               summary=rule.detail)
    else:
        report = waive(gate.judge(ctx), gate, waiver)
    used = waiver is not None and any(r.waived for r in report.rules)
    verdict = Verdict(gate.name, report.passed, report.summary, inputs, files,
                      judged_with(ctx), report.as_dict(),
                      datetime.now(UTC).isoformat(timespec="seconds"),
                      waiver=waiver.as_dict() if used else None)
    write_json(verdict_path(ctx.layout, gate.name), asdict(verdict))
    return report, verdict


def verdict_path(layout: Layout, gate: str) -> Path:
    return layout.gates_dir / f"{gate}.json"


def read_verdict(gates_dir: str | Path, gate: str) -> Verdict | None:
    """The recorded verdict; None when there is none, or one of another format."""
    path = Path(gates_dir) / f"{gate}.json"
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
    except ValueError:
        return None  # not a verdict any check wrote: judge again
    known = {f.name for f in fields(Verdict)}
    required = {f.name for f in fields(Verdict)
                if f.default is MISSING and f.default_factory is MISSING}
    if (not isinstance(raw, dict) or raw.get("format") != FORMAT or not required <= set(raw)
            or not all(isinstance(raw[k], dict) for k in ("inputs", "files", "judged_with"))):
        return None  # written by another version (or by hand): judge again
    return Verdict(**{k: v for k, v in raw.items() if k in known})


@dataclass
class Judged:
    """What promotion may publish: the verdicts, and every file they judged with its hash."""

    verdicts: list[Verdict]
    files: dict[str, str] = field(default_factory=dict)  # storage path -> sha256
    verdict_files: dict[str, str] = field(default_factory=dict)  # gate -> its file's sha256


def require_all_passed(layout: Layout, fits: tuple[Fit, ...] = FITS, *,
                       thresholds: GateSettings | None = None, profile: str | None = None,
                       recorded: Mapping[str, str | None] | None = None) -> Judged:
    """Every gate passed on exactly the bytes on disk, all of one lineage, under these
    thresholds; else GateError naming every problem.

    `thresholds`: what this promotion runs under (a verdict judged with others is refused).
    `recorded`: gate -> the sha256 of the verdict file its check recorded (Dagster's event
    log): a verdict file that is not that one was written or edited outside the check.
    """
    current = release_hashes(layout, fits)
    problems: list[str] = []
    judged = Judged([])
    for gate in gate_table(fits):
        path = verdict_path(layout, gate.name)
        verdict = read_verdict(layout.gates_dir, gate.name)
        if verdict is None:
            problems.append(f"{gate.name}: never ran (or ran with an older version)")
            continue
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        problems += _verdict_problems(gate, verdict, current, thresholds, profile,
                                      None if recorded is None else recorded.get(gate.name),
                                      recorded is not None, sha)
        for rel, digest in verdict.files.items():
            if judged.files.setdefault(rel, digest) != digest:
                problems.append(f"{rel}: the gates judged different bytes of it; run the "
                                "checks again")
        judged.verdicts.append(verdict)
        judged.verdict_files[gate.name] = sha
    for rel in changed_files(layout, judged.files):
        gates = [v.gate for v in judged.verdicts if rel in v.files]
        problems.append(f"{rel}: changed since {', '.join(gates)} judged it; materialize what "
                        "wrote it and run the checks again")
    problems += [f"{rel}: in the stacked directory but no check judged it; remove it"
                 for rel in stray_files(layout)]
    problems += lineage_problems(layout, current, fits)
    if problems:
        raise GateError("promotion refused: " + "; ".join(problems))
    return judged


def _verdict_problems(gate: Gate, verdict: Verdict, current: dict[str, str],
                      thresholds: GateSettings | None, profile: str | None,
                      recorded: str | None, checked_record: bool, sha: str) -> list[str]:
    problems = []
    stale = sorted(k for k in gate.inputs if verdict.inputs.get(k) != current[k])
    if not verdict.passed:
        problems.append(f"{gate.name}: FAILED ({verdict.summary})")
    elif unwaivable := waiver_problems(gate, verdict.report, verdict.waiver):
        problems.append(f"{gate.name}: passed only by a waiver promotion cannot accept "
                        f"({'; '.join(unwaivable)}); run the check again")
    elif stale:
        problems.append(f"{gate.name}: judged other {', '.join(stale)} than the ones on "
                        "disk; run its check again")
    if thresholds is not None and (verdict.judged_with.get("thresholds_sha256")
                                   != thresholds_sha256(thresholds)):
        problems.append(f"{gate.name}: judged with the thresholds of profile "
                        f"{verdict.judged_with.get('profile')!r}, not those of "
                        f"{profile or 'this run'!r}; run the checks again under the profile "
                        "you promote with")
    if checked_record and recorded != sha:
        problems.append(f"{gate.name}: its verdict file is not the one its check recorded "
                        f"({'no evaluation recorded' if recorded is None else 'edited since'})"
                        "; run the check again")
    return problems
