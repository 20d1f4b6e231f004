"""One walk over the published files serves every check that reads them.

Each file is a task for the compute runner: its bytes (and its sidecar's) are checked
against the manifest's sha256, then it is read one block of whole households at a time
(the manifest's row offsets; for an engine with a block limit, the fewest even slices of
the file, and the whole file loaded as it is when it fits in one), simulated by
the engine the files were built for (the manifest names it) as a user of the file runs it,
judged by the structural sanity list and summed into the targets that live in it. Memory
is bounded by a block (plus the file's id columns for the uniqueness check), whatever the
size of the release.

With the builtin engine, federal taxes come from a `TaxCache` keyed by each tax unit's
input columns as read from the file; it is seeded with the base sample's units
(`seed_cache`), so workers never compile Tax-Calculator for rows they have already seen,
and compute any row they have not.

The result is cached beside the validation results, keyed by the manifest and the targets;
a cached walk is reused only after every file's bytes still match the manifest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import InputError
from pipeline.core.hashing import sha256_file
from pipeline.core.layout import MANIFEST
from pipeline.core.parallel import InProcess, Runner
from pipeline.engine import VARIABLES, load_engine
from pipeline.engine.builtin import tax_cache
from pipeline.engine.tax_cache import TaxCache
from pipeline.microdata import Microdata, RowBlock, blocks, read_h5, split_block, whole_file
from pipeline.publish.stacking import load_manifest
from pipeline.validate.aggregate import EntityTables
from pipeline.validate.sanity import SANITY_COLUMNS, FileSanity

SEED_PREFIX = "tax_seed-"


@dataclass(frozen=True)
class FileTask:
    rel: str
    entry: dict[str, Any]  # the manifest's entry: sha256 and row offsets
    targets: pd.DataFrame  # variable, constraints of the targets evaluated on this file


@dataclass(frozen=True)
class Walk:
    sanity: pd.DataFrame  # file, check, status, reason: one row per (file, check)
    totals: dict[str, np.ndarray]  # file -> its targets' totals, in the task's row order


def seed_cache(base: Microdata) -> TaxCache:
    """A cache already holding every base-sample unit: the clones' inputs are theirs."""
    cache = TaxCache(base.period)
    cache.taxes(base.tax_unit)
    return cache


def stored_seed(base_h5: str | Path, cache_dir: str | Path) -> TaxCache:
    """`seed_cache` of the base sample, kept beside the walk's cache and keyed by the base
    sample's bytes and the builtin engine's identity: a process that has not run
    Tax-Calculator yet (a refit's first check) reads it instead of compiling and running it
    (37 s on the ci sample, against well under a second of walking)."""
    identity = load_engine("builtin").identity().as_dict()
    key = hashlib.sha256(json.dumps([sha256_file(base_h5), identity],
                                    sort_keys=True).encode()).hexdigest()[:32]
    path = Path(cache_dir) / f"{SEED_PREFIX}{key}.npz"
    if path.is_file():
        return TaxCache.load(path)
    cache = seed_cache(read_h5(base_h5))
    cache.save(path)
    for stale in Path(cache_dir).glob(f"{SEED_PREFIX}*.npz"):
        if stale != path:
            stale.unlink()
    return cache


def engine_of(manifest: dict[str, Any]) -> str:
    """The engine a stacked directory was built with (builtin before engines had names)."""
    return str(manifest.get("engine", {}).get("name", "builtin"))


def walk(stacked_dir: str | Path, tasks: list[FileTask], seed: TaxCache | None,
         runner: Runner | None = None) -> Walk:
    engine = engine_of(load_manifest(stacked_dir))
    # Largest files first: a worker that takes California (16 simulations under
    # policyengine-us) last would walk it alone while the others sit idle.
    order = sorted(range(len(tasks)), key=lambda i: -_households(tasks[i].entry))
    ran = dict(zip(order, (runner or InProcess()).map(
        walk_file, [tasks[i] for i in order], str(stacked_dir), engine, seed,
        desc="validation: published files"), strict=True))
    done = [ran[i] for i in range(len(tasks))]
    sanity = pd.DataFrame([(task.rel, r.check, r.status, r.reason)
                           for task, (results, _) in zip(tasks, done, strict=True)
                           for r in results], columns=SANITY_COLUMNS)
    return Walk(sanity, {task.rel: totals for task, (_, totals) in zip(tasks, done,
                                                                        strict=True)})


def _households(entry: dict[str, Any]) -> int:
    return whole_file(entry["row_offsets"]).households[1]


