"""`calibrate`: the pipeline's stages for people, without Dagster."""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from pipeline.core.errors import InputError
from pipeline.core.lock import Acquired, StorageBusy
from pipeline.package.validity import DEFAULT_STRICT_RATIO

if typing.TYPE_CHECKING:
    from pipeline.config import Profile

# Exit codes (validate-package also uses 2 for strict-ratio failures).
EXIT_INPUT = 1  # bad input: the message names the file, the field and the fix
EXIT_GATE = 3  # `fit` wrote its files, but a gate-1 rule failed
EXIT_BUSY = 4  # another run holds the storage root's lock
EXIT_STORAGE = 5  # the disk is full or not writable; nothing half-written was kept
EXIT_VERIFY = 6  # a release no longer matches its manifest (`verify`)
DEVICE_ENV = "CALIBRATION_DEVICE"  # read by the pipeline's compute resource too


class _Parser(argparse.ArgumentParser):
    """A usage error is bad input: one line and exit 1 (argparse's own 2 is this command's
    strict-ratio code)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_INPUT, f"error: {self.prog}: {message}. Fix: correct it (see "
                              f"`{self.prog} --help`)\n")


def _add_fit_parser(subparsers: argparse._SubParsersAction) -> None:
    from pipeline.fit.params import FitParams

    p = subparsers.add_parser("fit", help="fit L0 calibration weights to a package")
    p.add_argument("--package", required=True, help="calibration package directory")
    p.add_argument("--target-config", help="include/exclude YAML (default: every target)")
    p.add_argument("--out", default="fit_out", help="output directory")
    p.add_argument("--profile", help="start from this profile's fit values (default: the "
                   "profile the package was built with; the FitParams defaults for a package "
                   "that records none)")
    p.add_argument("--national", action="store_true", help="start from the national fit's "
                   f"values (the profile's national_fit: a record budget of {_budgets()})")
    p.add_argument("--held-out", action="store_true", help="hold the validation split out "
                   "(the held-out twin of the fit, which measures how it generalizes); "
                   "by default the fit trains on it, as a published fit does")
    p.add_argument("--resume-from", help="checkpoint.pt to continue from")
    p.add_argument("--allocation-from", metavar="DIR", help="with --allocation learned: the "
                   "directory `calibrate allocate` wrote")
    p.epilog = (f"--device defaults to ${DEVICE_ENV} when set, as in the pipeline. Progress: "
                "a bar on a terminal, a line every 30 s otherwise.")
    _add_trust_pickle(p)
    for name, info in FitParams.model_fields.items():  # one flag per hyperparameter
        kind = next((t for t in (int, float) if t in (info.annotation,
                                                       *typing.get_args(info.annotation))), str)
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                       help=(info.description or "").replace("%", "%%"))
    p.set_defaults(func=_run_fit)


def _budgets() -> str:
    """The national record budget of each shipped profile, for the help text."""
    from pipeline.config import load_profile, shipped_profiles
    from pipeline.core.fit_table import NATIONAL

    budgets = {name: load_profile(name).fit_params(NATIONAL).records
               for name in shipped_profiles()}
    return ", ".join(f"{'none' if b is None else f'{b:,}'} in {name}"
                     for name, b in budgets.items()).replace("%", "%%")


def _env_device(value: str) -> str:
    """The pipeline's device setting, honoured here too when --device is not given."""
    from pipeline.fit.params import Device

    if value not in get_args(Device):
        raise InputError(None, DEVICE_ENV, f"{value!r} is not a device",
                         f"set it to one of {', '.join(get_args(Device))} or unset it")
    return value


def _check_device(device: str, flag: str | None) -> None:
    """Refuse a device this machine lacks before any file is touched, naming the setting
    that asked for it: the flag, else the environment, else the profile."""
    from pipeline.fit.device import resolve_device

    setting = ("--device" if flag is not None else DEVICE_ENV if os.environ.get(DEVICE_ENV)
               else "fit.device")
    resolve_device(device, setting)


