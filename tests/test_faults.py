"""The fault suite: kills, concurrent runs, a full disk, a broken CURRENT, a mixed lineage.

Each test breaks a copy of the built ci world (`world`) the way a user or the machine would,
then checks the invariants: CURRENT and every earlier release still match their manifests,
nothing wrong was promoted, and the next run leaves no temporary file behind. Kills use the
failpoint (`CALIBRATION_KILL_BEFORE_RENAME`): the process SIGKILLs itself at the named
rename, the state a `kill -9` at that instant leaves, without racing a timer. The next run
after a kill runs in this process, where the engine is already warm.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import World
from dagster import AssetKey, DagsterRunStatus
from factories import lock_holder

from assets.run import main as make_run
from pipeline.config import load_profile
from pipeline.core.atomic import TMP_PREFIX
from pipeline.core.failpoint import KILL_ENV
from pipeline.core.fit_table import FITS
from pipeline.core.hashing import sha256_file
from pipeline.core.layout import Layout
from pipeline.release.gates import GATES
from pipeline.release.judges import GateContext
from pipeline.release.verdicts import run_gate
from pipeline.release.versions import current_release, list_releases, promoted_versions

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
BIN = Path(sys.executable).parent


def _env(world: World, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALIBRATION_")}
    return {**env, "CALIBRATION_STORAGE_ROOT": str(world.root), "CALIBRATION_PROFILE": "ci",
            "CALIBRATION_TARGET_CONFIG": str(world.config), "CALIBRATION_DEVICE": "cpu",
            "DAGSTER_HOME": world.instance.root_directory, **extra}


def _run(world: World, args: list[str], kill: str | None = None):
    extra = {KILL_ENV: kill} if kill else {}
    return subprocess.run(args, env=_env(world, **extra), capture_output=True, text=True,
                          timeout=300)


def _materialize(world: World, selection: str, kill: str | None = None):
    return _run(world, [str(BIN / "dagster"), "asset", "materialize", "-m", "assets.definitions",
                        "--select", selection], kill)


def _calibrate_fit(world: World, *extra: str, kill: str | None = None):
    root = world.root
    return _run(world, [str(BIN / "calibrate"), "fit", "--package",
                        str(root / "calibration_package"), "--target-config", str(world.config),
                        "--out", str(root / "calibration_weights"), "--profile", "ci",
                        "--device", "cpu", *extra], kill)


def _temps(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(f"{TMP_PREFIX}*"))


def _kinds(temps: list[Path]) -> list[str]:
    """`.tmp-<name>` of each temporary name, without the writer's pid and random part."""
    return [p.name.rsplit(".", 1)[0] for p in temps]


def _releases_intact(root: Path, current: str, versions: list[str]) -> None:
    """CURRENT names `current`; every earlier release is there, byte for byte."""
    assert current_release(root).version == current
    have = {r.version: r for r in list_releases(root)}
    for version in versions:
        release = have[version]
        for rel, entry in release.manifest["files"].items():
            assert sha256_file(release.path / rel) == entry["sha256"], f"{version}/{rel}"


def _snapshot(world: World) -> tuple[str, list[str]]:
    return current_release(world.root).version, [r.version for r in list_releases(world.root)]


def _promoted(result) -> bool:
    return any(e.asset_key.path[-1] == "promoted_release"
               for e in result.get_asset_materialization_events())


def _status(world: World, run_id: str) -> DagsterRunStatus:
    return world.instance.get_run_by_id(run_id).status


def _run_id_of_dead_holder(world: World) -> str:
    holder = lock_holder(world.root)
    assert holder is not None and holder.alive() is False  # the killed run's record
    return holder.run_id


# --- kill -9 -------------------------------------------------------------------------------

