"""Versioned, immutable releases with an atomically moved `CURRENT` pointer.

A release directory is assembled under a temporary name and renamed into place, so a
promotion that fails part-way leaves `CURRENT` and every earlier release untouched; one
that dies between the rename and the `CURRENT` swap leaves a complete release that
`history.json` shows was never promoted.
Files are copied (a reflink where the filesystem shares extents), never hard-linked: a
link would let an in-place edit of a working file rewrite every release that links it.
Each file is hashed as it is copied, and a release is read-only once written;
`verify_release` re-hashes one against its manifest (and the manifest against the digest
in its version name).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.core.atomic import TMP_PREFIX, atomic_dir, write_json
from pipeline.core.errors import InputError
from pipeline.core.failpoint import before_rename
from pipeline.core.hashing import sha256_file
from pipeline.core.layout import MANIFEST, VALIDATION_CSV, Layout
from pipeline.validate.totals import read_validation_csv

CURRENT = "CURRENT"
HISTORY = "history.json"  # every version CURRENT has pointed at, in order
_RESERVED = ("version", "created_at", "files")
_BLOCK = 1 << 20


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
    expected: Mapping[str, str] | None = None,
) -> Release:
    """Publish `files` (release-relative name → file or directory) as a new release.

    `expected` (release-relative name → sha256: the bytes the gates judged) makes the copy
    itself the proof: every file must be there, and a byte that differs as it is copied
    refuses the release, naming the file.

    The version is `<UTC YYYYmmddTHHMMSSZ>-<8 hex of the content hash>`, with `-2`, `-3`...
    when that name is taken (a retry within the same second of a promotion killed before
    its `CURRENT` swap); an existing version is never overwritten. `CURRENT` moves only
    after the directory is complete.
    """
    releases = Layout(Path(storage_root)).releases_dir
    clash = sorted(set(_RESERVED) & set(manifest_extra))
    if clash:
        raise InputError(None, "manifest_extra", f"keys {clash} are reserved",
                         "rename those keys in the metadata passed to promote")
    sources = expand_files(files)
    if expected is not None:
        unjudged = sorted(set(sources) - set(expected))
        if unjudged:
            raise InputError(sources[unjudged[0]], unjudged[0], f"would be published but no "
                             f"check judged it ({len(unjudged)} such files)", "remove it, or "
                             "run the checks again")
        hashes = {rel: expected[rel] for rel in sources}
    else:
        hashes = {rel: sha256_file(src) for rel, src in sources.items()}
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    version = _free_version(releases, f"{stamp}-{_digest(hashes, manifest_extra)}")
    path = releases / version
    _start_history(releases)
    sizes = {}
    with atomic_dir(path, replace=False) as tmp:
        for rel, src in sources.items():
            copied = _place(src, tmp / rel)
            if copied != hashes[rel]:
                raise InputError(src, rel, f"its bytes changed since they were judged "
                                 f"(sha256 {hashes[rel][:12]} judged, {copied[:12]} now)",
                                 "run the checks again on the files as they are")
            sizes[rel] = (tmp / rel).stat().st_size
        manifest = dict(manifest_extra, version=version, created_at=stamp, files={
            rel: {"sha256": hashes[rel], "bytes": sizes[rel]} for rel in sources})
        write_json(tmp / MANIFEST, manifest)
        os.chmod(tmp / MANIFEST, 0o444)
    _seal(path)
    # A release cut under a waiver says so where every promotion is listed, too.
    _point_current(releases, version, "promote", waivers=manifest_extra.get("waivers"))
    return Release(version, path, manifest)


def verify_release(release: Release, hasher: Callable[[Path], str] = sha256_file
                   ) -> list[str]:
    """What differs between a release and its manifest: changed, missing and extra files,
    and a manifest whose content no longer gives the digest in the version's name."""
    files = release.manifest.get("files", {})
    on_disk = {str(p.relative_to(release.path)) for p in release.path.rglob("*")
               if not p.is_dir()} - {MANIFEST}
    problems = [f"{rel}: missing" for rel in sorted(set(files) - on_disk)]
    problems += [f"{rel}: not in the manifest (no check judged it)"
                 for rel in sorted(on_disk - set(files))]
    for rel in sorted(set(files) & on_disk):
        have = hasher(release.path / rel)
        if have != files[rel].get("sha256"):
            problems.append(f"{rel}: changed since it was released (sha256 "
                            f"{str(files[rel].get('sha256'))[:12]} released, {have[:12]} now)")
    named = release.version.split("-")[1] if "-" in release.version else None
    digest = _content_digest(release.manifest)
    if digest is not None and named != digest:
        problems.append(f"{MANIFEST}: edited since it was released (its content gives digest "
                        f"{digest}, the version name says {named})")
    return problems


