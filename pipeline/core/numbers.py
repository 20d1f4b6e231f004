"""Numbers as a person reads them, the same in the UI's metadata and on the terminal: 4
significant figures, counts with thousands separators, "—" for none."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NONE = "—"


def rounded(value: Any) -> Any:
    """A number at 4 significant figures (ints and bools as they are); None and NaN as
    None. Recurses into dicts and lists, so a JSON document reads the same."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(f"{value:.4g}") if math.isfinite(value) else None
    if type(value) is dict:
        return {str(k): rounded(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return [rounded(v) for v in value]
    return value


def text(value: Any) -> str:
    """One value as text: a count (a whole number, also one a float column holds) with
    thousands separators, any other number at 4 significant figures (written out from
    1,000 up: 59,190, not 5.919e+04), "—" for none."""
    if isinstance(value, float | np.floating) and float(value).is_integer() and abs(
            value) < 1e15:
        value = int(value)
    value = rounded(value)
    if value is None or (isinstance(value, str) and value == ""):
        return NONE
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)