def walk_file(task: FileTask, stacked_dir: str, engine_name: str, seed: TaxCache | None
              ) -> tuple[list, np.ndarray]:
    """(sanity results, target totals) for one file, block by block."""
    path = Path(stacked_dir) / task.rel
    verify_entry(Path(stacked_dir), task.rel, task.entry)
    engine = load_engine(engine_name)
    if seed is not None:
        tax_cache(seed.period, seed)  # a process's first walk starts from the seed
    variables = _variables(task.targets, engine)
    sanity = FileSanity()
    totals = np.zeros(len(task.targets))
    for block, whole in simulation_blocks(path, task.entry, engine):
        md = read_h5(path, block)
        sim = engine.simulate_published(path, None if whole else block, md, variables)
        sanity.add(md, sim, _spm_ids(path, md.period, block.households))
        tables = EntityTables(md, sim)
        totals += [tables.total(v, c) for v, c in
                   zip(task.targets["variable"], task.targets["constraints"], strict=True)]
    return sanity.results(), totals


def verify_file(path: Path, sha256: str) -> None:
    if not path.is_file():
        raise InputError(path, None, "published file is missing", "materialize stacked_h5s again")
    if sha256_file(path) != sha256:
        raise InputError(path, "sha256", "file differs from the one stacking wrote (damaged or "
                         "replaced since)", "materialize stacked_h5s again")


def verify_entry(stacked_dir: Path, rel: str, entry: dict[str, Any]) -> None:
    """A published file and its sidecar still have the bytes the manifest records."""
    verify_file(stacked_dir / rel, entry["sha256"])
    if "sidecar" in entry:
        verify_file(stacked_dir / entry["sidecar"]["path"], entry["sidecar"]["sha256"])


def verify_files(stacked_dir: str | Path) -> dict[str, Any]:
    """Every published file still has the bytes the manifest records; the manifest."""
    manifest = load_manifest(stacked_dir)
    for rel, entry in manifest["files"].items():
        verify_entry(Path(stacked_dir), rel, entry)
    return manifest


def _variables(targets: pd.DataFrame, engine) -> tuple[str, ...]:
    """What the engine computes for a file: its targets' variables and constraints, and
    SNAP (the sanity range) where the engine has it."""
    names = set(targets["variable"]) | {v for c in targets["constraints"]
                                        for v, _, _ in json.loads(c)}
    names |= {"snap"} & engine.computes
    return tuple(sorted(n for n in names if n in VARIABLES))


def simulation_blocks(path: Path, entry: dict[str, Any], engine) -> list[tuple[RowBlock, bool]]:
    """The blocks a file is simulated in, and whether one block is the whole file (then
    the engine reads the file itself, exactly as a user does).

    An engine with a block limit gets the fewest blocks of even size, whatever blocks
    stacking wrote: each simulation costs policyengine-us ~3 s before its first household
    (a district file that straddled two stacking blocks was two simulations, and sliced).
    """
    limit = engine.max_block_households
    found = (split_block(path, whole_file(entry["row_offsets"]), limit) if limit
             else blocks(entry["row_offsets"]))
    return [(block, len(found) == 1) for block in found]


def _spm_ids(path: Path, period: int, rows: tuple[int, int]) -> np.ndarray | None:
    """The SPM unit ids written beside the households (not read back into Microdata)."""
    with h5py.File(path, "r") as f:
        if "spm_unit_id" in f and str(period) in f["spm_unit_id"]:
            return f["spm_unit_id"][str(period)][rows[0]:rows[1]]
    return None


def walk_cached(stacked_dir: str | Path, tasks: list[FileTask], seed_of: Any,
                runner: Runner | None, cache_dir: str | Path) -> Walk:
    """`walk`, remembered for one (manifest, targets); only the latest entry is kept.

    `seed_of()` builds the engine's warm state (None for none) only when a walk is needed.
    """
    key = hashlib.sha256((Path(stacked_dir) / MANIFEST).read_bytes())
    for task in tasks:
        key.update(task.rel.encode())
        key.update(pd.util.hash_pandas_object(task.targets, index=False).to_numpy().tobytes())
    path = Path(cache_dir) / f"walk-{key.hexdigest()[:32]}.json"
    if path.exists():
        verify_files(stacked_dir)
        raw = json.loads(path.read_text())
        return Walk(pd.DataFrame(raw["sanity"], columns=SANITY_COLUMNS),
                    {rel: np.asarray(v, dtype=np.float64) for rel, v in raw["totals"].items()})
    result = walk(stacked_dir, tasks, seed_of(), runner)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({
            "sanity": result.sanity.to_dict("records"),
            "totals": {rel: v.tolist() for rel, v in result.totals.items()},
        }))
    for stale in Path(cache_dir).glob("walk-*.json"):
        if stale != path:
            stale.unlink()
    return result
