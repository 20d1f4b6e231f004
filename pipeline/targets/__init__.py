"""Target statistics: the SQLite target DB (db), its builder (etl) with uprating to the
calibration year (uprating), the level-consistency report (hierarchy), and the fit-time
include/exclude selection (config) with its reconciliation rules (reconcile).

`build_target_db` stays in `pipeline.targets.etl`: importing it loads Tax-Calculator (2-3 s),
which the fit and the stages after it do not need."""

from pipeline.targets.db import check_target_db, load_targets
from pipeline.targets.target_config import (
    TargetConfig,
    TargetRule,
    load_target_config,
    select_targets,
)

__all__ = [
    "TargetConfig",
    "TargetRule",
    "check_target_db",
    "load_target_config",
    "load_targets",
    "select_targets",
]
