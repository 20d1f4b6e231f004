"""Accepting a refusal on record: which rules a waiver may name, and what it changes."""

import pytest

from pipeline.core.errors import InputError
from pipeline.core.report import GateReport, Rule
from pipeline.release.gates import GATES
from pipeline.release.waivers import parse_waiver, waivable_rules, waive, waiver_problems

QUALITY = next(g for g in GATES if g.name == "simulation_quality")
WHERE = "launchpad resources.waiver.config"


def _refused() -> GateReport:
    return GateReport.of([
        Rule("finite", True, "0 non-finite"),
        Rule("heldout_regression", False, "local/validation_split median 0.0609 -> 0.0877 "
             "(+0.0268 > 0.02 OVER)", ("local/validation_split median ...",), 0.0268, 0.02),
        Rule("coverage", True, "all compared"),
    ])


def test_a_waiver_accepts_the_named_rule_on_record():
    waiver = parse_waiver(["simulation_quality.heldout_regression"], "district age targets "
                          "left out on purpose", "Ada", "run-1", WHERE)
    report = waive(_refused(), QUALITY, waiver)
    assert report.passed and report.metrics["waived_rules"] == 1
    assert report.metrics["failed_rules"] == 0
    assert report.rule("heldout_regression").waived
    assert not report.rule("heldout_regression").passed  # still what it measured
    assert report.summary.startswith("passed with a waiver: ")
    assert report.summary.endswith("[accepted on record by Ada: heldout_regression "
                                   "(district age targets left out on purpose)]")
    assert waiver.as_dict()["rules"] == ["simulation_quality.heldout_regression"]
    assert waiver.run_id == "run-1" and waiver.given_at


def test_a_waiver_for_another_rule_changes_nothing():
    other = parse_waiver(["simulation_quality.target_regression"], "why", "Ada", None, WHERE)
    assert waive(_refused(), QUALITY, other) == _refused()
    assert waive(_refused(), QUALITY, None) == _refused()
    # Two failed rules, one accepted: still refused, and the summary says what was accepted.
    two = GateReport.of([*_refused().rules, Rule("group_regression", False, "+0.04 > 0.01")])
    partly = waive(two, QUALITY, parse_waiver(["simulation_quality.group_regression"], "r",
                                              "Ada", None, WHERE))
    assert not partly.passed and partly.metrics["failed_rules"] == 1
    assert "accepted on record by Ada: group_regression (r)" in partly.summary


@pytest.mark.parametrize(("rules", "reason", "operator", "field", "problem"), [
    (["xw_consistency.local.max_rel_deviation"], "r", "o", "rules",
     "an integrity check is never waived"),
    (["structural_sanity.files"], "r", "o", "rules", "an integrity check is never waived"),
    (["simulation_quality.sanity"], "r", "o", "rules", "'sanity' is not one of its waivable"),
    (["fit_review.weights_valid"], "r", "o", "rules", "not one of its waivable rules"),
    (["gate2.heldout"], "r", "o", "rules", "no gate 'gate2'"),
    (["simulation_quality.heldout_regression"], " ", "o", "reason", "needs the reason"),
    (["simulation_quality.heldout_regression"], "r", "", "operator", "needs the name"),
    ([], "r", "o", "rules", "no rule to accept"),
])
def test_a_waiver_is_refused_in_one_line_naming_the_field(rules, reason, operator, field,
                                                          problem):
    with pytest.raises(InputError, match=problem) as caught:
        parse_waiver(rules, reason, operator, None, WHERE)
    assert caught.value.field == field and caught.value.file == WHERE


def test_only_quality_judgements_are_waivable():
    assert parse_waiver([], "", "", None, WHERE) is None
    assert waivable_rules() == [
        *(f"{gate}.{rule}" for gate in ("fit_review", "national_fit_review",
                                         "local_heldout_fit_review",
                                         "national_heldout_fit_review")
          for rule in ("loss_converged", "no_group_diverging", "not_worse_than_production",
                       "record_budget")),
        *(f"simulation_quality.{rule}" for rule in ("absolute", "target_regression",
                                                    "group_regression",
                                                    "heldout_regression"))]


def _waived_report(*names: str) -> dict:
    """A passed report whose failed rules `names` are marked waived."""
    rules = [Rule("finite", True, "0 non-finite"),
             *(Rule(n, False, "+0.03 > 0.02 OVER", waived=True) for n in names)]
    return GateReport.of(rules).as_dict()


@pytest.mark.parametrize(("report", "waiver", "problem"), [
    (_waived_report("heldout_regression"), None, "waived, but no waiver is on record"),
    (_waived_report("heldout_regression"),
     {"rules": ["simulation_quality.group_regression"], "reason": "r", "operator": "o"},
     "simulation_quality.heldout_regression: waived but never accepted on record"),
    (_waived_report("sanity"),
     {"rules": ["simulation_quality.sanity"], "reason": "r", "operator": "o"},
     "sanity: an integrity rule, never waived"),
    (_waived_report("heldout_regression"),
     {"rules": ["simulation_quality.heldout_regression"], "reason": " ", "operator": "o"},
     "the waiver names no reason"),
    ({"rules": [{"name": "coverage", "passed": False}]}, None, "coverage: failed, not waived"),
])
def test_promotion_accepts_a_waived_verdict_only_as_a_waiver_gives_it(report, waiver,
                                                                      problem):
    """A verdict written or edited outside a check (a promotion without Dagster's record of
    it) cannot waive what no waiver accepted, nor an integrity rule."""
    assert problem in "; ".join(waiver_problems(QUALITY, report, waiver))


def test_a_waiver_given_by_the_run_stands():
    waiver = parse_waiver(["simulation_quality.heldout_regression"], "on purpose", "Ada",
                          "run-1", WHERE)
    report = waive(_refused(), QUALITY, waiver)
    assert waiver_problems(QUALITY, report.as_dict(), waiver.as_dict()) == []
    assert waiver_problems(QUALITY, _refused().as_dict(), None) == [
        "heldout_regression: failed, not waived"]
