"""Dagster resources: where files live, which profile sizes the build, which device fits,
which target config selects the targets.

Each resource holds a value or a `dg.EnvVar`, which Dagster resolves when a run starts,
never at import (`assets.definitions.make_definitions` chooses which).
"""

import contextlib
from collections.abc import Callable
from pathlib import Path

from dagster import ConfigurableResource, DagsterInstance, DagsterRunStatus, InitResourceContext
from pydantic import PrivateAttr

from pipeline.config import Profile, load_profile, profile_path
from pipeline.core.errors import InputError
from pipeline.core.fit_table import TargetConfig
from pipeline.core.layout import Layout
from pipeline.core.lock import Acquired, StorageBusy, storage_lock
from pipeline.core.parallel import LOCAL, DaskRunner, Runner, make_runner
from pipeline.engine import ENGINES, load_engine
from pipeline.release.versions import current_release, repair_current
from resources.launch import check_launch
from resources.pools import mark_process, wait_for_pools

STORAGE_ENV = "CALIBRATION_STORAGE_ROOT"
DEFAULT_STORAGE_ROOT = "storage"  # relative to the working directory
BASELINE_ENV = "CALIBRATION_BASELINE"
DEVICE_ENV = "CALIBRATION_DEVICE"
BASELINES = ("current", "newest")
_UNFINISHED = (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
               DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING)


ENGINE_ENV = "CALIBRATION_ENGINE"


class ProfileResource(ConfigurableResource):
    """Which profile sizes the build: a shipped name (demo, ci, production) or a YAML path
    (`CALIBRATION_PROFILE`, default demo); `engine` (`CALIBRATION_ENGINE`, `make run
    ENGINE=`) overrides the profile's `engine:` when set.

    A run whose engine cannot run here (the policyengine extra missing, or another version
    of it) is refused when the run starts, before any stage."""

    name: str
    engine: str = ""

    def load(self) -> Profile:
        return profile_with_engine(self.name, self.engine)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        require_engine(self.name, self.engine)


class StorageResource(ConfigurableResource):
    """Root of every artifact (`CALIBRATION_STORAGE_ROOT`, default ./storage).

    A run holds the root's lock from its first step to its end, so two runs never write one
    root at once however they were launched. Taking it marks the Dagster run of a holder
    that died failed, removes what it left, frees the pool slots dead runs hold and waits
    (bounded) for the pools this run's steps use (`resources.pools`), and refuses a broken
    `CURRENT` before any stage runs, unless `baseline` is `newest` (`CALIBRATION_BASELINE`):
    then a missing or dangling `CURRENT` is pointed at the newest complete release first.
    The run's launchpad values are checked then too (`resources.launch`).

    A run refused here (root busy, CURRENT broken, a launchpad value no run could honour)
    holds nothing and does nothing: every step it starts ends at once with the refusal as
    its failure (`refusal`, raised by `assets.failures`), so the run's failure message is the
    reason in one line, not Dagster's "error executing resource_fn" around it. A full pool
    (`PoolBusy`) is raised here instead: a step in that pool would wait for its slot
    before it could end.
    """

    root: str
    baseline: str = "current"
    profile: ProfileResource  # the run's profile: launchpad values are checked against it
    _held: contextlib.ExitStack | None = PrivateAttr(default=None)
    _refusal: Exception | None = PrivateAttr(default=None)

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.root).resolve())

    def setup_for_execution(self, context: InitResourceContext) -> None:
        run = context.dagster_run
        command = f"dagster run of {run.job_name}" if run else "dagster"
        try:
            with contextlib.ExitStack() as stack:
                lock = stack.enter_context(storage_lock(self.layout.root, command,
                                                        context.run_id))
                took_over(lock, context.instance, context.log.warning)
                if context.instance is not None and run is not None:
                    mark_process(context.instance, run.run_id)
                    wait_for_pools(context.instance, run, context.log.info,
                                   context.log.warning)
                prepare_baseline(self.layout.root, self.baseline, context.log.warning)
                if run is not None:
                    check_launch(run.run_config, self.profile.load(), self.layout,
                                 run.step_keys_to_execute)
                self._held = stack.pop_all()
        except (InputError, StorageBusy) as exc:  # the lock, if taken, is released
            self._refusal = exc
            context.log.error(f"refused before any step: {type(exc).__name__}: {exc}")

    @property
    def refusal(self) -> Exception | None:
        """Why this run was refused when it started (None: it was not)."""
        return self._refusal

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None
        self._refusal = None


