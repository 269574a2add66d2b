"""The deciding checks of ``nim_workflow._decide``, driven directly with no database.

Each function gets the case, pathway and actor it would get from the engine, held in memory, and
each test pins what a caller relies on: the refusal's type and attributes, the order in which the
checks are made, the boundaries, and the ``field`` and wording of every ``InvalidInput``. Expected
values are written out by hand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest

import nim_workflow as nw
from nim_workflow import _decide
from nim_workflow._errors import (
    ActionRefused,
    CasePaused,
    ConcurrentUpdate,
    ExtensionNotAllowed,
    InvalidInput,
    PermissionDenied,
    RequirementsNotMet,
    StaffNotFound,
    TransitionNotAllowed,
)
from nim_workflow._pathway._model import (
    DeadlineRule,
    Duration,
    Extension,
    FactSpec,
    Pathway,
    Stage,
)
from nim_workflow._store._case_state import CaseState, Row
from nim_workflow._values import Actor, StaffMember

REF = "C-1"
#: Monday 5 January 2026, 10:00 UTC.
MONDAY = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
TUESDAY = MONDAY + dt.timedelta(days=1)
ONE_MICROSECOND = dt.timedelta(microseconds=1)
BLANK_REASONS = [None, "", "   ", "\t\n"]
DURATION_HELP = "write '<N> <unit>' with unit one of working_days, days, weeks, months"


# -- helpers -----------------------------------------------------------------------------------


def _case(**values: Any) -> Row:
    """A case row as a command holds it: open, not paused, version 3, in stage ``assessment``."""
    row = Row(
        reference=REF,
        stage="assessment",
        version=3,
        stage_entered_at=MONDAY,
        updated_at=TUESDAY,
        closed_at=None,
        paused_at=None,
    )
    row.update(values)
    return row


def _attrs(error: BaseException) -> tuple[type[BaseException], dict[str, Any]]:
    """An exception's class and the attributes it carries for hosts."""
    return type(error), dict(vars(error))


def _pathway(
    *,
    version: int = 2,
    stages: tuple[Stage, ...] | None = None,
    facts: Mapping[str, FactSpec] | None = None,
) -> Pathway:
    """A small pathway built in Python: four stages (one final) and one fact of each type."""
    if stages is None:
        stages = (
            Stage(id="referral", title="Referral", initial=True),
            Stage(id="assessment", title="Assessment"),
            Stage(id="review", title="Review"),
            Stage(id="closed", title="Closed", final=True),
        )
    if facts is None:
        facts = {
            "consent": FactSpec(name="consent", type="bool"),
            "entered_care_on": FactSpec(name="entered_care_on", type="date"),
            "decision": FactSpec(name="decision", type="enum", values=("return_home", "adoption")),
        }
    return Pathway(
        id="test-decide",
        version=version,
        title="Deciding tests",
        calendar="england-and-wales",
        timezone="Europe/London",
        roles={"team_manager": "Team manager"},
        permissions={},
        facts=facts,
        stages=stages,
        transitions=(),
        deadlines=(),
        content_hash=f"test-decide-{version}",
    )


def _old_pathway() -> Pathway:
    """Version 1 of the test pathway: a ``triage`` stage and a ``legacy_flag`` fact it dropped."""
    return _pathway(
        version=1,
        stages=(
            Stage(id="referral", title="Referral", initial=True),
            Stage(id="triage", title="Triage"),
            Stage(id="assessment", title="Assessment"),
            Stage(id="closed", title="Closed", final=True),
        ),
        facts={
            "consent": FactSpec(name="consent", type="bool"),
            "legacy_flag": FactSpec(name="legacy_flag", type="bool"),
            "entered_care_on": FactSpec(name="entered_care_on", type="date"),
        },
    )


def _rule(*, limit: int | None = 2, extendable: bool = True) -> DeadlineRule:
    """A stage deadline rule extendable by team managers 2 weeks at a time, ``limit`` times."""
    extension = (
        Extension(
            step=Duration(amount=2, unit="weeks"), roles=frozenset({"team_manager"}), limit=limit
        )
        if extendable
        else None
    )
    return DeadlineRule(
        name="assessment",
        duration=Duration(amount=12, unit="weeks"),
        escalate_to="team_manager",
        stage="assessment",
        extension=extension,
    )


def _running(reference: str, stage: str, facts: dict[str, Any] | None = None) -> SimpleNamespace:
    """An open case on version 1 as ``upgrade_cases`` reads it."""
    return SimpleNamespace(reference=reference, pathway_version=1, stage=stage, facts=facts or {})


def _interval(row_id: int, stage: str, entered: dt.datetime, left: dt.datetime | None) -> Row:
    return Row(
        id=row_id,
        reference=REF,
        stage=stage,
        entered_at=entered,
        left_at=left,
        entered_by="sw-1",
        left_by="sw-1" if left is not None else None,
    )


def _state(intervals: list[Row]) -> CaseState:
    return CaseState(
        REF,
        _case(),
        {"intervals": intervals, "pauses": [], "deadlines": [], "alarms": []},
        chain=None,
    )


TEAM_MANAGER = Actor("tm-1", roles={"team_manager"})
SOCIAL_WORKER = Actor("sw-1", roles={"social_worker"})
NOBODY = Actor("guest-1")


# -- check_version -----------------------------------------------------------------------------


def test_check_version_without_an_expected_version_never_refuses() -> None:
    """``expected=None`` means "don't check", whatever the case's version."""
    _decide.check_version(_case(version=7), None)


def test_check_version_accepts_the_current_version() -> None:
    """The version the caller saw is still current: the command goes ahead."""
    _decide.check_version(_case(version=7), 7)


@pytest.mark.parametrize("expected", [6, 8])
def test_check_version_refuses_a_stale_version_naming_both(expected: int) -> None:
    """Any other version raises ConcurrentUpdate with the reference, expected and actual version."""
    with pytest.raises(ConcurrentUpdate) as caught:
        _decide.check_version(_case(version=7), expected)
    assert _attrs(caught.value) == (
        ConcurrentUpdate,
        {"reference": REF, "expected": expected, "actual": 7},
    )


# -- check_not_before --------------------------------------------------------------------------


