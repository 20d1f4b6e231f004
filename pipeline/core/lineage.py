"""Lineage: the parents each artifact records when it is written, and how each is hashed.

A release is only consistent when every artifact descends from the others: each fit from
this package under its target config, the stacked files from the publishing fits' weights,
validation from these files. Every stage records its parents through `record_parents` (or
`parent_hashes`, the same under a storage root), which hashes exactly the parents `parents`
names, so what an artifact records agrees with the table by construction. Promotion
compares the recorded hashes with the parents on disk (`lineage_problems`), so a release
can never mix two fits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipeline.core.atomic import write_json
from pipeline.core.fit_table import FITS, Fit, allocated, configs, published
from pipeline.core.hashing import sha256_file
from pipeline.core.layout import Layout

ALLOCATION = "sparsity_allocation"  # the learned allocation: a parent only when a fit keeps it
MISSING = "missing"
PACKAGE_METADATA = "metadata.json"
# Package metadata that says when and how fast it was built, not what it holds.
VOLATILE_METADATA = ("created_at", "build_seconds", "state_seconds")


def package_content_sha(path: str | Path) -> str:
    """Hash of what a package holds, not when or how fast it was built: a rebuild from the
    same inputs keeps its data version, so what follows it stays fresh."""
    path = Path(path)
    h = hashlib.sha256()
    for name in sorted(p.name for p in path.iterdir() if p.is_file()):
        if name != PACKAGE_METADATA:
            h.update(f"{name}:{sha256_file(path / name)}".encode())
    meta = json.loads((path / PACKAGE_METADATA).read_text())
    stable = {k: v for k, v in meta.items() if k not in VOLATILE_METADATA}
    h.update(json.dumps(stable, sort_keys=True, default=str).encode())
    return h.hexdigest()


def fit_parents(fit: Fit) -> tuple[str, ...]:
    return ("calibration_package", fit.config.asset)


def parents(fits: tuple[Fit, ...] = FITS) -> dict[str, tuple[str, ...]]:
    """Every artifact of a release -> the parents whose hashes it records when written."""
    shown = published(fits)
    return {
        "calibration_package": ("target_db",),
        **{fit.weights: fit_parents(fit) for fit in fits},
        # The published files come from the publishing fits: the manifest records their weights.
        "stacked_h5s": ("calibration_package", *(fit.weights for fit in shown)),
        "validation_results": ("calibration_package", *(c.asset for c in configs(shown)),
                               "stacked_h5s"),
    }


def optional_parents(fits: tuple[Fit, ...] = FITS) -> dict[str, tuple[str, ...]]:
    """Parents an artifact records only sometimes, checked whenever it recorded them: a fit
    with `allocation: learned` names the allocation it kept."""
    return {fit.weights: (ALLOCATION,) for fit in fits if fit.allocation}


def allocation_parents(fits: tuple[Fit, ...] = FITS) -> tuple[str, ...]:
    """What the learned allocation was searched on: the package, the allocated fit's config."""
    return fit_parents(allocated(fits))


def artifacts(fits: tuple[Fit, ...] = FITS) -> tuple[str, ...]:
    """Every artifact with a hash, in the data's order."""
    return ("target_db", *(c.asset for c in configs(fits)), "calibration_package",
            *(fit.weights for fit in fits), "stacked_h5s", "validation_results", ALLOCATION)


def artifact_paths(layout: Layout, fits: tuple[Fit, ...] = FITS) -> dict[str, Path]:
    """Where each artifact's hash is taken under a storage root."""
    return {
        "target_db": layout.target_db,
        **{c.asset: layout.target_config(c) for c in configs(fits)},
        "calibration_package": layout.package_dir,
        **{fit.weights: layout.weights(fit) for fit in fits},
        "stacked_h5s": layout.stacked_manifest,
        "validation_results": layout.validation_csv,
        ALLOCATION: layout.allocation_arrays,
    }


def artifact_hash(artifact: str, path: str | Path) -> str:
    """A package is hashed by content (`package_content_sha`), every other artifact by its
    file's bytes."""
    return package_content_sha(path) if artifact == "calibration_package" else sha256_file(path)


def record_parents(artifact: str, paths: Mapping[str, str | Path | None],
                   fits: tuple[Fit, ...] = FITS) -> dict[str, str | None]:
    """The lineage `artifact` records: the hash of each of its parents, read at `paths`
    (None where a parent has no file: a fit of a pickled package, or without a config).
    An optional parent is recorded when `paths` names it."""
    needed = allocation_parents(fits) if artifact == ALLOCATION else parents(fits)[artifact]
    optional = [p for p in optional_parents(fits).get(artifact, ()) if paths.get(p)]
    return {parent: None if paths[parent] is None else artifact_hash(parent, paths[parent])
            for parent in (*needed, *optional)}


def artifact_hashes(layout: Layout, names: Iterable[str],
                    fits: tuple[Fit, ...] = FITS) -> dict[str, str]:
    """Current hashes; an artifact that does not exist hashes to a marker, never silently."""
    where = artifact_paths(layout, fits)
    out = {}
    for name in names:
        try:
            out[name] = artifact_hash(name, where[name])
        except FileNotFoundError:
            out[name] = MISSING
    return out


def parent_hashes(layout: Layout, artifact: str, fits: tuple[Fit, ...] = FITS) -> dict[str, str]:
    """What a stage writing under a storage root records as the lineage of `artifact`."""
    return artifact_hashes(layout, parents(fits)[artifact], fits)


def _recorded_in(layout: Layout, fits: tuple[Fit, ...]) -> dict[str, Path]:
    return {
        "calibration_package": layout.package_dir / PACKAGE_METADATA,
        **{fit.weights: layout.run_config(fit) for fit in fits},
        "stacked_h5s": layout.stacked_manifest,
        "validation_results": layout.validation_lineage,
    }


def recorded_parents(layout: Layout, artifact: str,
                     fits: tuple[Fit, ...] = FITS) -> dict[str, str]:
    path = _recorded_in(layout, fits)[artifact]
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()).get("lineage", {}))


def write_lineage(path: str | Path, lineage: dict[str, str]) -> None:
    """For artifacts without a metadata file of their own (validation results)."""
    write_json(path, {"lineage": lineage})


def lineage_problems(layout: Layout, current: dict[str, str],
                     fits: tuple[Fit, ...] = FITS) -> list[str]:
    """Every recorded parent hash that differs from the parent on disk."""
    problems = []
    optional_table = optional_parents(fits)
    for artifact, needed in parents(fits).items():
        recorded = recorded_parents(layout, artifact, fits)
        optional = [p for p in optional_table.get(artifact, ()) if p in recorded]
        for parent in (*needed, *optional):
            have = current.get(parent) or artifact_hashes(layout, [parent], fits)[parent]
            if recorded.get(parent) != have:
                problems.append(f"{artifact} was not built from the current {parent} "
                                f"(recorded {str(recorded.get(parent))[:12]}, on disk {have[:12]})"
                                f"; materialize {artifact} again")
    return problems