def _add_trust_pickle(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a production pickle (runs code from the file)")


def _run_fit(args: argparse.Namespace) -> int:
    from pipeline.config import load_profile
    from pipeline.core.fit_table import FITS, LOCAL, LOCAL_HELDOUT, NATIONAL, NATIONAL_HELDOUT
    from pipeline.core.layout import Layout
    from pipeline.core.lock import storage_lock
    from pipeline.core.numbers import text
    from pipeline.fit import FitParams, fit_package, review_fit
    from pipeline.fit.params import NationalFitParams

    fit = {(False, False): LOCAL, (True, False): NATIONAL, (False, True): LOCAL_HELDOUT,
           (True, True): NATIONAL_HELDOUT}[(args.national, args.held_out)]
    profile = load_profile(args.profile) if args.profile else package_profile(args.package)
    if profile is not None:
        base = profile.fit_params(fit)
        print(f"starting from profile {profile.name!r} ({fit.section}: section)"
              f"{'' if args.profile else ', the one the package was built with'}",
              file=sys.stderr)
    else:
        base = NationalFitParams() if args.national else FitParams()
    changes = {name: getattr(args, name) for name in FitParams.model_fields
               if getattr(args, name) is not None}
    if "device" not in changes and os.environ.get(DEVICE_ENV):
        changes["device"] = _env_device(os.environ[DEVICE_ENV])
    params = base.with_(**changes)
    _check_device(params.device, args.device)
    out = Path(args.out).resolve()
    if out.exists() and not out.is_dir():
        raise InputError(out, "--out", "is a file; a fit writes a directory of files",
                         "pass a directory (created when missing), e.g. --out fit_out")
    # A storage root's own fit directory is written under that root's lock; any other
    # output directory is its own lock's root.
    parent = Layout(out.parent)
    root = out.parent if any(out == parent.fit_dir(f) for f in FITS) else out
    with storage_lock(root) as lock:
        _report_lock(lock)
        result = fit_package(args.package, args.target_config, out, params, args.resume_from,
                             trust_pickle=args.trust_pickle, fit=fit,
                             allocation_dir=args.allocation_from)
    err = result.error_summaries["exported"]
    review = review_fit(result)
    split = result.error_summaries.get("validation_split")
    budget = f" (budget {params.records:,})" if params.records else ""
    print(f"fit: {result.kept:,} of {len(result.weights):,} records kept{budget}; "
          f"{int(result.selected.sum()):,} targets trained on {result.device} "
          f"at {result.epochs_per_second:.1f} epochs/s")
    print(f"relative error (exported weights): mean {err['mean']:.4%}, "
          f"median {err['median']:.4%}, max {err['max']:.4%}; data loss at the exported "
          f"weights {text(result.final_loss)}")
    print(f"validation split ({split['count']} held-out targets): mean {split['mean']:.4%}, "
          f"median {split['median']:.4%}" if split else
          "validation split: trained (--held-out measures how the fit generalizes)")
    for rule in review.rules:
        print(f"  [{'PASS' if rule.passed else 'FAIL'}] {rule.name}: {rule.detail}")
    print(f"wrote {args.out}")
    if review.passed:
        return 0
    failed = [rule.name for rule in review.rules if not rule.passed]
    print(f"error: gate 1 failed this fit ({', '.join(failed)}); its files are in {args.out} "
          "for inspection. Fix: see the FAIL lines above (a profile's values: --profile NAME)",
          file=sys.stderr)
    return EXIT_GATE


def package_profile(package: str | Path) -> Profile | None:
    """The profile a package directory was built with (its metadata records it), so a fit
    of it starts from that profile's values; None for a package that records none."""
    from pipeline.config import Profile
    from pipeline.core.settings import parse_settings

    meta = Path(package) / "metadata.json"
    if not meta.is_file():
        return None
    try:
        recorded = json.loads(meta.read_text()).get("profile")
    except ValueError as exc:
        raise InputError(meta, None, f"unreadable package metadata ({exc})",
                         "rebuild the calibration package") from None
    if not isinstance(recorded, dict):
        return None
    try:
        return parse_settings(Profile, recorded, meta, "profile")
    except InputError as exc:
        raise InputError(meta, exc.field, f"the profile the package recorded does not load "
                         f"({exc.problem})", "pass --profile NAME") from None


def _add_allocate_parser(subparsers: argparse._SubParsersAction) -> None:
    from pipeline.core.packaged import DEFAULT_NATIONAL_TARGET_CONFIG
    from pipeline.core.parallel import SETTING
    from pipeline.sparsity import AllocationSettings

    p = subparsers.add_parser("allocate", help="learn where the national fit's record budget "
                              "goes (RL search); the fit uses it with --allocation learned")
    p.add_argument("--package", required=True, help="calibration package directory")
    p.add_argument("--target-config", default=str(DEFAULT_NATIONAL_TARGET_CONFIG),
                   help="the national fit's target config (default: the shipped one)")
    p.add_argument("--out", default="allocation_out", help="output directory; an "
                   "interrupted search there resumes")
    p.add_argument("--profile", help="take national_fit and allocation from this profile")
    p.add_argument("--records", type=int, help="the record budget (default: the profile's "
                   "national_fit.records)")
    p.add_argument("--epochs", type=int, help="the trained model's L0 epochs")
    p.add_argument("--dask", default=os.environ.get(SETTING, "local"),
                   help="inprocess, local (a LocalCluster) or a scheduler address "
                   f"(default ${SETTING} or local)")
    p.add_argument("--workers", type=int, default=0, help="local workers (0: one per core)")
    for name, info in AllocationSettings.model_fields.items():
        kind = next((t for t in (bool, int, float) if t in (
            info.annotation, *typing.get_args(info.annotation))), str)
        kind = _yes_no if kind is bool else kind
        p.add_argument(f"--{name.replace('_', '-')}", dest=f"allocation_{name}", type=kind,
                       default=None, help=(info.description or "").replace("%", "%%"))
    p.set_defaults(func=_run_allocate)


def _yes_no(value: str) -> bool:
    if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
        raise argparse.ArgumentTypeError(f"{value!r}: use true or false")
    return value.lower() in ("true", "yes", "1")


def _run_allocate(args: argparse.Namespace) -> int:
    from pipeline.config import load_profile
    from pipeline.core.fit_table import allocated
    from pipeline.core.lock import storage_lock
    from pipeline.core.parallel import make_runner
    from pipeline.fit.params import NationalFitParams
    from pipeline.sparsity import AllocationSettings, allocate

    profile = load_profile(args.profile) if args.profile else None
    params = profile.fit_params(allocated()) if profile else NationalFitParams()
    changes = {k: v for k, v in (("records", args.records), ("epochs", args.epochs))
               if v is not None}
    if os.environ.get(DEVICE_ENV):
        changes["device"] = _env_device(os.environ[DEVICE_ENV])
    params = params.with_(**changes)
    _check_device(params.device, None)
    settings = profile.allocation if profile else AllocationSettings()
    settings = settings.model_copy(update={
        name: getattr(args, f"allocation_{name}") for name in AllocationSettings.model_fields
        if getattr(args, f"allocation_{name}") is not None})
    settings = AllocationSettings.model_validate(settings.model_dump())
    out = Path(args.out).resolve()
    runner = make_runner(args.dask, args.workers)
    try:
        with storage_lock(out.parent) as lock:
            _report_lock(lock)
            meta = allocate(args.package, args.target_config, params, settings, out,
                            runner=runner)
    finally:
        close = getattr(runner, "close", None)
        if close:
            close()
    budget = meta["budget_method"]
    final = meta["final_episode"]
    print(f"allocate: {meta['records']:,} of {meta['columns']:,} records "
          f"(budget {meta['record_budget']:,}), {meta['integer_records']:,} with whole-"
          f"household weights; {meta['episodes']} episodes in {meta['seconds']:.0f} s")
    print(f"search episode's split error: reward half {final['error']:.4%} (start "
          f"{final['error0']:.4%}), report half {final['report_error']:.4%}")
    print(f"budget method (the trained fit): split {budget['split_error']:.4%}, report half "
          f"{budget['report_error']:.4%}")
    print(f"wrote {args.out}; fit with: calibrate fit --national --allocation learned "
          f"--allocation-from {args.out} --package {args.package}")
    return 0


def _add_package_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate-package", help="impossible and weak targets; exit 0 pass, 1 impossible, "
        "2 strict-ratio failures")
    p.add_argument("package", help="package directory (or a production pickle)")
    p.add_argument("--target-config", help="judge only the targets this YAML selects")
    p.add_argument("--strict", nargs="?", type=float, const=DEFAULT_STRICT_RATIO, default=None,
                   metavar="RATIO", help=f"fail when row sum / target < RATIO "
                   f"(default {DEFAULT_STRICT_RATIO:g})")
    _add_trust_pickle(p)
    p.set_defaults(func=_run_validate_package)


