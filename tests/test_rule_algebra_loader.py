"""The deadline rule algebra as the loader compiles it from ``pathways/valid/rule-algebra.yaml``.

The file uses every construct once: ``counting``, ``pausable``, ``from_first``, ``settled_by``,
``earliest_of`` with ``when_preceded_by``, a window, a cumulative clock and an extension without a
limit. Each test reads the compiled :class:`DeadlineRule` fields one construct at a time.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from nim_workflow._pathway._loader import load_pathway
from nim_workflow._pathway._model import (
    Candidate,
    ConditionStart,
    Cumulative,
    Duration,
    Extension,
    Pathway,
)

RULE_ALGEBRA = Path(__file__).parent / "pathways" / "valid" / "rule-algebra.yaml"


@pytest.fixture(scope="module")
def pathway() -> Pathway:
    """The rule-algebra file, loaded once."""
    return load_pathway(RULE_ALGEBRA)


def _d(text: str) -> Duration:
    return Duration.parse(text)


def _schema() -> dict[str, Any]:
    text = resources.files("nim_workflow._pathway").joinpath("schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_the_file_has_one_rule_of_each_kind(pathway: Pathway) -> None:
    """The rules load in file order, each of the kind its keys make it."""
    assert [(rule.name, rule.kind) for rule in pathway.deadlines] == [
        ("referral_decision", "stage"),
        ("proceedings", "clock"),
        ("interim_limit", "clock"),
        ("permanency_hearing", "clock"),
        ("baseline_visit", "window"),
        ("in_care", "clock"),
    ]


def test_pausable_defaults_to_true_for_stage_deadlines_and_false_otherwise(
    pathway: Pathway,
) -> None:
    """Only the stage deadline pauses; no other rule in the file says pausable, yet none does."""
    assert {rule.name: rule.pausable for rule in pathway.deadlines} == {
        "referral_decision": True,
        "proceedings": False,
        "interim_limit": False,
        "permanency_hearing": False,
        "baseline_visit": False,
        "in_care": False,
    }


def test_counting_is_after_unless_the_rule_says_beginning_with(pathway: Pathway) -> None:
    """``counting: beginning_with`` is kept; every other rule counts after its start."""
    assert {rule.name: rule.counting for rule in pathway.deadlines} == {
        "referral_decision": "after",
        "proceedings": "beginning_with",
        "interim_limit": "beginning_with",
        "permanency_hearing": "after",
        "baseline_visit": "after",
        "in_care": "after",
    }


def test_from_first_is_set_only_where_the_file_sets_it(pathway: Pathway) -> None:
    """``from_first: true`` compiles on the interim limit and defaults to false elsewhere."""
    assert [rule.name for rule in pathway.deadlines if rule.from_first] == ["interim_limit"]
    limit = pathway.rule("interim_limit")
    assert (limit.anchor_fact, limit.duration) == ("interim_made_on", _d("66 days"))


def test_settled_by_lists_the_facts_that_settle_the_rule(pathway: Pathway) -> None:
    """``settled_by`` compiles to a tuple of date facts, empty where absent."""
    assert pathway.rule("baseline_visit").settled_by == ("baseline_visit_on",)
    assert pathway.rule("proceedings").settled_by == ()
    assert "baseline_visit_on" in pathway.rule("baseline_visit").facts


def test_earliest_of_compiles_each_candidate_with_its_condition(pathway: Pathway) -> None:
    """The candidates keep file order; only the first has ``when_preceded_by``."""
    rule = pathway.rule("permanency_hearing")
    assert rule.candidates == (
        Candidate(
            anchor="disposition_on",
            duration=_d("9 months"),
            when_preceded_by="entered_care_on",
        ),
        Candidate(anchor="entered_care_on", duration=_d("12 months")),
        Candidate(anchor="no_reunification_on", duration=_d("30 days")),
    )
    assert (rule.anchor_fact, rule.stage, rule.opens, rule.cumulative) == (None, None, None, None)
    assert rule.start_facts == ("disposition_on", "entered_care_on", "no_reunification_on")
    assert rule.span(1, candidate=2) == _d("30 days")
    assert rule.span(2) == _d("12 months")


def test_a_window_opens_and_closes_after_its_anchor(pathway: Pathway) -> None:
    """``window: {opens, closes}`` sets ``opens``, and ``duration`` is when it closes."""
    rule = pathway.rule("baseline_visit")
    assert rule.anchor_fact == "entered_care_on"
    assert rule.opens == _d("4 weeks")
    assert rule.duration == _d("14 weeks")
    assert all(other.opens is None for other in pathway.deadlines if other is not rule)


def test_a_cumulative_clock_compiles_its_condition(pathway: Pathway) -> None:
    """``cumulative`` compiles its starts, leaves, returns, reaches and within."""
    rule = pathway.rule("in_care")
    assert rule.cumulative == Cumulative(
        starts=(
            ConditionStart(anchor="adjudicated_on"),
            ConditionStart(anchor="entered_care_on", plus=_d("60 days")),
        ),
        leaves="returned_home_on",
        returns="reentered_care_on",
        reaches=_d("15 months"),
        within=_d("22 months"),
    )
    assert rule.duration == _d("15 months")
    assert rule.anchor_fact is None
    assert rule.candidates == ()
    assert rule.start_facts == (
        "adjudicated_on",
        "entered_care_on",
        "returned_home_on",
        "reentered_care_on",
    )


def test_an_extension_without_a_limit_has_no_cap(pathway: Pathway) -> None:
    """An extension without ``limit`` compiles ``limit=None``; one that gives it keeps it."""
    assert pathway.rule("proceedings").extension == Extension(
        step=_d("8 weeks"), roles=frozenset({"officer"}), limit=None
    )
    assert pathway.rule("referral_decision").extension == Extension(
        step=_d("5 working_days"), roles=frozenset({"manager"}), limit=1
    )
    assert pathway.rule("in_care").extension is None


def test_met_by_and_upgrade_permission_compile(pathway: Pathway) -> None:
    """``met_by`` names the deciding trigger, and ``permissions`` may name ``upgrade``."""
    assert pathway.rule("proceedings").met_by == {"decide"}
    assert pathway.roles_for("upgrade") == {"manager"}


def test_the_file_validates_against_the_json_schema() -> None:
    """The editors' JSON Schema accepts the file the loader accepts."""
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(RULE_ALGEBRA.read_bytes()))
