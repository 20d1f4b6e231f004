"""Snapshot policyengine-us's variables (name, entity, input or formula) for the tests.

`tests/test_vocabulary.py` checks the published files' names against this list without
installing policyengine-us (AGPL, 2-3 GB). Run it with the interpreter of a venv that has
the version `pipeline.microdata.vocabulary.POLICYENGINE_US_VERSION` names
(`make interop` builds one):

    .venv-policyengine/bin/python scripts/snapshot_policyengine_variables.py

It writes tests/data/policyengine_us_variables.csv.gz.
"""

from __future__ import annotations

import gzip
import sys
from importlib.metadata import version
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "policyengine_us_variables.csv.gz"


def main() -> int:
    from policyengine_us import CountryTaxBenefitSystem

    system = CountryTaxBenefitSystem()
    rows = []
    for name, variable in sorted(system.variables.items()):
        computed = bool(variable.formulas or getattr(variable, "adds", None)
                        or getattr(variable, "subtracts", None))
        rows.append(f"{name},{variable.entity.key},{'formula' if computed else 'input'}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    with gzip.GzipFile(tmp, "wb", mtime=0) as f:  # mtime 0: the same bytes on every run
        f.write(("# policyengine-us " + version("policyengine-us") + "\n"
                 "name,entity,kind\n" + "\n".join(rows) + "\n").encode())
    tmp.replace(OUT)
    print(f"{len(rows)} variables -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
