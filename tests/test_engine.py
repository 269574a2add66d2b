"""The Engine's contract, on SQLite and on PostgreSQL: persisted, audited, permissioned transitions.

Every bundled pathway is walked from referral to closed along each path; every kind of refusal is
checked to change nothing but the audit log; the role x trigger matrix of PATHWAYS.md is enforced
through the engine; and no value that is not a declared fact, reference, actor, role, stage or
trigger ever reaches a table.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from engine_helpers import (
    ACTION_ROLES,
    CLIN,
    CO,
    COMMON_FACTS,
    COORD,
    DATE_FACTS,
    DECISIONS,
    EVERYONE,
    FACTS_FOR,
    OPEN_STAGES,
    PATH_TO,
    PATHWAY_IDS,
    ROLES,
    SITES,
    STAGES,
    SW,
    TM,
    TRIGGERS,
    WITH_TREATMENT,
    WITHOUT_TREATMENT,
    Clock,
    actor,
    dump,
    expect_denied,
    expect_nothing_written,
    firer,
    may_fire,
    new_engine,
    open_at,
    reflect,
    strings_in,
    triggers_from,
)

import nim_workflow as nw


@pytest.fixture
def clock() -> Clock:
    """The engine's injected clock."""
    return Clock()


@pytest.fixture
def engine(db_url: str, clock: Clock) -> Iterator[nw.Engine]:
    """A migrated engine on an empty database of each backend."""
    eng = new_engine(db_url, clock)
    yield eng
    eng.close()


# -- walking every path ---------------------------------------------------------------------------


def _outcome(trigger: str, decision: str) -> str | None:
    if trigger == "record_decision":
        return decision
    return TRIGGERS[trigger].outcome


def walk_and_check(
    engine: nw.Engine,
    clock: Clock,
    reference: str,
    pathway: str,
    triggers: tuple[str, ...],
    *,
    decision: str = "return_home",
    recommendation: str = "return_home",
) -> nw.Case:
    """Walk one case through ``triggers`` and check everything the engine says on the way."""
    opened_at = clock.advance(hours=1)
    case = engine.open_case(reference, pathway=pathway, site=SITES[pathway], actor=SW)
    assert (case.reference, case.pathway_id, case.site) == (reference, pathway, SITES[pathway])
    assert (case.stage, case.version, case.outcome, case.closed_at) == ("referral", 1, None, None)
    assert case.opened_at == case.stage_entered_at == opened_at
    assert case.pathway_version >= 1
    assert not case.paused
    assert case.is_open
    entered: list[tuple[str, dt.datetime, str | None]] = [("referral", opened_at, None)]
    audit: list[tuple[Any, ...]] = [("opened", SW.id, None, None, "referral", None)]
    version = 1
    for step, trigger in enumerate(triggers):
        spec = TRIGGERS[trigger]
        source = case.stage
        assert source in spec.sources
        facts = dict(FACTS_FOR[trigger])
        if trigger == "record_decision":
            facts = {"decision": decision}
        if trigger == "submit_recommendation":
            facts["recommendation"] = recommendation
        fire_facts: dict[str, Any] | None = None
        if facts and step % 2 == 0:
            # Half the time the facts come first, through record(): a version of their own.
            recorder = CO if trigger == "record_decision" else SW
            clock.advance(days=2)
            case = engine.record(reference, facts, actor=recorder)
            version += 1
            assert case.version == version
            assert case.stage == source
            audit.append(("fact_recorded", recorder.id, None))
        elif facts:
            fire_facts = facts
        reason = "family moved out of the area" if spec.reason_required else None
        when = clock.advance(days=9)
        who = firer(trigger)
        case = engine.fire(reference, trigger, actor=who, reason=reason, facts=fire_facts)
        version += 1
        closing = spec.dest == "closed"
        assert case.stage == spec.dest
        assert case.version == version
        assert case.stage_entered_at == when
        assert case.opened_at == opened_at
        assert case.closed_at == (when if closing else None)
        assert case.outcome == (_outcome(trigger, decision) if closing else None)
        assert case.is_open is not closing
        for name, value in facts.items():
            assert case.facts[name] == value
        assert engine.case(reference) == case
        entered.append((spec.dest, when, trigger))
        audit.append(("transition", who.id, trigger, source, spec.dest, reason))

    history = engine.history(reference)
    assert [(h.stage, h.entered_at, h.trigger) for h in history] == entered
    assert [h.left_at for h in history] == [when for _, when, _ in entered[1:]] + [None]
    assert all(h.working_days >= 0 for h in history)

    events = engine.audit(reference)
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert all(e.reference == reference for e in events)
    got = [
        (e.action, e.actor_id, e.trigger)
        if e.action == "fact_recorded"
        else (e.action, e.actor_id, e.trigger, e.from_stage, e.to_stage, e.reason)
        for e in events
    ]
    assert got == audit
    transitions = [e for e in events if e.action == "transition"]
    assert [e.at for e in transitions] == [when for _, when, _ in entered[1:]]
    return case


def check_closed(engine: nw.Engine, reference: str) -> None:
    """A closed case: no open deadline, nothing anyone may fire, and firing is refused."""
    assert all(d.status != "open" for d in engine.deadlines(reference))
    for role in ROLES:
        assert engine.allowed_triggers(reference, actor(role)) == []
    with pytest.raises(nw.TransitionNotAllowed):
        engine.fire(reference, "withdraw", actor=TM, reason="again")


@pytest.mark.parametrize("pathway", PATHWAY_IDS)
def test_walk_with_treatment_to_each_court_decision(
    engine: nw.Engine, clock: Clock, pathway: str
) -> None:
    """Referral to closed through treatment ends with each court decision as the outcome."""
    for number, decision in enumerate(DECISIONS):
        reference = f"TRT-{number}"
        recommendation = "permanence_away" if number % 2 else "return_home"
        case = walk_and_check(
            engine,
            clock,
            reference,
            pathway,
            WITH_TREATMENT,
            decision=decision,
            recommendation=recommendation,
        )
        assert case.outcome == decision
        assert case.facts["recommendation"] == recommendation
        check_closed(engine, reference)
    assert engine.verify_audit().ok


