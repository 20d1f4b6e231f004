"""`pipeline/` is usable without Dagster: importing every module of it loads no dagster."""

import subprocess
import sys

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