def took_over(lock: Acquired, instance: DagsterInstance | None,
              warn: Callable[[str], object]) -> None:
    """Report what taking the lock found; mark a dead holder's unfinished Dagster run failed
    (no launcher can tell a `kill -9`ed run worker from a slow one; the lock can)."""
    dead = lock.dead_holder
    if dead is not None:
        warn(f"the previous run ({dead.describe()}) died holding {lock.path}")
        run = instance.get_run_by_id(dead.run_id) if instance and dead.run_id else None
        if run is not None and run.status in _UNFINISHED:
            instance.report_run_failed(run, f"its process ({dead.describe()}) died without "
                                            "finishing; marked failed by the next run")
    if lock.swept:
        warn(f"removed {len(lock.swept)} temporary files of dead runs: "
             + ", ".join(str(p) for p in lock.swept[:10]))


def prepare_baseline(root: Path, baseline: str, warn: Callable[[str], object]) -> None:
    """Refuse a broken CURRENT up front, or repair it when the newest release was chosen."""
    if baseline not in BASELINES:
        raise InputError(None, BASELINE_ENV, f"unknown baseline {baseline!r}",
                         f"use one of {BASELINES}")
    if baseline == "newest":
        repaired = repair_current(root)
        if repaired is not None:
            warn(f"CURRENT was missing or dangling; it now names the newest release "
                 f"{repaired.version} ({BASELINE_ENV}=newest)")
    current_release(root)


def profile_with_engine(name: str, engine: str = "") -> Profile:
    """The profile, its `engine:` replaced by `engine` when one is given (and checked).

    A copy, not a re-parse: the fits' record of which values came from their preset
    (`FitParams.to_dict()["preset_source"]`) survives."""
    profile = load_profile(name)
    if not engine or engine == profile.engine:
        return profile
    if engine not in ENGINES:
        raise InputError(f"{ENGINE_ENV} (profile {name})", "engine",
                         f"unknown engine {engine!r}", f"use one of {', '.join(ENGINES)}")
    return profile.model_copy(update={"engine": engine})


def require_engine(name: str, engine: str = "") -> Profile:
    """The profile, refused (naming the profile's key and the install command) when its
    engine cannot run here."""
    profile = profile_with_engine(name, engine)
    try:
        load_engine(profile.engine).require()
    except InputError as exc:
        source = (f"{ENGINE_ENV}={engine}" if engine
                  else f"{profile_path(name)} (profile key engine: {profile.engine})")
        raise InputError(source, "engine", exc.problem, exc.fix) from None
    return profile


class ComputeResource(ConfigurableResource):
    """Where the work runs: the fits' device, and the Dask cluster for per-file work.

    `device` (`CALIBRATION_DEVICE`): auto takes CUDA when present, else the CPU; cuda
    forces the GPU, and a run asking for one where there is none is refused before its
    first step, saying what was found. The fits record the device they ran on (name and
    model) in their metadata; `pool="gpu"` on them keeps two runs off one GPU.
    `dask` (`CALIBRATION_DASK`): `local` starts a LocalCluster of `workers` processes (0 =
    one per core) the first time a step needs it and closes it when the run ends;
    `inprocess` runs everything here; `tcp://host:8786` uses an existing cluster.
    """

    device: str
    dask: str = LOCAL
    workers: int = 0
    _runner: Runner | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        from pipeline.fit.device import resolve_device

        resolve_device(self.device, f"compute.device ({DEVICE_ENV})")

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
    pipeline/config. A target config of the fit table names its field (`source_field`)."""

    path: str
    national_path: str

    def source(self, config: TargetConfig) -> str:
        return getattr(self, config.source_field)