def _digest(hashes: Mapping[str, str], extra: Mapping[str, Any]) -> str:
    """The 8 hex of a version name: the files' hashes and the manifest's other content."""
    content = json.dumps([dict(hashes), dict(extra)], sort_keys=True, default=str)
    return hashlib.sha256(content.encode()).hexdigest()[:8]


def _content_digest(manifest: dict[str, Any]) -> str | None:
    """`_digest` recomputed from a manifest (None when it lacks the files' hashes)."""
    try:
        hashes = {rel: entry["sha256"] for rel, entry in manifest["files"].items()}
    except (KeyError, TypeError, AttributeError):
        return None
    return _digest(hashes, {k: v for k, v in manifest.items() if k not in _RESERVED})


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


def current_problem(storage_root: str | Path) -> str | None:
    """What is wrong with `CURRENT`, or None: it names a complete release, or none exists."""
    link = Layout(Path(storage_root)).releases_dir / CURRENT
    names = [r.version for r in list_releases(storage_root)]
    if link.is_symlink():
        target = os.readlink(link)
        return None if target in names else f"points at {target!r}, which is not a complete release"
    if link.exists():
        return "is not a symlink to a release"
    if not names or _read_history(link.parent) == []:
        return None  # nothing was ever promoted: the first promotion died before the swap
    return "is missing"


def current_release(storage_root: str | Path) -> Release | None:
    """The release `CURRENT` names; None only while there is no release at all.

    A missing or dangling `CURRENT` next to releases is an InputError: the regression gates
    judge against it, and silently judging against nothing would switch them off.
    """
    problem = current_problem(storage_root)
    if problem is not None:
        raise _broken_current(storage_root, problem)
    link = Layout(Path(storage_root)).releases_dir / CURRENT
    if not link.is_symlink():
        return None
    version = os.readlink(link)
    return next(r for r in list_releases(storage_root) if r.version == version)


def promoted_versions(storage_root: str | Path) -> set[str]:
    """Every version `CURRENT` has pointed at. A complete release outside this set was left
    unpromoted: its promotion stopped between the release's rename and the `CURRENT` swap."""
    releases = Layout(Path(storage_root)).releases_dir
    history = _read_history(releases)
    if history is None:  # releases cut before promotions were recorded: none is suspect
        return {r.version for r in list_releases(storage_root)}
    seen = {entry["version"] for entry in history}
    link = releases / CURRENT
    if link.is_symlink():
        seen.add(os.readlink(link))
    return seen


def repair_current(storage_root: str | Path) -> Release | None:
    """Point a missing or dangling `CURRENT` at the newest complete release (the explicit
    `CALIBRATION_BASELINE=newest` choice); returns it, or None when nothing needed repair."""
    releases = list_releases(storage_root)
    if current_problem(storage_root) is None or not releases:
        return None
    _point_current(Layout(Path(storage_root)).releases_dir, releases[-1].version, "repair")
    return releases[-1]


def rollback(storage_root: str | Path, version: str | None = None) -> Release:
    """Point `CURRENT` at `version`, or at the release just before the current one."""
    releases = list_releases(storage_root)
    names = [r.version for r in releases]
    releases_dir = Layout(Path(storage_root)).releases_dir
    if version is None:
        problem = current_problem(storage_root)
        if problem is not None:
            raise InputError(releases_dir / CURRENT, CURRENT, f"CURRENT {problem}, so there "
                             "is no 'release before it'", f"pass the version to restore: "
                             f"calibrate rollback VERSION, one of {names}")
        current = current_release(storage_root)
        if current is None or names.index(current.version) == 0:
            raise InputError(releases_dir, CURRENT, "there is no earlier release to roll back to",
                             "pass an explicit version from list_releases")
        target = releases[names.index(current.version) - 1]
    elif version in names:
        target = releases[names.index(version)]
    else:
        raise InputError(releases_dir, "version",
                         f"no complete release {version!r}; releases: {names}",
                         "pass one of the listed versions")
    _point_current(releases_dir, target.version, "rollback")
    return target


