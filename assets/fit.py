"""Fit stage: one L0 fit asset per entry of the fit table (the local-area and national fits,
each with its launchpad config, and their held-out twins). Their gate-1 checks come from
the gate table (`assets/gates.py`)."""

from pathlib import Path

import pandas as pd
import pydantic
from dagster import AssetExecutionContext, AssetsDefinition, Config, MaterializeResult, asset
from dagster import MetadataValue as MV

from assets.failures import explains
from assets.metadata import (
    data_version,
    inline_plot,
    loss_chart,
    loss_inline,
    markdown_table,
    readable,
    svg_image,
    text,
)
from assets.stages import stage
from pipeline.config import Profile
from pipeline.core.fit_table import Fit, twin_of
from pipeline.core.hashing import sha256_file
from pipeline.core.progress import report_to
from pipeline.core.svg import Series
from pipeline.fit import FitParams, FitResult, fit_package
from pipeline.fit.frontier import frontier_svg
from pipeline.fit.outputs import diagnostics_frame
from pipeline.fit.params import params_as_run
from resources import ComputeResource, ProfileResource, StorageResource

LAUNCHPAD_EXCLUDED = ("device",)  # the compute resource chooses the device


def fit_config_class(defaults: FitParams, name: str) -> type[Config]:
    """The launchpad config: every FitParams field, shown with the profile's value."""
    return launchpad_config(defaults, name, "Fit hyperparameters; the defaults are the "
                            "profile's. A value left at its default follows the profile (and "
                            "a changed preset).", LAUNCHPAD_EXCLUDED)


def launchpad_config(defaults: pydantic.BaseModel, name: str, doc: str,
                     excluded: tuple[str, ...] = ()) -> type[Config]:
    """A Dagster Config with every field of a settings model, its default the given
    instance's value (the loaded profile's), its description the model's."""
    fields = {
        field: (info.annotation, pydantic.Field(getattr(defaults, field),
                                                description=info.description))
        for field, info in type(defaults).model_fields.items() if field not in excluded
    }
    return pydantic.create_model(name, __base__=Config, __doc__=doc, **fields)


def launch_params(config: Config, shown: FitParams, base: FitParams, device: str
                  ) -> FitParams:
    """The run's profile fit (`base`) with what the user changed from the launchpad's
    values (`shown`, the profile loaded with the definitions)."""
    return base.with_(**launchpad_changes(config, shown), device=device)


def launchpad_changes(config: Config, shown: pydantic.BaseModel) -> dict:
    """The fields the user changed from the launchpad's values (`shown`): a value left as
    shown follows the profile the run loads."""
    return {k: v for k, v in config.model_dump().items() if v != getattr(shown, k)}


def fit_assets(loaded: Profile, fits: tuple[Fit, ...]) -> list[AssetsDefinition]:
    """One asset per fit, the launchpad showing the loaded profile's section of each; a
    held-out fit reruns its twin's settings as that fit ran (no launchpad of its own)."""
    return [fit_asset(fit, loaded) if fit.twin is None else heldout_asset(fit, twin_of(fit, fits))
            for fit in fits]


def fit_asset(fit: Fit, loaded: Profile) -> AssetsDefinition:
    shown = loaded.fit_params(fit)
    config_class = fit_config_class(shown, "".join(w.title() for w in fit.weights.split("_"))
                                    + "Config")
    deps = ["calibration_package", fit.config.asset, *(["sparsity_allocation"]
                                                     if fit.allocation else [])]

    @asset(name=fit.weights, **stage("fit"), code_version="2", deps=deps, pool="gpu",
           description=f"{fit.description} Diagnostics computed from the exported weights.")
    @explains
    def _fit(
        context: AssetExecutionContext, config: config_class, storage: StorageResource,
        profile: ProfileResource, compute: ComputeResource,
    ) -> MaterializeResult:
        layout = storage.layout
        params = launch_params(config, shown, profile.load().fit_params(fit), compute.device)
        with report_to(context.log.info):  # progress lines into the run's event log
            result = fit_package(layout.package_dir, layout.target_config(fit.config),
                                 layout.fit_dir(fit), params, fit=fit,
                                 allocation_dir=layout.allocation_dir if fit.allocation
                                 else None)
        err = result.error_summaries["exported"]
        context.log.info(f"{fit.label} done: {result.kept:,} records kept; mean |rel error| "
                         f"{text(err['mean'])}, max {text(err['max'])}")
        return MaterializeResult(metadata=fit_metadata(result, layout.fit_dir(fit), fit.label),
                                 data_version=data_version(sha256_file(layout.weights(fit))))

    return _fit