def test_kill_during_the_cli_fit_then_resume_leaves_nothing_behind(world):
    current, versions = _snapshot(world)
    killed = _calibrate_fit(world, kill="calibration_log.csv")
    assert killed.returncode == -signal.SIGKILL
    fit_dir = world.root / "calibration_weights"
    assert _kinds(_temps(world.root)) == [".tmp-calibration_log.csv"]
    assert not (fit_dir / "run_config.json").exists()  # a dead fit never looks complete
    _releases_intact(world.root, current, versions)

    resumed = _calibrate_fit(world, "--resume-from", str(fit_dir / "checkpoint.pt"))
    assert resumed.returncode == 0, resumed.stderr
    assert "removed 1 temporary files of dead runs" in resumed.stderr
    assert _temps(world.root) == [] and (fit_dir / "run_config.json").is_file()
    assert not world.materialize("promoted_release").success  # never next to the old files
    _releases_intact(world.root, current, versions)


def test_kill_during_the_dagster_fit_is_marked_failed_and_cleaned_by_the_next_run(world):
    current, versions = _snapshot(world)
    killed = _run(world, [sys.executable, "-m", "assets.run", "--profile", "ci", "--job",
                          "refit"], kill="checkpoint.pt")  # the first checkpoint, mid-L0
    assert killed.returncode == -signal.SIGKILL
    assert _kinds(_temps(world.root)) == [".tmp-checkpoint.pt"]
    dead_run = _run_id_of_dead_holder(world)
    assert _status(world, dead_run) == DagsterRunStatus.STARTED  # what a kill leaves
    _releases_intact(world.root, current, versions)

    result = world.run("refit")
    assert result.success and _promoted(result)
    assert _status(world, dead_run) == DagsterRunStatus.FAILURE
    assert _temps(world.root) == []
    _releases_intact(world.root, current_release(world.root).version, versions)


def test_kill_during_stacking_is_cleaned_by_the_next_run(world):
    current, versions = _snapshot(world)
    before = sha256_file(world.root / "stacked_h5s" / "manifest.json")
    killed = _materialize(world, "stacked_h5s", kill="stacked_h5s")
    assert killed.returncode == -signal.SIGKILL
    [leftover] = _temps(world.root)
    assert leftover.parent == world.root and leftover.name.startswith(".tmp-stacked_h5s.")
    assert (leftover / "national.h5").is_file()  # it was killed with the files written
    assert sha256_file(world.root / "stacked_h5s" / "manifest.json") == before
    dead_run = _run_id_of_dead_holder(world)

    again = world.materialize("stacked_h5s")
    assert again.success and _temps(world.root) == []
    assert _status(world, dead_run) == DagsterRunStatus.FAILURE
    _releases_intact(world.root, current, versions)


@pytest.mark.parametrize("kill, left", [
    ("????????T??????Z-????????", "a complete release directory under its temporary name"),
    ("CURRENT", "a complete release that CURRENT never moved to"),
])
def test_kill_during_promotion_keeps_every_release_and_marks_the_unpromoted(world, kill, left,
                                                                           capsys):
    current, versions = _snapshot(world)
    # Gate 1 judged the fit against the release before; judge it against CURRENT again, as
    # a refit would, so that only promotion remains.
    reviews = {fit.review for fit in FITS}
    for gate in (g for g in GATES if g.name in reviews):
        run_gate(gate, GateContext(Layout(world.root), load_profile("ci").gates))
    killed = _materialize(world, "validation_results,promoted_release", kill=kill)
    assert killed.returncode == -signal.SIGKILL, left
    _releases_intact(world.root, current, versions)
    after = [r.version for r in list_releases(world.root)]
    [leftover] = _temps(world.root)
    assert leftover.parent.name == "releases"
    if kill == "CURRENT":
        [orphan] = sorted(set(after) - set(versions))
        assert orphan not in promoted_versions(world.root)
        assert _kinds([leftover]) == [".tmp-CURRENT"] and leftover.is_symlink()
    else:
        assert after == versions and leftover.name.startswith(".tmp-20")

    result = world.materialize("validation_results", "promoted_release")
    assert result.success and _temps(world.root) == []
    new = current_release(world.root).version
    assert new not in versions
    _releases_intact(world.root, new, versions)
    from pipeline.cli import main as calibrate

    assert calibrate(["releases", "--storage", str(world.root)]) == 0
    listing = capsys.readouterr().out
    assert f"* {new}" in listing
    assert listing.count("UNPROMOTED") == (1 if kill == "CURRENT" else 0)


