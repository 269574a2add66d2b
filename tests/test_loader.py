"""Behaviour of the pathway loader: what a valid file compiles to, and how bad files are refused."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from nim_workflow._errors import NimWorkflowError, PathwayError, Problem
from nim_workflow._pathway._loader import load_pathway, load_pathway_text
from nim_workflow._pathway._model import (
    DeadlineRule,
    Duration,
    Extension,
    FactSpec,
    Reminder,
    Stage,
    Transition,
)

TESTS = Path(__file__).parent
MINIMAL = TESTS / "pathways" / "valid" / "minimal.yaml"
INVALID = TESTS / "pathways" / "invalid"
BUNDLED = sorted((TESTS.parent / "pathways").glob("*.yaml"))
VALID = [MINIMAL, *BUNDLED]


def _minimal_text() -> str:
    return MINIMAL.read_text(encoding="utf-8")


def _edited(*edits: tuple[str, str]) -> str:
    """The minimal pathway with each ``old`` text (which must occur once) replaced by ``new``."""
    text = _minimal_text()
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def _problems(text: str) -> tuple[Problem, ...]:
    with pytest.raises(PathwayError) as caught:
        load_pathway_text(text, source="test.yaml")
    return caught.value.problems


def _weeks(amount: int) -> Duration:
    return Duration(amount=amount, unit="weeks")


def _schema() -> dict[str, Any]:
    text = resources.files("nim_workflow._pathway").joinpath("schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


# --- valid files -------------------------------------------------------------------------------


def test_minimal_pathway_compiles_to_the_expected_header_and_declarations() -> None:
    """The minimal file's id, version, calendar, roles, permissions and facts are as written."""
    pathway = load_pathway(MINIMAL)
    assert pathway.key == ("test-minimal", 3)
    assert pathway.title == "Minimal test pathway"
    assert pathway.calendar == "england-and-wales"
    assert pathway.timezone == "Europe/London"
    assert dict(pathway.roles) == {
        "worker": "Worker",
        "manager": "Manager",
        "officer": "Court officer",
    }
    assert pathway.roles_for("open_case") == {"worker", "manager"}
    assert pathway.roles_for("record") == {"worker", "manager", "officer"}
    assert pathway.roles_for("pause") == pathway.roles_for("resume") == {"manager"}
    assert pathway.facts["report_filed"] == FactSpec(
        name="report_filed", type="bool", description="The assessment report is on file"
    )
    assert pathway.facts["decision"] == FactSpec(
        name="decision", type="enum", values=("home", "away")
    )
    assert list(pathway.facts) == [
        "consent_recorded",
        "report_filed",
        "issued_on",
        "review_held_on",
        "decision",
    ]


def test_minimal_pathway_compiles_stages_and_transitions_with_defaults() -> None:
    """Stages keep file order; optional transition keys default; "*" expands to open stages."""
    pathway = load_pathway(MINIMAL)
    assert pathway.stages == (
        Stage(id="referral", title="Referral", initial=True),
        Stage(id="assessment", title="Assessment"),
        Stage(id="court", title="Court"),
        Stage(id="closed", title="Closed", final=True),
    )
    assert pathway.initial_stage == "referral"
    assert pathway.final_stages == {"closed"}
    assert pathway.transitions[0] == Transition(
        trigger="accept",
        sources=("referral",),
        dest="assessment",
        roles=frozenset({"manager"}),
        requires=("consent_recorded",),
    )
    assert pathway.transition("decline", "referral") == Transition(
        trigger="decline",
        sources=("referral",),
        dest="closed",
        roles=frozenset({"manager"}),
        reason_required=True,
        outcome="not_eligible",
    )
    decide = pathway.transition("decide", "court")
    assert decide is not None
    assert (decide.outcome, decide.outcome_fact) == (None, "decision")
    withdraw = pathway.transition("withdraw", "court")
    assert withdraw is not None
    assert withdraw.sources == ("referral", "assessment", "court")
    assert pathway.triggers() == ("accept", "decline", "file_report", "decide", "withdraw")


