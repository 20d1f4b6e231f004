"""`make run`: materialize the whole graph through Dagster and print the promoted release.

Runs in-process against the project's Dagster instance (DAGSTER_HOME), so `make ui`
afterwards shows every materialization, check and its metadata. It holds the storage
root's lock for the whole run. The terminal shows progress (each step's end, each check's
verdict, the pipeline's own progress lines) and ends with one clear message: the promoted
release, or why nothing was promoted (exit 0 promoted, 1 not promoted, 4 storage root
busy). Every Dagster event, DEBUG included, goes to the run's log file, whose path is
printed first.
"""

import argparse
import logging
import os
import re
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # dagster loads after the arguments are parsed
    from dagster import DagsterEvent, ExecuteInProcessResult, LoggerDefinition

    from pipeline.release.versions import Release

EXIT_NOT_PROMOTED = 1
EXIT_BUSY = 4
LOGS = "logs"  # under the storage root: one file per run, every event


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
    accept = parser.add_argument_group(
        "accept on record", "accept named gate rules for this run only: a gate whose only "
        "failed rules are named passes with the waiver, which its verdict, the release "
        "manifest and releases/history.json record (integrity checks are never waived)")
    accept.add_argument("--accept", action="append", default=[], metavar="GATE.RULE",
                        help="a rule to accept, e.g. simulation_quality.heldout_regression "
                             "(repeat, or separate with commas)")
    accept.add_argument("--reason", default="", help="why the refused change is the one meant")
    accept.add_argument("--operator", default=os.environ.get("CALIBRATION_OPERATOR", ""),
                        help="who accepts it (default: $CALIBRATION_OPERATOR)")
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
    run_id = str(uuid.uuid4())  # what Dagster names runs by; known now for the log's name
    log_path = storage_root / LOGS / f"{run_id}.log"
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
            log_path.parent.mkdir(parents=True, exist_ok=True)
            print(f"{args.job} (profile {args.profile}, run {run_id[:8]}); every event: "
                  f"{log_path}", flush=True)
            job = defs.resolve_job_def(args.job).with_logger_defs(run_loggers(log_path))
            result = job.execute_in_process(
                instance=instance, raise_on_error=False, run_id=run_id,
                run_config={"loggers": {"terminal": {}, "run_file": {}},
                            **waiver_config(args.accept, args.reason, args.operator)})
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
    evaluations = result.get_asset_check_evaluations()
    failed = [e for e in evaluations if not e.passed]
    failed_checks = [e.check_name for e in failed if e.severity == AssetCheckSeverity.ERROR]
    warnings = [e for e in failed if e.severity == AssetCheckSeverity.WARN]
    promoted = any(e.asset_key.path[-1] == "promoted_release"
                   for e in result.get_asset_materialization_events())
    if not result.success or failed_checks or not promoted:
        print(not_promoted_summary(result, failed_checks, storage_root), file=sys.stderr)
        return EXIT_NOT_PROMOTED
    from pipeline.release.versions import current_release

    print(release_summary(current_release(storage_root)))
    if warnings:
        print(f"  warnings (non-blocking checks, {len(warnings)}):")
        for e in warnings:
            print(f"    {e.check_name} on {e.asset_key.to_user_string()}: {e.description}")
    return 0


def waiver_config(accept: list[str], reason: str, operator: str) -> dict:
    """The run config that hands `--accept/--reason/--operator` to the waiver resource
    (checked, like the launchpad's, when the run starts)."""
    rules = [r for given in accept for r in given.split(",") if r.strip()]
    if not (rules or reason or operator):
        return {}
    return {"resources": {"waiver": {"config": {"rules": rules, "reason": reason,
                                                "operator": operator}}}}


def run_loggers(log_path: Path) -> dict[str, "LoggerDefinition"]:
    """`terminal`: progress a person follows (INFO and up, each step's end and each check's
    verdict); `run_file`: every event, DEBUG included, into `log_path`."""
    from dagster import logger

    @logger(description="Progress on the terminal: no DEBUG events (`Progress`).")
    def terminal(init_context) -> logging.Logger:
        def handler() -> logging.Handler:
            out = logging.StreamHandler(sys.stdout)
            out.addFilter(Progress())
            return out
        return _logger(f"calibration.terminal.{init_context.run_id}", handler)

    @logger(description="Every event of the run into its log file.")
    def run_file(init_context) -> logging.Logger:
        def handler() -> logging.Handler:
            out = logging.FileHandler(log_path)
            out.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            return out
        return _logger(f"calibration.file.{init_context.run_id}", handler)

    return {"terminal": terminal, "run_file": run_file}


def _logger(name: str, handler: Callable[[], logging.Handler]) -> logging.Logger:
    """One logger per run and destination (Dagster builds a logger more than once per
    run: the handler is added the first time only)."""
    log = logging.getLogger(name)
    if not log.handlers:
        log.setLevel(logging.DEBUG)
        log.propagate = False
        log.addHandler(handler())
    return log