def heldout_asset(fit: Fit, twin: Fit) -> AssetsDefinition:
    @asset(name=fit.weights, group_name="fit", code_version="1",
           deps=["calibration_package", fit.config.asset, twin.weights], pool="gpu",
           description=f"{fit.description} Its settings are the {twin.label}'s as it ran.")
    def _heldout(context: AssetExecutionContext, storage: StorageResource,
                 compute: ComputeResource) -> MaterializeResult:
        layout = storage.layout
        params = params_as_run(layout.run_config(twin)).with_(device=compute.device)
        with report_to(context.log.info):
            result = fit_package(layout.package_dir, layout.target_config(fit.config),
                                 layout.fit_dir(fit), params, fit=fit,
                                 twin_weights=layout.weights(twin),
                                 allocation_dir=layout.allocation_dir
                                 if params.allocation == "learned" else None)
        context.log.info(f"{fit.label} done: {result.kept:,} records kept, validation split "
                         f"{result.error_summaries['validation_split']}")
        return MaterializeResult(metadata=fit_metadata(result, layout.fit_dir(fit), fit.label),
                                 data_version=data_version(sha256_file(layout.weights(fit))))

    return _heldout


def fit_metadata(result: FitResult, fit_dir: Path, label: str) -> dict:
    """The plots first (drawn in place), then the numbers; each figure under one name."""
    summary = result.error_summaries["exported"]
    # A published fit trains the split: its generalization is its held-out twin's.
    split = result.error_summaries.get("validation_split") or {
        "mean": float("nan"), "median": float("nan"), "count": 0}
    history = result.loss_history
    trained = diagnostics_frame(result)
    trained = trained[trained["selected"]]
    frontier = result.frontier
    budget = result.budget
    return readable({
        "objective_by_epoch": MV.md(loss_inline(history["l0"], history["polish"],
                                                result.stopping)),
        "frontier": MV.md(frontier_inline(frontier, result.kept, summary["mean"],
                                          split["mean"])),
        "sparsity": sparsity_setting(result.params, budget),
        "records_kept": result.kept,
        "l0_epochs": result.stopping["l0"]["epochs"],
        "polish_epochs": result.stopping["polish"]["epochs"],
        "mean_rel_error": summary["mean"],
        "median_rel_error": summary["median"],
        "p90_rel_error": summary["p90"],
        "max_rel_error": summary["max"],
        "split_mean_rel_error": split["mean"],
        "split_median_rel_error": split["median"],
        "split_targets": split["count"],
        "data_loss_exported": result.final_loss,
        "objective_last_epoch": (history["l0"] + history["polish"])[-1]
        if history["l0"] or history["polish"] else None,
        "record_budget": budget["records"],
        "open_gates_at_l0_end": budget["open_at_end"],
        "columns": len(result.weights),
        "package_targets_trained": int(result.selected.sum()),
        "device": result.device,
        "epochs_per_second": result.epochs_per_second,
        "hyperparameters": applied_hyperparameters(result.params),
        "objective_by_epoch_table": MV.md(loss_chart(history["l0"], history["polish"],
                                                     result.stopping)),
        "frontier_table": MV.md(svg_image(frontier_svg(
            frontier, result.kept, summary["mean"], split["mean"],
            f"{label}: records kept vs error"), f"{label} frontier") + "\n\n" + markdown_table(
                frontier[["records_kept", "training_error", "split_error", "records",
                          "lambda_l0", "temperature_schedule", "hybrid_share"]])),
        "worst_targets": trained.nlargest(15, "abs_rel_error")[
            ["target", "true_value", "estimate", "rel_error"]],
        "path": MV.path(str(fit_dir)),
    })


def sparsity_setting(params: FitParams, budget: dict) -> str:
    """Which setting decided the records kept: a budget steers λ_L0 (its starting value
    then only starts the controller), else λ_L0 itself."""
    if params.records is None:
        return f"λ_L0 {params.lambda_l0:.4g} (no record budget)"
    how = ("a learned allocation" if params.allocation == "learned"
           else f"λ_L0 steered from {params.lambda_l0:.4g}")
    return f"record budget {params.records:,} ({how}; {budget['kept']:,} kept)"


def applied_hyperparameters(params: FitParams) -> dict:
    """The fit's settings as they applied: under a record budget λ_L0 is steered, so its
    configured value is shown as the controller's start; an unset budget as none."""
    shown = params.to_dict()
    if params.records is not None:
        shown["lambda_l0"] = f"steered by records (starts at {params.lambda_l0:.4g})"
    return shown


def frontier_inline(frontier, kept: int, training_error: float, split_error: float) -> str:
    """Records kept against error, every fit of this package and config, drawn in place
    with this fit circled."""
    xs = frontier["records_kept"].astype(float).tolist()
    # a fit that trains the split has no split error (its held-out twin's point has one)
    split = pd.to_numeric(frontier["split_error"], errors="coerce").tolist()
    rings = ((kept, training_error), *(((kept, split_error),) if split_error == split_error
                                        else ()))
    return inline_plot(
        [Series("trained", xs, frontier["training_error"].astype(float).tolist(), True),
         Series("split", xs, split, True)],
        "records kept vs mean rel error", log_x=True, rings=rings)