def test_check_not_before_allows_exactly_the_newest_change() -> None:
    """A command dated at the very instant of the newest change is in order."""
    _decide.check_not_before(_case(updated_at=TUESDAY), TUESDAY)


def test_check_not_before_allows_a_later_instant() -> None:
    """A command dated after the newest change is in order."""
    _decide.check_not_before(_case(updated_at=TUESDAY), TUESDAY + ONE_MICROSECOND)


def test_check_not_before_refuses_one_microsecond_before_the_newest_change() -> None:
    """Earlier than ``updated_at`` by the least amount is refused on field ``at``, naming both."""
    when = TUESDAY - ONE_MICROSECOND
    with pytest.raises(InvalidInput) as caught:
        _decide.check_not_before(_case(updated_at=TUESDAY), when)
    assert caught.value.field == "at"
    assert str(caught.value) == (
        "case C-1: 2026-01-06T09:59:59.999999+00:00 is before its newest change "
        "(2026-01-06T10:00:00+00:00); history is written in order"
    )


def test_check_not_before_prefers_updated_at_to_the_stage_entry() -> None:
    """Between entering the stage and the newest change is still too early: updated_at governs."""
    when = MONDAY + dt.timedelta(hours=1)
    with pytest.raises(InvalidInput, match=r"newest change \(2026-01-06T10:00:00\+00:00\)"):
        _decide.check_not_before(_case(stage_entered_at=MONDAY, updated_at=TUESDAY), when)


def test_check_not_before_falls_back_to_the_stage_entry_without_updated_at() -> None:
    """With ``updated_at`` None the stage entry is the newest change: at it allowed, before not."""
    case = _case(stage_entered_at=MONDAY, updated_at=None)
    _decide.check_not_before(case, MONDAY)
    with pytest.raises(InvalidInput) as caught:
        _decide.check_not_before(case, MONDAY - ONE_MICROSECOND)
    assert caught.value.field == "at"
    assert str(caught.value) == (
        "case C-1: 2026-01-05T09:59:59.999999+00:00 is before its newest change "
        "(2026-01-05T10:00:00+00:00); history is written in order"
    )


# -- may_act -----------------------------------------------------------------------------------

ALLOWED = frozenset({"team_manager", "social_worker"})


@pytest.mark.parametrize("actor", [TEAM_MANAGER, SOCIAL_WORKER])
def test_may_act_allows_any_one_of_the_roles_on_an_open_case(actor: Actor) -> None:
    """Holding one of the allowed roles is enough on an open case."""
    assert _decide.may_act(_case(), actor, "record", ALLOWED) is None


def test_may_act_allows_a_paused_case() -> None:
    """A pause does not stop an action ``may_act`` governs (only firing triggers)."""
    assert _decide.may_act(_case(paused_at=MONDAY), TEAM_MANAGER, "record", ALLOWED) is None


@pytest.mark.parametrize("actor", [NOBODY, Actor("cl-1", roles={"clinician"})])
def test_may_act_refuses_an_actor_without_the_roles(actor: Actor) -> None:
    """No allowed role: PermissionDenied naming the case, action, actor and the roles needed."""
    refusal = _decide.may_act(_case(), actor, "record", ALLOWED)
    assert refusal is not None
    assert _attrs(refusal) == (
        PermissionDenied,
        {
            "reference": REF,
            "action": "record",
            "actor_id": actor.id,
            "required": ("social_worker", "team_manager"),
        },
    )


def test_may_act_refuses_on_a_closed_case() -> None:
    """A closed case refuses the action as not valid from its stage, with no valid actions."""
    refusal = _decide.may_act(
        _case(closed_at=TUESDAY, stage="closed"), TEAM_MANAGER, "record", ALLOWED
    )
    assert refusal is not None
    assert _attrs(refusal) == (
        TransitionNotAllowed,
        {"reference": REF, "trigger": "record", "stage": "closed", "allowed": ()},
    )


def test_may_act_checks_the_role_before_the_case_being_closed() -> None:
    """An actor without the role on a closed case is refused for the role, not the closure."""
    refusal = _decide.may_act(_case(closed_at=TUESDAY), NOBODY, "pause", ALLOWED)
    assert isinstance(refusal, PermissionDenied)
    assert refusal.action == "pause"


# -- fire_refusal ------------------------------------------------------------------------------


def test_fire_refusal_allows_an_open_running_case() -> None:
    """Neither closed nor paused: nothing stops the trigger before the pathway is asked."""
    assert _decide.fire_refusal(_case(), "accept_referral") is None


def test_fire_refusal_refuses_a_closed_case() -> None:
    """A closed case: TransitionNotAllowed naming the trigger and the stage, no valid triggers."""
    refusal = _decide.fire_refusal(_case(closed_at=TUESDAY, stage="closed"), "withdraw")
    assert refusal is not None
    assert _attrs(refusal) == (
        TransitionNotAllowed,
        {"reference": REF, "trigger": "withdraw", "stage": "closed", "allowed": ()},
    )


def test_fire_refusal_refuses_a_paused_case() -> None:
    """A paused case: CasePaused naming the reference and the trigger."""
    refusal = _decide.fire_refusal(_case(paused_at=MONDAY), "withdraw")
    assert refusal is not None
    assert _attrs(refusal) == (CasePaused, {"reference": REF, "action": "withdraw"})


def test_fire_refusal_checks_closed_before_paused() -> None:
    """A case both closed and paused is refused as closed."""
    refusal = _decide.fire_refusal(_case(closed_at=TUESDAY, paused_at=MONDAY), "withdraw")
    assert type(refusal) is TransitionNotAllowed


# -- pause_refusal -----------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["family unwell", " x "])
def test_pause_refusal_allows_a_running_case_with_a_reason(reason: str) -> None:
    """A case not yet paused, with a reason that is not blank, may be paused."""
    assert _decide.pause_refusal(_case(), reason) is None


def test_pause_refusal_refuses_a_case_already_paused() -> None:
    """Pausing a paused case: CasePaused with the action ``pause``."""
    refusal = _decide.pause_refusal(_case(paused_at=MONDAY), "again")
    assert refusal is not None
    assert _attrs(refusal) == (CasePaused, {"reference": REF, "action": "pause"})


