"""Versioned, immutable releases with an atomically moved `CURRENT` pointer.

A release directory is assembled under a temporary name and renamed into place, so a
promotion that fails part-way leaves `CURRENT` and every earlier release untouched.
Files are hard-linked when possible: every stage replaces files by rename (a new inode),
so a later run never rewrites the bytes a release links to.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.core.atomic import TMP_PREFIX, atomic_dir, write_json
from pipeline.core.errors import InputError
from pipeline.core.hashing import sha256_file
from pipeline.core.layout import MANIFEST, VALIDATION_CSV, Layout
from pipeline.validate.totals import read_validation_csv

CURRENT = "CURRENT"
_RESERVED = ("version", "created_at", "files")


@dataclass(frozen=True)
class Release:
    version: str
    path: Path
    manifest: dict[str, Any]


def promote(
    storage_root: str | Path,
    files: dict[str, Path],
    manifest_extra: dict[str, Any],
    *,
    now: datetime | None = None,
) -> Release:
    """Publish `files` (release-relative name → file or directory) as a new release.

    The version is `<UTC YYYYmmddTHHMMSSZ>-<8 hex of the content hash>`; an existing
    version is never overwritten. `CURRENT` moves only after the directory is complete.
    """
    releases = Layout(Path(storage_root)).releases_dir
    clash = sorted(set(_RESERVED) & set(manifest_extra))
    if clash:
        raise InputError(None, "manifest_extra", f"keys {clash} are reserved",
                         "rename those keys in the metadata passed to promote")
    sources = _expand(files)
    hashes = {rel: sha256_file(src) for rel, src in sources.items()}
    content = json.dumps([hashes, manifest_extra], sort_keys=True, default=str)
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    version = f"{stamp}-{hashlib.sha256(content.encode()).hexdigest()[:8]}"
    path = releases / version
    if path.exists():
        raise InputError(path, None, "this release already exists and releases are immutable",
                         "promote again later or with changed inputs")
    manifest = dict(manifest_extra, version=version, created_at=stamp, files={
        rel: {"sha256": hashes[rel], "bytes": sources[rel].stat().st_size} for rel in sources
    })
    with atomic_dir(path, replace=False) as tmp:
        for rel, src in sources.items():
            _place(src, tmp / rel)
        write_json(tmp / MANIFEST, manifest)
    _point_current(releases, version)
    return Release(version, path, manifest)


def list_releases(storage_root: str | Path) -> list[Release]:
    """Complete releases (those with a manifest), oldest first."""
    releases = Layout(Path(storage_root)).releases_dir
    if not releases.is_dir():
        return []
    found = []
    for p in sorted(releases.iterdir()):
        if p.name.startswith(TMP_PREFIX) or p.name == CURRENT or p.is_symlink():
            continue
        if (p / MANIFEST).is_file():
            found.append(Release(p.name, p, json.loads((p / MANIFEST).read_text())))
    return found


def current_release(storage_root: str | Path) -> Release | None:
    link = Layout(Path(storage_root)).releases_dir / CURRENT
    if not link.is_symlink():
        return None
    version = os.readlink(link)
    for rel in list_releases(storage_root):
        if rel.version == version:
            return rel
    raise InputError(link, CURRENT, f"points at {version!r}, which is not a complete release",
                     "run rollback(root, version) with a version from list_releases")


def rollback(storage_root: str | Path, version: str | None = None) -> Release:
    """Point `CURRENT` at `version`, or at the release just before the current one."""
    releases = list_releases(storage_root)
    names = [r.version for r in releases]
    if version is None:
        current = current_release(storage_root)
        if current is None or names.index(current.version) == 0:
            raise InputError(Layout(Path(storage_root)).releases_dir, CURRENT,
                             "there is no earlier release to roll back to",
                             "pass an explicit version from list_releases")
        target = releases[names.index(current.version) - 1]
    elif version in names:
        target = releases[names.index(version)]
    else:
        raise InputError(Layout(Path(storage_root)).releases_dir, "version",
                         f"no complete release {version!r}; releases: {names}",
                         "pass one of the listed versions")
    _point_current(Layout(Path(storage_root)).releases_dir, target.version)
    return target


def load_current_validation(storage_root: str | Path) -> pd.DataFrame | None:
    """The current release's validation results: gate 2's baseline (None before the first)."""
    current = current_release(storage_root)
    if current is None or not (current.path / VALIDATION_CSV).is_file():
        return None
    return read_validation_csv(current.path / VALIDATION_CSV)


def _expand(files: dict[str, Path]) -> dict[str, Path]:
    """Every source file by its release-relative name; refuse missing inputs up front."""
    out: dict[str, Path] = {}
    for rel, src in files.items():
        src = Path(src)
        if Path(rel).is_absolute() or ".." in Path(rel).parts or rel in (MANIFEST, CURRENT):
            raise InputError(src, rel, "release names must be relative and not reserved",
                             "use names such as 'weights.npy' or 'stacked'")
        if src.is_dir():
            for f in sorted(src.rglob("*")):
                parts = f.relative_to(src).parts
                if f.is_file() and not any(p.startswith(TMP_PREFIX) for p in parts):
                    out[str(Path(rel, *parts))] = f
        elif src.is_file():
            out[rel] = src
        else:
            raise InputError(src, rel, "file to release does not exist",
                             "materialize the upstream asset before promoting")
    return out


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _point_current(releases: Path, version: str) -> None:
    """Swap the `CURRENT` symlink by renaming a fresh link over it (atomic on POSIX)."""
    tmp = releases / f"{TMP_PREFIX}{CURRENT}.{uuid.uuid4().hex}"
    try:
        os.symlink(version, tmp)
        os.replace(tmp, releases / CURRENT)
    finally:
        if tmp.is_symlink():
            tmp.unlink()
