"""Every asset in one Dagster group, its stage as a tag.

Dagster's asset graph draws each group as a collapsed box until it is opened, so seven
stage groups made a twelve-asset graph open as seven boxes. One group draws every asset;
the stage stays visible and filterable as the `stage` tag (`tag:stage=fit` in the
catalog's search).
"""

from typing import Any

GROUP = "calibration"


def stage(name: str) -> dict[str, Any]:
    """`@asset(**stage("fit"), ...)`: the group and the stage tag."""
    return {"group_name": GROUP, "tags": {"stage": name}}
