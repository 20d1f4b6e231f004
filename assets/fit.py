"""The L0 fit asset and gate 1 (the fit review)."""

import json

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.inputs import calibration_package, target_config
from assets.metadata import data_version, gate_result, line_chart, markdown_table
from pipeline.core.hashing import sha256_file
from pipeline.fit import FitParams, FitThresholds, fit_package, review_fit
from pipeline.release.gates import thresholds_from
from pipeline.release.releases import current_release
from resources import ComputeResource, ProfileResource, StorageResource


class FitConfig(Config):
    """Hyperparameters editable in the launchpad; unset ones come from the profile."""

    preset: str | None = None
    epochs: int | None = None
    lambda_l0: float | None = None
    beta: float | None = None
    lambda_l2: float | None = None
    learning_rate: float | None = None
    seed: int | None = None
    polish_epochs: int | None = None
    log_freq: int | None = None
    checkpoint_every: int | None = None

    def params(self, profile_fit: dict, device: str) -> FitParams:
        chosen = {**profile_fit, **{k: v for k, v in self.model_dump().items() if v is not None}}
        preset = chosen.pop("preset", "local")
        return FitParams.preset(preset, **chosen, device=device)


@asset(group_name="fit", code_version="1", deps=[calibration_package, target_config], pool="gpu",
       description="L0-regularized weights; diagnostics computed from the exported weights.")
def calibration_weights(
    context: AssetExecutionContext, config: FitConfig, storage: StorageResource,
    profile: ProfileResource, compute: ComputeResource,
) -> MaterializeResult:
    layout = storage.layout
    params = config.params(profile.load().fit, compute.device)
    fit_package(layout.package_dir, layout.target_config, layout.fit_dir, params)
    result_dir = layout.fit_dir
    run = json.loads((layout.fit_dir / "run_config.json").read_text())
    summary = run["error_summary"]
    context.log.info(f"fit done: {summary}")
    losses = run["loss_history"]["l0"] + run["loss_history"]["polish"]
    return MaterializeResult(
        metadata={
            "final_loss": float(run["final_loss"]),
            "mean_rel_error": summary["mean"],
            "median_rel_error": summary["median"],
            "p90_rel_error": summary["p90"],
            "max_rel_error": summary["max"],
            "records_kept": run["records_kept"],
            "columns": run["n_columns"],
            "selected_targets": run["n_selected"],
            "device": run["device"],
            "epochs_per_second": run["epochs_per_second"],
            "hyperparameters": MetadataValue.json(params.to_dict()),
            "loss_curve": MetadataValue.md(line_chart(
                list(range(1, len(losses) + 1)), losses,
                f"loss by epoch (L0 phase, then {len(run['loss_history']['polish'])} polish)")),
            "worst_targets": MetadataValue.md(markdown_table(_worst(layout.fit_dir))),
            "path": MetadataValue.path(str(result_dir)),
        },
        data_version=data_version(sha256_file(layout.fit_dir / "weights.npy")),
    )


def _worst(fit_dir, n: int = 15):
    diagnostics = pd.read_csv(fit_dir / "diagnostics.csv")
    trained = diagnostics[diagnostics["selected"]]
    return trained.nlargest(n, "abs_rel_error")[
        ["target", "true_value", "estimate", "rel_error"]]


@asset_check(asset=calibration_weights, blocking=True,
             description="Gate 1: finite weights, converged loss, no late divergence, "
                         "no worse than the production release.")
def fit_review(storage: StorageResource, profile: ProfileResource) -> AssetCheckResult:
    layout = storage.layout
    release = current_release(layout.root)
    baseline = release.path / "run_config.json" if release else None
    prof = profile.load()
    thresholds = thresholds_from(FitThresholds, prof.gates.get("fit", {}), prof.source, "fit")
    review = review_fit(layout.fit_dir, thresholds, production_run_config=baseline)
    failed = [r for r in review.rules if not r.passed]
    summary = ("all fit rules passed" if not failed else
               "; ".join(f"{r.name}: {r.detail}" for r in failed))
    return gate_result(
        layout.gates_dir, "fit_review", review.passed, sha256_file(layout.fit_dir / "weights.npy"),
        summary,
        {r.name: {"passed": r.passed, "detail": r.detail, "failing_groups": list(r.failing_groups)}
         for r in review.rules},
    )
