"""Publish stage: stacked H5 files per state and district (the local fit) and national.h5
(the national fit), and their checks."""

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.gates import gate_check
from assets.metadata import data_version, markdown_table
from assets.package import calibration_package
from pipeline.core.hashing import sha256_file
from pipeline.core.progress import report_to
from pipeline.package.store import load_package
from pipeline.publish.stacking import stack_h5s
from pipeline.release.lineage import parent_hashes
from resources import ComputeResource, StorageResource


@asset(group_name="publish", code_version="4",
       deps=["calibration_weights", "national_weights", calibration_package],
       description="One H5 per state and per district (the local fit) and national.h5 (the "
                   "national fit); weight > 0 records; in policyengine-us's vocabulary "
                   "(docs/policyengine.md).")
def stacked_h5s(context: AssetExecutionContext, storage: StorageResource,
                compute: ComputeResource) -> MaterializeResult:
    layout = storage.layout
    with report_to(context.log.info):
        result = stack_h5s(load_package(layout.package_dir, matrix=False),
                           np.load(layout.weights, allow_pickle=False), layout.stacked_dir,
                           lineage=parent_hashes(layout, "stacked_h5s"),
                           runner=compute.runner(),
                           national_weights=np.load(layout.national_weights,
                                                    allow_pickle=False))
    files = result.manifest["files"]
    per_state = pd.DataFrame(
        [(rel, f["households"], f["persons"], f["weight_total"])
         for rel, f in files.items() if rel.startswith("states/")],
        columns=["file", "households", "persons", "weighted households"],
    )
    return MaterializeResult(
        metadata={
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
        },
        data_version=data_version(sha256_file(layout.stacked_manifest)),
    )


structural_sanity = gate_check("structural_sanity")
xw_consistency = gate_check("xw_consistency")
