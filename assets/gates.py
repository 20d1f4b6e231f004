"""Asset checks generated from the gate table in pipeline.release.gates."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    asset_check,
)

from assets.metadata import check_result
from pipeline.core.progress import report_to
from pipeline.release.gates import GATE_BY_NAME, GateContext, run_gate
from resources import ComputeResource, ProfileResource, StorageResource


def gate_check(name: str) -> AssetChecksDefinition:
    """The blocking check for one gate: judge, record the verdict, report numbers."""
    gate = GATE_BY_NAME[name]

    @asset_check(name=gate.name, asset=gate.subject, blocking=True,
                 description=gate.description, additional_deps=list(gate.upstream_assets))
    def _check(context: AssetCheckExecutionContext, storage: StorageResource,
               profile: ProfileResource, compute: ComputeResource) -> AssetCheckResult:
        with report_to(context.log.info):  # a check may walk the published files
            report, _ = run_gate(gate, GateContext(storage.layout, profile.load(),
                                                   compute.runner()))
        return check_result(report)

    return _check
