"""`make run`: materialize the whole graph through Dagster and print the promoted release.

Runs in-process against the project's Dagster instance (DAGSTER_HOME), so `make ui`
afterwards shows every materialization, check and its metadata.
"""

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assets.run", description=__doc__)
    parser.add_argument("--profile", default=os.environ.get("CALIBRATION_PROFILE", "demo"),
                        help="a shipped profile (demo, ci, production) or a YAML path (default: "
                             "$CALIBRATION_PROFILE, else demo)")
    parser.add_argument("--job", default="full_rebuild", choices=["full_rebuild", "refit"])
    args = parser.parse_args(argv)

    from dagster import AssetCheckSeverity, DagsterInstance

    from assets.definitions import make_definitions
    from pipeline.release.releases import current_release
    from resources import DEFAULT_STORAGE_ROOT, STORAGE_ENV

    defs = make_definitions(profile=args.profile)
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    result = defs.resolve_job_def(args.job).execute_in_process(
        instance=instance, raise_on_error=False
    )
    storage_root = os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE_ROOT
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    failed_checks = [e.check_name for e in failed if e.severity == AssetCheckSeverity.ERROR]
    warnings = [e.check_name for e in failed if e.severity == AssetCheckSeverity.WARN]
    release = current_release(storage_root)
    if not result.success or failed_checks:
        print(f"run {result.run_id} did not promote: failed checks {failed_checks or 'none'}; "
              f"run success={result.success}", file=sys.stderr)
        print(f"CURRENT release unchanged: {release.version if release else 'none'}")
        return 1
    print(release_summary(release))
    if warnings:
        print(f"  warnings (non-blocking checks): {', '.join(warnings)}")
    return 0


def release_summary(release) -> str:
    m = release.manifest
    lines = [
        f"Promoted release {release.version}",
        f"  path:  {release.path}",
        f"  files: {len(m['files'])}",
        *(_fit_line(label, m[key]) for label, key in (("local fit", "fit"),
                                                      ("national fit", "national_fit"))
          if key in m),
        "  gates:",
    ]
    lines += [f"    {'PASS' if v['passed'] else 'FAIL'} {gate}: {v['summary']}"
              for gate, v in m["gates"].items()]
    lines += [f"  held-out {group}: median score {h['median']:.4f}, p90 {h['p90']:.4f} "
              f"over {h['count']:.0f} targets" for group, h in m.get("heldout", {}).items()]
    return "\n".join(lines)


def _fit_line(label: str, fit: dict) -> str:
    err, split = fit["error_summary"], fit.get("validation_split") or {}
    budget = fit["hyperparameters"].get("records")
    return (f"  {label}: {fit['records_kept']:,} records kept"
            f"{f' (budget {budget:,})' if budget else ''}; trained mean rel error "
            f"{err['mean']:.4f}, median {err['median']:.4f}, max {err['max']:.4f}; "
            f"validation split mean {split.get('mean', float('nan')):.4f} "
            f"over {split.get('count', 0)} targets")


if __name__ == "__main__":
    raise SystemExit(main())