@pytest.mark.parametrize("reason", BLANK_REASONS)
def test_pause_refusal_refuses_a_blank_reason(reason: str | None) -> None:
    """No reason, an empty or an all-space one: RequirementsNotMet missing exactly ``reason``."""
    refusal = _decide.pause_refusal(_case(), reason)
    assert refusal is not None
    assert _attrs(refusal) == (
        RequirementsNotMet,
        {"reference": REF, "action": "pause", "missing": ("reason",)},
    )


def test_pause_refusal_checks_paused_before_the_reason() -> None:
    """A paused case with no reason is refused as paused."""
    assert type(_decide.pause_refusal(_case(paused_at=MONDAY), None)) is CasePaused


# -- enter_stage -------------------------------------------------------------------------------


def test_enter_stage_closes_the_open_interval_and_opens_one_for_the_new_stage() -> None:
    """The open interval is left at ``at`` by ``by``; a new open one is added for ``stage``."""
    closed = _interval(1, "referral", MONDAY - dt.timedelta(days=2), MONDAY)
    open_ = _interval(2, "assessment", MONDAY, None)
    state = _state([closed, open_])
    _decide.enter_stage(state, "review", TUESDAY, "tm-1")
    assert closed == _interval(1, "referral", MONDAY - dt.timedelta(days=2), MONDAY)
    assert open_.left_at == TUESDAY
    assert open_.left_by == "tm-1"
    assert open_.entered_by == "sw-1"
    assert state.changed == {"intervals": {2: open_}}
    new = Row(
        id=None,
        reference=REF,
        stage="review",
        entered_at=TUESDAY,
        left_at=None,
        entered_by="tm-1",
        left_by=None,
    )
    assert state.rows["intervals"] == [closed, open_, new]
    assert state.added == {"intervals": [new]}


def test_enter_stage_by_the_system_records_no_actor() -> None:
    """``by=None`` (a deadline's doing) is written as no one on both the leaving and the entry."""
    open_ = _interval(5, "assessment", MONDAY, None)
    state = _state([open_])
    _decide.enter_stage(state, "closed", TUESDAY, None)
    assert (open_.left_at, open_.left_by) == (TUESDAY, None)
    assert state.rows["intervals"][-1].entered_by is None


def test_enter_stage_on_a_new_case_only_adds_the_first_interval() -> None:
    """With no interval yet nothing is changed, and the first interval is added."""
    state = _state([])
    _decide.enter_stage(state, "referral", MONDAY, "sw-1")
    assert state.changed == {}
    assert [(row.stage, row.entered_at, row.left_at) for row in state.rows["intervals"]] == [
        ("referral", MONDAY, None)
    ]


# -- extension_refusal -------------------------------------------------------------------------


def test_extension_refusal_allows_an_actor_with_an_extension_role() -> None:
    """A rule with an extension and an actor holding one of its roles: nothing stops it."""
    assert _decide.extension_refusal(REF, "assessment", _rule(), TEAM_MANAGER) is None


def test_extension_refusal_refuses_a_rule_without_an_extension() -> None:
    """A rule that allows no extension: ExtensionNotAllowed naming the deadline and why."""
    refusal = _decide.extension_refusal(REF, "assessment", _rule(extendable=False), TEAM_MANAGER)
    assert refusal is not None
    assert _attrs(refusal) == (
        ExtensionNotAllowed,
        {"reference": REF, "deadline": "assessment", "why": "its rule allows no extension"},
    )


def test_extension_refusal_refuses_an_actor_without_the_extension_roles() -> None:
    """The extension's roles, not the actor's, decide: PermissionDenied to ``extend <name>``."""
    refusal = _decide.extension_refusal(REF, "assessment", _rule(), SOCIAL_WORKER)
    assert refusal is not None
    assert _attrs(refusal) == (
        PermissionDenied,
        {
            "reference": REF,
            "action": "extend assessment",
            "actor_id": "sw-1",
            "required": ("team_manager",),
        },
    )


def test_extension_refusal_checks_the_rule_before_the_actor() -> None:
    """An actor without roles on a rule without an extension hears the rule allows none."""
    refusal = _decide.extension_refusal(REF, "assessment", _rule(extendable=False), NOBODY)
    assert type(refusal) is ExtensionNotAllowed


def test_extension_refusal_on_bundled_rules() -> None:
    """The bundled England pathway: lac_review has no extension, care_proceedings is the court's."""
    pathway = nw.bundled_pathways()["nim-uk-england"]
    court = Actor("co-1", roles={"court_officer"})
    lac = _decide.extension_refusal(REF, "lac_review", pathway.rule("lac_review"), court)
    assert type(lac) is ExtensionNotAllowed
    care = pathway.rule("care_proceedings")
    assert _decide.extension_refusal(REF, "care_proceedings", care, court) is None
    refused = _decide.extension_refusal(REF, "care_proceedings", care, TEAM_MANAGER)
    assert isinstance(refused, PermissionDenied)
    assert refused.required == ("court_officer",)


# -- extension_use_refusal ---------------------------------------------------------------------


@pytest.mark.parametrize("extensions", [0, 1])
def test_extension_use_refusal_allows_uses_below_the_limit(extensions: int) -> None:
    """Extended fewer times than the limit (2), with a reason: it may be extended once more."""
    assert (
        _decide.extension_use_refusal(REF, "assessment", _rule(limit=2), extensions, "late") is None
    )


@pytest.mark.parametrize("extensions", [2, 3])
def test_extension_use_refusal_refuses_at_and_past_the_limit(extensions: int) -> None:
    """Extended the limit's number of times: ExtensionNotAllowed saying how many and the step."""
    refusal = _decide.extension_use_refusal(REF, "assessment", _rule(limit=2), extensions, "late")
    assert refusal is not None
    assert _attrs(refusal) == (
        ExtensionNotAllowed,
        {
            "reference": REF,
            "deadline": "assessment",
            "why": (
                f"already extended {extensions} time(s), the most its rule allows (2 x 2 weeks)"
            ),
        },
    )


