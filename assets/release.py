"""Release stage: promotion behind every gate, of one lineage."""

from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.validate import validation_results
from pipeline.release.promotion import promote_release
from resources import StorageResource


@asset(group_name="release", code_version="1", deps=[validation_results],
       automation_condition=(AutomationCondition.eager()
                             & AutomationCondition.all_deps_blocking_checks_passed()),
       description="A versioned, immutable release; CURRENT moves only behind passed gates "
                   "on artifacts of one lineage.")
def promoted_release(context: AssetExecutionContext, storage: StorageResource) -> MaterializeResult:
    release = promote_release(storage.layout)
    context.log.info(f"promoted release {release.version}")
    return MaterializeResult(metadata={
        "version": release.version,
        "path": MetadataValue.path(str(release.path)),
        "files": len(release.manifest["files"]),
        "gates": MetadataValue.json(release.manifest["gates"]),
    })
