"""The deciding code without a database: deadlines and alarms worked out on a case held in memory.

A command reads a case into a :class:`CaseState`, decides against it, and only then hands the
changes to the store. These tests drive the deciding half alone (no engine, no connection) and
check both what it decides and the changes it leaves for the store to write.
"""

from __future__ import annotations

import datetime as dt

import pytest

import nim_workflow as nw
from nim_workflow import _audit, _deadlines
from nim_workflow._calendar import WorkingCalendar
from nim_workflow._deadlines import CaseClock
from nim_workflow._store import _case_state
from nim_workflow._store._case_state import CaseState, Row

LONDON = "london"
#: Monday 5 January 2026, 10:00 in London (GMT), clear of bank holidays.
MONDAY = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)


def _pathway() -> nw.Pathway:
    return nw.bundled_pathways()["nim-uk-england"]


def _clock(reference: str = "C-1") -> CaseClock:
    pathway = _pathway()
    return CaseClock(
        reference, LONDON, pathway, WorkingCalendar(pathway.calendar, pathway.timezone)
    )


def _opened(reference: str = "C-1") -> CaseState:
    return _case_state.opened(
        reference,
        {
            "reference": reference,
            "pathway_id": "nim-uk-england",
            "pathway_version": _pathway().version,
            "site": LONDON,
            "stage": "referral",
            "version": 1,
            "opened_at": MONDAY,
            "stage_entered_at": MONDAY,
            "closed_at": None,
            "outcome": None,
            "paused_at": None,
            "facts": {},
            "updated_at": MONDAY,
            "worker": None,
        },
    )


def _written(state: CaseState, start_id: int = 1) -> None:
    """Give added rows ids the way the store does, without a database."""
    next_id = start_id
    for name in _case_state.CHILD_TABLES:
        for row in state.added.get(name, ()):
            row["id"] = next_id
            next_id += 1
    for row in state.added.get("alarms", ()):
        target = row.pop("_deadline", None)
        if target is not None:
            row["deadline_id"] = target["id"]
    state.added, state.changed, state.deleted, state.case_changes = {}, {}, {}, {}


def test_opening_the_referral_stage_decides_its_deadline_and_alarms() -> None:
    state = _opened()
    opened = _deadlines.open_stage_deadlines(state, _clock(), "referral", MONDAY)
    assert opened == ["referral_decision"]
    [deadline] = state.added["deadlines"]
    # 10 working days beginning after Monday 5 January: 6-9 Jan (4), 12-16 Jan (5), 19 Jan.
    assert deadline.due_on == dt.date(2026, 1, 19)
    assert deadline.status == "open"
    assert deadline.id is None
    alarms = state.added["alarms"]
    assert [(a.kind, a.label) for a in alarms] == [
        ("reminder", "reminder"),
        ("breach", "breach"),
        ("escalation", "team_manager"),
    ]
    # The reminder opens the day 3 working days before the due date (Wednesday 14 January);
    # breach and escalation come when the due date ends (midnight into Tuesday 20 January).
    assert [a.due_at for a in alarms] == [
        dt.datetime(2026, 1, 14, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 20, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 20, tzinfo=dt.UTC),
    ]
    # Alarms of a deadline not yet written point at it, not at an id.
    assert all(a["_deadline"] is deadline and a.deadline_id is None for a in alarms)
    assert state.alarms_of(deadline) == alarms


def test_leaving_a_stage_on_time_settles_met_and_cancels_its_pending_alarms() -> None:
    state = _opened()
    clock = _clock()
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    left = MONDAY + dt.timedelta(days=3)
    settled = _deadlines.settle_stage_deadlines(state, clock, "referral", left, closing=False)
    assert settled == {"referral_decision": "met"}
    [deadline] = state.rows["deadlines"]
    assert deadline.settled_at == left
    assert {a.status for a in state.rows["alarms"]} == {"cancelled"}
    # Changes to rows the store already holds are updates, keyed by id; nothing is added.
    assert set(state.changed["deadlines"]) == {deadline.id}
    assert len(state.changed["alarms"]) == len(state.rows["alarms"])
    assert not state.added


