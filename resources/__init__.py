"""Dagster resources: where files live, which device fits, which engine simulates, which targets."""

import os
from pathlib import Path

from dagster import ConfigurableResource

from pipeline.core.layout import Layout
from pipeline.core.profiles import Profile, load_profile

REPO_ROOT = Path(__file__).resolve().parents[1]
from pipeline.core.packaged import DEFAULT_TARGET_CONFIG  # noqa: E402


class StorageResource(ConfigurableResource):
    """Root of every artifact; `CALIBRATION_STORAGE_ROOT` overrides the default ./storage."""

    root: str = os.environ.get("CALIBRATION_STORAGE_ROOT", str(REPO_ROOT / "storage"))

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.root))


class ComputeResource(ConfigurableResource):
    """Device for the fit: `auto` takes CUDA when present, else the CPU."""

    device: str = os.environ.get("CALIBRATION_DEVICE", "auto")


class EngineResource(ConfigurableResource):
    """Simulation engine: Tax-Calculator for federal tax plus the documented SNAP rules."""

    backend: str = "taxcalc"

    def describe(self) -> dict[str, str]:
        if self.backend != "taxcalc":
            raise ValueError(f"engine backend {self.backend!r} is not available; use 'taxcalc'")
        import taxcalc

        return {"engine": self.backend, "taxcalc_version": taxcalc.__version__}


class TargetDatabaseResource(ConfigurableResource):
    """The include/exclude YAML that decides which targets reach the optimizer."""

    target_config: str = os.environ.get("CALIBRATION_TARGET_CONFIG", str(DEFAULT_TARGET_CONFIG))


class ProfileResource(ConfigurableResource):
    """Which profile (profiles/<name>.yaml, or a YAML path) sizes the build."""

    name: str = os.environ.get("CALIBRATION_PROFILE", "demo")

    def load(self) -> Profile:
        return load_profile(self.name)
