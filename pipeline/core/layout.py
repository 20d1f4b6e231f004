"""Where everything lives under the storage root, and the name of every file a stage writes.

This is the one place file names are spelled; stages, checks, promotion and the CLI read
them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.fit_table import Fit, TargetConfig

# A fit's directory (calibration_weights, national_weights, or `calibrate fit --out`).
WEIGHTS = "weights.npy"
DIAGNOSTICS = "diagnostics.csv"
CALIBRATION_LOG = "calibration_log.csv"
RUN_CONFIG = "run_config.json"  # written last: its presence means the fit is complete
CHECKPOINT = "checkpoint.pt"
FRONTIER = "frontier.csv"  # records kept vs errors of every fit of this package and config
# The learned sparsity allocation (sparsity_allocation): masks, budgets, then its metadata.
ALLOCATION_ARRAYS = "allocation.npz"
ALLOCATION_BUDGETS = "budgets.csv"
ALLOCATION_META = "allocation.json"  # written last
# Stacked files and releases.
MANIFEST = "manifest.json"  # written last in a stacked directory and in a release
VALIDATION_CSV = "validation_results.csv"
LINEAGE = "lineage.json"  # which artifacts validation judged


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def source_h5(self) -> Path:
        return self.root / "source_cps" / "source.h5"

    @property
    def base_h5(self) -> Path:
        return self.root / "stratified_cps" / "base.h5"

    @property
    def target_db(self) -> Path:
        return self.root / "target_db" / "targets.db"

    def target_config(self, config: TargetConfig) -> Path:
        """The installed copy of a target config (its asset), the one fits read."""
        return self.root / config.asset / config.file

    @property
    def package_dir(self) -> Path:
        return self.root / "calibration_package"

    def fit_dir(self, fit: Fit) -> Path:
        return self.root / fit.weights

    def weights(self, fit: Fit) -> Path:
        return self.fit_dir(fit) / WEIGHTS

    def run_config(self, fit: Fit) -> Path:
        return self.fit_dir(fit) / RUN_CONFIG

    @property
    def allocation_dir(self) -> Path:
        return self.root / "sparsity_allocation"

    @property
    def allocation_arrays(self) -> Path:
        return self.allocation_dir / ALLOCATION_ARRAYS

    @property
    def stacked_dir(self) -> Path:
        return self.root / "stacked_h5s"

    @property
    def stacked_manifest(self) -> Path:
        return self.stacked_dir / MANIFEST

    @property
    def validation_dir(self) -> Path:
        return self.root / "validation_results"

    @property
    def validation_csv(self) -> Path:
        return self.validation_dir / VALIDATION_CSV

    @property
    def validation_lineage(self) -> Path:
        return self.validation_dir / LINEAGE

    @property
    def validation_cache(self) -> Path:
        return self.validation_dir / "cache"

    @property
    def engine_cache(self) -> Path:
        """Per-state engine values (pipeline.engine.state_cache): kept across builds."""
        return self.root / "engine_cache"

    @property
    def gates_dir(self) -> Path:
        return self.root / "gates"

    @property
    def releases_dir(self) -> Path:
        return self.root / "releases"