# --- one run at a time ----------------------------------------------------------------------

def test_a_second_run_is_refused_and_a_killed_first_run_blocks_nothing(world):
    current, versions = _snapshot(world)
    command = [sys.executable, "-m", "assets.run", "--profile", "ci", "--job", "refit"]
    first = subprocess.Popen(command, env=_env(world), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while (holder := lock_holder(world.root)) is None or holder.pid != first.pid:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.2)
        second = _run(world, command)
        assert second.returncode == 4
        assert f"in use by pid {first.pid}" in second.stderr
        assert "wait for that run" in second.stderr
        assert first.poll() is None  # the first run was never disturbed
    finally:
        first.send_signal(signal.SIGKILL)  # an unplanned kill, wherever the run was
        first.wait()
    _releases_intact(world.root, current, versions)
    result = world.run("refit")
    assert result.success and _promoted(result) and _temps(world.root) == []


def test_a_dagster_run_meets_the_lock_another_process_holds(world):
    """Runs that bypass the queue (UI launches in another instance, `dagster asset
    materialize`) take the lock in their storage resource, before any step."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from pipeline.core.lock import storage_lock\n"
                               "with storage_lock(sys.argv[1], 'another run'):\n"
                               "    print('holding', flush=True); time.sleep(120)",
                               str(world.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        result = world.run("refit")
        assert not result.success and not result.get_asset_materialization_events()
        failure = next(e for e in result.all_events if e.is_run_failure)
        assert f"in use by pid {holder.pid}" in str(failure.event_specific_data.error)
    finally:
        holder.kill()
        holder.wait()


# --- disk full ------------------------------------------------------------------------------

@pytest.fixture
def full_disk(world, tmp_path):
    """The world's storage (without the raw source) on a small tmpfs; `fill(free)` leaves
    `free` bytes. Skipped where this platform cannot mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        shutil.copytree(world.root, mount / "storage", symlinks=True,
                        ignore=lambda d, names: ["source_cps"] if Path(d) == world.root else [])
        shutil.copy(world.config, mount / "targets.yaml")
        small = World(mount, world.instance)

        def fill(free: int) -> None:
            with open(mount / "filler", "wb") as f:
                stat = os.statvfs(mount)
                os.posix_fallocate(f.fileno(), 0, stat.f_bavail * stat.f_frsize - free)

        yield small, fill
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_refit_on_a_full_disk_fails_cleanly_and_the_next_one_succeeds(full_disk):
    world, fill = full_disk
    current, versions = _snapshot(world)
    fit = world.root / "calibration_weights"
    fit_bytes = sum(f.stat().st_size for f in fit.iterdir())
    fill(fit_bytes + 512 * 1024)  # the fit's outputs fit; the stacked files (MBs) do not
    refit = _run(world, [sys.executable, "-m", "assets.run", "--profile", "ci", "--job",
                         "refit"])
    assert refit.returncode == 1, refit.stderr[-3000:]  # was 139: a segfault at exit
    summary = refit.stderr[refit.stderr.rindex("promoted nothing"):]
    assert "stacked_h5s: StorageFull" in summary and "Fix: free space" in summary
    assert "Traceback" not in summary
    assert _temps(world.root) == []
    _releases_intact(world.root, current, versions)

    fill(0)
    cli = _calibrate_fit(world)
    # Progress lines come first; the error is the last thing the user reads.
    last = cli.stderr.strip().splitlines()[-1]
    assert cli.returncode == 5 and last.startswith("error: [Errno 28] no space left"), last
    assert _temps(world.root) == []

    (world.dir / "filler").unlink()
    result = world.run("refit")
    assert result.success and _promoted(result) and _temps(world.root) == []
    _releases_intact(world.root, current_release(world.root).version, versions)


