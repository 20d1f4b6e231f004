"""The gates' thresholds: the profile's `gates` section, one model over every gate."""

from __future__ import annotations

from pydantic import Field

from pipeline.core.settings import Settings
from pipeline.fit.review import FitThresholds
from pipeline.validate.quality import QualityThresholds
from pipeline.validate.totals import DistrictSample


class GateSettings(Settings):
    consistency_tolerance: float = Field(1e-6, gt=0, description="X·w against the totals "
                                         "computed from the published files (float32 "
                                         "weights and values: measured deviations <= 4e-8)")
    hierarchy_tolerance: float = Field(0.05, gt=0, description="warning when a parent target "
                                       "and the sum of its children differ by more")
    district_sample: DistrictSample | None = Field(
        None, description="the district files the checks and validation walk: all (null), or "
        "the largest and a seeded draw of the rest (its size, largest, seed)")
    fit: FitThresholds = FitThresholds()
    quality: QualityThresholds = QualityThresholds()