def test_leaving_a_stage_late_settles_missed() -> None:
    state = _opened()
    clock = _clock()
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    late = dt.datetime(2026, 1, 20, 9, 0, tzinfo=dt.UTC)
    settled = _deadlines.settle_stage_deadlines(state, clock, "referral", late, closing=False)
    assert settled == {"referral_decision": "missed"}


def test_closing_cancels_what_the_closing_trigger_does_not_meet() -> None:
    state = _opened()
    clock = _clock()
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    settled = _deadlines.close_open(state, clock, MONDAY + dt.timedelta(days=1), "withdraw")
    assert settled == {"referral_decision": "cancelled"}


def test_an_extension_reschedules_alarms_and_keeps_those_already_fired() -> None:
    state = _opened()
    clock = _clock()
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    reminder = next(a for a in state.rows["alarms"] if a.kind == "reminder")
    fired_at = reminder.due_at
    state.change("alarms", reminder, status="fired", fired_at=fired_at)
    _written(state)
    [deadline] = state.rows["deadlines"]
    rule = clock.pathway.rule("referral_decision")
    new_due = _deadlines.extend(
        state,
        clock,
        deadline,
        rule,
        by=rule.extension.step,  # type: ignore[union-attr]
        at=fired_at,
        actor_id="tm",
        reason="family unwell",
    )
    # 5 more working days from Monday 19 January: Monday 26 January.
    assert new_due == dt.date(2026, 1, 26)
    assert deadline.extensions == 1
    assert deadline.adjustments[-1]["kind"] == "extension"
    # The old pending breach and escalation are dropped (deleted by id), new ones added;
    # the reminder that fired stays, and is not raised again for the new date's lead time
    # unless that falls later than now.
    assert len(state.deleted["alarms"]) == 2
    kinds = sorted((a.kind, a.status) for a in state.rows["alarms"])
    assert ("reminder", "fired") in kinds
    assert ("breach", "pending") in kinds
    assert ("escalation", "pending") in kinds
    breach = next(a for a in state.added["alarms"] if a.kind == "breach")
    assert breach.deadline_id == deadline.id
    assert "_deadline" not in breach


def test_deleting_a_row_added_in_the_same_command_never_reaches_the_store() -> None:
    state = _opened()
    row = state.add("pauses", paused_at=MONDAY, resumed_at=None, paused_on=MONDAY.date())
    state.delete("pauses", row)
    assert state.rows["pauses"] == []
    assert state.added["pauses"] == []
    assert "pauses" not in state.deleted


def test_json_columns_are_kept_as_a_read_would_return_them() -> None:
    state = _opened()
    state.change_case(facts={"hearing": dt.date(2026, 2, 1), "flags": ("a", "b")})
    assert state.case["facts"] == {"hearing": "2026-02-01", "flags": ["a", "b"]}
    assert state.case_changes["facts"] == state.case["facts"]
    assert state.touched == {"case"}


def test_state_digests_in_memory_cover_exactly_the_pinned_columns() -> None:
    state = _opened()
    _deadlines.open_stage_deadlines(state, _clock(), "referral", MONDAY)
    _written(state)
    before = _audit.state_digests(state.case, state.rows)
    assert set(before) == set(_audit.STATE_TABLES)
    # A key the digest does not cover changes nothing; a covered column changes its table only.
    state.rows["alarms"][0]["scratch"] = "ignored"
    assert _audit.state_digests(state.case, state.rows) == before
    state.rows["deadlines"][0]["due_on"] = dt.date(2026, 1, 20)
    after = _audit.state_digests(state.case, state.rows, only=["deadlines"], base=before)
    assert {k for k in after if after[k] != before[k]} == {"deadlines"}
    assert after == _audit.state_digests(state.case, state.rows)


def test_row_reads_like_a_database_row() -> None:
    row = Row(id=3, rule="assessment")
    assert row.id == 3
    assert row.rule == "assessment"
    with pytest.raises(AttributeError):
        row.missing  # noqa: B018