@pytest.mark.parametrize("pathway", PATHWAY_IDS)
def test_walk_without_treatment_to_each_court_decision(
    engine: nw.Engine, clock: Clock, pathway: str
) -> None:
    """Assessment may go straight to recommendation; each court decision closes the case."""
    for number, decision in enumerate(DECISIONS):
        reference = f"NOT-{number}"
        case = walk_and_check(
            engine, clock, reference, pathway, WITHOUT_TREATMENT, decision=decision
        )
        assert case.outcome == decision
        assert [h.stage for h in engine.history(reference)] == [
            "referral",
            "assessment",
            "recommendation",
            "court",
            "closed",
        ]
        check_closed(engine, reference)
    assert engine.verify_audit().ok


@pytest.mark.parametrize("pathway", PATHWAY_IDS)
def test_declined_referral_closes_not_eligible(
    engine: nw.Engine, clock: Clock, pathway: str
) -> None:
    """decline_referral closes a referral with outcome not_eligible and the reason audited."""
    case = walk_and_check(engine, clock, "DEC-1", pathway, ("decline_referral",))
    assert case.outcome == "not_eligible"
    check_closed(engine, "DEC-1")
    assert engine.verify_audit().ok


@pytest.mark.parametrize("pathway", PATHWAY_IDS)
def test_withdrawn_from_each_open_stage(engine: nw.Engine, clock: Clock, pathway: str) -> None:
    """withdraw closes a case from every open stage with outcome withdrawn."""
    for stage in OPEN_STAGES:
        reference = f"WD-{stage}"
        case = walk_and_check(engine, clock, reference, pathway, (*PATH_TO[stage], "withdraw"))
        assert case.outcome == "withdrawn"
        assert [h.stage for h in engine.history(reference)][-2:] == [stage, "closed"]
        check_closed(engine, reference)
    assert engine.verify_audit().ok


# -- refusals: each kind, and that each writes only its denied event ------------------------------


def test_trigger_not_valid_from_stage_lists_valid_triggers(engine: nw.Engine) -> None:
    """A trigger not valid from the stage is refused, naming the triggers valid there."""
    open_at(engine, "TNA-1", "referral")
    error, denied = expect_denied(
        engine,
        "TNA-1",
        lambda: engine.fire("TNA-1", "offer_treatment", actor=TM),
        nw.TransitionNotAllowed,
        actor_id=TM.id,
    )
    assert isinstance(error, nw.TransitionNotAllowed)
    assert sorted(error.allowed) == triggers_from("referral")
    for trigger in triggers_from("referral"):
        assert trigger in str(error)
    assert (error.reference, error.trigger, error.stage) == ("TNA-1", "offer_treatment", "referral")
    assert denied.trigger == "offer_treatment"
    assert denied.detail["action"] == "fire"
    assert sorted(denied.detail["allowed"]) == triggers_from("referral")

    error, _ = expect_denied(
        engine,
        "TNA-1",
        lambda: engine.fire("TNA-1", "no_such_trigger", actor=TM),
        nw.TransitionNotAllowed,
        actor_id=TM.id,
    )
    assert isinstance(error, nw.TransitionNotAllowed)
    assert sorted(error.allowed) == triggers_from("referral")

    open_at(engine, "TNA-2", "court")
    error, _ = expect_denied(
        engine,
        "TNA-2",
        lambda: engine.fire("TNA-2", "accept_referral", actor=TM),
        nw.TransitionNotAllowed,
        actor_id=TM.id,
    )
    assert isinstance(error, nw.TransitionNotAllowed)
    assert sorted(error.allowed) == triggers_from("court")


def test_closed_case_refuses_every_action(engine: nw.Engine) -> None:
    """A closed case refuses transitions and facts, auditing each refusal."""
    open_at(engine, "CLO-1", "referral")
    engine.fire("CLO-1", "decline_referral", actor=TM, reason="not eligible for the service")
    expect_denied(
        engine,
        "CLO-1",
        lambda: engine.fire("CLO-1", "accept_referral", actor=TM),
        nw.TransitionNotAllowed,
        actor_id=TM.id,
    )
    expect_denied(
        engine,
        "CLO-1",
        lambda: engine.fire("CLO-1", "withdraw", actor=TM, reason="r"),
        nw.TransitionNotAllowed,
        actor_id=TM.id,
    )
    expect_denied(
        engine,
        "CLO-1",
        lambda: engine.record("CLO-1", {"consent_recorded": False}, actor=SW),
        nw.ActionRefused,
        actor_id=SW.id,
    )
    expect_denied(
        engine,
        "CLO-1",
        lambda: engine.pause("CLO-1", actor=TM, reason="r"),
        nw.ActionRefused,
        actor_id=TM.id,
    )


def test_permission_denied_names_the_roles_required(engine: nw.Engine) -> None:
    """An actor without a permitted role is refused, and the error names the roles needed."""
    open_at(engine, "PD-1", "treatment")
    error, denied = expect_denied(
        engine,
        "PD-1",
        lambda: engine.fire("PD-1", "complete_treatment", actor=SW),
        nw.PermissionDenied,
        actor_id=SW.id,
    )
    assert isinstance(error, nw.PermissionDenied)
    assert isinstance(error, PermissionError)
    assert set(error.required) == {"clinician", "team_manager"}
    assert "clinician" in str(error)
    assert "team_manager" in str(error)
    assert error.actor_id == SW.id
    assert denied.trigger == "complete_treatment"
    assert denied.roles == ("social_worker",)
    assert set(denied.detail["required"]) == {"clinician", "team_manager"}

    open_at(engine, "PD-2", "court")
    error, _ = expect_denied(
        engine,
        "PD-2",
        lambda: engine.fire("PD-2", "record_decision", actor=TM),
        nw.PermissionDenied,
        actor_id=TM.id,
    )
    assert isinstance(error, nw.PermissionDenied)
    assert error.required == ("court_officer",)


