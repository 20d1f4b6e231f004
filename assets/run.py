"""`make run`: materialize the whole graph through Dagster and print the promoted release.

Runs in-process against the project's Dagster instance (DAGSTER_HOME), so `make ui`
afterwards shows every materialization, check and its metadata. It holds the storage
root's lock for the whole run and always ends with one clear message: the promoted
release, or why nothing was promoted (exit 0 promoted, 1 not promoted, 4 storage root busy).
"""

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # dagster loads after the arguments are parsed
    from dagster import ExecuteInProcessResult

    from pipeline.release.versions import Release

EXIT_NOT_PROMOTED = 1
EXIT_BUSY = 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assets.run", description=__doc__)
    parser.add_argument("--profile", default=os.environ.get("CALIBRATION_PROFILE", "demo"),
                        help="a shipped profile (demo, demo_learned, ci, production) or a "
                             "YAML path (default: $CALIBRATION_PROFILE, else demo)")
    parser.add_argument("--job", default="full_rebuild",
                        choices=["full_rebuild", "refit", "allocation_search"])
    parser.add_argument("--baseline", choices=["current", "newest"],
                        default=os.environ.get("CALIBRATION_BASELINE") or "current",
                        help="the regression gates' baseline: 'current' requires an intact "
                             "releases/CURRENT; 'newest' first points a missing or dangling "
                             "CURRENT at the newest release (default: $CALIBRATION_BASELINE, "
                             "else current)")
    parser.add_argument("--engine", choices=["builtin", "policyengine"],
                        default=os.environ.get("CALIBRATION_ENGINE") or None,
                        help="the simulation engine, overriding the profile's engine: "
                             "(default: $CALIBRATION_ENGINE, else the profile's)")
    parser.add_argument("--print-engine", action="store_true",
                        help="print the engine the run would use and exit (make uses it to "
                             "install the policyengine extra only when needed)")
    args = parser.parse_args(argv)
    if args.print_engine:
        from pipeline.core.errors import InputError
        from resources import profile_with_engine

        try:
            print(profile_with_engine(args.profile, args.engine or "").engine)
        except InputError as exc:  # a bad profile: one line, before make installs anything
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOT_PROMOTED
        return 0

    from dagster import AssetCheckSeverity, DagsterInstance

    from pipeline.core.errors import InputError
    from pipeline.core.lock import StorageBusy, storage_lock
    from resources import DEFAULT_STORAGE_ROOT, STORAGE_ENV, require_engine, took_over

    storage_root = Path(os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE_ROOT).resolve()
    try:
        require_engine(args.profile, args.engine or "")  # before any stage
        # Importing the module builds the definitions of $CALIBRATION_PROFILE (what `make
        # run PROFILE=...` sets): a bad profile is refused here, in one line.
        from assets.definitions import make_definitions

        defs = make_definitions(profile=args.profile, baseline=args.baseline,
                                engine=args.engine)
        instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
        with storage_lock(storage_root, f"python -m assets.run --job {args.job}") as lock:
            took_over(lock, instance, lambda message: print(f"note: {message}", file=sys.stderr))
            result = defs.resolve_job_def(args.job).execute_in_process(
                instance=instance, raise_on_error=False)
    except StorageBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_PROMOTED
    if args.job == "allocation_search":  # promotes nothing: the fit that uses it does
        if not result.success:
            print(not_promoted_summary(result, [], storage_root), file=sys.stderr)
            return EXIT_NOT_PROMOTED
        print(f"sparsity_allocation written to {storage_root / 'sparsity_allocation'}; fit "
              "with national_fit.allocation: learned (e.g. PROFILE=demo_learned)")
        return 0
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    failed_checks = [f"{e.check_name} ({e.description})" for e in failed
                     if e.severity == AssetCheckSeverity.ERROR]
    warnings = [e.check_name for e in failed if e.severity == AssetCheckSeverity.WARN]
    promoted = any(e.asset_key.path[-1] == "promoted_release"
                   for e in result.get_asset_materialization_events())
    if not result.success or failed_checks or not promoted:
        print(not_promoted_summary(result, failed_checks, storage_root), file=sys.stderr)
        return EXIT_NOT_PROMOTED
    from pipeline.release.versions import current_release

    print(release_summary(current_release(storage_root)))
    if warnings:
        print(f"  warnings (non-blocking checks): {', '.join(warnings)}")
    return 0


def not_promoted_summary(result: "ExecuteInProcessResult", failed_checks: list[str],
                         storage_root: Path) -> str:
    """Why nothing was promoted, in the words of the pipeline's own errors."""
    from pipeline.release.versions import current_problem, current_release

    lines = [f"Run {result.run_id} promoted nothing."]
    lines += [f"  check failed: {name}" for name in failed_checks]
    seen = set()
    for event in result.all_events:
        error = _error_of(event)
        if error is not None:
            while error.cause is not None and error.cls_name.startswith("Dagster"):
                error = error.cause  # Dagster's wrappers, down to the pipeline's own error
            message = re.sub(r"^[\w.]+\.(\w+): ", r"\1: ", error.message.strip())
            if message not in seen:
                seen.add(message)
                lines.append(f"  {event.step_key or 'run'}: {message}")
    problem = current_problem(storage_root)
    current = None if problem else current_release(storage_root)
    lines.append(f"releases/CURRENT {problem}: no release is current" if problem else
                 f"CURRENT release unchanged: {current.version if current else 'none yet'}")
    return "\n".join(lines)


def _error_of(event):
    if event.is_step_failure:
        return event.step_failure_data.error
    if event.is_run_failure and event.event_specific_data is not None:
        return event.event_specific_data.error
    return None


def release_summary(release: "Release") -> str:
    from pipeline.core.fit_table import FITS

    m = release.manifest
    lines = [
        f"Promoted release {release.version}",
        f"  path:  {release.path}",
        f"  files: {len(m['files'])}",
        f"  engine: {_engine_line(m)}",
        *(_fit_line(fit.label, m[fit.manifest_key]) for fit in FITS if fit.manifest_key in m),
        "  gates:",
    ]
    lines += [f"    {'PASS' if v['passed'] else 'FAIL'} {gate}: {v['summary']}"
              for gate, v in m["gates"].items()]
    lines += [f"  held-out {group}: median score {h['median']:.4f}, p90 {h['p90']:.4f} "
              f"over {h['count']:.0f} targets" for group, h in m.get("heldout", {}).items()]
    return "\n".join(lines)


def _engine_line(manifest: dict) -> str:
    """The release's engine, and the targets it left out of scope (never trained)."""
    engine = manifest.get("engine") or {"name": "builtin", "version": "unnamed"}
    skipped = manifest.get("out_of_scope") or {}
    line = f"{engine['name']} ({engine['version']})"
    if skipped.get("targets"):
        line += (f"; {skipped['targets']} targets out of scope for it, not trained: "
                 f"{', '.join(skipped['variables'])} (ENGINE=policyengine computes them)")
    return line


def _fit_line(label: str, fit: dict) -> str:
    err, split = fit["error_summary"], fit.get("validation_split")
    budget = fit["hyperparameters"].get("records")
    held = (f"validation split mean {split['mean']:.4f} over {split['count']} targets held "
            "out" if split else "trained on the validation split")
    return (f"  {label}: {fit['records_kept']:,} records kept"
            f"{f' (budget {budget:,})' if budget else ''}; trained mean rel error "
            f"{err['mean']:.4f}, median {err['median']:.4f}, max {err['max']:.4f}; {held}")


if __name__ == "__main__":
    raise SystemExit(main())