def test_minimal_pathway_compiles_deadlines_reminders_extensions_and_recurrence() -> None:
    """Deadline rules come out resolved: default reminder, default labels, extension, recurrence."""
    pathway = load_pathway(MINIMAL)
    default = Reminder(label="reminder", before=Duration(amount=10, unit="working_days"))
    assert pathway.rule("referral_decision") == DeadlineRule(
        name="referral_decision",
        duration=Duration(amount=10, unit="working_days"),
        escalate_to="manager",
        stage="referral",
        reminders=(default,),
    )
    assessment = pathway.rule("assessment")
    assert assessment.duration == _weeks(12)
    assert assessment.reminders == (
        Reminder(label="reminder", before=Duration(amount=5, unit="days")),
        Reminder(label="monthly_update", every=Duration(amount=1, unit="months")),
        Reminder(label="milestone", fraction=0.5),
    )
    assert assessment.extension == Extension(
        step=Duration(amount=3, unit="months"), limit=1, roles=frozenset({"manager"})
    )
    proceedings = pathway.rule("proceedings")
    assert proceedings.kind == "clock"
    assert (proceedings.anchor_fact, proceedings.reminders) == ("issued_on", (default,))
    review = pathway.rule("review")
    assert review.reminders == ()
    assert review.recur_fact == "review_held_on"
    assert review.recur_durations == (
        Duration(amount=3, unit="months"),
        Duration(amount=6, unit="months"),
    )
    assert [rule.name for rule in pathway.clock_rules()] == ["proceedings", "review"]


def test_every_reminder_kind_gets_its_default_label() -> None:
    """Unlabelled reminders are called reminder (before), update (every), milestone (fraction)."""
    text = _edited(("{every: 1 months, label: monthly_update}", "{every: 1 months}"))
    reminders = load_pathway_text(text).rule("assessment").reminders
    assert [reminder.label for reminder in reminders] == ["reminder", "update", "milestone"]


def test_source_and_content_hash_come_from_the_file() -> None:
    """source is the path as given; content_hash is the SHA-256 of the file's bytes."""
    pathway = load_pathway(str(MINIMAL))
    assert pathway.source == str(MINIMAL)
    assert pathway.content_hash == hashlib.sha256(MINIMAL.read_bytes()).hexdigest()


def test_load_pathway_text_hashes_the_utf8_text_and_names_its_source() -> None:
    """Text loads hash the UTF-8 encoding, so the same content hashes alike from file or text."""
    text = _edited(("title: Minimal test pathway", "title: Équipe minimale"))
    pathway = load_pathway_text(text)
    assert pathway.source == "<string>"
    assert pathway.title == "Équipe minimale"
    assert pathway.content_hash == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert load_pathway_text(_minimal_text(), source="x.yaml").content_hash == (
        load_pathway(MINIMAL).content_hash
    )


def test_a_change_of_content_changes_the_hash_but_not_equality_of_source() -> None:
    """Two loads of one content are equal whatever their source; other content hashes apart."""
    assert load_pathway_text(_minimal_text(), source="a") == load_pathway(MINIMAL)
    other = load_pathway_text(_minimal_text() + "# a trailing comment\n")
    assert other.content_hash != load_pathway(MINIMAL).content_hash


def test_a_date_like_title_is_read_as_text() -> None:
    """A scalar YAML would read as a date stays the text written, since the format has no dates."""
    pathway = load_pathway_text(_edited(("title: Minimal test pathway", "title: 2026-01-05")))
    assert pathway.title == "2026-01-05"


@pytest.mark.parametrize("path", BUNDLED, ids=[path.stem for path in BUNDLED])
def test_bundled_pathway_loads_under_its_file_name(path: Path) -> None:
    """Each bundled pathway file is valid and its id is its file name."""
    assert load_pathway(path).id == path.stem


# --- refusals ----------------------------------------------------------------------------------