def test_requirements_not_met_names_the_missing_facts(engine: nw.Engine) -> None:
    """A transition whose required facts are missing is refused, naming each missing fact."""
    engine.open_case("RNM-1", pathway="nim-uk-england", site="london", actor=SW)
    error, denied = expect_denied(
        engine,
        "RNM-1",
        lambda: engine.fire("RNM-1", "accept_referral", actor=TM),
        nw.RequirementsNotMet,
        actor_id=TM.id,
    )
    assert isinstance(error, nw.RequirementsNotMet)
    assert error.missing == ("consent_recorded",)
    assert "consent_recorded" in str(error)
    assert denied.detail["missing"] == ["consent_recorded"]

    engine.record("RNM-1", {"consent_recorded": False}, actor=SW)
    error, _ = expect_denied(
        engine,
        "RNM-1",
        lambda: engine.fire("RNM-1", "accept_referral", actor=TM),
        nw.RequirementsNotMet,
        actor_id=TM.id,
    )
    assert isinstance(error, nw.RequirementsNotMet)
    assert error.missing == ("consent_recorded",)

    engine.fire("RNM-1", "accept_referral", actor=TM, facts={"consent_recorded": True})
    engine.fire(
        "RNM-1", "recommend_without_treatment", actor=TM, facts={"assessment_report_filed": True}
    )
    error, _ = expect_denied(
        engine,
        "RNM-1",
        lambda: engine.fire("RNM-1", "submit_recommendation", actor=TM),
        nw.RequirementsNotMet,
        actor_id=TM.id,
    )
    assert isinstance(error, nw.RequirementsNotMet)
    assert set(error.missing) == {"final_report_filed", "recommendation"}

    # Facts given with the refused fire are not kept either.
    error, _ = expect_denied(
        engine,
        "RNM-1",
        lambda: engine.fire(
            "RNM-1", "submit_recommendation", actor=TM, facts={"final_report_filed": True}
        ),
        nw.RequirementsNotMet,
        actor_id=TM.id,
    )
    assert isinstance(error, nw.RequirementsNotMet)
    assert error.missing == ("recommendation",)
    assert "final_report_filed" not in engine.case("RNM-1").facts

    engine.fire(
        "RNM-1",
        "submit_recommendation",
        actor=TM,
        facts={"final_report_filed": True, "recommendation": "return_home"},
    )
    error, _ = expect_denied(
        engine,
        "RNM-1",
        lambda: engine.fire("RNM-1", "record_decision", actor=CO),
        nw.RequirementsNotMet,
        actor_id=CO.id,
    )
    assert isinstance(error, nw.RequirementsNotMet)
    assert error.missing == ("decision",)


def test_decline_and_withdraw_need_a_reason(engine: nw.Engine) -> None:
    """decline_referral and withdraw without a (non-blank) reason are refused, missing "reason"."""
    for stage in ("referral", "court"):
        reference = f"RSN-{stage}"
        open_at(engine, reference, stage)
        triggers = ["withdraw"] + (["decline_referral"] if stage == "referral" else [])
        for trigger in triggers:
            for reason in (None, "", "   "):
                error, denied = expect_denied(
                    engine,
                    reference,
                    lambda r=reference, t=trigger, why=reason: engine.fire(
                        r, t, actor=TM, reason=why
                    ),
                    nw.RequirementsNotMet,
                    actor_id=TM.id,
                )
                assert isinstance(error, nw.RequirementsNotMet)
                assert error.missing == ("reason",)
                assert "reason" in str(error)
                assert denied.detail["missing"] == ["reason"]


def test_paused_case_refuses_transitions_until_resumed(engine: nw.Engine, clock: Clock) -> None:
    """While paused a case refuses transitions (CasePaused) and a second pause; resume lifts it."""
    open_at(engine, "PAU-1", "referral")
    clock.advance(days=1)
    paused = engine.pause("PAU-1", actor=COORD, reason="family court adjournment")
    assert paused.paused
    assert paused.version == 3
    error, denied = expect_denied(
        engine,
        "PAU-1",
        lambda: engine.fire("PAU-1", "accept_referral", actor=TM),
        nw.CasePaused,
        actor_id=TM.id,
    )
    assert isinstance(error, nw.CasePaused)
    assert denied.trigger == "accept_referral"
    expect_denied(
        engine,
        "PAU-1",
        lambda: engine.pause("PAU-1", actor=TM, reason="again"),
        nw.CasePaused,
        actor_id=TM.id,
    )
    assert engine.allowed_triggers("PAU-1", TM) == []
    clock.advance(days=1)
    resumed = engine.resume("PAU-1", actor=TM)
    assert not resumed.paused
    assert resumed.version == 4
    assert engine.fire("PAU-1", "accept_referral", actor=TM).stage == "assessment"
    assert [e.action for e in engine.audit("PAU-1")] == [
        "opened",
        "fact_recorded",
        "paused",
        "denied",
        "denied",
        "resumed",
        "transition",
    ]


