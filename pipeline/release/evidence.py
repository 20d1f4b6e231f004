"""The bytes a verdict binds: every file a gate's inputs consist of, by its path under the
storage root, with its sha256.

A gate judges artifacts (`core.lineage`), but an artifact is many files: the stacked
directory is its manifest and every file (and sidecar) the manifest lists, a fit is its whole record
(weights, diagnostics, log, run config), the baseline is every file of the release CURRENT
names. A verdict records the hash of each of them when it is judged, so promotion can
re-hash every byte the checks judged, name the one that changed, and publish exactly those.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline.core.atomic import TMP_PREFIX
from pipeline.core.fit_table import FITS, Fit, configs
from pipeline.core.hashing import sha256_file
from pipeline.core.layout import (
    CALIBRATION_LOG,
    DIAGNOSTICS,
    RUN_CONFIG,
    WEIGHTS,
    Layout,
)
from pipeline.release.gates import CURRENT_RELEASE
from pipeline.release.versions import Release, current_release, verify_release

FIT_RECORD = (WEIGHTS, DIAGNOSTICS, CALIBRATION_LOG, RUN_CONFIG)  # a fit's published record
Hasher = Callable[[Path], str]
_SEEN: dict[tuple, str] = {}


def stat_cached_sha256(path: Path) -> str:
    """sha256 of a file, remembered while its inode, size, mtime and ctime stay the same
    (several gates of one run judge the same package and files). Any write changes the
    ctime, which no one can set back, so a changed file is always hashed again. Promotion
    never uses it: it re-reads every byte."""
    st = os.stat(path)
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _SEEN:
        _SEEN[key] = sha256_file(path)
    return _SEEN[key]


def _files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()
                  and not any(part.startswith(TMP_PREFIX) for part in p.parts))


def stacked_files(layout: Layout) -> list[Path]:
    """The stacked directory as stacking wrote it: its manifest, the files it lists and
    each file's sidecar (what policyengine-us never opens, our reader joins back)."""
    manifest = layout.stacked_manifest
    if not manifest.is_file():
        return [manifest]
    listed = json.loads(manifest.read_text()).get("files", {})
    sidecars = [entry["sidecar"]["path"] for entry in listed.values()
                if isinstance(entry, dict) and isinstance(entry.get("sidecar"), dict)]
    return [manifest, *(layout.stacked_dir / rel for rel in sorted([*listed, *sidecars]))]


def artifact_files(layout: Layout, artifact: str, fits: tuple[Fit, ...] = FITS) -> list[Path]:
    """Every file that makes up one gate input."""
    by_config = {c.asset: layout.target_config(c) for c in configs(fits)}
    by_fit = {f.weights: f for f in fits}
    if artifact == "target_db":
        return [layout.target_db]
    if artifact in by_config:
        return [by_config[artifact]]
    if artifact == "calibration_package":
        return _files_under(layout.package_dir)
    if artifact in by_fit:
        return [layout.fit_dir(by_fit[artifact]) / name for name in FIT_RECORD]
    if artifact == "stacked_h5s":
        return stacked_files(layout)
    if artifact == "validation_results":
        return [layout.validation_csv, layout.validation_lineage]
    if artifact == CURRENT_RELEASE:
        release = current_release(layout.root)
        return [] if release is None else _files_under(release.path)
    raise KeyError(f"no file list for gate input {artifact!r}")


def judged_files(layout: Layout, inputs: Iterable[str], fits: tuple[Fit, ...] = FITS,
                 hasher: Hasher = stat_cached_sha256) -> dict[str, str]:
    """Storage-relative path -> sha256 of every file of `inputs` ("missing" for a file that
    is not there: a verdict about an absent file binds its absence)."""
    out = {}
    for artifact in inputs:
        for path in artifact_files(layout, artifact, fits):
            rel = str(path.relative_to(layout.root))
            out[rel] = hasher(path) if path.is_file() else "missing"
    return out


def changed_files(layout: Layout, judged: dict[str, str]) -> list[str]:
    """The judged files whose bytes are not the judged ones now (every byte re-read)."""
    changed = []
    for rel, sha in sorted(judged.items()):
        path = layout.root / rel
        now = sha256_file(path) if path.is_file() else "missing"
        if now != sha:
            changed.append(rel)
    return changed


def stray_files(layout: Layout) -> list[str]:
    """Files in the stacked directory that stacking did not write (its manifest does not
    list them): no check judged them."""
    if not layout.stacked_manifest.is_file():
        return []
    listed = {str(p.relative_to(layout.root)) for p in stacked_files(layout)}
    return [str(p.relative_to(layout.root)) for p in _files_under(layout.stacked_dir)
            if str(p.relative_to(layout.root)) not in listed]


def baseline_problems(layout: Layout, hasher: Hasher = stat_cached_sha256
                      ) -> tuple[Release | None, list[str]]:
    """CURRENT (the regression gates' baseline) against its own manifest, before any gate
    trusts a number in it."""
    release = current_release(layout.root)
    if release is None:
        return None, []
    return release, verify_release(release, hasher)


def input_problems(layout: Layout, inputs: Iterable[str]) -> list[str]:
    """What makes a gate's inputs unfit to be judged at all: files in the stacked directory
    no stage wrote, a baseline release that no longer matches its manifest."""
    inputs = set(inputs)
    problems = []
    if "stacked_h5s" in inputs:
        problems += [f"{rel}: in the stacked directory but not in its manifest (no stage "
                     "wrote it); remove it or materialize stacked_h5s again"
                     for rel in stray_files(layout)]
    if CURRENT_RELEASE in inputs:
        release, found = baseline_problems(layout)
        problems += [f"baseline release {release.version}: {p}" for p in found]
        if found:
            problems.append("the baseline fails `calibrate verify`: restore it, or roll back "
                            "to an intact release (`calibrate rollback VERSION`), then judge "
                            "again")
    return problems
