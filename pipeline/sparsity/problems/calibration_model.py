"""The calibration environment's trained model and shared data, built from a package.

The trained model is the national fit's own L0 phase (same package, config and
parameters), so the fit that later uses an allocation ranks the columns exactly as the
search did, and the fit's result here is the budget method's baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.core.geo import STATE_ABBR
from pipeline.fit.checkpoint import load_checkpoint
from pipeline.fit.model import GatedWeights
from pipeline.fit.params import FitParams
from pipeline.fit.training import FitResult, fit
from pipeline.microdata import read_h5
from pipeline.package.store import CalibrationPackage, load_selection
from pipeline.sparsity.autoencoder import AreaAutoencoder
from pipeline.sparsity.problems.calibration import (
    INCOME_BANDS,
    CalibrationData,
    reward_halves,
    siblings,
    strata,
    train_profiles,
)
from pipeline.targets.split import split_scope

INCOME_COLUMNS = ("e00200", "e00900", "e02100", "e00600", "e01500", "e00800", "e02400",
                  "e02300")  # wages, business, farm, dividends, pensions, alimony, SS, UI
PROFILE_INCOME = (10_000.0, 30_000.0, 60_000.0, 100_000.0, 200_000.0)
PROFILE_SIZES = 5  # 1, 2, 3, 4, 5+ people
AUTOENCODER_REPLICATES = 20
CHECKPOINT_NAME = "trained.pt"


@dataclass
class TrainedCalibration:
    """The trained model's fit (the budget method's result) and the shared data."""

    result: FitResult
    data: CalibrationData
    package: CalibrationPackage
    selected: np.ndarray
    scope: np.ndarray  # validation split targets in the fit's scope
    reward: np.ndarray  # the half of `scope` the reward reads (a subset of scope)


def household_frame(pkg: CalibrationPackage) -> pd.DataFrame:
    """Income and size of each base household, in the package's record order."""
    md = read_h5(pkg.base_h5)
    tu = md.tax_unit
    cols = [c for c in INCOME_COLUMNS if c in tu.columns]
    income = tu[cols].sum(axis=1).groupby(tu["household_id"]).sum()
    size = md.person.groupby("household_id").size()
    ids = md.household["household_id"]
    return pd.DataFrame({"income": income.reindex(ids).fillna(0.0).to_numpy(),
                         "size": size.reindex(ids).fillna(1).to_numpy()})


def train_calibration(package_dir: str | Path, config_path: str | Path, params: FitParams,
                      work_dir: str | Path, *, seed: int) -> TrainedCalibration:
    """Fit the national model once (checkpointed in `work_dir`) and gather what episodes
    share: the training, reward and report targets, the ranked cells, the autoencoder."""
    pkg, selected = load_selection(package_dir, config_path)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    targets = pkg.targets
    y = targets["value"].to_numpy(dtype=np.float64)
    names = targets["target_name"].astype(str).tolist()
    result = fit(pkg.X, y, pkg.initial_weights, params, selected=selected, target_names=names,
                 checkpoint_path=work / CHECKPOINT_NAME, source=Path(package_dir) / "targets.csv")
    result.targets = targets
    state = load_checkpoint(work / CHECKPOINT_NAME, result.identity, params.epochs,
                            torch.device("cpu"))
    gates = GatedWeights(state["log_weight"], state["log_alpha"], params.beta, params.seed)
    with torch.no_grad():
        gate_prob = gates.gates.get_active_prob().numpy().astype(np.float64)
    log_alpha = state["log_alpha"].numpy().astype(np.float64)
    # A column an episode keeps starts at its trained weight with the gate open, as the fit
    # polishing an allocation starts it (`pipeline.fit.training`).
    start = np.exp(state["log_weight"].numpy().astype(np.float64))
    scope = split_scope(targets, selected)
    reward = scope & reward_halves(names, seed)
    return TrainedCalibration(result=result, data=_data(pkg, selected, scope, reward, y, log_alpha,
                                             start, gate_prob, seed),
                   package=pkg, selected=selected, scope=scope, reward=reward)


def _data(pkg: CalibrationPackage, selected: np.ndarray, scope: np.ndarray,
          reward: np.ndarray, y: np.ndarray, log_alpha: np.ndarray, start: np.ndarray,
          gate_prob: np.ndarray, seed: int) -> CalibrationData:
    n_records, n_clones = pkg.n_records, pkg.n_clones
    record = np.tile(np.arange(n_records), n_clones)
    district = pkg.cd_geoid.astype(np.int64)
    state_fips = district // 100
    fips = np.unique(state_fips)
    layer = np.searchsorted(fips, state_fips)
    households = household_frame(pkg)
    income, size = households["income"].to_numpy(), households["size"].to_numpy()
    group = strata(income, size)[record]
    n_groups = 2 * (len(INCOME_BANDS) + 1)
    band = np.searchsorted(np.asarray(PROFILE_INCOME), income, side="right")
    profile = (band * PROFILE_SIZES + np.minimum(size, PROFILE_SIZES) - 1)[record]
    n_profile = (len(PROFILE_INCOME) + 1) * PROFILE_SIZES
    full = np.where(gate_prob > 0.5, start, 0.0)  # the trained model, gates open or closed
    ae = AreaAutoencoder(train_profiles(full, layer, profile, len(fips), n_profile,
                                        AUTOENCODER_REPLICATES, seed), seed=seed)
    report = scope & ~reward
    X = pkg.X.astype(np.float64)  # noqa: N806
    return CalibrationData(
        X_train=X[selected].tocsc(), y_train=y[selected],
        X_reward=X[reward].tocsc(), y_reward=y[reward],
        X_report=X[report].tocsc(), y_report=y[report],
        log_alpha=log_alpha, start_weight=start, gate_prob=gate_prob,
        layer=layer, group=group, profile=profile, sibling=siblings(record, layer, district),
        layer_names=[STATE_ABBR.get(int(f), str(int(f))) for f in fips], n_groups=n_groups,
        n_profile=n_profile, autoencoder=ae)
