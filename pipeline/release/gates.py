"""Gate verdicts on disk: promotion proceeds only on passed verdicts about the current artifacts.

Each blocking check records what it judged (the artifact's content hash) and whether it
passed. Promotion re-reads every verdict, so a release cannot be cut from an artifact that
no gate has seen, whether it is launched by a schedule, by automation or by hand.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pipeline.core.atomic import write_json
from pipeline.core.errors import InputError

T = TypeVar("T")


class GateError(RuntimeError):
    """Raised when promotion is asked for without every blocking gate passed."""


@dataclass(frozen=True)
class Verdict:
    gate: str
    passed: bool
    subject_sha256: str
    summary: str
    details: dict[str, Any]
    recorded_at: str


def record_verdict(
    gates_dir: str | Path, gate: str, passed: bool, subject_sha256: str, summary: str,
    details: dict[str, Any] | None = None,
) -> Verdict:
    verdict = Verdict(gate, bool(passed), subject_sha256, summary, details or {},
                      datetime.now(UTC).isoformat(timespec="seconds"))
    write_json(Path(gates_dir) / f"{gate}.json", asdict(verdict))
    return verdict


def read_verdict(gates_dir: str | Path, gate: str) -> Verdict | None:
    path = Path(gates_dir) / f"{gate}.json"
    if not path.exists():
        return None
    return Verdict(**json.loads(path.read_text()))


def require_all_passed(gates_dir: str | Path, subjects: dict[str, str]) -> list[Verdict]:
    """Every gate in `subjects` passed on exactly that artifact hash, else GateError."""
    problems, verdicts = [], []
    for gate, subject in subjects.items():
        verdict = read_verdict(gates_dir, gate)
        if verdict is None:
            problems.append(f"{gate}: never ran")
        elif not verdict.passed:
            problems.append(f"{gate}: FAILED ({verdict.summary})")
        elif verdict.subject_sha256 != subject:
            problems.append(f"{gate}: judged an older artifact; re-run its check")
        else:
            verdicts.append(verdict)
    if problems:
        raise GateError("promotion refused: " + "; ".join(problems))
    return verdicts


def thresholds_from(cls: type[T], values: dict[str, Any], source: str, section: str) -> T:
    """A gate's threshold dataclass from a profile section; an unknown key is an error."""
    known = [f.name for f in fields(cls)]
    for key in values:
        if key not in known:
            raise InputError(source, f"gates.{section}.{key}", "unknown threshold",
                             f"use one of {known}")
    return cls(**values)
