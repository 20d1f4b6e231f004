"""Structural sanity of a published household file (production's list, as code).

FAIL means the file is broken (a simulation on it is meaningless); WARN means a per-household
average is implausible and a person should look. A file is judged block by block
(`FileSanity.add`), so memory stays bounded by a block plus the file's id columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.core.report import GateReport, Rule
from pipeline.engine import Simulation
from pipeline.microdata import Microdata

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
EMPLOYMENT_RANGE = (10_000.0, 200_000.0)  # weighted mean employment income per household
SNAP_RANGE = (0.0, 10_000.0)  # weighted mean SNAP per household
SANITY_COLUMNS = ["file", "check", "status", "reason"]


@dataclass(frozen=True)
class SanityResult:
    check: str
    status: str
    reason: str


@dataclass
class FileSanity:
    """Every check on one file, accumulated over its blocks of whole households."""

    households: int = 0
    bad_weights: int = 0
    ids: dict[str, list[np.ndarray]] = field(default_factory=dict)
    non_finite: set[str] = field(default_factory=set)
    orphans: dict[str, int] = field(default_factory=dict)
    takeup_columns: int = 0
    not_boolean: set[str] = field(default_factory=set)
    weight: float = 0.0
    employment: float = 0.0
    snap: float = 0.0

    def add(self, md: Microdata, sim: Simulation, spm_ids: np.ndarray | None = None) -> None:
        weight = md.household["household_weight"].to_numpy(dtype=np.float64)
        self.households += len(weight)
        self.bad_weights += int(np.sum(~(np.isfinite(weight) & (weight >= 0))))
        ids = {"person_id": md.person["person_id"], "household_id": md.household["household_id"],
               "tax_unit_id": md.tax_unit["tax_unit_id"]}
        if spm_ids is not None:
            ids["spm_unit_id"] = pd.Series(spm_ids)
        for col, values in ids.items():  # a copy: a view would keep the whole block alive
            self.ids.setdefault(col, []).append(np.array(values, dtype=np.int64))
        self._finite(md, sim)
        self._links(md)
        self._takeup(md)
        if np.isfinite(weight).all():
            self.weight += float(weight.sum())
            self.employment += _weighted(md.person["employment_income"],
                                         md.person["household_id"], md, weight)
            self.snap += _weighted(sim.household["snap"], sim.household["household_id"], md,
                                   weight)

    def _finite(self, md: Microdata, sim: Simulation) -> None:
        for name, table in (("household", md.household), ("tax_unit", md.tax_unit),
                            ("person", md.person), ("simulated household", sim.household),
                            ("simulated tax_unit", sim.tax_unit),
                            ("simulated person", sim.person)):
            for col in table.columns:
                values = table[col].to_numpy()
                if values.dtype.kind == "f" and not np.isfinite(values).all():
                    self.non_finite.add(f"{name}.{col}")

    def _links(self, md: Microdata) -> None:
        households = pd.Index(md.household["household_id"])
        tax_units = pd.Index(md.tax_unit["tax_unit_id"])
        for what, n in (
            ("persons without a household",
             households.get_indexer(md.person["household_id"]) < 0),
            ("persons without a tax unit", tax_units.get_indexer(md.person["tax_unit_id"]) < 0),
            ("tax units without a household",
             households.get_indexer(md.tax_unit["household_id"]) < 0),
        ):
            self.orphans[what] = self.orphans.get(what, 0) + int(n.sum())

    def _takeup(self, md: Microdata) -> None:
        checked = 0
        for name in ("household", "tax_unit", "person"):
            table = getattr(md, name)
            for col in [c for c in table.columns if c.startswith("takes_up")]:
                checked += 1
                if table[col].dtype != bool:
                    self.not_boolean.add(f"{name}.{col} ({table[col].dtype})")
        self.takeup_columns = max(self.takeup_columns, checked)

    def results(self) -> list[SanityResult]:
        return [self._weights_result(), self._ids_result(), self._finite_result(),
                self._links_result(), self._takeup_result(),
                _range("employment_income_range", self.employment, self.weight,
                       EMPLOYMENT_RANGE),
                _range("snap_range", self.snap, self.weight, SNAP_RANGE)]

    def _weights_result(self) -> SanityResult:
        if self.bad_weights:
            return SanityResult("weight_nonnegative", FAIL,
                                f"{self.bad_weights} negative or non-finite weights")
        return SanityResult("weight_nonnegative", PASS, f"{self.households} weights >= 0")

    def _ids_result(self) -> SanityResult:
        dups = {col: _duplicates(parts) for col, parts in self.ids.items()}
        bad = [f"{n} duplicate {col}" for col, n in dups.items() if n]
        if bad:
            return SanityResult("unique_ids", FAIL, ", ".join(bad))
        return SanityResult("unique_ids", PASS, f"unique {', '.join(self.ids)}")

    def _finite_result(self) -> SanityResult:
        if self.non_finite:
            return SanityResult("finite_values", FAIL, f"NaN/Inf in {sorted(self.non_finite)[:10]}")
        return SanityResult("finite_values", PASS, "no NaN/Inf")

    def _links_result(self) -> SanityResult:
        bad = [f"{n} {what}" for what, n in self.orphans.items() if n]
        if bad:
            return SanityResult("entity_links", FAIL, ", ".join(bad))
        return SanityResult("entity_links", PASS, "every person and tax unit is in a household")

    def _takeup_result(self) -> SanityResult:
        if self.not_boolean:
            return SanityResult("takeup_boolean", FAIL, f"not boolean: {sorted(self.not_boolean)}")
        return SanityResult("takeup_boolean", PASS,
                            f"{self.takeup_columns} takeup columns boolean")


def _duplicates(parts: list[np.ndarray]) -> int:
    """Rows repeating an earlier id; sorting one copy costs less than a hash table."""
    ids = np.concatenate(parts)
    ids.sort()
    return int(np.count_nonzero(ids[1:] == ids[:-1]))


def _weighted(values: pd.Series, household_id: pd.Series, md: Microdata,
              weight: np.ndarray) -> float:
    hh = md.household["household_id"]
    per_hh = values.groupby(household_id.to_numpy()).sum().reindex(hh.to_numpy(), fill_value=0)
    return float(per_hh.to_numpy(dtype=np.float64) @ weight)


def _range(check: str, total: float, weight: float, bounds: tuple[float, float]
           ) -> SanityResult:
    if not weight > 0:
        return SanityResult(check, WARN, "no weighted households")
    mean = total / weight
    lo, hi = bounds
    status = PASS if lo <= mean <= hi else WARN
    return SanityResult(check, status, f"weighted mean per household ${mean:,.0f} "
                                       f"(plausible ${lo:,.0f}-${hi:,.0f})")


def summarize(results: list[SanityResult]) -> tuple[str, str]:
    """The worst status and the reasons of every check that did not pass."""
    order = {PASS: 0, WARN: 1, FAIL: 2}
    worst = max((r.status for r in results), key=order.__getitem__, default=PASS)
    reason = "; ".join(f"{r.check}: {r.reason}" for r in results if r.status != PASS)
    return worst, reason


def sanity_report(results: pd.DataFrame) -> GateReport:
    """FAIL in any file fails the gate; WARN is listed for a person to look at."""
    failures = results[results["status"] == FAIL]
    warnings = results[results["status"] == WARN]
    files = results["file"].nunique()
    rule = Rule("no_fail", failures.empty,
                f"{len(failures)} FAIL, {len(warnings)} WARN over {files} files",
                tuple(f"{f}: {c}" for f, c in failures[["file", "check"]].head(50).values))
    return GateReport.of(
        [rule], {"files": float(files), "fail": float(len(failures)),
                 "warn": float(len(warnings))},
        {"failures": failures.head(20).to_dict("records"),
         "warnings": warnings.head(20).to_dict("records")},
        summary=rule.detail,
    )