def test_unknown_reference_raises_case_not_found(engine: nw.Engine) -> None:
    """Every call on an unknown reference raises CaseNotFound (a LookupError) and writes nothing."""
    open_at(engine, "KNOWN-1", "referral")
    calls = [
        lambda: engine.fire("NOPE-1", "accept_referral", actor=TM),
        lambda: engine.record("NOPE-1", {"consent_recorded": True}, actor=SW),
        lambda: engine.pause("NOPE-1", actor=TM, reason="r"),
        lambda: engine.resume("NOPE-1", actor=TM),
        lambda: engine.extend_deadline("NOPE-1", "referral_decision", actor=TM, reason="r"),
        lambda: engine.case("NOPE-1"),
        lambda: engine.history("NOPE-1"),
        lambda: engine.deadlines("NOPE-1"),
        lambda: engine.allowed_triggers("NOPE-1", TM),
    ]
    for call in calls:
        error = expect_nothing_written(engine, "NOPE-1", call, nw.CaseNotFound)
        assert isinstance(error, LookupError)
        assert "NOPE-1" in str(error)
    assert engine.audit("NOPE-1") == []


def test_duplicate_reference_raises_case_exists(engine: nw.Engine) -> None:
    """Opening a reference that exists raises CaseExists and changes nothing."""
    open_at(engine, "DUP-1", "assessment")
    for pathway in PATHWAY_IDS:
        error = expect_nothing_written(
            engine,
            "DUP-1",
            lambda p=pathway: engine.open_case("DUP-1", pathway=p, site=SITES[p], actor=SW),
            nw.CaseExists,
        )
        assert "DUP-1" in str(error)
    assert engine.case("DUP-1").stage == "assessment"


def test_stale_expected_version_raises_concurrent_update(engine: nw.Engine) -> None:
    """A stale expected_version raises ConcurrentUpdate, writing nothing; the current one works."""
    case = open_at(engine, "CU-1", "referral")
    stale = case.version - 1
    error = expect_nothing_written(
        engine,
        "CU-1",
        lambda: engine.fire("CU-1", "accept_referral", actor=TM, expected_version=stale),
        nw.ConcurrentUpdate,
    )
    assert isinstance(error, nw.ConcurrentUpdate)
    assert (error.expected, error.actual) == (stale, case.version)
    expect_nothing_written(
        engine,
        "CU-1",
        lambda: engine.fire("CU-1", "accept_referral", actor=TM, expected_version=case.version + 1),
        nw.ConcurrentUpdate,
    )
    expect_nothing_written(
        engine,
        "CU-1",
        lambda: engine.record(
            "CU-1", {"entered_care_on": "2026-01-02"}, actor=SW, expected_version=stale
        ),
        nw.ConcurrentUpdate,
    )
    moved = engine.fire("CU-1", "accept_referral", actor=TM, expected_version=case.version)
    assert moved.version == case.version + 1
    expect_nothing_written(
        engine,
        "CU-1",
        lambda: engine.fire(
            "CU-1",
            "offer_treatment",
            actor=TM,
            expected_version=case.version,
            facts={"assessment_report_filed": True},
        ),
        nw.ConcurrentUpdate,
    )


def test_naive_datetimes_are_invalid_input(engine: nw.Engine) -> None:
    """Every state-changing call refuses a naive datetime with InvalidInput and writes nothing."""
    open_at(engine, "NAIVE-1", "referral")
    naive = dt.datetime(2026, 3, 3, 10, 0)
    calls = [
        lambda: engine.open_case(
            "NAIVE-9", pathway="nim-uk-england", site="london", actor=SW, at=naive
        ),
        lambda: engine.fire("NAIVE-1", "accept_referral", actor=TM, at=naive),
        lambda: engine.record("NAIVE-1", {"consent_recorded": True}, actor=SW, at=naive),
        lambda: engine.pause("NAIVE-1", actor=TM, reason="r", at=naive),
        lambda: engine.resume("NAIVE-1", actor=TM, at=naive),
        lambda: engine.extend_deadline(
            "NAIVE-1", "referral_decision", actor=TM, reason="r", at=naive
        ),
        lambda: engine.process_due(at=naive, allow_future=True),
    ]
    for call in calls:
        error = expect_nothing_written(engine, "NAIVE-1", call, nw.InvalidInput)
        assert isinstance(error, ValueError)
    with pytest.raises(nw.InvalidInput):
        engine.overdue(at=naive)


def test_undeclared_facts_are_invalid_input(engine: nw.Engine) -> None:
    """A fact the pathway does not declare is refused everywhere facts go in, naming it."""
    open_at(engine, "UND-1", "referral")
    sneaky = {"child_name": "Jane"}
    calls = [
        lambda: engine.open_case(
            "UND-2", pathway="nim-uk-england", site="london", actor=SW, facts=sneaky
        ),
        lambda: engine.record("UND-1", sneaky, actor=SW),
        lambda: engine.record("UND-1", {"consent_recorded": True, **sneaky}, actor=SW),
        lambda: engine.fire(
            "UND-1", "accept_referral", actor=TM, facts={"consent_recorded": True, **sneaky}
        ),
        lambda: engine.fire("UND-1", "withdraw", actor=TM, reason="r", facts=sneaky),
    ]
    for call in calls:
        error = expect_nothing_written(engine, "UND-1", call, nw.InvalidInput)
        assert "child_name" in str(error)


WRONG_TYPES: list[tuple[str, object]] = [
    ("consent_recorded", "yes"),
    ("consent_recorded", 1),
    ("consent_recorded", "true"),
    ("recommendation", "maybe"),
    ("recommendation", 3),
    ("decision", "Return Home"),
    ("entered_care_on", 20260102),
    ("entered_care_on", ["2026-01-02"]),
]
BAD_DATES = ["2026-02-30", "02/01/2026", "yesterday", "2026-1-2x", ""]


