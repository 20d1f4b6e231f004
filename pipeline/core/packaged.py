"""Files shipped inside the `pipeline` package: profiles, the default target config, snapshots.

Read through importlib.resources, so an installed wheel finds them from any working
directory, not only a source checkout. The package is installed as plain files (never
zipped), so each resource is a real path that pandas, sqlite and h5py can open.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def packaged(*parts: str) -> Path:
    """The path of a file or folder shipped in the package, e.g. `packaged("config")`."""
    return Path(str(files("pipeline").joinpath(*parts)))


PROFILE_DIR = packaged("config", "profiles")
DEFAULT_TARGET_CONFIG = packaged("config", "targets.yaml")
DEFAULT_NATIONAL_TARGET_CONFIG = packaged("config", "targets_national.yaml")
SNAPSHOT_DIR = packaged("data", "targets")
TAKEUP_RATES = packaged("data", "takeup_rates.csv")
POPULATION_GROWTH = packaged("data", "population_growth.csv")
