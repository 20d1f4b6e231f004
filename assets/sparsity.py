"""Sparsity stage: the learned allocation of a fit's record budget (optional): the fit the
fit table marks `allocation` (the national fit).

Not part of `full_rebuild`: the `allocation_search` job materializes it, and that fit with
`allocation: learned` (launchpad, or its profile section) keeps its records.
"""

from pathlib import Path

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    asset,
    define_asset_job,
)
from dagster import MetadataValue as MV

from assets.failures import explains
from assets.fit import launchpad_changes, launchpad_config
from assets.metadata import data_version, markdown_table, readable
from assets.stages import stage
from pipeline.config import Profile
from pipeline.core.fit_table import Fit, allocated
from pipeline.core.hashing import sha256_file
from pipeline.core.layout import ALLOCATION_BUDGETS
from pipeline.core.progress import report_to
from pipeline.sparsity import AllocationSettings, allocate
from resources import ComputeResource, ProfileResource, StorageResource


def sparsity_asset(loaded: Profile, fits: tuple[Fit, ...]) -> AssetsDefinition:
    """sparsity_allocation for the fit table's allocated fit, the launchpad showing the
    loaded profile's `allocation`."""
    fit = allocated(fits)
    config_class = launchpad_config(loaded.allocation, "AllocationConfig",
                                    "The search's settings; the defaults are the profile's.")

    @asset(**stage("fit"), code_version="1", deps=["calibration_package", fit.config.asset],
           pool="gpu", description=f"Where the {fit.label}'s record budget goes, learned by "
           "PPO agents (gymnasium env over states x strata) on half the validation split.")
    @explains
    def sparsity_allocation(
        context: AssetExecutionContext, config: config_class, storage: StorageResource,
        profile: ProfileResource, compute: ComputeResource,
    ) -> MaterializeResult:
        layout = storage.layout
        run_profile = profile.load()
        settings = AllocationSettings.model_validate({
            **run_profile.allocation.model_dump(),
            **launchpad_changes(config, loaded.allocation)})
        params = run_profile.fit_params(fit).with_(device=compute.device)
        with report_to(context.log.info):
            meta = allocate(layout.package_dir, layout.target_config(fit.config), params,
                            settings, layout.allocation_dir, runner=compute.runner())
        return MaterializeResult(metadata=readable(allocation_metadata(
                                     meta, layout.allocation_dir)),
                                 data_version=data_version(sha256_file(
                                     layout.allocation_arrays)))

    return sparsity_allocation


def allocation_metadata(meta: dict, out: Path) -> dict:
    budgets = pd.read_csv(out / ALLOCATION_BUDGETS)
    moved = budgets.assign(change=budgets["records"] - budgets["budget_method_records"])
    final, budget = meta["final_episode"], meta["budget_method"]
    return {
        "records": meta["records"],
        "record_budget": meta["record_budget"],
        "integer_records": meta["integer_records"],
        "episodes": meta["episodes"],
        "search_seconds": meta["seconds"],
        "resumed_from_round": meta["resumed_from_round"],
        "episode_reward_split_error": final["error"],
        "episode_report_split_error": final["report_error"],
        "budget_method_split_error": budget["split_error"],
        "largest_moves": MV.md(markdown_table(moved.reindex(
            moved["change"].abs().sort_values(ascending=False).index).head(15))),
        "settings": MV.json(meta["settings"]),
        "path": MV.path(str(out)),
    }


allocation_search = define_asset_job(
    "allocation_search", selection=["sparsity_allocation"],
    description="The RL search for the national fit's record allocation (sparsity_allocation).")