def test_facts_of_the_wrong_type_are_invalid_input(engine: nw.Engine) -> None:
    """A bool, enum or date fact given a value of another type is refused and nothing is written."""
    open_at(engine, "TYP-1", "referral")
    for name, value in WRONG_TYPES:
        expect_nothing_written(
            engine,
            "TYP-1",
            lambda n=name, v=value: engine.record("TYP-1", {n: v}, actor=SW),
            nw.InvalidInput,
        )
        expect_nothing_written(
            engine,
            "TYP-1",
            lambda n=name, v=value: engine.fire("TYP-1", "accept_referral", actor=TM, facts={n: v}),
            nw.InvalidInput,
        )
        expect_nothing_written(
            engine,
            "TYP-1",
            lambda n=name, v=value: engine.open_case(
                "TYP-2", pathway="nim-uk-england", site="london", actor=SW, facts={n: v}
            ),
            nw.InvalidInput,
        )


def test_bad_iso_date_strings_are_invalid_input(engine: nw.Engine) -> None:
    """A date fact given a string that is not an ISO-8601 date is refused and nothing is written."""
    open_at(engine, "ISO-1", "referral")
    for text in BAD_DATES:
        error = expect_nothing_written(
            engine,
            "ISO-1",
            lambda t=text: engine.record("ISO-1", {"proceedings_issued_on": t}, actor=SW),
            nw.InvalidInput,
        )
        assert "proceedings_issued_on" in str(error)


def test_refusals_of_actions_that_are_not_transitions(engine: nw.Engine) -> None:
    """Opening, recording and pausing by the wrong role, or pausing without a reason, are denied."""
    open_at(engine, "ACT-1", "referral")
    error, _ = expect_denied(
        engine,
        "ACT-1",
        lambda: engine.record("ACT-1", {"consent_recorded": False}, actor=COORD),
        nw.PermissionDenied,
        actor_id=COORD.id,
    )
    assert isinstance(error, nw.PermissionDenied)
    assert set(error.required) == ACTION_ROLES["record"]
    error, _ = expect_denied(
        engine,
        "ACT-1",
        lambda: engine.pause("ACT-1", actor=SW, reason="r"),
        nw.PermissionDenied,
        actor_id=SW.id,
    )
    assert isinstance(error, nw.PermissionDenied)
    assert set(error.required) == ACTION_ROLES["pause"]
    error, _ = expect_denied(
        engine,
        "ACT-1",
        lambda: engine.pause("ACT-1", actor=TM, reason="  "),
        nw.RequirementsNotMet,
        actor_id=TM.id,
    )
    assert isinstance(error, nw.RequirementsNotMet)
    assert error.missing == ("reason",)
    error, _ = expect_denied(
        engine,
        "ACT-2",
        lambda: engine.open_case("ACT-2", pathway="nim-uk-england", site="london", actor=CLIN),
        nw.PermissionDenied,
        actor_id=CLIN.id,
    )
    assert isinstance(error, nw.PermissionDenied)
    assert set(error.required) == ACTION_ROLES["open_case"]
    with pytest.raises(nw.CaseNotFound):
        engine.case("ACT-2")


# -- the role x trigger matrix --------------------------------------------------------------------


def test_role_trigger_matrix(engine: nw.Engine) -> None:
    """Each role may fire exactly the triggers PATHWAYS.md gives it, at each stage."""
    seen = 0
    for pathway, trigger, spec in ((p, t, s) for p in PATHWAY_IDS for t, s in TRIGGERS.items()):
        for stage in spec.sources:
            reference = f"MX-{pathway}-{trigger}-{stage}"
            open_at(engine, reference, stage, pathway=pathway)
            before = engine.case(reference)
            allowed = [r for r in ROLES if may_fire(r, trigger)]
            for role in ROLES:
                if role in allowed:
                    continue
                with pytest.raises(nw.PermissionDenied) as caught:
                    engine.fire(reference, trigger, actor=actor(role), reason="matrix")
                assert set(caught.value.required) == spec.roles
                for needed in spec.roles:
                    assert needed in str(caught.value)
                seen += 1
            assert engine.case(reference) == before
            for number, role in enumerate(allowed):
                target = reference if number == 0 else f"{reference}-{role}"
                if number:
                    open_at(engine, target, stage, pathway=pathway)
                moved = engine.fire(target, trigger, actor=actor(role), reason="matrix")
                assert moved.stage == spec.dest
                seen += 1
    assert seen == len(PATHWAY_IDS) * sum(len(s.sources) * len(ROLES) for s in TRIGGERS.values())
    denied = [e for e in engine.audit() if e.action == "denied"]
    assert all(e.detail["error"] == "PermissionDenied" for e in denied)
    assert engine.verify_audit().ok


def test_action_permission_matrix(engine: nw.Engine, clock: Clock) -> None:
    """open_case, record, pause and resume are allowed to exactly the roles PATHWAYS.md names."""
    for role in ROLES:
        who = actor(role)
        reference = f"ACT-{role}"
        if role in ACTION_ROLES["open_case"]:
            engine.open_case(reference, pathway="nim-uk-england", site="london", actor=who)
        else:
            with pytest.raises(nw.PermissionDenied):
                engine.open_case(reference, pathway="nim-uk-england", site="london", actor=who)
            engine.open_case(reference, pathway="nim-uk-england", site="london", actor=SW)
        if role in ACTION_ROLES["record"]:
            assert engine.record(reference, {"consent_recorded": True}, actor=who).facts == {
                "consent_recorded": True
            }
        else:
            with pytest.raises(nw.PermissionDenied):
                engine.record(reference, {"consent_recorded": True}, actor=who)
        clock.advance(hours=1)
        if role in ACTION_ROLES["pause"]:
            assert engine.pause(reference, actor=who, reason="adjourned").paused
        else:
            with pytest.raises(nw.PermissionDenied):
                engine.pause(reference, actor=who, reason="adjourned")
            engine.pause(reference, actor=TM, reason="adjourned")
        clock.advance(hours=1)
        if role in ACTION_ROLES["resume"]:
            assert not engine.resume(reference, actor=who).paused
        else:
            with pytest.raises(nw.PermissionDenied):
                engine.resume(reference, actor=who)
            assert engine.case(reference).paused


