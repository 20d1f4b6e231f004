"""Structural sanity of a published household file (production's list, as code).

FAIL means the file is broken (a simulation on it is meaningless); WARN means a per-household
average is implausible and a person should look.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.core.report import GateReport, Rule
from pipeline.engine import Simulation, simulate
from pipeline.microdata import Microdata, read_h5
from pipeline.validate.published import iter_published

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
EMPLOYMENT_RANGE = (10_000.0, 200_000.0)  # weighted mean employment income per household
SNAP_RANGE = (0.0, 10_000.0)  # weighted mean SNAP per household


@dataclass(frozen=True)
class SanityResult:
    check: str
    status: str
    reason: str


def sanity_check_file(
    md: Microdata | str | Path, simulation: Simulation | None = None,
    path: str | Path | None = None,
) -> list[SanityResult]:
    """Every check on one file; runs the engine for SNAP unless `simulation` is given.

    SPM unit ids are read from the file (`md` as a path, or `path` beside an in-memory
    `md`): Microdata does not hold them, and in memory the SPM unit is the household.
    """
    if not isinstance(md, Microdata):
        path = Path(md)
        md = read_h5(path)
    spm_ids = None if path is None else _spm_ids(Path(path), md.period)
    sim = simulate(md) if simulation is None else simulation
    weight = md.household["household_weight"].to_numpy(dtype=np.float64)
    return [
        _weights(weight),
        _unique_ids(md, spm_ids),
        _finite(md, sim),
        _links(md),
        _takeup_boolean(md),
        _per_household("employment_income_range", md.person["employment_income"],
                       md.person["household_id"], md, EMPLOYMENT_RANGE),
        _per_household("snap_range", sim.household["snap"], sim.household["household_id"], md,
                       SNAP_RANGE),
    ]


def summarize(results: list[SanityResult]) -> tuple[str, str]:
    """The worst status and the reasons of every check that did not pass."""
    order = {PASS: 0, WARN: 1, FAIL: 2}
    worst = max((r.status for r in results), key=order.__getitem__, default=PASS)
    reason = "; ".join(f"{r.check}: {r.reason}" for r in results if r.status != PASS)
    return worst, reason


def _weights(weight: np.ndarray) -> SanityResult:
    bad = int(np.sum(~(np.isfinite(weight) & (weight >= 0))))
    if bad:
        return SanityResult("weight_nonnegative", FAIL, f"{bad} negative or non-finite weights")
    return SanityResult("weight_nonnegative", PASS, f"{len(weight)} weights >= 0")


def _unique_ids(md: Microdata, spm_ids: np.ndarray | None) -> SanityResult:
    ids = {"person_id": md.person["person_id"], "household_id": md.household["household_id"],
           "tax_unit_id": md.tax_unit["tax_unit_id"]}
    if spm_ids is not None:
        ids["spm_unit_id"] = pd.Series(spm_ids)
    dups = {col: int(values.duplicated().sum()) for col, values in ids.items()}
    bad = [f"{n} duplicate {col}" for col, n in dups.items() if n]
    if bad:
        return SanityResult("unique_ids", FAIL, ", ".join(bad))
    return SanityResult("unique_ids", PASS, f"unique {', '.join(ids)}")


def _spm_ids(path: Path, period: int) -> np.ndarray | None:
    """The file's SPM unit ids (written by write_h5, not read back into Microdata)."""
    with h5py.File(path, "r") as f:
        if "spm_unit_id" in f and str(period) in f["spm_unit_id"]:
            return f["spm_unit_id"][str(period)][()]
    return None


def _finite(md: Microdata, sim: Simulation) -> SanityResult:
    bad = []
    for name, table in (("household", md.household), ("tax_unit", md.tax_unit),
                        ("person", md.person), ("simulated household", sim.household),
                        ("simulated tax_unit", sim.tax_unit), ("simulated person", sim.person)):
        for col in table.columns:
            values = table[col].to_numpy()
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                bad.append(f"{name}.{col}")
    if bad:
        return SanityResult("finite_values", FAIL, f"NaN/Inf in {bad[:10]}")
    return SanityResult("finite_values", PASS, "no NaN/Inf")


def _links(md: Microdata) -> SanityResult:
    households = pd.Index(md.household["household_id"])
    tax_units = pd.Index(md.tax_unit["tax_unit_id"])
    orphans = {
        "persons without a household": int((households.get_indexer(
            md.person["household_id"]) < 0).sum()),
        "persons without a tax unit": int((tax_units.get_indexer(
            md.person["tax_unit_id"]) < 0).sum()),
        "tax units without a household": int((households.get_indexer(
            md.tax_unit["household_id"]) < 0).sum()),
    }
    bad = [f"{n} {what}" for what, n in orphans.items() if n]
    if bad:
        return SanityResult("entity_links", FAIL, ", ".join(bad))
    return SanityResult("entity_links", PASS, "every person and tax unit is in a household")


def _takeup_boolean(md: Microdata) -> SanityResult:
    checked, bad = 0, []
    for name in ("household", "tax_unit", "person"):
        table = getattr(md, name)
        for col in [c for c in table.columns if c.startswith("takes_up")]:
            checked += 1
            if table[col].dtype != bool:
                bad.append(f"{name}.{col} ({table[col].dtype})")
    if bad:
        return SanityResult("takeup_boolean", FAIL, f"not boolean: {bad}")
    return SanityResult("takeup_boolean", PASS, f"{checked} takeup columns boolean")


def _per_household(
    check: str, values: pd.Series, household_id: pd.Series, md: Microdata,
    bounds: tuple[float, float],
) -> SanityResult:
    hh = md.household["household_id"]
    weight = md.household["household_weight"].to_numpy(dtype=np.float64)
    per_hh = values.groupby(household_id.to_numpy()).sum().reindex(hh.to_numpy(), fill_value=0)
    total = weight.sum()
    if not total > 0:
        return SanityResult(check, WARN, "no weighted households")
    mean = float(per_hh.to_numpy(dtype=np.float64) @ weight / total)
    lo, hi = bounds
    status = PASS if lo <= mean <= hi else WARN
    return SanityResult(check, status, f"weighted mean per household ${mean:,.0f} "
                                       f"(plausible ${lo:,.0f}-${hi:,.0f})")


def sanity_check_dir(stacked_dir: str | Path) -> pd.DataFrame:
    """Every check on every published file: one row per (file, check)."""
    rows = [
        {"file": rel, "check": r.check, "status": r.status, "reason": r.reason}
        for rel, md, sim in iter_published(stacked_dir)
        for r in sanity_check_file(md, sim, Path(stacked_dir) / rel)
    ]
    return pd.DataFrame(rows, columns=["file", "check", "status", "reason"])


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