# --- a broken CURRENT -----------------------------------------------------------------------

@pytest.mark.parametrize("breakage", ["missing", "dangling"])
def test_a_broken_current_refuses_every_run_before_any_stage(world, breakage, capsys,
                                                             monkeypatch):
    link = world.root / "releases" / "CURRENT"
    link.unlink()
    if breakage == "dangling":
        link.symlink_to("20990101T000000Z-deadbeef")
    fits = len(world.instance.fetch_materializations(AssetKey("calibration_weights"),
                                                     limit=100).records)
    result = world.run("refit")
    assert not result.success
    assert len(world.instance.fetch_materializations(AssetKey("calibration_weights"),
                                                     limit=100).records) == fits
    by_hand = world.materialize("promoted_release")
    assert not by_hand.success and len(list_releases(world.root)) == 1

    for name, value in _env(world).items():
        monkeypatch.setenv(name, value)
    assert make_run(["--profile", "ci", "--job", "refit"]) == 1
    summary = capsys.readouterr().err.rsplit("promoted nothing.", 1)[1]
    assert "CURRENT" in summary and "calibrate rollback VERSION" in summary
    assert "make run BASELINE=newest" in summary and "Traceback" not in summary
    assert summary.strip().endswith("no release is current")


def test_the_newest_release_as_baseline_by_explicit_choice(world, monkeypatch):
    [only] = [r.version for r in list_releases(world.root)]
    (world.root / "releases" / "CURRENT").unlink()
    monkeypatch.setenv("CALIBRATION_BASELINE", "newest")
    result = world.run("refit")
    assert result.success and _promoted(result)
    quality = json.loads((world.root / "gates" / "simulation_quality.json").read_text())
    assert quality["summary"].startswith("judged against the CURRENT release")
    assert quality["inputs"]["current_release"] == only  # judged against the newest
    history = json.loads((world.root / "releases" / "history.json").read_text())
    assert [h["action"] for h in history][-2:] == ["repair", "promote"]


# --- inputs that must be refused --------------------------------------------------------------

def test_a_refit_after_the_checks_is_never_promoted_next_to_the_old_files(world):
    """The issue's reproduction: refit alone, then promote alone. (The refit polishes
    longer rather than changing the seed: another seed's loss may exceed CURRENT's by more
    than gate 1 allows, and this refit must pass gate 1.)"""
    current, versions = _snapshot(world)
    refit = world.materialize("calibration_weights", run_config={"ops": {
        "calibration_weights": {"config": {"polish_epochs": 800}}}})
    assert refit.success
    promote = world.materialize("promoted_release")
    assert not promote.success
    failure = next(e for e in promote.all_events if e.is_step_failure)
    error = str(failure.step_failure_data.error)
    assert "stacked_h5s was not built from the current calibration_weights" in error
    assert "xw_consistency: judged other calibration_weights" in error
    _releases_intact(world.root, current, versions)
    assert [r.version for r in list_releases(world.root)] == versions


def test_a_truncated_package_file_stops_a_refit_before_the_fit(world):
    base = world.root / "calibration_package" / "base.h5"
    data = base.read_bytes()
    base.write_bytes(data[: len(data) // 2])
    fits = len(world.instance.fetch_materializations(AssetKey("calibration_weights"),
                                                     limit=100).records)
    result = world.run("refit")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "calibration_package_package_validity"
    assert "base.h5" in str(failure.step_failure_data.error)
    assert len(world.instance.fetch_materializations(AssetKey("calibration_weights"),
                                                     limit=100).records) == fits


def test_a_profile_typo_ends_make_run_with_the_key_not_a_traceback(tmp_path, capsys):
    profile = tmp_path / "typo.yaml"
    profile.write_text("gate: {fit: {loss_tolerance: 0.2}}\n")
    assert make_run(["--profile", str(profile)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: file {profile}, field 'gate'") and "did you mean 'gates'" in err
