"""Accepting a refusal on record.

A target-config edit can move what gate 2 measures on purpose (leave the district age
targets out, and the held-out split's error rises). A waiver says "yes, this is the change
I meant": it names gate rules (`simulation_quality.heldout_regression`), the reason and the
operator, and is given for one run (the launchpad's `waiver` resource, or `make run
ACCEPT=... REASON=... OPERATOR=...`). A gate whose only failed rules are named passes with
the waiver; the verdict records it (so its hash binds the waiver to exactly the bytes
judged), and so do the release manifest and `releases/history.json`. A later run is judged
afresh: the waiver is not stored anywhere a later run reads it.

Only rules a gate declares waivable (`Gate.waivable`) can be named: never an integrity
gate (target DB integrity, package validity, structural sanity, X·w), never an integrity
rule of a review gate (finite weights, finite fit, the absolute floor, no sanity FAIL,
inputs intact), never promotion's own checks (lineage, the bytes judged, thresholds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pipeline.core.errors import InputError
from pipeline.core.fit_table import FITS, Fit
from pipeline.core.report import GateReport
from pipeline.release.gates import Gate, gate_table


@dataclass(frozen=True)
class Waiver:
    rules: tuple[str, ...]  # "<gate>.<rule>"
    reason: str
    operator: str
    run_id: str | None = None  # the run it was given for
    given_at: str = ""

    def names(self, gate: str) -> set[str]:
        """The rules of `gate` this waiver names (without the gate's prefix)."""
        return {r.split(".", 1)[1] for r in self.rules if r.split(".", 1)[0] == gate}

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rules": list(self.rules)}


def waivable_rules(fits: tuple[Fit, ...] = FITS) -> list[str]:
    """Every rule a waiver may name, as `<gate>.<rule>`."""
    return [f"{g.name}.{r}" for g in gate_table(fits) for r in g.waivable]


def parse_waiver(rules: Iterable[str], reason: str, operator: str, run_id: str | None,
                 where: str, fits: tuple[Fit, ...] = FITS) -> Waiver | None:
    """A waiver from what a person gave (None when no rule is named); InputError naming
    `where` and the field for an unknown or unwaivable rule, or a missing reason or
    operator."""
    rules = tuple(dict.fromkeys(r.strip() for r in rules if r.strip()))
    if not rules:
        if reason.strip() or operator.strip():
            raise InputError(where, "rules", "a reason or operator but no rule to accept",
                             f"name the rules, e.g. {waivable_rules(fits)[-1]}")
        return None
    gates = {g.name: g for g in gate_table(fits)}
    for rule in rules:
        gate, _, name = rule.partition(".")
        if gate not in gates:
            raise InputError(where, "rules", f"{rule!r}: no gate {gate!r}",
                             f"name a rule as <gate>.<rule>, one of {waivable_rules(fits)}")
        if name not in gates[gate].waivable:
            why = ("an integrity check is never waived" if not gates[gate].waivable
                   else f"{name!r} is not one of its waivable rules")
            raise InputError(where, "rules", f"{rule!r} cannot be accepted: {why}",
                             f"accept only {waivable_rules(fits)}; fix what broke the "
                             "integrity check instead")
    if not reason.strip():
        raise InputError(where, "reason", "a waiver needs the reason it is given",
                         "say why the refused change is the one you meant")
    if not operator.strip():
        raise InputError(where, "operator", "a waiver needs the name of who gives it",
                         "give your name")
    return Waiver(rules, reason.strip(), operator.strip(), run_id,
                  datetime.now(UTC).isoformat(timespec="seconds"))


def waive(report: GateReport, gate: Gate, waiver: Waiver | None) -> GateReport:
    """`report` with each failed rule the waiver names (and the gate allows) marked waived:
    it passes when no other rule failed, and its summary says who accepted what and why."""
    names = (waiver.names(gate.name) & set(gate.waivable)) if waiver else set()
    hit = [r for r in report.rules if not r.passed and r.name in names]
    if not hit:
        return report
    rules = [replace(r, waived=True) if r in hit else r for r in report.rules]
    failed = [r for r in rules if not r.passed and not r.waived]
    accepted = (f"accepted on record by {waiver.operator}: "
                f"{', '.join(r.name for r in hit)} ({waiver.reason})")
    summary = (f"{report.summary} [{accepted}]" if failed
               else f"passed with a waiver: {report.summary} [{accepted}]")
    waived = GateReport.of(rules, {k: v for k, v in report.metrics.items()
                                   if k != "failed_rules"}, report.details, summary)
    return replace(waived, metrics={**waived.metrics, "waived_rules": float(len(hit))})


def waiver_problems(gate: Gate, report: dict[str, Any], waiver: dict[str, Any] | None
                    ) -> list[str]:
    """Why a passed verdict's waiver cannot stand (empty: it can, or none was needed): a
    failed rule neither passed nor waived, a rule waived that its gate never lets a waiver
    accept or that the waiver does not name, a waiver without its reason or operator.
    Promotion asks this of every verdict, so a verdict written or edited by hand cannot
    waive an integrity rule either."""
    rules = report.get("rules") or []
    problems = [f"{r.get('name')}: failed, not waived" for r in rules
                if not r.get("passed") and not r.get("waived")]
    waived = [str(r.get("name")) for r in rules if r.get("waived")]
    if not waived:
        return problems
    if not waiver:
        return [*problems, f"{', '.join(waived)}: waived, but no waiver is on record"]
    named = {f"{gate.name}.{name}" for name in waived} - set(waiver.get("rules") or ())
    problems += [f"{name}: waived but never accepted on record" for name in sorted(named)]
    problems += [f"{name}: an integrity rule, never waived" for name in waived
                 if name not in gate.waivable]
    problems += [f"the waiver names no {field}" for field in ("reason", "operator")
                 if not str(waiver.get(field) or "").strip()]
    return problems