def test_extension_use_refusal_with_a_limit_of_one() -> None:
    """A limit of 1: no extension yet may be used, one already may not."""
    rule = _rule(limit=1)
    assert _decide.extension_use_refusal(REF, "assessment", rule, 0, "late") is None
    refusal = _decide.extension_use_refusal(REF, "assessment", rule, 1, "late")
    assert isinstance(refusal, ExtensionNotAllowed)
    assert refusal.why == "already extended 1 time(s), the most its rule allows (1 x 2 weeks)"


@pytest.mark.parametrize("extensions", [0, 1, 1000])
def test_extension_use_refusal_without_a_limit_never_runs_out(extensions: int) -> None:
    """``limit=None`` (a court's extensions): however many already, one more is allowed."""
    assert (
        _decide.extension_use_refusal(REF, "assessment", _rule(limit=None), extensions, "late")
        is None
    )


@pytest.mark.parametrize("reason", BLANK_REASONS)
def test_extension_use_refusal_refuses_a_blank_reason(reason: str | None) -> None:
    """A blank reason: RequirementsNotMet to ``extend <name>``, missing exactly ``reason``."""
    refusal = _decide.extension_use_refusal(REF, "assessment", _rule(limit=2), 1, reason)
    assert refusal is not None
    assert _attrs(refusal) == (
        RequirementsNotMet,
        {"reference": REF, "action": "extend assessment", "missing": ("reason",)},
    )


def test_extension_use_refusal_without_a_limit_still_needs_a_reason() -> None:
    """No limit does not mean no reason."""
    refusal = _decide.extension_use_refusal(REF, "assessment", _rule(limit=None), 9, "  ")
    assert type(refusal) is RequirementsNotMet


def test_extension_use_refusal_checks_the_limit_before_the_reason() -> None:
    """Used up and no reason: refused as used up."""
    refusal = _decide.extension_use_refusal(REF, "assessment", _rule(limit=2), 2, None)
    assert type(refusal) is ExtensionNotAllowed


def test_extension_use_refusal_on_bundled_rules() -> None:
    """Bundled: treatment allows 2 extensions of 1 month; care_proceedings has no cap."""
    pathway = nw.bundled_pathways()["nim-uk-england"]
    treatment = pathway.rule("treatment")
    assert _decide.extension_use_refusal(REF, "treatment", treatment, 1, "late") is None
    refusal = _decide.extension_use_refusal(REF, "treatment", treatment, 2, "late")
    assert isinstance(refusal, ExtensionNotAllowed)
    assert refusal.why == "already extended 2 time(s), the most its rule allows (2 x 1 months)"
    care = pathway.rule("care_proceedings")
    assert _decide.extension_use_refusal(REF, "care_proceedings", care, 50, "court") is None


# -- granted -----------------------------------------------------------------------------------


def test_granted_none_is_none() -> None:
    """No ``by``: the rule's own step applies, so nothing is granted here."""
    assert _decide.granted(None) is None


@pytest.mark.parametrize(
    ("by", "amount"),
    [
        (dt.timedelta(days=1), 1),
        (dt.timedelta(days=3), 3),
        (dt.timedelta(hours=48), 2),
        (dt.timedelta(days=1000), 1000),
    ],
)
def test_granted_a_timedelta_of_whole_days(by: dt.timedelta, amount: int) -> None:
    """A timedelta of whole days is that many calendar days."""
    assert _decide.granted(by) == Duration(amount=amount, unit="days")


@pytest.mark.parametrize(
    ("by", "shown"),
    [
        (dt.timedelta(hours=36), "1 day, 12:00:00"),
        (dt.timedelta(hours=12), "12:00:00"),
        (dt.timedelta(days=2, microseconds=1), "2 days, 0:00:00.000001"),
        (dt.timedelta(hours=-12), "-1 day, 12:00:00"),
    ],
)
def test_granted_refuses_a_timedelta_of_part_days(by: dt.timedelta, shown: str) -> None:
    """A timedelta that is not whole days is refused on ``by``, quoting it."""
    with pytest.raises(InvalidInput) as caught:
        _decide.granted(by)
    assert caught.value.field == "by"
    assert str(caught.value) == f"by={shown} is not a whole number of days"


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("4 weeks", Duration(amount=4, unit="weeks")),
        ("10 working_days", Duration(amount=10, unit="working_days")),
        ("3 months", Duration(amount=3, unit="months")),
        ("1 days", Duration(amount=1, unit="days")),
        ("  2 days ", Duration(amount=2, unit="days")),
        ("1000 months", Duration(amount=1000, unit="months")),
    ],
)
def test_granted_a_pathway_style_duration(by: str, expected: Duration) -> None:
    """Text in the pathway's ``<N> <unit>`` form is that duration, up to 1,000 of the unit."""
    assert _decide.granted(by) == expected


@pytest.mark.parametrize("by", ["junk", "4 fortnights", "weeks 4", "-3 days", ""])
def test_granted_refuses_text_that_is_no_duration(by: str) -> None:
    """Text not in ``<N> <unit>`` form is refused on ``by``, quoting it and the accepted units."""
    with pytest.raises(InvalidInput) as caught:
        _decide.granted(by)
    assert caught.value.field == "by"
    assert str(caught.value) == f"by: {by!r} is not a duration; {DURATION_HELP}"


def test_granted_quotes_at_most_40_characters_of_long_text() -> None:
    """A long bad ``by`` is quoted by its first 40 characters only."""
    with pytest.raises(InvalidInput) as caught:
        _decide.granted("x" * 100)
    assert str(caught.value) == f"by: {'x' * 40!r} is not a duration; {DURATION_HELP}"


@pytest.mark.parametrize(
    ("by", "shown"),
    [
        (dt.timedelta(0), "0 days"),
        (dt.timedelta(days=-3), "-3 days"),
        ("0 days", "0 days"),
        ("0 weeks", "0 weeks"),
    ],
)
def test_granted_refuses_nothing_or_less(by: object, shown: str) -> None:
    """A zero or negative length grants nothing and is refused on ``by``."""
    with pytest.raises(InvalidInput) as caught:
        _decide.granted(by)
    assert caught.value.field == "by"
    assert str(caught.value) == f"by={shown} must be longer than zero"


