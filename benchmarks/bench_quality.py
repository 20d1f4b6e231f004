"""Quality of a release against another: trained, held-out and split error by family and
level, households against ACS, and the goals of issue 19.

Run after `make run` (any profile) on the release to judge, and on the one to compare with:

    .venv/bin/python benchmarks/bench_quality.py --after storage --before /tmp/before/storage \
        --label demo [--out benchmarks/results/quality.txt] [--append]

For the production profile: `make run PROFILE=production` on a checkout of the baseline
(with its own CALIBRATION_STORAGE_ROOT) and on this one, then the same command with
`--label production --append`. `--after`/`--before` take a storage root (its CURRENT
release) or a release directory.

Every error is the robust score of `pipeline.validate.scoring` (|ŷ − y| / |y|, or / 1% of
the table's largest cell near zero), each release against its own targets; a family is a
variable with its domain (`tax_unit_count[adjusted_gross_income,is_tax_filer]`). Tables,
for each published fit (local: the state and district files; national: national.h5):
- trained: mean and median score per family × geo level over the targets the fit used;
- held-out: median and p90 per held-out group and per family × level within it. The
  validation split is measured on the fit's held-out twin (the same package, config and
  settings, the split held out) where the release has one; in an older release, whose
  published fits held the split out themselves, on the fit itself;
- households: each state's and district's file, the sum of the state files and
  `national.h5`, against ACS S2201 (the committed snapshot), read from the files'
  `household_weight`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.core.atomic import write_text
from pipeline.core.fit_table import FITS, LOCAL, NATIONAL, NATIONAL_FILE
from pipeline.core.geo import STATE_ABBR
from pipeline.core.layout import VALIDATION_CSV
from pipeline.core.packaged import SNAPSHOT_DIR
from pipeline.release.versions import current_release
from pipeline.targets.split import VALIDATION_SPLIT
from pipeline.validate.quality import heldout_groups
from pipeline.validate.scoring import IN_SCOPE, domain_of
from pipeline.validate.totals import read_validation_csv

RESULTS = Path(__file__).parent / "results" / "quality.txt"
EITC = "eitc_agi_children"
PUBLISHED = (LOCAL.name, NATIONAL.name)
TWIN_OF = {f.name: f.twin for f in FITS if f.twin}
GOALS = {  # issue 19
    "state_households": 0.01, "district_households": 0.02, "national_households": 0.01,
    "split": {LOCAL.name: (0.03, 0.15), NATIONAL.name: (0.07, 0.30)},
    "eitc_median": 0.25, "trained_rise_pp": 0.5,
}


@dataclass(frozen=True)
class Release:
    path: Path
    validation: pd.DataFrame  # with `family` and `measures` (the fit a held-out row measures)


def load(path: Path) -> Release:
    if (path / VALIDATION_CSV).is_file():
        release = path
    else:
        current = current_release(path)
        if current is None:
            sys.exit(f"no CURRENT release under {path}")
        release = current.path
    v = read_validation_csv(release / VALIDATION_CSV)
    v = v.assign(family=v["variable"] + "[" + domain_of(v["target_name"]) + "]",
                 measures=_measures(v))
    return Release(release, v)


def _measures(v: pd.DataFrame) -> pd.Series:
    """The published fit each held-out row measures ("" for none): a held-out twin's split
    rows measure its fit; a published fit's own rows measure it, except the split where
    the release has twins (there the fit trained the split)."""
    key = heldout_groups(v)
    fit, group = key.str.split("/").str[0].fillna(""), key.str.split("/").str[1].fillna("")
    twins = set(v["fit"]) & set(TWIN_OF)
    own = fit.isin(PUBLISHED) & ((group != VALIDATION_SPLIT) | (len(twins) == 0))
    twin = fit.isin(twins) & (group == VALIDATION_SPLIT)
    return pd.Series(np.where(own, fit, np.where(twin, fit.map(TWIN_OF), "")), index=v.index)


def trained_table(v: pd.DataFrame) -> pd.DataFrame:
    t = v[v["in_training"] & (v["scope"] == IN_SCOPE) & v["fit"].isin(PUBLISHED)]
    return t.groupby(["fit", "family", "area_type"])["score"].agg(["size", "mean", "median"])


def heldout_table(v: pd.DataFrame, by_family: bool) -> pd.DataFrame:
    h = v[v["measures"] != ""]
    keys = ["measures", "holdout_group", *(["family", "area_type"] if by_family else [])]
    return h.groupby(keys)["score"].agg(
        size="size", median="median", p90=lambda s: float(np.quantile(s, 0.9)))


def households(release: Path) -> dict[str, pd.Series]:
    """Households in each published file (Σ household_weight), by area."""
    def total(path: Path) -> float:
        with h5py.File(path, "r") as f:
            group = f["household_weight"]
            return float(sum(group[k][:].astype(np.float64).sum() for k in group))
    fips = {abbr: code for code, abbr in STATE_ABBR.items()}
    states = pd.Series({fips[p.stem]: total(p) for p in sorted((release / "states").glob("*.h5"))})
    districts = pd.Series({int(p.stem): total(p)
                           for p in sorted((release / "districts").glob("*.h5"))})
    return {"state": states, "district": districts,
            "national": pd.Series({"national.h5": total(release / NATIONAL_FILE),
                                   "sum of state files": float(states.sum())})}


def acs_households() -> dict[str, pd.Series]:
    read = lambda name: pd.read_csv(SNAPSHOT_DIR / name)  # noqa: E731
    national = float(read("households_national.csv")["households"].iat[0])
    return {"state": read("households_state.csv").set_index("state_fips")["households"],
            "district": read("households_district.csv").set_index("cd_geoid")["households"],
            "national": pd.Series({"national.h5": national, "sum of state files": national})}


def household_errors(release: Path) -> dict[str, pd.Series]:
    """Relative error of each file's (or sum's) households against ACS, by area."""
    files, acs = households(release), acs_households()
    return {level: (files[level] / acs[level].reindex(files[level].index) - 1).dropna()
            for level in files}


def _pct(x: float) -> str:
    return "NA" if pd.isna(x) else f"{100 * x:.2f}%"


def _row(cells: list[tuple[object, int]]) -> str:
    return "".join(f"{str(c):<{w}}" if i == 0 else f"{str(c):>{w}}"
                   for i, (c, w) in enumerate(cells))


def report(label: str, before: Release | None, after: Release) -> tuple[str, list[str]]:
    a, b = after.validation, before.validation if before else None
    lines = [f"## {label}", f"after:  {after.path}", f"before: {before.path if before else 'NA'}"]
    ta = trained_table(a)
    tb = trained_table(b) if b is not None else ta.iloc[0:0]
    changes: dict[tuple, float] = {}
    lines += ["", "trained error (score) by fit x family x geo level",
              _row([("fit / family", 62), ("level", 10), ("n", 6), ("before mean", 13),
                    ("before med", 12), ("after mean", 12), ("after med", 11),
                    ("change pp", 11)])]
    for key in sorted(set(ta.index) | set(tb.index)):
        ra = ta.loc[key] if key in ta.index else None
        rb = tb.loc[key] if key in tb.index else None
        delta = (ra["mean"] - rb["mean"]) * 100 if ra is not None and rb is not None else np.nan
        changes[key] = delta
        size = int((ra if ra is not None else rb)["size"])
        lines.append(_row([(f"{key[0]} {key[1]}", 62), (key[2], 10), (size, 6),
                           (_pct(rb["mean"] if rb is not None else np.nan), 13),
                           (_pct(rb["median"] if rb is not None else np.nan), 12),
                           (_pct(ra["mean"] if ra is not None else np.nan), 12),
                           (_pct(ra["median"] if ra is not None else np.nan), 11),
                           ("NA" if np.isnan(delta) else f"{delta:+.2f}", 11)]))
    groups = [heldout_table(a, False), heldout_table(b, False) if b is not None else None]
    families = [heldout_table(a, True), heldout_table(b, True) if b is not None else None]
    for title, (ha, hb), width in (("held-out error (score, in scope) by fit x group "
                                    "(split: the held-out twin's)", groups, 40),
                                   ("the same by family x geo level", families, 92)):
        hb = hb if hb is not None else ha.iloc[0:0]
        lines += ["", title, _row([("fit / group" + (" / family" if width > 40 else ""), width),
                                   ("level" if width > 40 else "", 10), ("n", 6),
                                   ("before med", 12), ("before p90", 12), ("after med", 11),
                                   ("after p90", 11)])]
        for key in sorted(set(ha.index) | set(hb.index)):
            ra = ha.loc[key] if key in ha.index else None
            rb = hb.loc[key] if key in hb.index else None
            size = int((ra if ra is not None else rb)["size"])
            name = " ".join(key[:3]) if width > 40 else " ".join(key)
            lines.append(_row([(name, width), (key[3] if width > 40 else "", 10), (size, 6),
                               (_pct(rb["median"] if rb is not None else np.nan), 12),
                               (_pct(rb["p90"] if rb is not None else np.nan), 12),
                               (_pct(ra["median"] if ra is not None else np.nan), 11),
                               (_pct(ra["p90"] if ra is not None else np.nan), 11)]))
    ea = household_errors(after.path)
    eb = household_errors(before.path) if before else None
    lines += ["", "households in the published files against ACS S2201 (relative error)",
              _row([("files", 16), ("n", 6), ("before max|e|", 15), ("before within", 15),
                    ("after max|e|", 14), ("after within", 14), ("  worst after", 0)])]
    for level, tol in (("state", GOALS["state_households"]),
                       ("district", GOALS["district_households"]),
                       ("national", GOALS["national_households"])):
        cells = [_household_stats(e[level] if e else None, tol) for e in (eb, ea)]
        worst = ea[level].abs().sort_values(ascending=False).head(3)
        lines.append(_row([(level, 16), (len(ea[level]), 6), (cells[0][0], 15),
                           (cells[0][1], 15), (cells[1][0], 14), (cells[1][1], 14)])
                     + "  " + ", ".join(f"{k}: {_pct(ea[level][k])}" for k in worst.index))
    goal_lines = goals(ta, changes, heldout_table(a, False), ea)
    return "\n".join(lines + ["", "goals", *goal_lines]) + "\n", goal_lines


def _household_stats(e: pd.Series | None, tol: float) -> tuple[str, str]:
    """(largest |error|, share within `tol`)."""
    if e is None or e.empty:
        return "NA", "NA"
    return _pct(e.abs().max()), f"{(e.abs() <= tol).mean():.0%} <= {tol:.0%}"


def goals(ta: pd.DataFrame, changes: dict[tuple, float], held: pd.DataFrame,
          households_after: dict[str, pd.Series]) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    out = []
    for level, key in (("state", "state_households"), ("district", "district_households"),
                       ("national", "national_households")):
        e = households_after[level].abs()
        tol = GOALS[key]
        out.append(f"- households, {level}: every one within {tol:.0%} of ACS: max "
                   f"{_pct(e.max())}, {(e > tol).sum()} over: {verdict(bool((e <= tol).all()))}")
    for fit, (med_goal, p90_goal) in GOALS["split"].items():
        key = (fit, VALIDATION_SPLIT)
        med, p90 = (held.loc[key, "median"], held.loc[key, "p90"]) if key in held.index else (
            np.nan, np.nan)
        out.append(f"- split error ({fit} fit's held-out twin): median {_pct(med)} "
                   f"(<= {med_goal:.0%}), p90 {_pct(p90)} (<= {p90_goal:.0%}): "
                   f"{verdict(med <= med_goal and p90 <= p90_goal)}")
    for fit in PUBLISHED:
        key = (fit, EITC)
        med = held.loc[key, "median"] if key in held.index else np.nan
        out.append(f"- {EITC} ({fit} fit) median <= {GOALS['eitc_median']:.0%}: {_pct(med)}: "
                   f"{verdict(med <= GOALS['eitc_median'])}")
    known = {k: d for k, d in changes.items() if not np.isnan(d)}
    for fit in PUBLISHED:
        mine = {k: d for k, d in known.items() if k[0] == fit}
        if not mine:
            out.append(f"- no trained family of the {fit} fit worse by > 0.5 pp: NA")
            continue
        worst = max(mine, key=mine.get)
        out.append(f"- no trained family of the {fit} fit worse by > "
                   f"{GOALS['trained_rise_pp']} pp: worst {worst[1]} x {worst[2]} "
                   f"{mine[worst]:+.2f} pp: {verdict(mine[worst] <= GOALS['trained_rise_pp'])}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", type=Path, required=True,
                        help="storage root (its CURRENT release) or release directory")
    parser.add_argument("--before", type=Path, help="the same, for the release to compare with")
    parser.add_argument("--label", default="demo", help="section title, e.g. the profile")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--append", action="store_true", help="add a section to --out")
    parser.add_argument("--json", type=Path, help="also write the goal lines as JSON here")
    args = parser.parse_args(argv)
    text, goal_lines = report(args.label, load(args.before) if args.before else None,
                              load(args.after))
    print(text)
    previous = args.out.read_text() + "\n" if args.append and args.out.is_file() else ""
    write_text(args.out, previous + text)
    if args.json:
        write_text(args.json, json.dumps(goal_lines, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
