"""Snapshot policyengine-us's variables (name, entity, input or formula).

The published files keep a column in the file policyengine-us loads only when it is one of
these names (every other column goes to the sidecar, so loading logs no warning), and
`tests/test_vocabulary.py` checks the published names and entities against it, all without
installing policyengine-us (AGPL, 2-3 GB). Run it with the interpreter of a venv that has
the version `pipeline.microdata.vocabulary.POLICYENGINE_US_VERSION` names
(`make setup ENGINE=policyengine` builds one):

    .venv/bin/python scripts/snapshot_policyengine_variables.py

It writes pipeline/data/policyengine_us_variables.csv.gz.
"""

from __future__ import annotations

import gzip
import sys
from importlib.metadata import version
from pathlib import Path

OUT = (Path(__file__).resolve().parents[1] / "pipeline" / "data"
       / "policyengine_us_variables.csv.gz")


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