class Progress(logging.Filter):
    """Rewrites a Dagster record as one short progress line, or drops it: each asset
    step's end, each check's verdict, the pipeline's own INFO lines and anything louder.
    DEBUG events, a check step's own end and the skips after a failure are dropped."""

    WIDTH = 160

    def __init__(self) -> None:
        super().__init__()
        self.check_steps: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", None) or {}
        event: DagsterEvent | None = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        if event is not None:
            line = self._event_line(event, step)
        elif record.levelno >= logging.INFO:
            line = str(meta.get("orig_message", record.getMessage()))
            if line.startswith("Dependencies for step"):
                return False  # skipped after a failure: the summary names the failure
            line = f"{step:<24} {line}" if step else line
        else:
            line = None
        if line is None:
            return False
        line = f"  {line}"
        record.msg = line if len(line) <= self.WIDTH else line[: self.WIDTH - 1] + "…"
        record.args = ()
        return True

    def _event_line(self, event: "DagsterEvent", step: str) -> str | None:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            self.check_steps.add(step)
            data = event.asset_check_evaluation_data
            verdict = "PASS" if data.passed else (
                "WARN" if data.severity.value == "WARN" else "FAIL")
            key = data.asset_check_key
            return (f"check {key.name} ({key.asset_key.to_user_string()}): {verdict} "
                    f"{data.description or ''}").rstrip()
        if event.is_step_success and step not in self.check_steps:
            return f"{step:<24} done in {event.step_success_data.duration_ms / 1000:.1f} s"
        if event.is_step_failure:
            return f"{step:<24} FAILED (the reason is in the summary below)"
        return None


def not_promoted_summary(result: "ExecuteInProcessResult", failed_checks: list[str],
                         storage_root: Path) -> str:
    """Why nothing was promoted, in the words of the pipeline's own errors."""
    from pipeline.release.versions import current_problem, current_release

    lines = [f"Run {result.run_id} promoted nothing."]
    lines += [f"  check failed: {name}" for name in failed_checks]
    seen = set()
    for event in result.all_events:
        message = _reason(event)
        if message is not None and message not in seen:
            seen.add(message)
            lines.append(f"  {event.step_key or 'run'}: {message}")
    problem = current_problem(storage_root)
    current = None if problem else current_release(storage_root)
    lines.append(f"releases/CURRENT {problem}: no release is current" if problem else
                 f"CURRENT release unchanged: {current.version if current else 'none yet'}")
    return "\n".join(lines)


def _reason(event: "DagsterEvent") -> str | None:
    """A failed step's (or the run's) own reason: a Failure's description, else the
    pipeline's error under Dagster's wrappers."""
    if event.is_step_failure and event.step_failure_data.user_failure_data is not None:
        return event.step_failure_data.user_failure_data.description
    if event.is_step_failure:
        error = event.step_failure_data.error
    elif event.is_run_failure and event.event_specific_data is not None:
        error = event.event_specific_data.error
    else:
        return None
    if error is None:
        return None
    while error.cause is not None and error.cls_name.startswith("Dagster"):
        error = error.cause  # Dagster's wrappers, down to the pipeline's own error
    if error.cls_name == "Failure":
        return None  # its step's failure already said it
    return re.sub(r"^[\w.]+\.(\w+): ", r"\1: ", error.message.strip())


def release_summary(release: "Release") -> str:
    from pipeline.core.fit_table import FITS

    m = release.manifest
    lines = [
        f"Promoted release {release.version}",
        f"  path:  {release.path}",
        f"  files: {file_counts(m['files'])}",
        f"  engine: {_engine_line(m)}",
        *(_fit_line(fit.label, m[fit.manifest_key]) for fit in FITS if fit.manifest_key in m),
        "  gates:",
    ]
    lines += [f"    {'PASS' if v['passed'] else 'FAIL'} {gate}: {v['summary']}"
              for gate, v in m["gates"].items()]
    lines += [f"  held-out {group}: median score {h['median']:.4f}, p90 {h['p90']:.4f} "
              f"over {h['count']:.0f} targets" for group, h in m.get("heldout", {}).items()]
    return "\n".join(lines)


def file_counts(files: dict) -> str:
    """How many files a release holds, and which of them are the published H5 files."""
    from pipeline.core.fit_table import NATIONAL_FILE

    states = sum(f.startswith("states/") for f in files)
    districts = sum(f.startswith("districts/") for f in files)
    national = int(NATIONAL_FILE in files)
    published = states + districts + national
    return (f"{len(files)} ({published} published H5 files: {states} states, {districts} "
            f"districts{', national.h5' if national else ''}; {len(files) - published} fit "
            "records, configs and validation)")


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
            f"{err['mean']:.4g}, median {err['median']:.4g}, max {err['max']:.4g}; {held}")


if __name__ == "__main__":
    raise SystemExit(main())
