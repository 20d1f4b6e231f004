"""A learned allocation on disk: which columns a fit keeps, and which it rounds.

`allocation.npz` (loaded without pickle) holds the keep and integer masks and the records
per state × stratum; `budgets.csv` the same counts for people; `allocation.json`, written
last, marks a complete allocation and records its lineage: the package, the target config
and the trained model's identity it was searched under. A fit refuses an allocation whose
lineage differs from its own inputs.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.atomic import write_bytes, write_json, write_text
from pipeline.core.errors import InputError
from pipeline.core.hashing import sha256_file
from pipeline.core.layout import ALLOCATION_ARRAYS as ARRAYS
from pipeline.core.layout import ALLOCATION_BUDGETS as BUDGETS
from pipeline.core.layout import ALLOCATION_META as META

FIX = "rerun the allocation search (`calibrate allocate`, or the allocation_search job)"


@dataclass
class Allocation:
    keep: np.ndarray  # bool per column
    integer: np.ndarray  # bool per column: weights rounded to whole households
    meta: dict[str, Any]
    sha256: str  # of allocation.npz: the fit's lineage names it

    @property
    def records(self) -> int:
        return int(self.keep.sum())


def save_allocation(out_dir: str | Path, arrays: dict[str, np.ndarray],
                    budgets: pd.DataFrame, meta: dict[str, Any]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / META).unlink(missing_ok=True)  # a failed save never leaves an old one looking whole
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes(out / ARRAYS, buffer.getvalue())
    write_text(out / BUDGETS, budgets.to_csv(index=False))
    write_json(out / META, {**meta, "arrays_sha256": sha256_file(out / ARRAYS)})
    return out


def load_allocation(out_dir: str | Path, n_columns: int, lineage: dict[str, Any]
                    ) -> Allocation:
    """The allocation in `out_dir`, refused unless complete, intact and searched on these
    inputs (`lineage`: the keys of allocation.json's lineage that must match)."""
    out = Path(out_dir)
    if not (out / META).is_file():
        raise InputError(out / META, None, "no complete allocation here (the search never ran, "
                         "or did not finish)", FIX)
    meta = json.loads((out / META).read_text())
    sha = sha256_file(out / ARRAYS) if (out / ARRAYS).is_file() else None
    if sha != meta.get("arrays_sha256"):
        raise InputError(out / ARRAYS, None, "missing or changed since the search wrote it", FIX)
    for key, value in lineage.items():
        if meta.get("lineage", {}).get(key) != value:
            raise InputError(out / META, f"lineage.{key}", "the allocation was searched on "
                             f"another {key} ({meta.get('lineage', {}).get(key)!r}, this fit "
                             f"has {value!r})", FIX)
    with np.load(out / ARRAYS, allow_pickle=False) as arrays:
        keep, integer = arrays["keep"].astype(bool), arrays["integer"].astype(bool)
    if keep.shape != (n_columns,) or integer.shape != (n_columns,):
        raise InputError(out / ARRAYS, "keep", f"has {keep.shape[0]:,} columns, the package "
                         f"{n_columns:,}", FIX)
    if not keep.any():
        raise InputError(out / ARRAYS, "keep", "keeps no record", FIX)
    return Allocation(keep=keep, integer=integer & keep, meta=meta, sha256=sha)
