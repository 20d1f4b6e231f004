"""Release stage: promotion behind every gate, of one lineage."""

from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    DagsterInstance,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.failures import explains
from assets.gates import VERDICT_SHA256
from assets.metadata import readable
from assets.stages import stage
from pipeline.core.fit_table import Fit
from pipeline.release.gates import gate_table
from pipeline.release.promotion import promote_release
from resources import ProfileResource, StorageResource


def recorded_verdicts(instance: DagsterInstance, fits: tuple[Fit, ...]
                      ) -> dict[str, str | None]:
    """Gate -> the sha256 of the verdict file its latest completed check evaluation wrote
    (None where this instance holds none)."""
    out: dict[str, str | None] = {}
    for gate in gate_table(fits):
        key = AssetCheckKey(AssetKey(gate.subject), gate.name)
        out[gate.name] = None
        for record in instance.event_log_storage.get_asset_check_execution_history(key, 5):
            event = record.event.dagster_event if record.event else None
            metadata = getattr(event.event_specific_data, "metadata", None) if event else None
            if metadata is not None:  # an evaluation, not a planned one
                value = metadata.get(VERDICT_SHA256)
                out[gate.name] = None if value is None else str(value.value)
                break
    return out


def release_asset(fits: tuple[Fit, ...]) -> AssetsDefinition:
    """promoted_release over the fit table: every fit's record goes into the release."""
    @asset(name="promoted_release", **stage("release"), code_version="1",
           # Validation covers every fit (figures-only fits on the matrix); a fit that
           # publishes no files is also a direct dependency.
           deps=["validation_results", *(f.weights for f in fits if f.publishes is None)],
           automation_condition=(AutomationCondition.eager()
                                 & AutomationCondition.all_deps_blocking_checks_passed()),
           description="A versioned, immutable release; CURRENT moves only behind passed gates "
                       "on artifacts of one lineage.")
    @explains
    def _release(context: AssetExecutionContext, storage: StorageResource,
                 profile: ProfileResource) -> MaterializeResult:
        release = promote_release(storage.layout, fits, thresholds=profile.load().gates,
                                  profile=profile.name,
                                  recorded=recorded_verdicts(context.instance, fits))
        context.log.info(f"promoted release {release.version}")
        return MaterializeResult(metadata=readable({
            "waivers": waiver_text(release.manifest.get("waivers", [])),
            "version": release.version,
            "path": MetadataValue.path(str(release.path)),
            "files": len(release.manifest["files"]),
            "gates": MetadataValue.json(release.manifest["gates"]),
        }))

    return _release


def waiver_text(waivers: list[dict]) -> str | None:
    """Each rule accepted on record for this release, by whom and why (None: none)."""
    return "; ".join(f"{', '.join(w['rules'])} accepted by {w['operator']}: {w['reason']}"
                     for w in waivers) or None
