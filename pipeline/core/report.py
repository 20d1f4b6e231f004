"""One report shape for every gate: rules that pass or fail, numbers, and what to show."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Rule:
    """One rule of a gate. A rule with a tolerance states the value it judged (the worst
    one where it judges many) and its limit, so a verdict says how far over a rule is."""

    name: str
    passed: bool
    detail: str
    failing: tuple[str, ...] = ()  # the targets, groups or files that broke the rule
    value: float | None = None
    limit: float | None = None
    waived: bool = False  # failed, and accepted on record (`pipeline.release.waivers`)


@dataclass(frozen=True)
class GateReport:
    passed: bool
    summary: str
    rules: tuple[Rule, ...]
    metrics: dict[str, float] = field(default_factory=dict)  # numbers the UI can plot
    details: dict[str, Any] = field(default_factory=dict)  # tables and lists for people

    @classmethod
    def of(cls, rules: list[Rule] | tuple[Rule, ...], metrics: dict[str, float] | None = None,
           details: dict[str, Any] | None = None, summary: str | None = None) -> GateReport:
        """Passed when every rule passed or was waived; the summary names each failed rule."""
        rules = tuple(rules)
        failed = [r for r in rules if not r.passed and not r.waived]
        default = ("all rules passed" if not failed
                   else "; ".join(f"{r.name}: {r.detail}" for r in failed))
        metrics = {"failed_rules": float(len(failed)), **(metrics or {})}
        return cls(not failed, summary or default, rules, metrics, details or {})

    def rule(self, name: str) -> Rule:
        return next(r for r in self.rules if r.name == name)

    def refusal(self) -> str:
        """The failed rules in one line, each with its worst value against its limit and
        what broke it: what a refused run ends with."""
        parts = []
        for r in self.rules:
            if r.passed or r.waived:
                continue
            if r.value is None or r.limit is None:
                parts.append(f"{r.name}: {r.detail}")
            else:
                parts.append(f"{r.name} ({over(r.value, r.limit)}): "
                             + ("; ".join(r.failing) or r.detail))
        return " | ".join(parts) or self.summary

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def over(value: float, limit: float, signed: bool = False) -> str:
    """How a value stands against its limit, marked when over: "+0.027 > 0.02 OVER"."""
    shown = f"{value:+.4g}" if signed else f"{value:.4g}"
    return f"{shown} > {limit:.4g} OVER" if value > limit else f"{shown} <= {limit:.4g}"


def combine(parts: dict[str, GateReport]) -> GateReport:
    """One gate judging several parts (the two fits of a release): each rule named
    `part.rule`, each metric `part_metric`; passed when every part passed."""
    rules = [replace(r, name=f"{part}.{r.name}") for part, rep in parts.items()
             for r in rep.rules]
    metrics = {f"{part}_{k}": v for part, rep in parts.items() for k, v in rep.metrics.items()
               if k != "failed_rules"}
    summary = "; ".join(f"{part}: {rep.summary}" for part, rep in parts.items())
    return GateReport.of(rules, metrics, {p: rep.details for p, rep in parts.items()}, summary)