@pytest.mark.parametrize(
    ("by", "shown"),
    [
        (dt.timedelta(days=1001), "1001 days"),
        ("1001 days", "1001 days"),
        ("1001 weeks", "1001 weeks"),
        ("99999 months", "99999 months"),
    ],
)
def test_granted_refuses_more_than_the_maximum(by: object, shown: str) -> None:
    """One more than 1,000 of any unit is longer than any step: refused on ``by``, quoted."""
    with pytest.raises(InvalidInput) as caught:
        _decide.granted(by)
    assert caught.value.field == "by"
    assert str(caught.value) == f"by='{shown}' is longer than any extension step"


def test_granted_maximum_is_one_thousand() -> None:
    """``MAX_GRANT`` is the 1,000 the loader allows of any unit."""
    assert _decide.MAX_GRANT == 1000


@pytest.mark.parametrize(
    ("by", "kind"),
    [(4, "int"), (4.0, "float"), (True, "bool"), (b"4 weeks", "bytes"), (["4 weeks"], "list")],
)
def test_granted_refuses_other_types(by: object, kind: str) -> None:
    """Anything but text or a timedelta is refused on ``by``, naming its type."""
    with pytest.raises(InvalidInput) as caught:
        _decide.granted(by)
    assert caught.value.field == "by"
    assert str(caught.value) == (
        f"by must be a duration such as '4 weeks' or a timedelta, not {kind}"
    )


# -- coerce_facts and coerce_fact --------------------------------------------------------------


def test_coerce_facts_none_is_no_facts() -> None:
    """``facts=None`` is an empty dict."""
    assert _decide.coerce_facts(_pathway(), None) == {}


def test_coerce_facts_empty_is_no_facts() -> None:
    """An empty mapping is an empty dict."""
    assert _decide.coerce_facts(_pathway(), {}) == {}


def test_coerce_facts_returns_each_fact_in_its_stored_type() -> None:
    """Declared facts come back checked: a bool, a date (from text) and an enum value."""
    facts = {"consent": False, "entered_care_on": "2026-01-05", "decision": "adoption"}
    assert _decide.coerce_facts(_pathway(), facts) == {
        "consent": False,
        "entered_care_on": dt.date(2026, 1, 5),
        "decision": "adoption",
    }


def test_coerce_facts_refuses_an_undeclared_fact_naming_the_declared_ones() -> None:
    """A fact the pathway does not declare is refused on ``facts``, listing the declared ones."""
    with pytest.raises(InvalidInput) as caught:
        _decide.coerce_facts(_pathway(), {"consent": True, "ghost": True})
    assert caught.value.field == "facts"
    assert str(caught.value) == (
        "fact 'ghost' is not declared by pathway test-decide "
        "(declared: consent, decision, entered_care_on); the engine stores only declared facts"
    )


def test_coerce_facts_refuses_a_value_through_its_declaration() -> None:
    """A declared fact with a bad value is refused on the fact's own name."""
    with pytest.raises(InvalidInput) as caught:
        _decide.coerce_facts(_pathway(), {"decision": "fostering"})
    assert caught.value.field == "decision"


@pytest.mark.parametrize("facts", [["consent"], "consent", 5])
def test_coerce_facts_refuses_a_non_mapping(facts: Any) -> None:
    """Facts that are not a mapping are refused on ``facts``."""
    with pytest.raises(InvalidInput) as caught:
        _decide.coerce_facts(_pathway(), facts)
    assert caught.value.field == "facts"


def test_coerce_facts_refuses_a_bad_fact_name() -> None:
    """A fact name that is not an identifier is refused on ``facts`` before any lookup."""
    with pytest.raises(InvalidInput) as caught:
        _decide.coerce_facts(_pathway(), {" consent": True})
    assert caught.value.field == "facts"
    assert "surrounding spaces" in str(caught.value)


BOOL = FactSpec(name="consent", type="bool")
DATE = FactSpec(name="entered_care_on", type="date")
ENUM = FactSpec(name="decision", type="enum", values=("return_home", "adoption"))


@pytest.mark.parametrize("value", [True, False])
def test_coerce_fact_bool_accepts_true_and_false(value: bool) -> None:
    """A bool fact keeps a real bool as it is."""
    assert _decide.coerce_fact(BOOL, value) is value


@pytest.mark.parametrize(
    ("value", "shown"), [(1, "1"), (0, "0"), ("true", "'true'"), (None, "None")]
)
def test_coerce_fact_bool_refuses_anything_else(value: object, shown: str) -> None:
    """A bool fact refuses look-alikes (1, "true"), on the fact's name, quoting the value."""
    with pytest.raises(InvalidInput) as caught:
        _decide.coerce_fact(BOOL, value)
    assert caught.value.field == "consent"
    assert str(caught.value) == f"fact 'consent' is true or false, not {shown}"


@pytest.mark.parametrize("value", ["2026-01-05", dt.date(2026, 1, 5)])
def test_coerce_fact_date_accepts_a_date_or_iso_text(value: object) -> None:
    """A date fact takes a ``datetime.date`` or ``YYYY-MM-DD`` and stores a date."""
    assert _decide.coerce_fact(DATE, value) == dt.date(2026, 1, 5)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("20260105", "entered_care_on must be a date written YYYY-MM-DD, not '20260105'"),
        ("2026-02-30", "entered_care_on: '2026-02-30' is not a real date"),
        (True, "entered_care_on must be a datetime.date or 'YYYY-MM-DD', not bool True"),
        (
            MONDAY,
            "entered_care_on must be a datetime.date or 'YYYY-MM-DD', not datetime "
            "datetime.datetime(2026, 1, 5, 10, 0, ...",
        ),
        (
            dt.date(1989, 12, 31),
            "entered_care_on 1989-12-31 is outside the dates the engine keeps "
            "(1990-01-01 to 2099-12-31)",
        ),
    ],
)
def test_coerce_fact_date_refuses_other_values(value: object, message: str) -> None:
    """A date fact refuses other text, types and out-of-range dates, on the fact's name."""
    with pytest.raises(InvalidInput) as caught:
        _decide.coerce_fact(DATE, value)
    assert caught.value.field == "entered_care_on"
    assert str(caught.value) == message


@pytest.mark.parametrize("value", ["return_home", "adoption"])
def test_coerce_fact_enum_accepts_its_values(value: str) -> None:
    """An enum fact keeps any of its declared values."""
    assert _decide.coerce_fact(ENUM, value) == value


