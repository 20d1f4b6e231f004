"""Dagster resources: where files live, which profile sizes the build, which device fits,
which target config selects the targets.

Each resource holds a value or a `dg.EnvVar`, which Dagster resolves when a run starts,
never at import (`assets.definitions.make_definitions` chooses which).
"""

from pathlib import Path

from dagster import ConfigurableResource

from pipeline.config import Profile, load_profile
from pipeline.core.layout import Layout

STORAGE_ENV = "CALIBRATION_STORAGE_ROOT"
DEFAULT_STORAGE_ROOT = "storage"  # relative to the working directory


class StorageResource(ConfigurableResource):
    """Root of every artifact (`CALIBRATION_STORAGE_ROOT`, default ./storage)."""

    root: str

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.root).resolve())


class ProfileResource(ConfigurableResource):
    """Which profile sizes the build: a shipped name (demo, ci, production) or a YAML path
    (`CALIBRATION_PROFILE`, default demo)."""

    name: str

    def load(self) -> Profile:
        return load_profile(self.name)


class ComputeResource(ConfigurableResource):
    """Device for the fits (`CALIBRATION_DEVICE`): auto takes CUDA when present, else CPU."""

    device: str


class TargetConfigResource(ConfigurableResource):
    """The include/exclude YAML a user edits to choose which targets reach the optimizer
    (`CALIBRATION_TARGET_CONFIG`, default the one shipped in pipeline/config)."""

    path: str
