"""Lineage: the hash of every artifact, and the parent hashes each artifact recorded.

A release is only consistent when every artifact descends from the others: each fit from
this package under its target config, the stacked files from both fits' weights,
validation from these files. Each artifact records its parents' hashes when it is written; promotion
compares them with the parents on disk, so a release can never mix two fits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline.core.atomic import write_json
from pipeline.core.hashing import sha256_file
from pipeline.core.layout import Layout
from pipeline.package.store import package_content_sha
from pipeline.release.releases import current_release

NO_RELEASE = "none"


def _current_release(layout: Layout) -> str:
    """The version CURRENT names. A missing or dangling CURRENT next to releases raises
    (InputError with the repair), for every gate and for promotion alike."""
    release = current_release(layout.root)
    return NO_RELEASE if release is None else release.version


# Every artifact a gate can judge, and how its hash is taken.
ARTIFACTS: dict[str, Callable[[Layout], str]] = {
    "target_db": lambda lay: sha256_file(lay.target_db),
    "target_config": lambda lay: sha256_file(lay.target_config),
    "national_target_config": lambda lay: sha256_file(lay.national_target_config),
    "calibration_package": lambda lay: package_content_sha(lay.package_dir),
    "calibration_weights": lambda lay: sha256_file(lay.weights),
    "national_weights": lambda lay: sha256_file(lay.national_weights),
    "stacked_h5s": lambda lay: sha256_file(lay.stacked_manifest),
    "validation_results": lambda lay: sha256_file(lay.validation_csv),
    "sparsity_allocation": lambda lay: sha256_file(lay.allocation_arrays),
    # Not a file: the regression gates judge against CURRENT, so a moved CURRENT makes
    # their verdicts stale.
    "current_release": _current_release,
}

# artifact -> the parents whose hashes it records when written.
PARENTS: dict[str, tuple[str, ...]] = {
    "calibration_package": ("target_db",),
    "calibration_weights": ("calibration_package", "target_config"),
    "national_weights": ("calibration_package", "national_target_config"),
    # The published files come from both fits: the manifest records both weights' hashes.
    "stacked_h5s": ("calibration_package", "calibration_weights", "national_weights"),
    "validation_results": ("calibration_package", "target_config", "national_target_config",
                           "stacked_h5s"),
}

# Parents an artifact records only sometimes: checked whenever it recorded them (a national
# fit with `allocation: learned` names the allocation it kept).
OPTIONAL_PARENTS: dict[str, tuple[str, ...]] = {"national_weights": ("sparsity_allocation",)}


def artifact_hashes(layout: Layout, names: Iterable[str]) -> dict[str, str]:
    """Current hashes; an artifact that does not exist hashes to a marker, never silently."""
    out = {}
    for name in names:
        try:
            out[name] = ARTIFACTS[name](layout)
        except FileNotFoundError:
            out[name] = "missing"
    return out


def parent_hashes(layout: Layout, artifact: str) -> dict[str, str]:
    """What a stage records as the lineage of the artifact it is about to write."""
    return artifact_hashes(layout, PARENTS[artifact])


def _recorded_in(layout: Layout) -> dict[str, Path]:
    return {
        "calibration_package": layout.package_dir / "metadata.json",
        "calibration_weights": layout.run_config,
        "national_weights": layout.national_run_config,
        "stacked_h5s": layout.stacked_manifest,
        "validation_results": layout.validation_lineage,
    }


def recorded_parents(layout: Layout, artifact: str) -> dict[str, str]:
    path = _recorded_in(layout)[artifact]
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()).get("lineage", {}))


def write_lineage(path: str | Path, lineage: dict[str, str]) -> None:
    """For artifacts without a metadata file of their own (validation results)."""
    write_json(path, {"lineage": lineage})


def lineage_problems(layout: Layout, current: dict[str, str]) -> list[str]:
    """Every recorded parent hash that differs from the parent on disk."""
    problems = []
    for artifact, parents in PARENTS.items():
        recorded = recorded_parents(layout, artifact)
        optional = [p for p in OPTIONAL_PARENTS.get(artifact, ()) if p in recorded]
        for parent in (*parents, *optional):
            have = current.get(parent) or artifact_hashes(layout, [parent])[parent]
            if recorded.get(parent) != have:
                problems.append(f"{artifact} was not built from the current {parent} "
                                f"(recorded {str(recorded.get(parent))[:12]}, on disk {have[:12]})"
                                f"; materialize {artifact} again")
    return problems

