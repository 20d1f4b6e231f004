"""Fit stage: the L0 fit asset, its launchpad config, and gate 1 (the fit review)."""

import pydantic
from dagster import AssetExecutionContext, AssetsDefinition, Config, MaterializeResult, asset
from dagster import MetadataValue as MV

from assets.gates import gate_check
from assets.metadata import data_version, loss_chart, markdown_table
from assets.package import calibration_package
from assets.targets import target_config
from pipeline.config import Profile
from pipeline.core.hashing import sha256_file
from pipeline.core.progress import report_to
from pipeline.fit import FitParams, FitResult, fit_package
from pipeline.fit.outputs import diagnostics_frame
from resources import ComputeResource, ProfileResource, StorageResource

LAUNCHPAD_EXCLUDED = ("device",)  # the compute resource chooses the device


def fit_config_class(defaults: FitParams) -> type[Config]:
    """The launchpad config: every FitParams field, shown with the profile's value."""
    fields = {
        name: (info.annotation, pydantic.Field(getattr(defaults, name),
                                               description=info.description))
        for name, info in FitParams.model_fields.items() if name not in LAUNCHPAD_EXCLUDED
    }
    return pydantic.create_model(
        "FitConfig", __base__=Config, __doc__="Fit hyperparameters; the defaults are the "
        "profile's. A value left at its default follows the profile (and a changed preset).",
        **fields)


def launch_params(config: Config, shown: FitParams, profile: Profile, device: str) -> FitParams:
    """The profile's fit with what the user changed in the launchpad."""
    changed = {k: v for k, v in config.model_dump().items() if v != getattr(shown, k)}
    return profile.fit.with_(**changed, device=device)


def fit_assets(loaded: Profile) -> list[AssetsDefinition]:
    """calibration_weights, with the launchpad showing the loaded profile's fit values."""
    fit_config = fit_config_class(loaded.fit)

    @asset(group_name="fit", code_version="1", deps=[calibration_package, target_config],
           pool="gpu", description="L0-regularized weights; diagnostics computed from the "
           "exported weights.")
    def calibration_weights(
        context: AssetExecutionContext, config: fit_config, storage: StorageResource,
        profile: ProfileResource, compute: ComputeResource,
    ) -> MaterializeResult:
        layout = storage.layout
        params = launch_params(config, loaded.fit, profile.load(), compute.device)
        with report_to(context.log.info):  # progress lines into the run's event log
            result = fit_package(layout.package_dir, layout.target_config, layout.fit_dir,
                                 params)
        context.log.info(f"fit done: {result.error_summaries['exported']}")
        return MaterializeResult(metadata=fit_metadata(result, layout.fit_dir),
                                 data_version=data_version(sha256_file(layout.weights)))

    return [calibration_weights]


def fit_metadata(result: FitResult, fit_dir) -> dict:
    summary = result.error_summaries["exported"]
    history = result.loss_history
    trained = diagnostics_frame(result)
    trained = trained[trained["selected"]]
    return {
        "final_loss": result.final_loss,
        "mean_rel_error": summary["mean"],
        "median_rel_error": summary["median"],
        "p90_rel_error": summary["p90"],
        "max_rel_error": summary["max"],
        "records_kept": result.kept,
        "columns": len(result.weights),
        "package_targets_trained": int(result.selected.sum()),
        "device": result.device,
        "epochs_per_second": result.epochs_per_second,
        "hyperparameters": MV.json(result.params.to_dict()),
        "loss_curve": MV.md(loss_chart(history["l0"], history["polish"])),
        "worst_targets": MV.md(markdown_table(trained.nlargest(15, "abs_rel_error")[
            ["target", "true_value", "estimate", "rel_error"]])),
        "path": MV.path(str(fit_dir)),
    }


fit_review = gate_check("fit_review")
