"""`calibrate releases`: every release as one row of a table that fits 100 columns, then
the held-out scores of the current one."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

from pipeline.core.fit_table import FITS, Fit, published
from pipeline.core.numbers import text
from pipeline.release.versions import Release

WIDTH = 100
VERSION = 25  # <UTC YYYYmmddTHHMMSSZ>-<8 hex>
UNPROMOTED = "UNPROMOTED"
CHANGED = "CHANGED"  # `calibrate verify` fails it: a file differs from its manifest


def release_table(releases: list[Release], current: str | None, promoted: set[str],
                  fits: tuple[Fit, ...] = FITS,
                  changed: Mapping[str, list[str]] | None = None) -> list[str]:
    """One row per release (`*` marks CURRENT): the first fit's trained mean and max
    relative error, each fit's records kept, gates passed, and a note (CHANGED: its files
    fail its manifest, `changed` holding each release's `verify_release` problems; else
    UNPROMOTED); then what each note means. `changed` None: not verified. Records kept are
    the publishing fits' (a held-out twin's are in the manifest)."""
    fits = published(fits)
    kept = [f"{fit.name} kept" for fit in fits]
    head = (f"  {'release':<{VERSION}}  {'mean err':>9}  {'max err':>9}  "
            + "  ".join(f"{k:>{max(len(k), 9)}}" for k in kept) + f"  {'gates':>5}  note")
    rows, footer = [head], []
    for release in releases:
        m = release.manifest
        err = m.get(fits[0].manifest_key, {}).get("error_summary", {})
        gates = m.get("gates", {})
        passed = sum(bool(g.get("passed")) for g in gates.values())
        problems = (changed or {}).get(release.version, [])
        unpromoted = release.version not in promoted
        note = CHANGED if problems else UNPROMOTED if unpromoted else ""
        if problems:
            footer += textwrap.wrap(
                f"{release.version}: verify FAILED ({len(problems)}: {problems[0]})"
                + (f"; also {UNPROMOTED}" if unpromoted else ""), WIDTH,
                subsequent_indent="  ")
        counts = "  ".join(text(m.get(fit.manifest_key, {}).get("records_kept")).rjust(
            max(len(k), 9)) for fit, k in zip(fits, kept, strict=True))
        mark = "*" if release.version == current else " "
        rows.append(f"{mark} {release.version:<{VERSION}}  {text(err.get('mean')):>9}  "
                    f"{text(err.get('max')):>9}  {counts}  {f'{passed}/{len(gates)}':>5}  "
                    f"{note}".rstrip())
    if any(r.version not in promoted for r in releases):
        rows.append(f"{UNPROMOTED}: its promotion stopped before CURRENT moved; `calibrate "
                    "rollback VERSION` promotes it")
    if changed is not None:
        rows += footer or ["verify OK: every release's files match its manifest"]
    return rows


def heldout_lines(release: Release) -> list[str]:
    """The release's held-out groups, median / p90 score, wrapped to the table's width."""
    heldout = release.manifest.get("heldout", {})
    if not heldout:
        return []
    body = "; ".join(f"{group} {text(h['median'])} / {text(h['p90'])}"
                     for group, h in heldout.items())
    return textwrap.wrap(f"held-out scores of {release.version} (median / p90): {body}",
                         WIDTH, subsequent_indent="  ")
