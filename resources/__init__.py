"""Dagster resources: where files live, which profile sizes the build, which device fits,
which target config selects the targets.

Each resource holds a value or a `dg.EnvVar`, which Dagster resolves when a run starts,
never at import (`assets.definitions.make_definitions` chooses which).
"""

from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from pipeline.config import Profile, load_profile
from pipeline.core.layout import Layout
from pipeline.core.parallel import LOCAL, DaskRunner, Runner, make_runner

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
    """Where the work runs: the fits' device, and the Dask cluster for per-file work.

    `device` (`CALIBRATION_DEVICE`): auto takes CUDA when present, else the CPU.
    `dask` (`CALIBRATION_DASK`): `local` starts a LocalCluster of `workers` processes (0 =
    one per core) the first time a step needs it and closes it when the run ends;
    `inprocess` runs everything here; `tcp://host:8786` uses an existing cluster.
    """

    device: str
    dask: str = LOCAL
    workers: int = 0
    _runner: Runner | None = PrivateAttr(default=None)

    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = make_runner(self.dask, self.workers)
        return self._runner

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if isinstance(self._runner, DaskRunner):
            self._runner.close()
        self._runner = None


class TargetConfigResource(ConfigurableResource):
    """The include/exclude YAMLs a user edits to choose which targets reach each fit:
    `path` the local-area fit's (`CALIBRATION_TARGET_CONFIG`), `national_path` the national
    fit's (`CALIBRATION_NATIONAL_TARGET_CONFIG`); defaults: the ones shipped in
    pipeline/config."""

    path: str
    national_path: str