def test_allowed_triggers_per_role_at_each_stage(engine: nw.Engine) -> None:
    """allowed_triggers lists, per role, the triggers valid from the stage that role may fire."""
    for pathway, stage in ((p, s) for p in PATHWAY_IDS for s in OPEN_STAGES):
        reference = f"AT-{pathway}-{stage}"
        open_at(engine, reference, stage, pathway=pathway)
        for role in ROLES:
            expected = [t for t in triggers_from(stage) if may_fire(role, t)]
            assert sorted(engine.allowed_triggers(reference, actor(role))) == expected, (
                stage,
                role,
            )
        assert sorted(engine.allowed_triggers(reference, EVERYONE)) == triggers_from(stage)
    engine.fire("AT-nim-uk-england-court", "record_decision", actor=CO)
    for role in ROLES:
        assert engine.allowed_triggers("AT-nim-uk-england-court", actor(role)) == []


def test_allowed_triggers_leave_out_unmet_requirements(engine: nw.Engine) -> None:
    """A trigger whose required facts are missing is not offered; one needing only a reason is."""
    engine.open_case("ATR-1", pathway="nim-uk-england", site="london", actor=SW)
    assert sorted(engine.allowed_triggers("ATR-1", TM)) == ["decline_referral", "withdraw"]
    engine.record("ATR-1", {"consent_recorded": True}, actor=SW)
    assert sorted(engine.allowed_triggers("ATR-1", TM)) == triggers_from("referral")
    engine.fire("ATR-1", "accept_referral", actor=TM)
    assert sorted(engine.allowed_triggers("ATR-1", TM)) == ["withdraw"]
    assert engine.allowed_triggers("ATR-1", CLIN) == []


# -- record() -------------------------------------------------------------------------------------


def test_record_stores_declared_facts_with_their_types(engine: nw.Engine) -> None:
    """record() keeps bools, enum values and dates (given as date or ISO string) as dates."""
    for pathway in PATHWAY_IDS:
        check_record_types(engine, f"REC-{pathway}", pathway)


def check_record_types(engine: nw.Engine, reference: str, pathway: str) -> None:
    """Record every declared fact of a pathway, one at a time, and check what comes back."""
    engine.open_case(reference, pathway=pathway, site=SITES[pathway], actor=SW)
    version = 1
    recorders = [r for r in ROLES if r in ACTION_ROLES["record"]]
    values: dict[str, Any] = {
        "consent_recorded": True,
        "assessment_report_filed": False,
        "treatment_review_filed": True,
        "final_report_filed": False,
        "recommendation": "permanence_away",
        "decision": "kinship_care",
    }
    assert set(values) == set(COMMON_FACTS)
    for number, (name, value) in enumerate(values.items()):
        case = engine.record(reference, {name: value}, actor=actor(recorders[number % 4]))
        version += 1
        assert case.version == version
        assert case.facts[name] == value
        assert type(case.facts[name]) is type(value)
    expected_dates: dict[str, dt.date] = {}
    for number, name in enumerate(DATE_FACTS[pathway]):
        day = dt.date(2026, 1, 5 + number)
        given: object = day.isoformat() if number % 2 == 0 else day
        case = engine.record(reference, {name: given}, actor=actor(recorders[number % 4]))
        expected_dates[name] = day
        assert case.facts[name] == day
        assert type(case.facts[name]) is dt.date
    stored = engine.case(reference).facts
    assert dict(stored) == {**values, **expected_dates}
    assert all(type(stored[name]) is dt.date for name in expected_dates)
    with pytest.raises(nw.PermissionDenied):
        engine.record(reference, {"consent_recorded": False}, actor=COORD)
    assert engine.case(reference).facts["consent_recorded"] is True
    recorded = [e for e in engine.audit(reference) if e.action == "fact_recorded"]
    assert len(recorded) == len(values) + len(expected_dates)


def test_date_facts_given_when_opening_or_firing_are_dates(engine: nw.Engine) -> None:
    """Date facts passed to open_case and fire are stored and returned as datetime.date."""
    case = engine.open_case(
        "DATE-1",
        pathway="nim-uk-england",
        site="london",
        actor=SW,
        facts={"entered_care_on": "2026-02-20", "consent_recorded": True},
    )
    assert case.facts["entered_care_on"] == dt.date(2026, 2, 20)
    case = engine.fire(
        "DATE-1", "accept_referral", actor=TM, facts={"proceedings_issued_on": dt.date(2026, 2, 27)}
    )
    assert case.facts["proceedings_issued_on"] == dt.date(2026, 2, 27)
    again = nw.Engine(engine.sqlalchemy_engine, clock=Clock())
    stored = again.case("DATE-1").facts
    assert stored["entered_care_on"] == dt.date(2026, 2, 20)
    assert type(stored["proceedings_issued_on"]) is dt.date


# -- subscribers ----------------------------------------------------------------------------------


def test_subscribers_hear_each_kind_after_it_commits(
    engine: nw.Engine, clock: Clock, db_url: str
) -> None:
    """Subscribers hear every kind of change, each only once another engine can see it."""
    observer = nw.Engine(db_url, clock=clock)
    heard: list[tuple[str, str, int | None, dt.datetime]] = []

    def listen(event: nw.Event) -> None:
        try:
            seen: int | None = observer.case(event.reference).version
        except nw.CaseNotFound:
            seen = None
        heard.append((event.kind, event.reference, seen, event.at))

    engine.subscribe(listen)
    engine.open_case("SUB-1", pathway="nim-uk-england", site="london", actor=SW)
    t1 = clock.advance(hours=1)
    engine.record("SUB-1", {"consent_recorded": True}, actor=SW)
    t2 = clock.advance(hours=1)
    engine.fire("SUB-1", "accept_referral", actor=TM)
    t3 = clock.advance(hours=1)
    engine.pause("SUB-1", actor=TM, reason="adjourned")
    t4 = clock.advance(hours=1)
    engine.resume("SUB-1", actor=TM)
    t5 = clock.advance(hours=1)
    engine.extend_deadline("SUB-1", "assessment", actor=TM, reason="interpreter needed")
    t6 = clock.advance(hours=1)
    with pytest.raises(nw.PermissionDenied):
        engine.fire("SUB-1", "offer_treatment", actor=SW)
    observer.close()
    assert heard == [
        ("opened", "SUB-1", 1, dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)),
        ("fact_recorded", "SUB-1", 2, t1),
        ("transition", "SUB-1", 3, t2),
        ("paused", "SUB-1", 4, t3),
        ("resumed", "SUB-1", 5, t4),
        ("extended", "SUB-1", 6, t5),
        ("denied", "SUB-1", 6, t6),
    ]


