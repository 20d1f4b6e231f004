"""Shared fixtures: a thread pin for tiny fits, and the ci profile built once per session."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from pipeline.core.packaged import DEFAULT_TARGET_CONFIG

# Telemetry would write logs/ into $DAGSTER_HOME, which `make test` sets to the repository.
NO_TELEMETRY = {"telemetry": {"enabled": False}}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_torch_thread():
    """Tiny fits: thread barriers cost more than the work on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class World:
    """A storage root, a Dagster instance and a user-editable target config, together."""

    dir: Path
    instance: "DagsterInstance"  # noqa: F821 (imported where used)
    dask: str = "inprocess"
    workers: int = 0
    engine: str = "builtin"

    @property
    def root(self) -> Path:
        return self.dir / "storage"

    @property
    def config(self) -> Path:
        return self.dir / "targets.yaml"

    @property
    def defs(self):
        from assets.definitions import make_definitions

        return make_definitions(profile="ci", storage_root=str(self.root),
                                target_config_path=str(self.config), device="cpu",
                                dask=self.dask, workers=self.workers, engine=self.engine)

    def run(self, job: str, **kwargs):
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, raise_on_error=False, **kwargs)

    def materialize(self, *names: str, **kwargs):
        from dagster import AssetKey

        job = self.defs.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(instance=self.instance, raise_on_error=False,
                                      asset_selection=[AssetKey(n) for n in names], **kwargs)


@pytest.fixture(scope="session")
def built_world(tmp_path_factory):
    """The ci profile's full rebuild, run once; tests that change it work on a copy."""
    from dagster import DagsterInstance  # here: the fit's tests run where dagster is not

    directory = tmp_path_factory.mktemp("ci_world")
    shutil.copy(DEFAULT_TARGET_CONFIG, directory / "targets.yaml")
    (directory / "dagster_home").mkdir()
    # The committed instance settings (pool limit 1, one queued run at a time), so the
    # tests meet what `make run` and the UI meet; storage stays inside dagster_home.
    shutil.copy(REPO / "dagster.yaml", directory / "dagster_home" / "dagster.yaml")
    instance = DagsterInstance.local_temp(tempdir=str(directory / "dagster_home"),
                                          overrides=NO_TELEMETRY)
    world = World(directory, instance)
    world.result = world.run("full_rebuild")
    yield world
    instance.dispose()


@contextmanager
def private_copy(source: World, directory: Path) -> Iterator[World]:
    """A copy of `source` (files and run history) under `directory`, with its own instance:
    what a test does to it never reaches the world other tests share."""
    from dagster import DagsterInstance

    copy = directory / "world"
    shutil.copytree(source.dir, copy, symlinks=True)
    instance = DagsterInstance.local_temp(tempdir=str(copy / "dagster_home"),
                                          overrides=NO_TELEMETRY)
    try:
        yield replace(source, dir=copy, instance=instance)
    finally:
        instance.dispose()


@pytest.fixture
def world(built_world, tmp_path):
    """A private copy of the built world (files and run history)."""
    with private_copy(built_world, tmp_path) as copy:
        yield copy