class _EqualsEverything:
    """A value that claims to equal anything: only text is compared with an enum's values."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "<anything>"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("fostering", "'fostering'"),
        ("Adoption", "'Adoption'"),
        ("", "''"),
        (1, "1"),
        (None, "None"),
        (_EqualsEverything(), "<anything>"),
    ],
)
def test_coerce_fact_enum_refuses_anything_else(value: object, shown: str) -> None:
    """An enum fact refuses any other value, on its name, listing the values it takes."""
    with pytest.raises(InvalidInput) as caught:
        _decide.coerce_fact(ENUM, value)
    assert caught.value.field == "decision"
    assert str(caught.value) == f"fact 'decision' must be one of return_home, adoption; got {shown}"


# -- changed_facts, date_facts, facts_to_json, facts_from_json ----------------------------------


def test_changed_facts_keeps_new_and_different_values_only() -> None:
    """Values equal to the stored ones are dropped; changed and newly recorded ones kept."""
    stored = {"consent": True, "decision": "return_home", "entered_care_on": dt.date(2026, 1, 5)}
    new = {
        "consent": True,
        "decision": "adoption",
        "entered_care_on": dt.date(2026, 1, 5),
        "lac_review_held_on": dt.date(2026, 2, 1),
    }
    assert _decide.changed_facts(stored, new) == {
        "decision": "adoption",
        "lac_review_held_on": dt.date(2026, 2, 1),
    }


def test_changed_facts_with_nothing_new_is_empty() -> None:
    """Recording the same values again changes nothing."""
    assert _decide.changed_facts({"consent": False}, {"consent": False}) == {}
    assert _decide.changed_facts({"consent": False}, {}) == {}


def test_changed_facts_counts_false_as_a_change_from_missing() -> None:
    """False recorded for a fact not yet held is a change (missing is not false)."""
    assert _decide.changed_facts({}, {"consent": False}) == {"consent": False}


def test_date_facts_keeps_only_dates() -> None:
    """Only date values can start or move a clock; bools, text and ISO-like text are left out."""
    facts = {
        "entered_care_on": dt.date(2026, 1, 5),
        "consent": True,
        "decision": "adoption",
        "issued_on": "2026-01-05",
        "held_on": dt.date(2026, 2, 1),
    }
    assert _decide.date_facts(facts) == {
        "entered_care_on": dt.date(2026, 1, 5),
        "held_on": dt.date(2026, 2, 1),
    }


def test_date_facts_of_no_facts_is_empty() -> None:
    """No facts, no dates."""
    assert _decide.date_facts({}) == {}


def test_facts_to_json_sorts_names_and_writes_dates_as_iso_text() -> None:
    """Stored form: names in order, dates as ``YYYY-MM-DD``, other values as they are."""
    facts = {"entered_care_on": dt.date(2026, 1, 5), "consent": False, "decision": "adoption"}
    stored = _decide.facts_to_json(facts)
    assert list(stored.items()) == [
        ("consent", False),
        ("decision", "adoption"),
        ("entered_care_on", "2026-01-05"),
    ]


def test_facts_from_json_turns_declared_date_text_back_into_dates() -> None:
    """Only a declared date fact's text becomes a date; everything else is left untouched."""
    stored = {
        "entered_care_on": "2026-01-05",
        "decision": "2026-01-05",
        "undeclared_on": "2026-01-05",
        "consent": True,
    }
    assert _decide.facts_from_json(_pathway(), stored) == {
        "entered_care_on": dt.date(2026, 1, 5),
        "decision": "2026-01-05",
        "undeclared_on": "2026-01-05",
        "consent": True,
    }


def test_facts_from_json_leaves_a_date_fact_that_is_not_text() -> None:
    """A declared date fact already held as a date is kept as it is."""
    day = dt.date(2026, 1, 5)
    assert _decide.facts_from_json(_pathway(), {"entered_care_on": day}) == {"entered_care_on": day}


def test_facts_round_trip_through_their_stored_form() -> None:
    """Facts written by facts_to_json read back equal through facts_from_json."""
    facts = {"consent": True, "decision": "adoption", "entered_care_on": dt.date(2026, 1, 5)}
    stored = _decide.facts_to_json(facts)
    assert stored["entered_care_on"] == "2026-01-05"
    assert _decide.facts_from_json(_pathway(), stored) == facts


# -- closure_date ------------------------------------------------------------------------------


@pytest.mark.parametrize("day", [dt.date(2026, 12, 24), dt.date(1990, 1, 1), dt.date(2099, 12, 31)])
def test_closure_date_accepts_a_date_in_range(day: dt.date) -> None:
    """A ``datetime.date`` from 1990 to 2099 is a closure, returned as it is."""
    assert _decide.closure_date("london", day) == day


@pytest.mark.parametrize("day", ["2026-12-24", "christmas"])
def test_closure_date_refuses_text(day: str) -> None:
    """Closures are typed as dates: even ISO text is refused on ``closures``, naming the site."""
    with pytest.raises(InvalidInput) as caught:
        _decide.closure_date("london", day)
    assert caught.value.field == "closures"
    assert str(caught.value) == f"closures['london']: {day!r} is not a datetime.date"


@pytest.mark.parametrize(
    ("day", "message"),
    [
        (
            dt.date(1989, 12, 31),
            "closures['london'] 1989-12-31 is outside the dates the engine keeps "
            "(1990-01-01 to 2099-12-31)",
        ),
        (
            dt.date(2100, 1, 1),
            "closures['london'] 2100-01-01 is outside the dates the engine keeps "
            "(1990-01-01 to 2099-12-31)",
        ),
        (5, "closures['london'] must be a datetime.date or 'YYYY-MM-DD', not int 5"),
        (None, "closures['london'] must be a datetime.date or 'YYYY-MM-DD', not NoneType None"),
    ],
)
def test_closure_date_refuses_a_date_out_of_range_or_another_type(
    day: object, message: str
) -> None:
    """Out of range or not a date: refused on ``closures`` (not the site's key), naming the site."""
    with pytest.raises(InvalidInput) as caught:
        _decide.closure_date("london", day)
    assert caught.value.field == "closures"
    assert str(caught.value) == message


