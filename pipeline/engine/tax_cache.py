"""Federal tax results remembered by tax-unit content.

Tax-Calculator's results for a unit are a function of that unit's input columns alone (its
credit-claiming draw is off, see taxes.py). The published files hold millions of tax units
but only as many distinct input rows as the base sample has (clones differ in ids, takeup
and geography, none of which Tax-Calculator reads), so walking the files computes taxes
once per distinct row. Rows are keyed by a 128-bit hash of exactly the columns
Tax-Calculator reads, taken from the file itself: a unit whose inputs differ from every
row seen is computed afresh, so nothing the file does not show is trusted.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.atomic import write_bytes
from pipeline.engine.taxes import SOI_ITEMS, TaxResults, tax_inputs, tax_unit_taxes

_KEYS = ("tax-cache-key-01", "tax-cache-key-02")  # two 64-bit hashes: a 128-bit key
_RESULTS = ("adjusted_gross_income", "income_tax", "eitc_entitlement", "eitc_child_count",
            "ctc", *SOI_ITEMS, "is_tax_filer")


def row_keys(tax_unit: pd.DataFrame) -> pd.MultiIndex:
    """A 128-bit content key per tax unit over the columns Tax-Calculator reads."""
    inputs = tax_unit[sorted(tax_inputs(tax_unit))]
    halves = [pd.util.hash_pandas_object(inputs, index=False, hash_key=k)
              for k in _KEYS]
    return pd.MultiIndex.from_arrays([h.to_numpy() for h in halves])


class TaxCache:
    """Results by content key, for one period."""

    def __init__(self, period: int):
        self.period = period
        self.keys = pd.MultiIndex.from_arrays([np.zeros(0, np.uint64)] * 2)
        self.results = pd.DataFrame(columns=list(_RESULTS))
        self.computed_rows = 0  # how many units Tax-Calculator actually ran on

    def taxes(self, tax_unit: pd.DataFrame) -> TaxResults:
        keys = row_keys(tax_unit)
        where = self.keys.get_indexer(keys)
        missing = where < 0
        if missing.any():
            new = keys[missing]
            first = ~new.duplicated()
            rows = tax_unit.iloc[np.flatnonzero(missing)[first]].reset_index(drop=True)
            computed = tax_unit_taxes(rows, self.period).tax_unit[list(_RESULTS)]
            self.keys = self.keys.append(new[first])
            self.results = computed if not len(self.results) else pd.concat(
                [self.results, computed], ignore_index=True)
            self.computed_rows += len(rows)
            where = self.keys.get_indexer(keys)
        values = self.results.iloc[where].reset_index(drop=True)
        frame = pd.concat([tax_unit[["tax_unit_id", "household_id"]].reset_index(drop=True),
                           values], axis=1)
        return TaxResults(self.period, frame.astype({"eitc_child_count": np.int64,
                                                     "is_tax_filer": bool}))

    def save(self, path: str | Path) -> None:
        """Keys and results as arrays (no pickle), written atomically."""
        buffer = io.BytesIO()
        np.savez(buffer, period=np.int64(self.period),
                 key0=self.keys.get_level_values(0).to_numpy(np.uint64),
                 key1=self.keys.get_level_values(1).to_numpy(np.uint64),
                 **{f"result_{c}": self.results[c].to_numpy() for c in _RESULTS})
        write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> TaxCache:
        """What `save` wrote; counts no row as computed here."""
        with np.load(path, allow_pickle=False) as f:
            cache = cls(int(f["period"]))
            cache.keys = pd.MultiIndex.from_arrays([f["key0"], f["key1"]])
            cache.results = pd.DataFrame({c: f[f"result_{c}"] for c in _RESULTS})
        return cache
