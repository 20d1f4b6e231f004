"""Where each stage keeps its files under the storage root: one place, used by CLI and assets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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

    @property
    def target_config(self) -> Path:
        return self.root / "target_config" / "targets.yaml"

    @property
    def package_dir(self) -> Path:
        return self.root / "calibration_package"

    @property
    def fit_dir(self) -> Path:
        return self.root / "calibration_weights"

    @property
    def stacked_dir(self) -> Path:
        return self.root / "stacked_h5s"

    @property
    def validation_csv(self) -> Path:
        return self.root / "validation_results" / "validation_results.csv"

    @property
    def validation_cache(self) -> Path:
        return self.root / "validation_results" / "cache"

    @property
    def gates_dir(self) -> Path:
        return self.root / "gates"
