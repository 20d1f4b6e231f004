"""Per-state engine values on disk, so a state is never computed twice.

An entry is keyed by everything its values depend on: the base sample's sha256, the
engine's identity (name, version, parameters) and the way it computes a state
(`state_method`), the state, the variables and the state's geography (each record's county
in each district). The key is both in the file name and inside the file; an entry whose
stored key differs from the one asked for (another engine, another base sample, a file
renamed by hand) is never read, only replaced. A refit, a package rebuilt with another
clone count or seed and validation all find their states here.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from pipeline.core.atomic import write_bytes
from pipeline.engine.base import Engine, Mixed, StatePlan, StateValues
from pipeline.microdata import Microdata

_KEY = "__key__"
_DISTRICTS = "__districts__"
_OFF = "__off__:"  # + takeup input:variable, a variable's values with that takeup off
_MIXED = "__mixed__:"  # + takeup input:records|units, or :rows|values:variable (`Mixed`)


def cache_key(engine: Engine, base_sha256: str, plan: StatePlan,
              variables: tuple[str, ...]) -> dict:
    return {"base_sha256": base_sha256, "engine": engine.identity().as_dict(),
            "state_method": engine.state_method, "state_fips": plan.state_fips,
            "variables": sorted(variables), "geography_sha256": plan.sha256()}


def entry_path(cache_dir: Path, engine: Engine, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_dir / f"{engine.name}-{key['state_fips']:02d}-{digest[:32]}.npz"


def read_entry(path: Path, key: dict) -> StateValues | None:
    """The entry at `path` if it was written for exactly `key`, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if json.loads(str(data[_KEY])) != key:
                return None
            values, off, mixed = {}, {}, {}
            for name in data.files:
                if name.startswith(_OFF):
                    takeup, variable = name[len(_OFF):].split(":")
                    off.setdefault(takeup, {})[variable] = data[name]
                elif name.startswith(_MIXED):
                    takeup, part, *variable = name[len(_MIXED):].split(":")
                    parts = mixed.setdefault(takeup, {"rows": {}, "values": {}})
                    if variable:
                        parts[part][variable[0]] = data[name]
                    else:
                        parts[part] = data[name]
                elif name not in (_KEY, _DISTRICTS):
                    values[name] = data[name]
            return StateValues(key["state_fips"], data[_DISTRICTS], values, off,
                               {t: Mixed(**parts) for t, parts in mixed.items()})
    except (OSError, ValueError, KeyError):
        return None  # unreadable: computed again and replaced


def write_entry(path: Path, key: dict, values: StateValues) -> None:
    buffer = io.BytesIO()
    off = {f"{_OFF}{takeup}:{variable}": array for takeup, changed in values.off.items()
           for variable, array in changed.items()}
    mixed = {}
    for takeup, m in values.mixed.items():
        mixed[f"{_MIXED}{takeup}:records"] = m.records
        mixed[f"{_MIXED}{takeup}:units"] = m.units
        for variable in m.values:
            mixed[f"{_MIXED}{takeup}:rows:{variable}"] = m.rows[variable]
            mixed[f"{_MIXED}{takeup}:values:{variable}"] = m.values[variable]
    np.savez_compressed(buffer, **{_KEY: np.array(json.dumps(key, sort_keys=True)),
                                   _DISTRICTS: values.districts}, **values.values, **off,
                        **mixed)
    write_bytes(path, buffer.getvalue())


def cached_state_values(engine: Engine, base: Microdata, base_sha256: str, plan: StatePlan,
                        variables: tuple[str, ...], cache_dir: Path | None) -> StateValues:
    """`engine.state_values`, read from `cache_dir` when an entry for exactly these inputs
    is there, else computed and stored."""
    if cache_dir is None:
        return engine.state_values(base, plan, variables)
    key = cache_key(engine, base_sha256, plan, variables)
    path = entry_path(cache_dir, engine, key)
    found = read_entry(path, key)
    if found is not None:
        return found
    values = engine.state_values(base, plan, variables)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_entry(path, key, values)
    return values
