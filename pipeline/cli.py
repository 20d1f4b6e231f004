"""`calibrate`: the pipeline's stages for people, without Dagster."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.errors import InputError


def _add_fit_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fit", help="fit L0 calibration weights to a package")
    p.add_argument("--package", required=True, help="calibration package directory")
    p.add_argument("--target-config", help="include/exclude YAML (default: every target)")
    p.add_argument("--out", default="fit_out", help="output directory")
    p.add_argument("--preset", choices=("local", "national"), default="local")
    p.add_argument("--resume-from", help="checkpoint.pt to continue from")
    for flag, kind in (("--epochs", int), ("--lambda-l0", float), ("--beta", float),
                       ("--lambda-l2", float), ("--lr", float), ("--seed", int),
                       ("--device", str), ("--log-freq", int), ("--checkpoint-every", int),
                       ("--polish-epochs", int)):
        p.add_argument(flag, type=kind, default=None)
    p.set_defaults(func=_run_fit)


def _run_fit(args: argparse.Namespace) -> int:
    from pipeline.fit import FitParams, fit_package, review_fit

    overrides = {field: getattr(args, arg) for arg, field in (
        ("epochs", "epochs"), ("lambda_l0", "lambda_l0"), ("beta", "beta"),
        ("lambda_l2", "lambda_l2"), ("lr", "learning_rate"), ("seed", "seed"),
        ("device", "device"), ("log_freq", "log_freq"), ("checkpoint_every", "checkpoint_every"),
        ("polish_epochs", "polish_epochs")) if getattr(args, arg) is not None}
    params = FitParams.preset(args.preset, **overrides)
    result = fit_package(args.package, args.target_config, args.out, params, args.resume_from)
    err = result.error_summaries["exported"]
    review = review_fit(result)
    print(f"fit: {result.kept:,} of {len(result.weights):,} records kept; "
          f"{int(result.selected.sum()):,} targets trained on {result.device} "
          f"at {result.epochs_per_second:.1f} epochs/s")
    print(f"relative error (exported weights): mean {err['mean']:.4%}, "
          f"median {err['median']:.4%}, max {err['max']:.4%}; final loss {result.final_loss:.6g}")
    for rule in review.rules:
        print(f"  [{'PASS' if rule.passed else 'FAIL'}] {rule.name}: {rule.detail}")
    print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="calibrate", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_fit_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
