"""Asset checks generated from the gate table in pipeline.release.gates: one blocking check
per gate, attached to the asset it reviews."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    asset_check,
)

from assets.metadata import check_result
from pipeline.core.fit_table import Fit
from pipeline.core.hashing import sha256_file
from pipeline.core.progress import report_to
from pipeline.release.gates import Gate, gate_table
from pipeline.release.judges import GateContext
from pipeline.release.verdicts import run_gate, verdict_path
from resources import ComputeResource, ProfileResource, StorageResource

VERDICT_SHA256 = "verdict_sha256"  # check metadata: the sha256 of the verdict file written


def gate_checks(fits: tuple[Fit, ...]) -> list[AssetChecksDefinition]:
    return [gate_check(gate, fits) for gate in gate_table(fits)]


def gate_check(gate: Gate, fits: tuple[Fit, ...]) -> AssetChecksDefinition:
    """The blocking check for one gate: judge, record the verdict, report numbers."""
    @asset_check(name=gate.name, asset=gate.subject, blocking=True,
                 description=gate.description, additional_deps=list(gate.upstream_assets))
    def _check(context: AssetCheckExecutionContext, storage: StorageResource,
               profile: ProfileResource, compute: ComputeResource) -> AssetCheckResult:
        ctx = GateContext(storage.layout, profile.load().gates, compute.runner(), fits,
                          profile=profile.name)
        with report_to(context.log.info):  # a check may walk the published files
            report, _ = run_gate(gate, ctx)
        if not report.passed:  # the terminal's only word on why (the UI shows the rules)
            context.log.error(f"check {gate.name} failed: {report.summary}")
        # The event log's own record of the verdict: promotion refuses a verdict file that
        # is not byte for byte this one (edited, or written outside the check).
        sha = sha256_file(verdict_path(storage.layout, gate.name))
        return check_result(report, extra={VERDICT_SHA256: sha})

    return _check