def test_transition_events_carry_the_trigger_and_stages(engine: nw.Engine) -> None:
    """A transition event names the reference, trigger, the stages left and entered, and the seq."""
    events: list[nw.Event] = []
    engine.subscribe(events.append)
    open_at(engine, "EVT-1", "referral")
    engine.fire("EVT-1", "accept_referral", actor=TM)
    transition = events[-1]
    assert transition.kind == "transition"
    assert transition.reference == "EVT-1"
    assert transition.detail["trigger"] == "accept_referral"
    assert transition.detail["from_stage"] == "referral"
    assert transition.detail["to_stage"] == "assessment"
    assert transition.seq == engine.audit("EVT-1")[-1].seq


def test_subscribe_filters_by_kind(engine: nw.Engine) -> None:
    """kinds= limits a subscriber to the kinds it asked for; unknown kinds are InvalidInput."""
    transitions: list[nw.Event] = []
    refusals: list[nw.Event] = []
    engine.subscribe(transitions.append, kinds=["transition"])
    engine.subscribe(refusals.append, kinds=["denied", "paused"])
    open_at(engine, "KND-1", "assessment")
    with pytest.raises(nw.PermissionDenied):
        engine.fire("KND-1", "offer_treatment", actor=CLIN)
    engine.fire("KND-1", "offer_treatment", actor=TM)
    assert [e.kind for e in transitions] == ["transition", "transition"]
    assert [e.detail["trigger"] for e in transitions] == ["accept_referral", "offer_treatment"]
    assert [e.kind for e in refusals] == ["denied"]
    with pytest.raises(nw.InvalidInput):
        engine.subscribe(transitions.append, kinds=["transitions"])


def test_unsubscribe_stops_events(engine: nw.Engine) -> None:
    """The function subscribe() returns removes the subscriber; others keep hearing."""
    first: list[str] = []
    second: list[str] = []
    stop = engine.subscribe(lambda e: first.append(e.kind))
    engine.subscribe(lambda e: second.append(e.kind))
    engine.open_case("UNS-1", pathway="nim-uk-england", site="london", actor=SW)
    stop()
    engine.record("UNS-1", {"consent_recorded": True}, actor=SW)
    stop()  # a second call is harmless
    assert first == ["opened"]
    assert second == ["opened", "fact_recorded"]


def test_a_raising_subscriber_does_not_break_the_call(engine: nw.Engine) -> None:
    """A subscriber that raises neither fails the call nor keeps other subscribers from hearing."""
    heard: list[str] = []

    def broken(event: nw.Event) -> None:
        raise RuntimeError("subscriber bug")

    engine.subscribe(broken)
    engine.subscribe(lambda e: heard.append(e.kind))
    case = engine.open_case("RAI-1", pathway="nim-uk-england", site="london", actor=SW)
    assert case.stage == "referral"
    case = engine.fire("RAI-1", "accept_referral", actor=TM, facts={"consent_recorded": True})
    assert case.stage == "assessment"
    assert heard == ["opened", "transition"]
    assert engine.case("RAI-1").version == 2


# -- reading --------------------------------------------------------------------------------------


def test_cases_filters_by_site_stage_and_open_only(engine: nw.Engine, clock: Clock) -> None:
    """cases() filters by site and stage, open cases only unless open_only=False, oldest first."""
    open_at(engine, "L-1", "referral", pathway="nim-uk-england")
    clock.advance(hours=1)
    open_at(engine, "L-2", "assessment", pathway="nim-uk-england")
    clock.advance(hours=1)
    open_at(engine, "G-1", "assessment", pathway="nim-uk-scotland")
    clock.advance(hours=1)
    open_at(engine, "J-1", "referral", pathway="nim-us-louisiana")
    engine.fire("J-1", "decline_referral", actor=TM, reason="not eligible")

    def refs(**kwargs: Any) -> list[str]:
        return [c.reference for c in engine.cases(**kwargs)]

    assert refs() == ["L-1", "L-2", "G-1"]
    assert refs(open_only=False) == ["L-1", "L-2", "G-1", "J-1"]
    assert refs(site="london") == ["L-1", "L-2"]
    assert refs(site="glasgow") == ["G-1"]
    assert refs(site="jefferson-parish") == []
    assert refs(site="jefferson-parish", open_only=False) == ["J-1"]
    assert refs(stage="assessment") == ["L-2", "G-1"]
    assert refs(site="london", stage="assessment") == ["L-2"]
    assert refs(stage="closed") == []
    assert refs(stage="closed", open_only=False) == ["J-1"]
    with pytest.raises(nw.UnknownSite, match="did you mean 'jefferson-parish'"):
        refs(site="jefferson")
    assert all(isinstance(c, nw.Case) for c in engine.cases(open_only=False))


# -- life of the engine ---------------------------------------------------------------------------