def load_current_validation(storage_root: str | Path) -> pd.DataFrame | None:
    """The current release's validation results: gate 2's baseline (None before the first)."""
    current = current_release(storage_root)
    if current is None or not (current.path / VALIDATION_CSV).is_file():
        return None
    return read_validation_csv(current.path / VALIDATION_CSV)


def _broken_current(storage_root: str | Path, problem: str) -> InputError:
    releases_dir = Layout(Path(storage_root)).releases_dir
    names = [r.version for r in list_releases(storage_root)]
    history = _read_history(releases_dir)
    last = history[-1]["version"] if history else None
    hint = (f"it last pointed at {last}" if last in names
            else f"releases: {', '.join(names[-3:])}")
    return InputError(
        releases_dir / CURRENT, CURRENT,
        f"CURRENT {problem} while {len(names)} releases exist, so gate 1 and gate 2 have no "
        "baseline and nothing may be promoted",
        f"repair it with `calibrate rollback VERSION` ({hint}), or take the newest release "
        f"({names[-1]}) as the baseline explicitly: CALIBRATION_BASELINE=newest "
        "(`make run BASELINE=newest`)")

def _free_version(releases: Path, name: str) -> str:
    """`name`, or the first `name-N` no release holds: the same content promoted again in
    the same second (after a kill left the first copy unpromoted) is a new release."""
    version, n = name, 1
    while (releases / version).exists():
        n += 1
        version = f"{name}-{n}"
    return version


def expand_files(files: dict[str, Path]) -> dict[str, Path]:
    """Every source file by its release-relative name (a directory expands to the files
    under it, temporary names left out); refuse missing inputs up front."""
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


FICLONE = 0x40049409  # linux/fs.h: share the source's extents (a reflink, copy-on-write)


def _place(src: Path, dst: Path) -> str:
    """Copy `src` to `dst` read-only (a reflink where the filesystem supports one, else the
    bytes); the sha256 of what `dst` now holds. Never a hard link."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
            digest = None  # shared extents: hash what the release now holds, below
        except OSError:
            h = hashlib.sha256()
            while block := fin.read(_BLOCK):
                h.update(block)
                fout.write(block)
            digest = h.hexdigest()
        fout.flush()
        os.fsync(fout.fileno())
    os.chmod(dst, 0o444)
    return digest or sha256_file(dst)


def _seal(path: Path) -> None:
    """Read-only directories once the release is in place (files are sealed as copied;
    the temporary directory stays writable, so a dead promotion's leftovers can be swept)."""
    for directory in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
        os.chmod(directory, 0o555)
    os.chmod(path, 0o555)


def _point_current(releases: Path, version: str, action: str,
                   waivers: list[dict[str, Any]] | None = None) -> None:
    """Swap the `CURRENT` symlink by renaming a fresh link over it (atomic on POSIX), and
    record the version in the history. A crash right after a swap leaves that version
    unrecorded; the next swap records it first, so no promoted release reads as unpromoted.
    """
    _start_history(releases)
    history = _read_history(releases)
    link = releases / CURRENT
    if link.is_symlink():
        previous = os.readlink(link)
        if (releases / previous / MANIFEST).is_file() and previous not in {
                entry["version"] for entry in history}:
            history.append(_entry(previous, "recorded late"))
    tmp = releases / f"{TMP_PREFIX}{CURRENT}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(version, tmp)
        before_rename(link)
        os.replace(tmp, link)
    finally:
        if tmp.is_symlink():
            tmp.unlink()
    write_json(releases / HISTORY, history + [_entry(version, action, waivers)])


def _entry(version: str, action: str, waivers: list[dict[str, Any]] | None = None
           ) -> dict[str, Any]:
    entry: dict[str, Any] = {"version": version, "action": action,
                             "at": datetime.now(UTC).isoformat(timespec="seconds")}
    if waivers:
        entry["waivers"] = waivers
    return entry


def _start_history(releases: Path) -> None:
    """Create the history before the first release of this root (or of this version of the
    code: releases already there count as promoted), so an empty one means 'never promoted'."""
    if _read_history(releases) is None:
        write_json(releases / HISTORY, [{"version": r.version, "action": "before history",
                                         "at": ""} for r in list_releases(releases.parent)])


def _read_history(releases: Path) -> list[dict[str, str]] | None:
    """None when no promotion has been recorded here yet."""
    path = releases / HISTORY
    return json.loads(path.read_text()) if path.is_file() else None
