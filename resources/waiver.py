"""The launchpad's way to accept a refusal on record, for one run (`pipeline.release.waivers`)."""

from dagster import ConfigurableResource
from pydantic import Field

from pipeline.release.waivers import Waiver, parse_waiver, waivable_rules
from resources.launch import WAIVER


class WaiverResource(ConfigurableResource):
    """Accept named gate rules for this run only, on record: in the launchpad,

        resources: {waiver: {config: {rules: [simulation_quality.heldout_regression],
                                      reason: "...", operator: "..."}}}

    A gate whose only failed rules are named passes with the waiver, which its verdict, the
    release manifest and releases/history.json record. Integrity checks are never waived.
    Left empty (the default), nothing is waived."""

    rules: list[str] = Field(default=[], description="gate rules to accept, as "
                             f"<gate>.<rule>: any of {', '.join(waivable_rules())}")
    reason: str = Field(default="", description="why the refused change is the one meant")
    operator: str = Field(default="", description="who accepts it (recorded by name)")

    def for_run(self, run_id: str | None) -> Waiver | None:
        """The waiver this run was given (None when none); InputError for a bad one."""
        return parse_waiver(self.rules, self.reason, self.operator, run_id, WAIVER)
