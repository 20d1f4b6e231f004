"""Target statistics: the SQLite target DB (db), its builder (etl) with uprating to the
calibration year (uprating), the level-consistency report (hierarchy), and the fit-time
include/exclude selection (config) with its reconciliation rules (reconcile)."""

from pipeline.targets.config import TargetConfig, TargetRule, load_target_config, select_targets
from pipeline.targets.db import check_target_db, load_targets
from pipeline.targets.etl import build_target_db

__all__ = [
    "TargetConfig",
    "TargetRule",
    "build_target_db",
    "check_target_db",
    "load_target_config",
    "load_targets",
    "select_targets",
]
