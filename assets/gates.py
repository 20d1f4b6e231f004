"""Asset checks generated from the gate table in pipeline.release.gates: one blocking check
per gate, attached to the asset it reviews.

A failed check records its verdict and result, then ends its step with the verdict's
summary as the run's failure message (`assets.failures.refused`), not Dagster's own
"blocking asset check failed" stack trace. The run's waiver (`resources.waiver`, empty
unless the launchpad or `make run ACCEPT=...` gave one) is applied before the verdict is
recorded: a check whose only failed rules it names passes, with the waiver on record.
"""

from collections.abc import Iterator

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    asset_check,
)

from assets.failures import explained, refused
from assets.metadata import check_result
from pipeline.core.fit_table import Fit
from pipeline.core.hashing import sha256_file
from pipeline.core.progress import report_to
from pipeline.release.gates import Gate, gate_table
from pipeline.release.judges import GateContext
from pipeline.release.verdicts import run_gate, verdict_path
from resources import ComputeResource, ProfileResource, StorageResource
from resources.waiver import WaiverResource

VERDICT_SHA256 = "verdict_sha256"  # check metadata: the sha256 of the verdict file written


def gate_checks(fits: tuple[Fit, ...]) -> list[AssetChecksDefinition]:
    return [gate_check(gate, fits) for gate in gate_table(fits)]


def gate_check(gate: Gate, fits: tuple[Fit, ...]) -> AssetChecksDefinition:
    """The blocking check for one gate: judge, record the verdict, report numbers."""
    @asset_check(name=gate.name, asset=gate.subject, blocking=True,
                 description=gate.description, additional_deps=list(gate.upstream_assets))
    def _check(context: AssetCheckExecutionContext, storage: StorageResource,
               profile: ProfileResource, compute: ComputeResource, waiver: WaiverResource
               ) -> Iterator[AssetCheckResult]:
        with explained(storage):
            ctx = GateContext(storage.layout, profile.load().gates, compute.runner(), fits,
                              profile=profile.name)
            with report_to(context.log.info):  # a check may walk the published files
                report, _ = run_gate(gate, ctx, waiver.for_run(context.run.run_id))
        if not report.passed:  # the terminal's word on why, also outside `make run`
            context.log.error(f"check {gate.name} failed: {report.summary}")
        # The event log's own record of the verdict: promotion refuses a verdict file that
        # is not byte for byte this one (edited, or written outside the check).
        sha = sha256_file(verdict_path(storage.layout, gate.name))
        yield check_result(report, extra={VERDICT_SHA256: sha})
        if not report.passed:
            raise refused(gate, report)

    return _check
