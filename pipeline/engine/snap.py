"""SNAP entitlement from the federal FY2024 rules (Oct 2023 – Sep 2024).

Parameters, from USDA FNS "SNAP FY 2024 Cost-of-Living Adjustments" (memo of 2023-08-03)
and HHS 2023 poverty guidelines (which FY2024 income limits use):
- Thrifty Food Plan for four: 48 states + DC $973, Alaska $1,248 (urban, the lowest of its
  three areas), Hawaii $1,759. Maximum allotment for size n ≤ 8 is
  floor(TFP4 · n/4 · adj(n)), adj = 1.20, 1.10, 1.05, 1.00, 0.95, 0.95, 0.90, 0.90; each
  person beyond 8 adds round(0.225 · TFP4). (This reproduces the published tables:
  291, 535, 766, 973, 1155, 1386, 1532, 1751, +219 for the 48 states.)
- Minimum benefit for 1–2 person households: round(8% of the 1-person allotment) ($23).
- Poverty guideline: 48 states + DC $14,580 + $5,140 per extra person; AK $18,210 + $6,430;
  HI $16,770 + $5,910. Gross limit ceil(1.3 · FPL / 12), net limit ceil(FPL / 12) a month.
- Standard deduction by size 1..6+: 48 + DC 198,198,198,208,244,279; AK 338×5, 349;
  HI 279×4, 280, 321.

Simplifications (the file has no expenses or assets): no shelter, dependent-care, medical or
child-support deduction; no asset test; no broad-based categorical eligibility (the 130%
gross test applies everywhere). Households with a member aged 60+ or a member receiving
SSI (the file's only disability signal) skip the gross test, as elderly/disabled households
do. The SNAP unit is the whole household.
"""

from __future__ import annotations

import numpy as np

_ALASKA, _HAWAII = 2, 15
_TFP4 = np.array([973, 1248, 1759])
_ADJ_PERCENT = np.array([120, 110, 105, 100, 95, 95, 90, 90])
_FPL_BASE = np.array([14_580, 18_210, 16_770])
_FPL_EXTRA = np.array([5_140, 6_430, 5_910])
_STANDARD_DEDUCTION = np.array([
    [198, 198, 198, 208, 244, 279],
    [338, 338, 338, 338, 338, 349],
    [279, 279, 279, 279, 280, 321],
])


def state_group(state_fips: np.ndarray) -> np.ndarray:
    """0 for the 48 states and DC, 1 for Alaska, 2 for Hawaii."""
    fips = np.asarray(state_fips, dtype=np.int64)
    return np.where(fips == _ALASKA, 1, np.where(fips == _HAWAII, 2, 0))


def max_allotment(size: np.ndarray, group: np.ndarray) -> np.ndarray:
    size = np.asarray(size, dtype=np.int64)
    tfp4 = _TFP4[group]
    capped = np.clip(size, 1, 8)
    base = (tfp4 * capped * _ADJ_PERCENT[capped - 1]) // 400
    extra = np.floor(tfp4 * 0.225 + 0.5).astype(np.int64)
    return base + np.maximum(size - 8, 0) * extra


def snap_monthly_benefit(
    size: np.ndarray,
    gross_monthly: np.ndarray,
    earned_monthly: np.ndarray,
    elderly_or_disabled: np.ndarray,
    state_fips: np.ndarray,
) -> np.ndarray:
    """Monthly SNAP entitlement per household (before takeup); 0 when ineligible."""
    size = np.maximum(np.asarray(size, dtype=np.int64), 1)
    group = state_group(state_fips)
    fpl = _FPL_BASE[group] + (size - 1) * _FPL_EXTRA[group]
    gross_limit = np.ceil(fpl * 1.3 / 12)
    net_limit = np.ceil(fpl / 12)
    deduction = _STANDARD_DEDUCTION[group, np.minimum(size, 6) - 1]
    gross = np.asarray(gross_monthly, dtype=float)
    net = np.maximum(gross - 0.2 * np.asarray(earned_monthly, dtype=float) - deduction, 0.0)
    eligible = (np.asarray(elderly_or_disabled, bool) | (gross <= gross_limit)) & (
        net <= net_limit
    )
    allotment = max_allotment(size, group)
    benefit = np.maximum(allotment - np.ceil(0.3 * net), 0.0)
    minimum = np.floor(0.08 * max_allotment(np.ones_like(size), group) + 0.5)
    benefit = np.where(size <= 2, np.maximum(benefit, minimum), benefit)
    return np.where(eligible, benefit, 0.0)
