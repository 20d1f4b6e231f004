"""`pipeline/` is usable without Dagster: importing every module of it loads no dagster."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import importlib, pkgutil, sys
import pipeline
names = [m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.")]
for name in names:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m == "dagster" or m.startswith("dagster."))
print(len(names), leaked[:5])
sys.exit(1 if leaked else 0)
"""


def test_no_pipeline_module_imports_dagster():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert int(done.stdout.split()[0]) > 40  # every stage module was imported


@pytest.mark.slow
def test_an_installed_wheel_finds_its_profiles_config_and_snapshots(tmp_path):
    """Package data travels in the wheel: `calibrate` works from any directory."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path / "wheel"), str(root)], check=True, capture_output=True)
    [wheel] = (tmp_path / "wheel").glob("*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(tmp_path / "site"), str(wheel)], check=True, capture_output=True)
    probe = ("from pipeline.config import load_profile; from pipeline.core.geo import "
             "load_districts; from pipeline.core.packaged import DEFAULT_TARGET_CONFIG; "
             "import pipeline; print(pipeline.__file__, load_profile('ci').package.n_clones, "
             "len(load_districts()), DEFAULT_TARGET_CONFIG.is_file())")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, capture_output=True,
                          text=True, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": ""})
    assert done.returncode == 0, done.stderr
    path, clones, districts, config = done.stdout.split()
    assert path.startswith(str(tmp_path / "site"))
    assert (clones, districts, config) == ("2", "436", "True")