# -- stage_map ---------------------------------------------------------------------------------


def test_stage_map_none_is_empty() -> None:
    """No stage map is an empty one."""
    assert _decide.stage_map(_pathway(), None) == {}


def test_stage_map_returns_a_checked_plain_dict() -> None:
    """A map onto the target's stages comes back as a dict of the same pairs."""
    given = MappingProxyType({"triage": "assessment", "old_review": "review"})
    checked = _decide.stage_map(_pathway(), given)
    assert type(checked) is dict
    assert checked == {"triage": "assessment", "old_review": "review"}


@pytest.mark.parametrize("mapping", [["triage"], "triage", 5])
def test_stage_map_refuses_a_non_mapping(mapping: Any) -> None:
    """A stage map that is not a mapping is refused on ``stage_map``."""
    with pytest.raises(InvalidInput) as caught:
        _decide.stage_map(_pathway(), mapping)
    assert caught.value.field == "stage_map"
    assert str(caught.value) == "stage_map must map old stage ids to new ones"


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"": "review"}, "a stage id must not be empty"),
        ({"triage": ""}, "a stage id must not be empty"),
        ({5: "review"}, "a stage id must be text, not int 5"),
        ({"triage": 5}, "a stage id must be text, not int 5"),
    ],
)
def test_stage_map_refuses_a_stage_id_that_is_no_identifier(mapping: Any, message: str) -> None:
    """Old and new stage ids must both be identifiers: refused on ``stage_map``."""
    with pytest.raises(InvalidInput) as caught:
        _decide.stage_map(_pathway(), mapping)
    assert caught.value.field == "stage_map"
    assert str(caught.value) == message


def test_stage_map_refuses_a_stage_the_target_lacks_naming_its_stages() -> None:
    """A new stage not in the target is refused, naming the target, its version and stages."""
    with pytest.raises(InvalidInput) as caught:
        _decide.stage_map(_pathway(), {"referral": "referral", "triage": "nowhere"})
    assert caught.value.field == "stage_map"
    assert str(caught.value) == (
        "stage_map: 'nowhere' is not a stage of test-decide version 2 "
        "(its stages: assessment, closed, referral, review)"
    )


# -- check_upgrade -----------------------------------------------------------------------------

OLDS = {1: _old_pathway()}
CANNOT = "cannot upgrade test-decide to version 2: "


def _lacks(reference: str, stage: str = "triage") -> str:
    return (
        f"case {reference} is in stage '{stage}', which version 2 lacks: "
        f"map it with stage_map={{'{stage}': ...}}"
    )


def test_check_upgrade_allows_cases_the_target_can_hold() -> None:
    """Cases in stages the target has, holding declared facts, need nothing: no refusal."""
    running = [
        _running("C-1", "referral", {"consent": True, "entered_care_on": "2026-01-05"}),
        _running("C-2", "assessment"),
    ]
    _decide.check_upgrade(_pathway(), {}, running, OLDS)


def test_check_upgrade_allows_nothing_running() -> None:
    """With no running case there is nothing to refuse."""
    _decide.check_upgrade(_pathway(), {"triage": "assessment"}, [], OLDS)


def test_check_upgrade_allows_a_stage_mapped_into_the_target() -> None:
    """A case in a stage the target lacks is fine once the map sends it to one it has."""
    running = [_running("C-1", "triage"), _running("C-2", "assessment")]
    _decide.check_upgrade(_pathway(), {"triage": "review"}, running, OLDS)


def test_check_upgrade_accepts_map_keys_from_any_version_in_use() -> None:
    """Map keys may name stages of the target or of any old version in use."""
    older = _pathway(
        version=0, stages=(Stage(id="intake", title="Intake", initial=True),), facts={}
    )
    mapping = {"intake": "referral", "triage": "assessment", "review": "assessment"}
    olds = {0: older, 1: _old_pathway()}
    _decide.check_upgrade(_pathway(), mapping, [], olds)


def test_check_upgrade_refuses_map_keys_no_version_in_use_has() -> None:
    """Unknown map keys are refused on ``stage_map``, sorted and quoted."""
    mapping = {"zulu": "review", "alpha": "review", "triage": "review"}
    with pytest.raises(InvalidInput) as caught:
        _decide.check_upgrade(_pathway(), mapping, [], OLDS)
    assert caught.value.field == "stage_map"
    assert str(caught.value) == (
        "stage_map names stages no version of test-decide in use has: 'alpha', 'zulu'"
    )


def test_check_upgrade_names_at_most_five_unknown_map_keys() -> None:
    """Of six unknown keys only the first five, in order, are named."""
    mapping = {f"s{n}": "review" for n in (6, 5, 4, 3, 2, 1)}
    with pytest.raises(InvalidInput) as caught:
        _decide.check_upgrade(_pathway(), mapping, [], OLDS)
    assert str(caught.value) == (
        "stage_map names stages no version of test-decide in use has: 's1', 's2', 's3', 's4', 's5'"
    )


def test_check_upgrade_cuts_a_long_unknown_map_key_to_100_characters() -> None:
    """An unknown key is quoted by its first 100 characters."""
    long_key = "a" * 100 + "b" * 50
    with pytest.raises(InvalidInput) as caught:
        _decide.check_upgrade(_pathway(), {long_key: "review"}, [], OLDS)
    assert str(caught.value) == (
        f"stage_map names stages no version of test-decide in use has: {'a' * 100!r}"
    )


def test_check_upgrade_checks_the_map_before_the_cases() -> None:
    """An unknown key is refused even when a running case has its own problem."""
    with pytest.raises(InvalidInput, match=r"^stage_map names stages"):
        _decide.check_upgrade(_pathway(), {"ghost": "review"}, [_running("C-1", "triage")], OLDS)


def test_check_upgrade_refuses_a_case_in_a_stage_the_target_lacks() -> None:
    """An unmapped case in a dropped stage is named with its stage and how to map it."""
    with pytest.raises(InvalidInput) as caught:
        _decide.check_upgrade(_pathway(), {}, [_running("C-7", "triage")], OLDS)
    assert caught.value.field == "stage_map"
    assert str(caught.value) == CANNOT + _lacks("C-7")


