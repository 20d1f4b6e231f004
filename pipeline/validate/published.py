"""Walk the published H5 files with the engine, sharing federal tax results between them.

Validation and the structural sanity check both simulate what users get: every file is
read back from disk. Federal taxes are a function of the tax-unit table alone, so they
are computed once, on `national.h5`, and handed to a state or district file only when its
tax units are identical (ids, inputs, dtypes) to national rows; any difference falls back
to running Tax-Calculator on that file, which trusts nothing the file does not show.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from pipeline.engine import Simulation, TaxResults, compute_taxes, simulate
from pipeline.microdata import Microdata, read_h5
from pipeline.publish.stacking import load_manifest


def iter_published(
    stacked_dir: str | Path, files: Iterable[str] | None = None
) -> Iterator[tuple[str, Microdata, Simulation]]:
    """(relative path, microdata, simulation) for `files` (default: every manifest file)."""
    stacked_dir = Path(stacked_dir)
    manifest = load_manifest(stacked_dir)
    national = read_h5(stacked_dir / "national.h5")
    national_taxes = compute_taxes(national)
    for rel in sorted(manifest["files"] if files is None else files):
        md = national if rel == "national.h5" else read_h5(stacked_dir / rel)
        yield rel, md, simulate(md, _shared_taxes(md, national, national_taxes))


def _shared_taxes(md: Microdata, national: Microdata, taxes: TaxResults) -> TaxResults | None:
    pos = pd.Index(national.tax_unit["tax_unit_id"]).get_indexer(md.tax_unit["tax_unit_id"])
    if (pos < 0).any():
        return None
    rows = national.tax_unit.iloc[pos].reset_index(drop=True)
    if not rows.equals(md.tax_unit.reset_index(drop=True)):
        return None
    return TaxResults(taxes.period, taxes.tax_unit.iloc[pos].reset_index(drop=True))