def test_several_problems_are_reported_at_once_in_file_order() -> None:
    """One load reports every problem in the file, sorted by line, each naming file and field."""
    problems = _problems(
        _edited(
            ("duration: 12 weeks", "duration: 12 fortnights"),
            ("timezone: Europe/London", "timezone: Mars/Olympus"),
            ("roles: [officer]\n", "roles: [judge]\n"),
            ("{fraction: 0.5}", "{fraction: 2}"),
        )
    )
    assert [p.field for p in problems] == [
        "timezone",
        "transitions[3].roles[0]",
        "deadlines[1].duration",
        "deadlines[1].reminders[2].fraction",
    ]
    lines = [p.line or 0 for p in problems]
    assert lines == sorted(lines)
    assert all(p.file == "test.yaml" for p in problems)


def test_pathway_error_is_a_value_error_and_lists_problems_in_its_message() -> None:
    """PathwayError can be caught as ValueError; its message has one line per problem."""
    with pytest.raises(ValueError, match=r"test\.yaml:3: version: must be at least 1") as caught:
        load_pathway_text(_edited(("version: 3", "version: -1")), source="test.yaml")
    assert isinstance(caught.value, NimWorkflowError)
    assert str(caught.value).startswith("1 problem in pathway definition")


def test_python_tags_are_refused_without_running_anything(tmp_path: Path) -> None:
    """!!python/... tags are problems; the code they name is never called."""
    witness = tmp_path / "ran"
    text = _edited(
        (
            "title: Minimal test pathway",
            f'title: !!python/object/apply:os.system ["touch {witness}"]',
        ),
        ("worker: Worker", "worker: !!python/name:builtins.exit"),
        ("manager: Manager", f'manager: !!python/object/new:pathlib.Path ["{witness}"]'),
    )
    problems = _problems(text)
    assert [p.field for p in problems] == ["title", "roles.worker", "roles.manager"]
    assert all("is not allowed" in p.message for p in problems)
    assert "!!python/object/apply:os.system" in problems[0].message
    assert not witness.exists()


def test_local_and_unusual_standard_tags_are_refused() -> None:
    """Local tags and YAML tags outside plain strings, numbers and booleans are problems."""
    problems = _problems(
        _edited(
            ("title: Minimal test pathway", "title: !include other.yaml"),
            ("issued_on: {type: date}", "issued_on: !!set {type: date}"),
        )
    )
    assert [(p.field, p.message) for p in problems] == [
        ("title", "the YAML tag '!include' is not allowed in a pathway"),
        ("facts.issued_on", "the YAML tag '!!set' is not allowed in a pathway"),
    ]