def test_engine_leaves_a_host_sqlalchemy_engine_alive(db_url: str) -> None:
    """nw.Engine works through a SQLAlchemy Engine it was handed and does not dispose of it."""
    host = sa.create_engine(db_url)
    try:
        engine = nw.Engine(host, clock=Clock())
        assert engine.sqlalchemy_engine is host
        engine.migrate()
        engine.open_case("HOST-1", pathway="nim-uk-england", site="london", actor=SW)
        engine.close()
        with host.connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM nimwf_cases")).scalar_one()
        assert count == 1
        with nw.Engine(host, clock=Clock()) as second:
            assert second.case("HOST-1").stage == "referral"
        with host.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        host.dispose()


def test_two_engines_do_not_share_subscribers(db_url: str) -> None:
    """Two engines in one process each publish only to their own subscribers."""
    first = new_engine(db_url)
    second = nw.Engine(db_url, clock=Clock())
    heard_first: list[str] = []
    heard_second: list[str] = []
    first.subscribe(lambda e: heard_first.append(e.kind))
    second.subscribe(lambda e: heard_second.append(e.kind))
    try:
        first.open_case("TWO-1", pathway="nim-uk-england", site="london", actor=SW)
        second.record("TWO-1", {"consent_recorded": True}, actor=SW)
        second.fire("TWO-1", "accept_referral", actor=TM)
        first.pause("TWO-1", actor=TM, reason="adjourned")
    finally:
        first.close()
        second.close()
    assert heard_first == ["opened", "paused"]
    assert heard_second == ["fact_recorded", "transition"]


def test_migrate_is_idempotent(engine: nw.Engine, db_url: str) -> None:
    """Running migrate() again, from this engine or another, changes nothing and loses nothing."""
    open_at(engine, "MIG-1", "assessment")
    before = dump(engine.sqlalchemy_engine)
    engine.migrate()
    engine.migrate()
    other = nw.Engine(db_url, clock=Clock())
    other.migrate()
    other.close()
    assert dump(engine.sqlalchemy_engine) == before
    with engine.sqlalchemy_engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM nimwf_alembic_version")).all()
    assert len(versions) == 1
    assert engine.case("MIG-1").stage == "assessment"


# -- privacy --------------------------------------------------------------------------------------

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][\d:.+]+)?$")


def test_no_table_holds_anything_but_declared_vocabulary(engine: nw.Engine, clock: Clock) -> None:
    """Only declared facts, references, actors, roles, stages and triggers are ever stored."""
    attempts = 0
    for pathway in PATHWAY_IDS:
        reference = f"PRV-{pathway}"
        sneaky = [
            lambda r=reference, p=pathway: engine.open_case(
                r, pathway=p, site=SITES[p], actor=SW, facts={"child_name": "Jane"}
            ),
            lambda r=reference, p=pathway: engine.open_case(
                r, pathway=p, site=SITES[p], actor=SW, facts={"recommendation": "Jane"}
            ),
        ]
        for call in sneaky:
            with pytest.raises(nw.InvalidInput):
                call()
            attempts += 1
        facts = {DATE_FACTS[pathway][0]: "2026-01-15"}
        engine.open_case(reference, pathway=pathway, site=SITES[pathway], actor=SW, facts=facts)
        for trigger in WITH_TREATMENT:
            clock.advance(days=3)
            for bad in (
                {"child_name": "Jane"},
                {"consent_recorded": "Jane"},
                {DATE_FACTS[pathway][1]: "Jane"},
                {"decision": "Jane"},
                {"Jane": True},
            ):
                with pytest.raises(nw.InvalidInput):
                    engine.record(reference, bad, actor=SW)
                with pytest.raises(nw.InvalidInput):
                    engine.fire(reference, trigger, actor=EVERYONE, facts=bad)
                attempts += 2
            wanted = dict(FACTS_FOR[trigger])
            engine.record(reference, {DATE_FACTS[pathway][1]: clock.now.date()}, actor=SW)
            engine.fire(reference, trigger, actor=EVERYONE, facts=wanted)
        assert engine.case(reference).stage == "closed"
    assert attempts > 0

    tables = dump(engine.sqlalchemy_engine)
    for name, rows in tables.items():
        for row in rows:
            for text in strings_in(list(row)):
                assert "Jane" not in text, (name, row)

    vocabulary = {
        *(f"PRV-{p}" for p in PATHWAY_IDS),
        *PATHWAY_IDS,
        *SITES.values(),
        *ROLES,
        *STAGES,
        *TRIGGERS,
        *COMMON_FACTS,
        *DECISIONS,
        "permanence_away",
        *(f for facts in DATE_FACTS.values() for f in facts),
        SW.id,
        EVERYONE.id,
        "not_eligible",
        "withdrawn",
    }
    meta = reflect(engine.sqlalchemy_engine)
    checked = {
        "nimwf_cases": ("reference", "pathway_id", "site", "stage", "outcome", "facts"),
        "nimwf_stage_intervals": ("reference", "stage", "entered_by", "left_by"),
        "nimwf_audit_events": (
            "reference",
            "actor_id",
            "roles",
            "action",
            "trigger",
            "from_stage",
            "to_stage",
        ),
    }
    kinds = {
        "opened",
        "transition",
        "fact_recorded",
        "paused",
        "resumed",
        "extended",
        "reminder",
        "breach",
        "escalation",
        "denied",
    }
    allowed = vocabulary | kinds | {"True", "False"}
    with engine.sqlalchemy_engine.connect() as conn:
        for table_name, columns in checked.items():
            table = meta.tables[table_name]
            for row in conn.execute(sa.select(*(table.c[c] for c in columns))):
                for value in strings_in([_json(v) for v in row]):
                    assert value in allowed or _ISO.match(value), (table_name, value)
        for detail in conn.execute(sa.select(meta.tables["nimwf_audit_events"].c.detail)):
            facts = _json(detail[0]).get("facts", {})
            assert set(facts) <= vocabulary


def _json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value