def _run_validate_package(args: argparse.Namespace) -> int:
    from pipeline.package.store import load_selection
    from pipeline.package.validity import validate_package

    pkg, selected = load_selection(args.package, args.target_config,
                                   trust_pickle=args.trust_pickle)
    report = validate_package(pkg, selected, args.strict or DEFAULT_STRICT_RATIO)
    print(report.summary())
    return report.exit_code(strict=args.strict is not None)


def _add_release_parsers(subparsers: argparse._SubParsersAction) -> None:
    storage = os.environ.get("CALIBRATION_STORAGE_ROOT", "storage")
    p = subparsers.add_parser("releases", help="list promoted releases with their metrics "
                              "and whether each still matches its manifest")
    p.add_argument("--storage", default=storage, help="storage root (default %(default)s)")
    p.add_argument("--no-verify", action="store_true", help="skip re-hashing each release")
    p.set_defaults(func=_run_releases)
    p = subparsers.add_parser("verify", help="re-hash a release against its manifest; exit "
                              f"0 intact, {EXIT_VERIFY} changed")
    p.add_argument("version", nargs="?", help="the release (default: the one CURRENT names)")
    p.add_argument("--all", action="store_true", help="every release")
    p.add_argument("--storage", default=storage, help="storage root (default %(default)s)")
    p.set_defaults(func=_run_verify)
    p = subparsers.add_parser("rollback", help="point CURRENT back to an earlier release")
    p.add_argument("version", nargs="?", help="release to restore (default: the one before)")
    p.add_argument("--storage", default=storage, help="storage root (default %(default)s)")
    p.set_defaults(func=_run_rollback)