def test_an_exponential_alias_bomb_is_refused_quickly() -> None:
    """Aliases are refused at the line that uses them, so a "billion laughs" file cannot expand."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
    )
    with pytest.raises(PathwayError) as caught:
        load_pathway_text(bomb)
    aliases = [p for p in caught.value.problems if "aliases" in p.message]
    assert len(aliases) == 81
    assert aliases[0].line == 2


def test_a_missing_file_is_one_problem_without_a_line(tmp_path: Path) -> None:
    """A file that cannot be read is reported with no line, naming the file."""
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(PathwayError) as caught:
        load_pathway(missing)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (str(missing), None, "<file>")
    assert "cannot read" in problem.message


def test_a_directory_is_not_a_pathway_file(tmp_path: Path) -> None:
    """Pointing the loader at a directory is a PathwayError, not an OSError."""
    with pytest.raises(PathwayError) as caught:
        load_pathway(tmp_path)
    assert caught.value.problems[0].line is None


def test_a_file_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are one problem at the line they are on."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(_minimal_text().replace("Minimal", "Équipe").encode("latin-1"))
    with pytest.raises(PathwayError) as caught:
        load_pathway(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.field) == (4, "<document>")
    assert "UTF-8" in problem.message


def test_a_yaml_syntax_error_is_a_pathway_error_with_its_line() -> None:
    """Text YAML cannot parse is one problem at the line of the error."""
    (problem,) = _problems(_edited(("  record: [worker", "  record: worker: [worker")))
    assert (problem.line, problem.field) == (13, "<document>")
    assert problem.message.startswith("is not valid YAML")


def test_two_documents_in_one_file_are_refused() -> None:
    """A pathway file holds one YAML document."""
    (problem,) = _problems(_minimal_text() + "---\nid: another\n")
    assert "single document" in problem.message
    assert problem.line == 83


def test_duplicate_keys_inside_a_flow_mapping_are_refused() -> None:
    """A key given twice in {...} is a problem at that key, naming where it was first given."""
    (problem,) = _problems(_edited(("{type: bool}", "{type: bool, type: date}")))
    assert (problem.line, problem.field) == (17, "facts.consent_recorded.type")
    assert problem.message == "duplicate key 'type' (first at line 17)"


def test_yaml_booleans_where_names_belong_say_to_quote_them() -> None:
    """values: [yes, no] reads as booleans; the problem says so and how to fix it."""
    problems = _problems(_edited(("values: [home, away]", "values: [yes, no]")))
    assert [p.field for p in problems] == ["facts.decision.values[0]", "facts.decision.values[1]"]
    assert "the boolean 'yes' (quote it" in problems[0].message


def test_deep_nesting_is_a_pathway_error() -> None:
    """Pathologically nested YAML is refused as a PathwayError rather than crashing."""
    (problem,) = _problems("[" * 5000 + "]" * 5000)
    assert "nested too deeply" in problem.message


def test_an_empty_file_is_refused() -> None:
    """A file with nothing but comments says it is empty."""
    (problem,) = _problems("# nothing\n")
    assert (problem.line, problem.field) == (1, "<document>")
    assert "is empty" in problem.message


def test_a_broken_transition_does_not_report_graph_echoes() -> None:
    """A misspelt destination is reported once, not again as an unreachable stage."""
    problems = _problems(_edited(("    to: court\n", "    to: cort\n")))
    assert [(p.field, p.message.split(";")[0]) for p in problems] == [
        ("transitions[2].to", "unknown stage 'cort'")
    ]


def test_graph_problems_are_found_beside_other_problems_in_transitions() -> None:
    """A transition with a bad role still counts as an edge, so graph checks still run."""
    problems = _problems(
        _edited(
            ("roles: [officer]\n    requires", "roles: [judge]\n    requires"),
            ("  - {id: closed", "  - {id: limbo, title: Limbo}\n  - {id: closed"),
        )
    )
    assert [p.field for p in problems] == ["stages[3].id", "transitions[3].roles[0]"]


# --- the JSON Schema for editors -----------------------------------------------------------------


def test_schema_is_valid_draft_2020_12() -> None:
    """schema.json is itself a valid JSON Schema of draft 2020-12."""
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", VALID, ids=[path.stem for path in VALID])
def test_every_valid_pathway_file_validates_against_the_schema(path: Path) -> None:
    """Every file the loader accepts is also accepted by the editors' schema."""
    load_pathway(path)
    jsonschema.Draft202012Validator(_schema()).validate(yaml.safe_load(path.read_bytes()))


STRUCTURAL = [
    "unknown-top-level-key",
    "missing-top-level-key",
    "bad-id",
    "version-zero",
    "unknown-calendar",
    "unknown-permission-action",
    "duration-unknown-unit",
    "duration-zero",
    "duration-negative",
    "deadline-stage-and-anchor",
    "deadline-neither-stage-nor-anchor",
    "reminder-two-kinds",
    "reminder-no-kind",
    "fraction-out-of-range",
    "extension-limit-zero",
    "recurs-empty-durations",
    "recurs-on-stage-deadline",
    "enum-without-values",
    "values-on-bool-fact",
    "unknown-fact-type",
    "outcome-and-outcome-from",
    "both-initial-and-final",
    "empty-transition-roles",
]


@pytest.mark.parametrize("name", STRUCTURAL)
def test_schema_rejects_structural_mistakes(name: str) -> None:
    """Mistakes of shape (not of cross-reference) are caught by the editors' schema too."""
    data = yaml.safe_load((INVALID / f"{name}.yaml").read_bytes())
    assert list(jsonschema.Draft202012Validator(_schema()).iter_errors(data))
