"""Publish stage: stacked H5 files per state and district and national.h5, each from the
fit the fit table says publishes them (its checks come from the gate table)."""

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from assets.failures import explains
from assets.metadata import data_version, markdown_table, readable
from assets.stages import stage
from pipeline.core.fit_table import AREA_FILES, NATIONAL_FILE, Fit, published, publisher
from pipeline.core.hashing import sha256_file
from pipeline.core.layout import Layout
from pipeline.core.lineage import parent_hashes
from pipeline.core.progress import report_to
from pipeline.package.store import load_package
from pipeline.publish.stacking import StackResult, stack_h5s
from resources import ComputeResource, StorageResource


def stacked_asset(fits: tuple[Fit, ...]) -> AssetsDefinition:
    areas, national = publisher(AREA_FILES, fits), publisher(NATIONAL_FILE, fits)

    @asset(name="stacked_h5s", **stage("publish"), code_version="4",
           deps=[*(f.weights for f in published(fits)), "calibration_package"],
           description=f"One H5 per state and per district (the {areas.label}) and "
                       f"{NATIONAL_FILE} (the {national.label}); weight > 0 records; in "
                       "policyengine-us's vocabulary (docs/policyengine.md).")
    @explains
    def _stacked(context: AssetExecutionContext, storage: StorageResource,
                 compute: ComputeResource) -> MaterializeResult:
        layout = storage.layout
        with report_to(context.log.info):
            result = stack_h5s(load_package(layout.package_dir, matrix=False),
                               np.load(layout.weights(areas), allow_pickle=False),
                               layout.stacked_dir,
                               lineage=parent_hashes(layout, "stacked_h5s", fits),
                               runner=compute.runner(),
                               national_weights=np.load(layout.weights(national),
                                                        allow_pickle=False))
        return _metadata(result, layout)

    return _stacked


def _metadata(result: StackResult, layout: Layout) -> MaterializeResult:
    files = result.manifest["files"]
    per_state = pd.DataFrame(
        [(rel, f["households"], f["persons"], f["weight_total"])
         for rel, f in files.items() if rel.startswith("states/")],
        columns=["file", "households", "persons", "weighted households"],
    )
    return MaterializeResult(
        metadata=readable({
            "households": result.n_households,
            "persons": int(result.manifest["persons"]),
            "weighted_households": result.weight_total,
            "national_households": int(result.manifest["national"]["households"]),
            "national_weighted_households": float(result.manifest["national"]["weight_total"]),
            "state_files": len(per_state),
            "district_files": sum(rel.startswith("districts/") for rel in files),
            "empty_districts": MetadataValue.json(result.empty_districts),
            "empty_states": MetadataValue.json(result.empty_states),
            "bytes": sum((layout.stacked_dir / rel).stat().st_size for rel in files),
            "states": MetadataValue.md(markdown_table(per_state)),
            "path": MetadataValue.path(str(layout.stacked_dir)),
        }),
        data_version=data_version(sha256_file(layout.stacked_manifest)),
    )