def _run_releases(args: argparse.Namespace) -> int:
    """Lists even when CURRENT is broken: that is when a user needs the list to repair it.
    The errors shown are the first (local) fit's."""
    from pipeline.release.listing import heldout_lines, release_table
    from pipeline.release.versions import (
        CURRENT,
        current_problem,
        current_release,
        list_releases,
        promoted_versions,
        verify_release,
    )

    releases = list_releases(args.storage)
    problem = current_problem(args.storage)
    current = None if problem else current_release(args.storage)
    if not releases:
        print(f"no releases under {args.storage}")
        return 0
    changed = None if args.no_verify else {r.version: verify_release(r) for r in releases}
    for line in release_table(releases, current.version if current else None,
                              promoted_versions(args.storage), changed=changed):
        print(line)
    if problem:
        print(f"warning: {CURRENT} {problem}; no release is current. Fix: calibrate rollback "
              "VERSION (one of the above)", file=sys.stderr)
    elif current:
        print(f"* = {CURRENT}")
        for line in heldout_lines(current):
            print(line)
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from pipeline.release.versions import current_release, list_releases, verify_release

    releases = list_releases(args.storage)
    if args.all:
        chosen = releases
    elif args.version:
        chosen = [r for r in releases if r.version == args.version]
        if not chosen:
            raise InputError(Path(args.storage) / "releases", "version",
                             f"no complete release {args.version!r}",
                             f"pass one of {[r.version for r in releases]}")
    else:
        current = current_release(args.storage)
        if current is None:
            raise InputError(Path(args.storage) / "releases", "CURRENT", "no release yet",
                             "promote one first (make run)")
        chosen = [current]
    failed = 0
    for release in chosen:
        problems = verify_release(release)
        failed += bool(problems)
        print(f"{release.version}: {'OK' if not problems else 'FAILED'} "
              f"({len(release.manifest.get('files', {}))} files)")
        for problem in problems:
            print(f"  {problem}")
    if failed:
        print(f"error: {failed} of {len(chosen)} releases no longer match their manifests. "
              "Fix: roll back to an intact release (calibrate rollback VERSION) and promote "
              "again; never edit a release in place", file=sys.stderr)
    return EXIT_VERIFY if failed else 0


def _run_rollback(args: argparse.Namespace) -> int:
    from pipeline.core.lock import storage_lock
    from pipeline.release.versions import rollback

    with storage_lock(args.storage) as lock:
        _report_lock(lock)
        release = rollback(args.storage, args.version)
    print(f"CURRENT -> {release.version}")
    return 0


def _report_lock(lock: Acquired) -> None:
    """Say what taking the lock found: a run that died holding it, and what it left."""
    if lock.dead_holder is not None:
        print(f"note: the previous run ({lock.dead_holder.describe()}) ended without releasing "
              f"{lock.path}", file=sys.stderr)
    if lock.swept:
        print(f"note: removed {len(lock.swept)} temporary files of dead runs: "
              f"{', '.join(p.name for p in lock.swept[:5])}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="calibrate", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_fit_parser(subparsers)
    _add_allocate_parser(subparsers)
    _add_package_parser(subparsers)
    _add_release_parsers(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (InputError, FloatingPointError) as exc:  # bad input, or a fit it made diverge
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except StorageBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except OSError as exc:  # a full disk (StorageFull names the file), permissions, I/O
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STORAGE


if __name__ == "__main__":
    sys.exit(main())
