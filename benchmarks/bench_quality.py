"""Quality of a release, before and after: trained, held-out and split error, against goals.

Run after `make run` (any profile) on the release to judge, and on the one to compare with:

    .venv/bin/python benchmarks/bench_quality.py --after storage --before /tmp/before/storage \
        --label demo [--out benchmarks/results/quality.txt] [--append]

For the production profile: `make run PROFILE=production` on a checkout of the baseline
(with its own CALIBRATION_STORAGE_ROOT) and on this one, then the same command with
`--label production --append`. `--after`/`--before` take a storage root (its CURRENT
release), a release directory or a validation_results.csv.

Every error is the robust score of `pipeline.validate.scoring` (|ŷ − y| / |y|, or / 1% of
the table's largest cell near zero), each release against its own targets: an older CSV
without scores (a release cut before targets were uprated and reconciled) is scored from
its own columns the same way, its `period` being the published year and 2024 the data's.
Rows:
- trained: mean and median score per variable × geo level over the targets the fit used;
- held-out: median and p90 per held-out group (in scope only); an older CSV names no
  groups, so its held-out rows are grouped as the target DB groups them (the EITC table by
  AGI band and children, the negative totals);
- split: the random validation split of trainable targets (`validation_split`), NA until
  a release's CSV names that group.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.atomic import write_text
from pipeline.core.layout import VALIDATION_CSV
from pipeline.release.versions import current_release
from pipeline.validate.scoring import IN_SCOPE, score_errors
from pipeline.validate.totals import read_validation_csv

RESULTS = Path(__file__).parent / "results" / "quality.txt"
DATA_YEAR = 2024
SPLIT_GROUP = "validation_split"
HELDOUT_GOAL = "eitc_agi_children"


def load(path: Path) -> tuple[str, pd.DataFrame]:
    """(what was read, its validation rows with `score`, `scope` and `holdout_group`)."""
    if path.is_dir() and (path / VALIDATION_CSV).is_file():
        csv = path / VALIDATION_CSV
    elif path.is_dir():
        release = current_release(path)
        if release is None:
            sys.exit(f"no CURRENT release under {path}")
        csv = release.path / VALIDATION_CSV
    else:
        csv = path
    v = read_validation_csv(csv)
    if "score" not in v.columns:
        v = pd.concat([v, score_errors(v, v["target_value"].to_numpy(), v["period"].to_numpy(),
                                       DATA_YEAR)], axis=1)
    return str(csv.resolve()), v


def _name_groups(v: pd.DataFrame) -> pd.DataFrame:
    if "holdout_group" in v.columns:
        return v
    held = ~v["in_training"]
    eitc = held & v["target_name"].str.contains("eitc_child_count", regex=False)
    negative = held & (v["target_value"] < 0)
    return v.assign(holdout_group=np.where(eitc, "eitc_agi_children",
                                           np.where(negative, "negative_total", "")))


def trained_table(v: pd.DataFrame) -> pd.DataFrame:
    t = v[v["in_training"] & (v["scope"] == IN_SCOPE)]
    return t.groupby(["variable", "area_type"])["score"].agg(["size", "mean", "median"])


def heldout_table(v: pd.DataFrame) -> pd.DataFrame:
    h = v[(v["holdout_group"] != "") & (v["scope"] == IN_SCOPE)]
    return h.groupby("holdout_group")["score"].agg(
        size="size", median="median", p90=lambda s: float(np.quantile(s, 0.9)))


def _production_median(v: pd.DataFrame | None) -> float:
    if v is None:
        return np.nan
    return float(v.loc[v["holdout_group"] == HELDOUT_GOAL, "rel_abs_error"].median())


def _pct(x: float) -> str:
    return "NA" if pd.isna(x) else f"{100 * x:.2f}%"


def report(label: str, before: tuple[str, pd.DataFrame] | None,
           after: tuple[str, pd.DataFrame]) -> str:
    after_src, a = after
    a = _name_groups(a)
    b = _name_groups(before[1]) if before else None
    lines = [f"## {label}", f"after:  {after_src}",
             f"before: {before[0] if before else 'NA'}", "",
             "trained error (score) by variable x geo level",
             f"{'variable':<24}{'level':<10}{'n':>6}{'before mean':>13}{'before med':>12}"
             f"{'after mean':>12}{'after med':>11}{'change pp':>11}"]
    ta = trained_table(a)
    tb = trained_table(b) if b is not None else ta.iloc[0:0]
    change = {}
    for key in sorted(set(ta.index) | set(tb.index)):
        ra = ta.loc[key] if key in ta.index else None
        rb = tb.loc[key] if key in tb.index else None
        delta = (ra["mean"] - rb["mean"]) * 100 if ra is not None and rb is not None else np.nan
        change[key] = delta
        lines.append(f"{key[0]:<24}{key[1]:<10}{int((ra if ra is not None else rb)['size']):>6}"
                     f"{_pct(rb['mean'] if rb is not None else np.nan):>13}"
                     f"{_pct(rb['median'] if rb is not None else np.nan):>12}"
                     f"{_pct(ra['mean'] if ra is not None else np.nan):>12}"
                     f"{_pct(ra['median'] if ra is not None else np.nan):>11}"
                     f"{'NA' if np.isnan(delta) else f'{delta:+.2f}':>11}")
    ha = heldout_table(a)
    hb = heldout_table(b) if b is not None else ha.iloc[0:0]
    lines += ["", "held-out error (score, in scope) by group",
              f"{'group':<24}{'n':>6}{'before med':>12}{'before p90':>12}{'after med':>11}"
              f"{'after p90':>11}"]
    for group in sorted(set(ha.index) | set(hb.index) | {SPLIT_GROUP}):
        ra = ha.loc[group] if group in ha.index else None
        rb = hb.loc[group] if group in hb.index else None
        n = int((ra if ra is not None else rb)["size"]) if ra is not None or rb is not None else 0
        lines.append(f"{group:<24}{n if n else 'NA':>6}"
                     f"{_pct(rb['median'] if rb is not None else np.nan):>12}"
                     f"{_pct(rb['p90'] if rb is not None else np.nan):>12}"
                     f"{_pct(ra['median'] if ra is not None else np.nan):>11}"
                     f"{_pct(ra['p90'] if ra is not None else np.nan):>11}")
    lines.append(f"(production's rel_abs_error, every {HELDOUT_GOAL} cell: median "
                 f"{_pct(_production_median(b))} before, {_pct(_production_median(a))} after)")
    lines += ["", "goals"] + goals(ta, tb, ha, change)
    return "\n".join(lines) + "\n"


def goals(ta: pd.DataFrame, tb: pd.DataFrame, ha: pd.DataFrame,
          change: dict[tuple[str, str], float]) -> list[str]:
    def get(table, key, col):
        return table.loc[key, col] if key in table.index else np.nan

    state, district = ("household_count", "state"), ("household_count", "district")
    state_after, district_after = get(ta, state, "mean"), get(ta, district, "mean")
    district_before = get(tb, district, "mean")
    held = get(ha, HELDOUT_GOAL, "median")
    known = {k: d for k, d in change.items() if not np.isnan(d)}
    worst = max(known, key=known.get) if known else None

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return [
        f"- state SNAP household mean error <= 5%: {_pct(get(tb, state, 'mean'))} -> "
        f"{_pct(state_after)}: {verdict(state_after <= 0.05)}",
        f"- district SNAP household mean error not worse: {_pct(district_before)} -> "
        f"{_pct(district_after)}: {verdict(not district_after > district_before)}",
        f"- held-out {HELDOUT_GOAL} median <= 25%: {_pct(held)}: {verdict(held <= 0.25)}"
        + ("" if held <= 0.25 else " (what remains and why: docs/targets.md, the EITC gap)"),
        "- no trained group's mean worse by > 0.5 pp: "
        + (f"worst {worst[0]} x {worst[1]} {known[worst]:+.2f} pp: "
           f"{verdict(known[worst] <= 0.5)}" if worst else "NA (no baseline)"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", type=Path, required=True,
                        help="storage root, release directory or validation_results.csv")
    parser.add_argument("--before", type=Path, help="the same, for the release to compare with")
    parser.add_argument("--label", default="demo", help="section title, e.g. the profile")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--append", action="store_true", help="add a section to --out")
    args = parser.parse_args(argv)
    text = report(args.label, load(args.before) if args.before else None, load(args.after))
    print(text)
    previous = args.out.read_text() + "\n" if args.append and args.out.is_file() else ""
    write_text(args.out, previous + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