def test_check_upgrade_refuses_a_stage_mapped_to_a_final_one() -> None:
    """A running case may not be moved into a final stage."""
    with pytest.raises(InvalidInput) as caught:
        _decide.check_upgrade(_pathway(), {"triage": "closed"}, [_running("C-8", "triage")], OLDS)
    assert caught.value.field == "stage_map"
    assert str(caught.value) == CANNOT + "case C-8: 'closed' is a final stage"


def test_check_upgrade_refuses_a_case_holding_facts_the_target_does_not_declare() -> None:
    """Facts the target drops are named, sorted, with the case."""
    facts = {"legacy_flag": True, "zeta": 1, "consent": True, "entered_care_on": "2026-01-05"}
    with pytest.raises(InvalidInput) as caught:
        _decide.check_upgrade(_pathway(), {}, [_running("C-9", "assessment", facts)], OLDS)
    assert caught.value.field == "stage_map"
    assert str(caught.value) == (
        CANNOT + "case C-9 holds facts version 2 does not declare: legacy_flag, zeta"
    )


def test_check_upgrade_names_every_problem_of_a_case_in_order() -> None:
    """One case with a dropped stage and dropped facts: both problems, stage first."""
    running = [_running("C-1", "triage", {"legacy_flag": False})]
    with pytest.raises(InvalidInput) as caught:
        _decide.check_upgrade(_pathway(), {}, running, OLDS)
    assert str(caught.value) == (
        CANNOT + _lacks("C-1") + "; case C-1 holds facts version 2 does not declare: legacy_flag"
    )


def test_check_upgrade_lists_exactly_five_problems_without_a_count() -> None:
    """Five problems are all shown, with no "and N more"."""
    running = [_running(f"C-{n}", "triage") for n in range(1, 6)]
    with pytest.raises(InvalidInput) as caught:
        _decide.check_upgrade(_pathway(), {}, running, OLDS)
    assert str(caught.value) == CANNOT + "; ".join(_lacks(f"C-{n}") for n in range(1, 6))


@pytest.mark.parametrize(("cases", "more"), [(6, 1), (8, 3)])
def test_check_upgrade_shows_five_problems_and_counts_the_rest(cases: int, more: int) -> None:
    """More than five problems: the first five, then how many more."""
    running = [_running(f"C-{n}", "triage") for n in range(1, cases + 1)]
    with pytest.raises(InvalidInput) as caught:
        _decide.check_upgrade(_pathway(), {}, running, OLDS)
    shown = "; ".join(_lacks(f"C-{n}") for n in range(1, 6))
    assert str(caught.value) == CANNOT + shown + f"; and {more} more"


def test_check_upgrade_reads_each_case_facts_with_its_own_version() -> None:
    """Stored facts are read through the pathway version the case is on, looked up in ``olds``."""
    row = SimpleNamespace(
        reference="C-1", pathway_version=1, stage="assessment", facts={"legacy_flag": True}
    )
    olds = {1: _old_pathway(), 2: _pathway()}
    with pytest.raises(InvalidInput, match="C-1 holds facts version 2 does not declare"):
        _decide.check_upgrade(_pathway(), {}, [row], olds)


def test_refusals_are_action_refused() -> None:
    """Every refusal these checks return is an ActionRefused the engine audits as denied."""
    refusals = [
        _decide.may_act(_case(), NOBODY, "record", ALLOWED),
        _decide.fire_refusal(_case(paused_at=MONDAY), "withdraw"),
        _decide.pause_refusal(_case(), None),
        _decide.extension_refusal(REF, "assessment", _rule(extendable=False), TEAM_MANAGER),
        _decide.extension_use_refusal(REF, "assessment", _rule(limit=1), 1, "late"),
    ]
    assert all(isinstance(refusal, ActionRefused) for refusal in refusals)


# -- who may hold a case ----------------------------------------------------------------------


def _member(roles: set[str], sites: set[str], *, removed: dt.datetime | None = None) -> StaffMember:
    return StaffMember(
        id="sw-1",
        roles=frozenset(roles),
        sites=frozenset(sites),
        added_at=MONDAY,
        updated_at=MONDAY,
        removed_at=removed,
    )


def test_a_worker_on_the_roster_at_the_site_with_a_pathway_role_may_hold_a_case() -> None:
    """Neither call raises: a social worker at London, a clinician at every site."""
    pathway = nw.bundled_pathways()["nim-uk-england"]
    _decide.check_worker("sw-1", _member({"social_worker"}, {"london"}), "london", pathway)
    _decide.check_worker("sw-1", _member({"clinician"}, {"*"}), "london", pathway)


def test_a_worker_who_cannot_hold_a_case_is_refused_with_the_reason_and_field() -> None:
    """Each refusal names the worker, what is wrong and (for bad input) the field."""
    pathway = nw.bundled_pathways()["nim-uk-england"]
    with pytest.raises(StaffNotFound) as unknown:
        _decide.check_worker("sw-1", None, "london", pathway)
    assert (str(unknown.value), unknown.value.removed) == ("sw-1 is not on the staff roster", False)
    with pytest.raises(StaffNotFound) as gone:
        _decide.check_worker("sw-1", _member({"social_worker"}, {"london"}, removed=TUESDAY),
                             "london", pathway)  # fmt: skip
    assert (str(gone.value), gone.value.removed) == ("sw-1 was removed from the staff roster", True)
    with pytest.raises(InvalidInput) as elsewhere:
        _decide.check_worker("sw-1", _member({"social_worker"}, {"glasgow", "jefferson-parish"}),
                             "london", pathway)  # fmt: skip
    assert str(elsewhere.value) == (
        "sw-1 does not work at london (their sites: glasgow, jefferson-parish)"
    )
    assert elsewhere.value.field == "worker"
    with pytest.raises(InvalidInput) as no_role:
        _decide.check_worker("sw-1", _member({"administrator", "auditor"}, {"london"}),
                             "london", pathway)  # fmt: skip
    assert str(no_role.value) == (
        "sw-1 holds no role of pathway nim-uk-england (their roles: administrator, auditor; "
        "the pathway's: clinician, coordinator, court_officer, social_worker, team_manager)"
    )
    assert no_role.value.field == "worker"
