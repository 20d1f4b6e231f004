"""One fault-injection point, so the fault suite can kill a writer at an exact moment.

With `CALIBRATION_KILL_BEFORE_RENAME=<pattern>` set, the process SIGKILLs itself just before
a temporary file or directory whose final name matches the glob `<pattern>` would be renamed
into place (`checkpoint.pt` mid-fit, `stacked_h5s` mid-stacking, `20*` a release
mid-promotion, `CURRENT` between the release and the pointer swap): the state a `kill -9`
at that instant leaves, without racing a timer. Unset, it does nothing.
"""

from __future__ import annotations

import fnmatch
import os
import signal
from pathlib import Path

KILL_ENV = "CALIBRATION_KILL_BEFORE_RENAME"


def before_rename(target: Path) -> None:
    wanted = os.environ.get(KILL_ENV)
    if wanted and fnmatch.fnmatchcase(target.name, wanted):
        os.kill(os.getpid(), signal.SIGKILL)
