"""The statutory clocks decided without a database: cumulative, anchored and earliest_of clocks.

Each test drives :mod:`nim_workflow._deadlines` on a case held in memory (a :class:`CaseState`
and a :class:`CaseClock`, as ``tests/test_decide.py`` builds them) and pins what a caller relies
on: the moves returned, the rows the state will write, due dates, statuses and refusals. Every
expected date is worked by hand in a comment.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

import nim_workflow as nw
from nim_workflow import _deadlines
from nim_workflow._calendar import WorkingCalendar
from nim_workflow._deadlines import CaseClock
from nim_workflow._errors import InvalidInput
from nim_workflow._pathway._model import Candidate, DeadlineRule, Duration, Reminder
from nim_workflow._store import _case_state
from nim_workflow._store._case_state import CaseState
from nim_workflow._values import Adjustment, Deadline, Explanation

SITE = "jefferson"
ASFA = "asfa_15_of_22"
#: Monday 2 March 2026, 16:00 UTC (10:00 in Chicago): when the first facts are recorded.
AT = dt.datetime(2026, 3, 2, 16, 0, tzinfo=dt.UTC)
#: A later command, so that ``settled_at`` shows which command settled a row.
LATER = dt.datetime(2026, 9, 1, 16, 0, tzinfo=dt.UTC)
#: The day after :data:`AT`, before any Louisiana clock in these tests falls due.
MID = dt.datetime(2026, 3, 3, 16, 0, tzinfo=dt.UTC)


def _louisiana() -> nw.Pathway:
    return nw.bundled_pathways()["nim-us-louisiana"]


def _clock(*rules: DeadlineRule, pathway: nw.Pathway | None = None) -> CaseClock:
    """A Louisiana case's clock; with ``rules``, a pathway running only those deadline rules."""
    base = pathway or _louisiana()
    if rules:
        base = dataclasses.replace(base, deadlines=rules)
    return CaseClock("C-1", SITE, base, WorkingCalendar(base.calendar, base.timezone))


def _asfa_clock() -> CaseClock:
    return _clock(_louisiana().rule(ASFA))


def _opened() -> CaseState:
    pathway = _louisiana()
    return _case_state.opened(
        "C-1",
        {
            "reference": "C-1",
            "pathway_id": pathway.id,
            "pathway_version": pathway.version,
            "site": SITE,
            "stage": "referral",
            "version": 1,
            "opened_at": AT,
            "stage_entered_at": AT,
            "closed_at": None,
            "outcome": None,
            "paused_at": None,
            "facts": {},
            "updated_at": AT,
            "worker": None,
        },
    )


def _written(state: CaseState, start_id: int = 1) -> None:
    """Give added rows ids the way the store does, without a database (as in test_decide)."""
    next_id = start_id + sum(len(rows) for rows in state.rows.values())
    for name in _case_state.CHILD_TABLES:
        for row in state.added.get(name, ()):
            row["id"] = next_id
            next_id += 1
    for row in state.added.get("alarms", ()):
        target = row.pop("_deadline", None)
        if target is not None:
            row["deadline_id"] = target["id"]
    state.added, state.changed, state.deleted, state.case_changes = {}, {}, {}, {}


def _record(
    state: CaseState,
    clock: CaseClock,
    at: dt.datetime = AT,
    facts: dict[str, Any] | None = None,
    **changed: dt.date,
) -> list[dict[str, Any]]:
    """Record date facts as a command would, then write what it decided."""
    moves = _deadlines.record_clock_facts(state, clock, changed, at, facts=facts)
    _written(state)
    return moves


def _in_care_from_2_march() -> tuple[CaseState, CaseClock]:
    """An ASFA clock whose condition began on a finding of Monday 2 March 2026."""
    state, clock = _opened(), _asfa_clock()
    _record(state, clock, adjudicated_on=dt.date(2026, 3, 2))
    return state, clock


def _asfa_rows(state: CaseState) -> list[tuple[int, str, dt.date, dt.date]]:
    return [(r.occurrence, r.status, r.start_on, r.due_on) for r in state.deadline_rows(ASFA)]


# -- the cumulative (ASFA) clock -------------------------------------------------------------------


def test_a_finding_starts_the_asfa_clock_15_months_on_with_its_periods_and_alarms() -> None:
    """A first finding opens occurrence 1 due 15 months on, its period stored in the basis."""
    state, clock = _opened(), _asfa_clock()
    moves = _deadlines.record_clock_facts(state, clock, {"adjudicated_on": dt.date(2026, 3, 2)}, AT)
    # 2 Mar 2026 + 15 months = 2 Jun 2027 (457 days); unbroken care is due exactly then.
    assert moves == [
        {"rule": ASFA, "fact": "adjudicated_on", "started": "2026-03-02", "due_on": "2027-06-02"}
    ]
    [row] = state.added["deadlines"]
    assert (row.rule, row.kind, row.stage, row.occurrence, row.status) == (
        ASFA,
        "clock",
        None,
        1,
        "open",
    )
    assert (row.start_on, row.base_due_on, row.due_on) == (
        dt.date(2026, 3, 2),
        dt.date(2027, 6, 2),
        dt.date(2027, 6, 2),
    )
    assert row.basis == {"periods": [["2026-03-02", None]]}
    # Chicago is on CDT (UTC-5) in March and June: the reminder 3 months before (2 Mar 2027,
    # CST, UTC-6: 06:00 UTC) and the breach and escalation when 2 Jun 2027 ends (05:00 UTC on 3
    # Jun).
    assert [(a.kind, a.label, a.due_at) for a in state.added["alarms"]] == [
        ("reminder", "reminder", dt.datetime(2027, 3, 2, 6, 0, tzinfo=dt.UTC)),
        ("breach", "breach", dt.datetime(2027, 6, 3, 5, 0, tzinfo=dt.UTC)),
        ("escalation", "team_manager", dt.datetime(2027, 6, 3, 5, 0, tzinfo=dt.UTC)),
    ]


def test_going_home_before_the_clock_started_is_refused_naming_the_fact() -> None:
    """returned_home_on with no condition begun is refused (field, message); nothing changes."""
    state, clock = _opened(), _asfa_clock()
    with pytest.raises(InvalidInput) as refused:
        _deadlines.record_clock_facts(state, clock, {"returned_home_on": dt.date(2026, 9, 1)}, AT)
    assert refused.value.field == "returned_home_on"
    assert str(refused.value) == (
        "returned_home_on 2026-09-01: clock 'asfa_15_of_22' has not started "
        "(its condition has no first day yet)"
    )
    assert not state.pending


def test_coming_back_before_the_clock_started_is_refused_naming_the_fact() -> None:
    """reentered_care_on with no condition begun is refused the same way, for its own field."""
    state, clock = _opened(), _asfa_clock()
    with pytest.raises(InvalidInput) as refused:
        _deadlines.record_clock_facts(state, clock, {"reentered_care_on": dt.date(2026, 9, 1)}, AT)
    assert refused.value.field == "reentered_care_on"
    assert str(refused.value) == (
        "reentered_care_on 2026-09-01: clock 'asfa_15_of_22' has not started "
        "(its condition has no first day yet)"
    )
    assert not state.pending


def test_coming_back_while_still_in_care_is_refused() -> None:
    """reentered_care_on while the condition holds names the start and the fact to record first."""
    state, clock = _in_care_from_2_march()
    with pytest.raises(InvalidInput) as refused:
        _record(state, clock, LATER, reentered_care_on=dt.date(2026, 9, 1))
    assert refused.value.field == "reentered_care_on"
    assert str(refused.value) == (
        "reentered_care_on 2026-09-01: the condition of 'asfa_15_of_22' holds since "
        "2026-03-02; record returned_home_on first"
    )
    assert _asfa_rows(state) == [(1, "open", dt.date(2026, 3, 2), dt.date(2027, 6, 2))]


def test_going_home_twice_is_refused() -> None:
    """returned_home_on while already at home names the day care ended and what to record."""
    state, clock = _in_care_from_2_march()
    _record(state, clock, LATER, returned_home_on=dt.date(2026, 9, 1))
    with pytest.raises(InvalidInput) as refused:
        _record(state, clock, LATER, returned_home_on=dt.date(2026, 10, 1))
    assert refused.value.field == "returned_home_on"
    assert str(refused.value) == (
        "returned_home_on 2026-10-01: the condition of 'asfa_15_of_22' already ended on "
        "2026-09-01; record reentered_care_on first"
    )
    [row] = state.deadline_rows(ASFA)
    assert row.basis == {"periods": [["2026-03-02", "2026-09-01"]]}


def test_coming_back_on_the_day_care_ended_is_refused() -> None:
    """A return dated on the day the child went home is not after it, so it is refused."""
    state, clock = _in_care_from_2_march()
    _record(state, clock, LATER, returned_home_on=dt.date(2026, 9, 1))
    with pytest.raises(InvalidInput) as refused:
        _record(state, clock, LATER, reentered_care_on=dt.date(2026, 9, 1))
    assert refused.value.field == "reentered_care_on"
    assert str(refused.value) == (
        "reentered_care_on 2026-09-01 is not after 2026-09-01, where the condition of "
        "'asfa_15_of_22' last changed"
    )
    assert [r.status for r in state.deadline_rows(ASFA)] == ["cancelled"]


def test_coming_back_between_the_start_and_the_day_care_ended_is_refused() -> None:
    """A return dated before the day the child went home (though after care began) is refused."""
    state, clock = _in_care_from_2_march()
    _record(state, clock, LATER, returned_home_on=dt.date(2026, 9, 1))
    with pytest.raises(InvalidInput) as refused:
        _record(state, clock, LATER, reentered_care_on=dt.date(2026, 8, 1))
    assert refused.value.field == "reentered_care_on"
    assert "2026-08-01 is not after 2026-09-01" in str(refused.value)


def test_going_home_on_the_day_care_began_is_refused() -> None:
    """returned_home_on on the first day in care is not after it: refused, the clock left open."""
    state, clock = _in_care_from_2_march()
    with pytest.raises(InvalidInput) as refused:
        _record(state, clock, LATER, returned_home_on=dt.date(2026, 3, 2))
    assert refused.value.field == "returned_home_on"
    assert str(refused.value) == (
        "returned_home_on 2026-03-02 is not after 2026-03-02, where the condition of "
        "'asfa_15_of_22' last changed"
    )
    assert _asfa_rows(state) == [(1, "open", dt.date(2026, 3, 2), dt.date(2027, 6, 2))]


def test_going_home_by_the_due_date_cancels_the_open_clock() -> None:
    """Leaving care on the due date cancels the clock (not yet missed), ending the period."""
    state, clock = _in_care_from_2_march()
    [row] = state.deadline_rows(ASFA)
    moves = _deadlines.record_clock_facts(
        state, clock, {"returned_home_on": dt.date(2027, 6, 2)}, LATER
    )
    assert moves == [{"rule": ASFA, "fact": "returned_home_on", "left": "2027-06-02"}]
    assert (row.status, row.settled_at) == ("cancelled", LATER)
    assert row.basis == {"periods": [["2026-03-02", "2027-06-02"]]}
    assert set(state.changed["deadlines"]) == {row.id}
    assert {a.status for a in state.rows["alarms"]} == {"cancelled"}
    assert not state.added


def test_going_home_after_the_due_date_records_the_clock_missed() -> None:
    """Leaving care the day after the due date settles the open clock as missed, at that command."""
    state, clock = _in_care_from_2_march()
    [row] = state.deadline_rows(ASFA)
    moves = _deadlines.record_clock_facts(
        state, clock, {"returned_home_on": dt.date(2027, 6, 3)}, LATER
    )
    # Due 2 Jun 2027; 3 Jun is past it.
    assert moves == [{"rule": ASFA, "fact": "returned_home_on", "left": "2027-06-03"}]
    assert (row.status, row.settled_at) == ("missed", LATER)
    assert row.basis == {"periods": [["2026-03-02", "2027-06-03"]]}


def test_a_tpr_petition_on_time_settles_the_clock_met() -> None:
    """tpr_petition_filed_on by the due date settles it met, reported with its fact."""
    state, clock = _in_care_from_2_march()
    [row] = state.deadline_rows(ASFA)
    moves = _deadlines.record_clock_facts(
        state, clock, {"tpr_petition_filed_on": dt.date(2027, 6, 2)}, LATER
    )
    assert moves == [
        {"rule": ASFA, "fact": "tpr_petition_filed_on", "settled": "met", "occurrence": 1}
    ]
    assert (row.status, row.settled_at) == ("met", LATER)
    assert {a.status for a in state.rows["alarms"]} == {"cancelled"}
    assert not state.added


def test_a_late_tpr_petition_settles_the_clock_missed() -> None:
    """A petition filed after the due date settles the clock missed."""
    state, clock = _in_care_from_2_march()
    [row] = state.deadline_rows(ASFA)
    moves = _deadlines.record_clock_facts(
        state, clock, {"tpr_petition_filed_on": dt.date(2027, 6, 3)}, LATER
    )
    assert moves == [
        {"rule": ASFA, "fact": "tpr_petition_filed_on", "settled": "missed", "occurrence": 1}
    ]
    assert row.status == "missed"


def test_a_tpr_petition_with_no_open_clock_reports_nothing() -> None:
    """A petition recorded when no ASFA clock is open settles nothing and returns no move."""
    state, clock = _opened(), _asfa_clock()
    moves = _deadlines.record_clock_facts(
        state, clock, {"tpr_petition_filed_on": dt.date(2027, 6, 3)}, LATER
    )
    assert moves == []
    assert not state.pending


def test_a_petition_and_a_return_home_recorded_together_are_both_followed() -> None:
    """After the petition settles the clock, a later return home in that command still ends care."""
    state, clock = _in_care_from_2_march()
    [row] = state.deadline_rows(ASFA)
    moves = _deadlines.record_clock_facts(
        state,
        clock,
        {"returned_home_on": dt.date(2027, 7, 1), "tpr_petition_filed_on": dt.date(2027, 5, 3)},
        LATER,
    )
    # Taken in date order: the petition (3 May 2027, before the 2 Jun due date) first.
    assert moves == [
        {"rule": ASFA, "fact": "tpr_petition_filed_on", "settled": "met", "occurrence": 1},
        {"rule": ASFA, "fact": "returned_home_on", "left": "2027-07-01"},
    ]
    assert row.status == "met"
    assert row.basis == {"periods": [["2026-03-02", "2027-07-01"]]}


def test_condition_start_is_none_until_a_start_fact_is_recorded() -> None:
    """With no start anchor recorded as a date, a cumulative clock has no first day."""
    clock = _asfa_clock()
    rule = clock.pathway.rule(ASFA)
    assert _deadlines.condition_start(clock, rule, {}) is None
    assert (
        _deadlines.condition_start(
            clock, rule, {"returned_home_on": dt.date(2026, 9, 1), "adjudicated_on": "soon"}
        )
        is None
    )


def test_reworking_a_rule_that_became_cumulative_counts_from_the_condition_start() -> None:
    """An open row whose basis names a candidate, not periods, is reworked from the start facts."""
    la = _louisiana()
    asfa = la.rule(ASFA)
    # The older version ran the clock as an earliest_of of one candidate: the finding + 15 months.
    older = dataclasses.replace(
        asfa,
        cumulative=None,
        candidates=(Candidate(anchor="adjudicated_on", duration=Duration.parse("15 months")),),
    )
    state = _opened()
    facts: dict[str, Any] = {"adjudicated_on": dt.date(2026, 3, 2)}
    _record(state, _clock(older), **facts)
    [row] = state.deadline_rows(ASFA)
    assert row.basis == {"candidate": 0, "anchor": "adjudicated_on"}
    # Make its due date differ from the cumulative one, as an older rule might have.
    state.change("deadlines", row, due_on=dt.date(2027, 5, 1), base_due_on=dt.date(2027, 5, 1))
    _written(state)
    # Removal on 1 Feb 2026 is recorded too: + 60 days is 2 Apr, after the finding.
    facts["entered_care_on"] = dt.date(2026, 2, 1)
    changes = _deadlines.rework_open(state, _asfa_clock(), "referral", facts, (), row.start_on, AT)
    # Care began 2 Mar 2026 (the finding): due 2 Jun 2027.
    assert changes == [
        {
            "deadline": ASFA,
            "occurrence": 1,
            "from": "2027-05-01",
            "to": "2027-06-02",
            "change": "moved",
        }
    ]
    assert row.basis == {"periods": [["2026-03-02", None]]}
    assert (row.start_on, row.base_due_on, row.due_on) == (
        dt.date(2026, 3, 2),
        dt.date(2027, 6, 2),
        dt.date(2027, 6, 2),
    )


def test_going_home_and_coming_back_in_one_command_opens_the_next_occurrence() -> None:
    """A return home and a re-entry recorded together end one period and open occurrence 2."""
    state, clock = _in_care_from_2_march()
    [first] = state.deadline_rows(ASFA)
    moves = _deadlines.record_clock_facts(
        state,
        clock,
        {"reentered_care_on": dt.date(2026, 11, 1), "returned_home_on": dt.date(2026, 9, 1)},
        LATER,
    )
    # 2 Mar to 31 Aug 2026 in care: 183 days. 457 - 183 = 274 more from 1 Nov 2026: 1 Nov 2026
    # to 31 Jul 2027 is 273 days, so the 274th day is 1 Aug 2027 and the clock is due the day
    # after it, Mon 2 Aug 2027 (docs/legal-dates.md).
    assert moves == [
        {"rule": ASFA, "fact": "returned_home_on", "left": "2026-09-01"},
        {
            "rule": ASFA,
            "fact": "reentered_care_on",
            "started": "2026-11-01",
            "due_on": "2027-08-02",
        },
    ]
    assert first.status == "cancelled"
    [second] = state.added["deadlines"]
    assert (second.occurrence, second.status, second.start_on, second.due_on) == (
        2,
        "open",
        dt.date(2026, 11, 1),
        dt.date(2027, 8, 2),
    )
    assert second.basis == {"periods": [["2026-03-02", "2026-09-01"], ["2026-11-01", None]]}


def test_a_return_and_a_petition_in_one_command_settle_the_new_occurrence() -> None:
    """After a re-entry opens occurrence 2, a later petition in the same command settles it."""
    state, clock = _in_care_from_2_march()
    _record(state, clock, LATER, returned_home_on=dt.date(2026, 9, 1))
    moves = _deadlines.record_clock_facts(
        state,
        clock,
        {"tpr_petition_filed_on": dt.date(2026, 12, 1), "reentered_care_on": dt.date(2026, 11, 1)},
        LATER,
    )
    # Re-entered 1 Nov 2026: due 2 Aug 2027 as above; the petition of 1 Dec 2026 is on time.
    assert moves == [
        {
            "rule": ASFA,
            "fact": "reentered_care_on",
            "started": "2026-11-01",
            "due_on": "2027-08-02",
        },
        {"rule": ASFA, "fact": "tpr_petition_filed_on", "settled": "met", "occurrence": 2},
    ]
    assert [(r.occurrence, r.status) for r in state.deadline_rows(ASFA)] == [
        (1, "cancelled"),
        (2, "met"),
    ]


def test_a_start_fact_that_leaves_the_first_day_alone_changes_nothing() -> None:
    """Removal whose +60 days falls after the finding leaves the clock as it is, and no move."""
    state, clock = _in_care_from_2_march()
    # Removed 1 Feb 2026: + 60 days is 2 Apr 2026, after the finding of 2 Mar; the first day
    # stays 2 Mar 2026.
    moves = _deadlines.record_clock_facts(
        state,
        clock,
        {"entered_care_on": dt.date(2026, 2, 1)},
        LATER,
        facts={"adjudicated_on": dt.date(2026, 3, 2)},
    )
    assert moves == []
    assert not state.pending
    assert _asfa_rows(state) == [(1, "open", dt.date(2026, 3, 2), dt.date(2027, 6, 2))]


def test_an_unchanged_first_day_does_not_stop_the_facts_after_it() -> None:
    """A start fact that changes nothing is skipped, and a later petition is still followed."""
    state, clock = _in_care_from_2_march()
    moves = _deadlines.record_clock_facts(
        state,
        clock,
        {"entered_care_on": dt.date(2026, 2, 1), "tpr_petition_filed_on": dt.date(2027, 1, 4)},
        LATER,
        facts={"adjudicated_on": dt.date(2026, 3, 2)},
    )
    assert moves == [
        {"rule": ASFA, "fact": "tpr_petition_filed_on", "settled": "met", "occurrence": 1}
    ]


def test_an_earlier_first_day_restarts_the_open_clock_from_it() -> None:
    """A start fact giving an earlier first day cancels the open clock and reopens occurrence 1."""
    state, clock = _in_care_from_2_march()
    [old] = state.deadline_rows(ASFA)
    moves = _deadlines.record_clock_facts(
        state,
        clock,
        {"entered_care_on": dt.date(2025, 12, 1)},
        LATER,
        facts={"adjudicated_on": dt.date(2026, 3, 2)},
    )
    # Removed 1 Dec 2025: + 60 days is 30 Jan 2026 (30 to 31 Dec, 30 to 30 Jan), earlier than
    # the finding. Unbroken care from 30 Jan 2026 is due 15 months on: 30 Apr 2027.
    assert moves == [
        {"rule": ASFA, "fact": "entered_care_on", "started": "2026-01-30", "due_on": "2027-04-30"}
    ]
    assert (old.status, old.settled_at) == ("cancelled", LATER)
    [new] = state.added["deadlines"]
    assert (new.occurrence, new.status, new.start_on, new.due_on) == (
        1,
        "open",
        dt.date(2026, 1, 30),
        dt.date(2027, 4, 30),
    )
    assert new.basis == {"periods": [["2026-01-30", None]]}


def test_an_earlier_first_day_after_care_has_ended_is_history() -> None:
    """Once a period has ended, a start fact giving an earlier first day moves nothing."""
    state, clock = _in_care_from_2_march()
    _record(state, clock, LATER, returned_home_on=dt.date(2026, 9, 1))
    moves = _deadlines.record_clock_facts(
        state,
        clock,
        {"entered_care_on": dt.date(2025, 12, 1)},
        LATER,
        facts={"adjudicated_on": dt.date(2026, 3, 2), "returned_home_on": dt.date(2026, 9, 1)},
    )
    assert moves == []
    assert not state.pending
    [row] = state.deadline_rows(ASFA)
    assert row.basis == {"periods": [["2026-03-02", "2026-09-01"]]}


def test_a_first_day_that_is_history_does_not_stop_a_later_return() -> None:
    """An earlier first day recorded with a re-entry is skipped; the re-entry still opens it."""
    state, clock = _in_care_from_2_march()
    _record(state, clock, LATER, returned_home_on=dt.date(2026, 9, 1))
    moves = _deadlines.record_clock_facts(
        state,
        clock,
        {"entered_care_on": dt.date(2025, 12, 1), "reentered_care_on": dt.date(2026, 11, 1)},
        LATER,
        facts={"adjudicated_on": dt.date(2026, 3, 2), "returned_home_on": dt.date(2026, 9, 1)},
    )
    # The stored periods still count from 2 Mar 2026: due 2 Aug 2027 as above.
    assert moves == [
        {"rule": ASFA, "fact": "reentered_care_on", "started": "2026-11-01", "due_on": "2027-08-02"}
    ]


# -- earliest_of clocks (Louisiana case review and permanency hearing) ----------------------------

REVIEW = "case_review"
HEARING = "permanency_hearing"


def _review_clock() -> CaseClock:
    return _clock(_louisiana().rule(REVIEW))


def _hearing_clock() -> CaseClock:
    return _clock(_louisiana().rule(HEARING))


def _removed_10_january() -> tuple[CaseState, CaseClock, dict[str, Any]]:
    """A case review opened by a removal on Saturday 10 January 2026 (due 10 Jul 2026)."""
    state, clock = _opened(), _review_clock()
    facts: dict[str, Any] = {"entered_care_on": dt.date(2026, 1, 10)}
    _record(state, clock, **facts)
    return state, clock, facts


def test_a_removal_alone_opens_the_case_review_from_its_own_candidate() -> None:
    """With only the removal recorded, removal + 6 months governs (candidate 1), not 3 months."""
    state, clock = _opened(), _review_clock()
    moves = _deadlines.record_clock_facts(
        state, clock, {"entered_care_on": dt.date(2026, 1, 10)}, AT
    )
    # 10 Jan 2026 + 6 months = 10 Jul 2026 (the first candidate's 3 months would give 10 Apr).
    assert moves == [
        {
            "rule": REVIEW,
            "fact": "entered_care_on",
            "started": "2026-01-10",
            "occurrence": 1,
            "due_on": "2026-07-10",
        }
    ]
    [row] = state.added["deadlines"]
    assert (row.occurrence, row.status, row.start_on, row.base_due_on, row.due_on) == (
        1,
        "open",
        dt.date(2026, 1, 10),
        dt.date(2026, 7, 10),
        dt.date(2026, 7, 10),
    )
    assert row.basis == {"candidate": 1, "anchor": "entered_care_on"}
    # 10 Jul ends at midnight in Chicago (CDT, UTC-5): 05:00 UTC on 11 Jul.
    assert row.due_at == dt.datetime(2026, 7, 11, 5, 0, tzinfo=dt.UTC)


def test_an_earlier_disposition_moves_the_case_review_earlier_with_its_alarms() -> None:
    """A disposition whose 3 months fall first moves the open review and re-plans its alarms."""
    state, clock, facts = _removed_10_january()
    [row] = state.deadline_rows(REVIEW)
    old_alarms = [a.id for a in state.rows["alarms"]]
    moves = _deadlines.record_clock_facts(
        state, clock, {"disposition_on": dt.date(2026, 1, 15)}, MID, facts=facts
    )
    # 15 Jan 2026 + 3 months = 15 Apr 2026, before 10 Jul 2026.
    assert moves == [
        {
            "rule": REVIEW,
            "fact": "disposition_on",
            "governing": "disposition_on",
            "from": "2026-07-10",
            "to": "2026-04-15",
        }
    ]
    assert (row.occurrence, row.status, row.start_on, row.base_due_on, row.due_on) == (
        1,
        "open",
        dt.date(2026, 1, 15),
        dt.date(2026, 4, 15),
        dt.date(2026, 4, 15),
    )
    assert row.basis == {"candidate": 0, "anchor": "disposition_on"}
    assert row.due_at == dt.datetime(2026, 4, 16, 5, 0, tzinfo=dt.UTC)
    assert set(state.changed["deadlines"]) == {row.id}
    assert sorted(state.deleted["alarms"]) == sorted(old_alarms)
    added = [(a.kind, a.label) for a in state.added["alarms"]]
    assert added == [("reminder", "reminder"), ("breach", "breach"), ("escalation", "team_manager")]
    assert state.added["alarms"][1].due_at == dt.datetime(2026, 4, 16, 5, 0, tzinfo=dt.UTC)


def test_a_later_disposition_leaves_the_case_review_where_it_is() -> None:
    """A disposition whose 3 months fall after the removal's 6 months moves nothing at all."""
    state, clock, facts = _removed_10_january()
    moves = _deadlines.record_clock_facts(
        state, clock, {"disposition_on": dt.date(2026, 5, 20)}, MID, facts=facts
    )
    # 20 May 2026 + 3 months = 20 Aug 2026, after 10 Jul 2026.
    assert moves == []
    assert not state.pending
    [row] = state.deadline_rows(REVIEW)
    assert (row.start_on, row.due_on, row.basis) == (
        dt.date(2026, 1, 10),
        dt.date(2026, 7, 10),
        {"candidate": 1, "anchor": "entered_care_on"},
    )


def test_a_tie_goes_to_the_candidate_listed_first_and_is_recorded_as_governing() -> None:
    """A disposition giving the same date as the removal takes over as the governing candidate."""
    state, clock, facts = _removed_10_january()
    [row] = state.deadline_rows(REVIEW)
    moves = _deadlines.record_clock_facts(
        state, clock, {"disposition_on": dt.date(2026, 4, 10)}, MID, facts=facts
    )
    # 10 Apr 2026 + 3 months = 10 Jul 2026 = 10 Jan 2026 + 6 months: the disposition is listed
    # first, so it governs; the date does not move.
    assert moves == [
        {
            "rule": REVIEW,
            "fact": "disposition_on",
            "governing": "disposition_on",
            "from": "2026-07-10",
            "to": "2026-07-10",
        }
    ]
    assert (row.start_on, row.due_on, row.basis) == (
        dt.date(2026, 4, 10),
        dt.date(2026, 7, 10),
        {"candidate": 0, "anchor": "disposition_on"},
    )


def test_removal_on_the_day_of_disposition_does_not_make_the_9_month_hearing_apply() -> None:
    """The 9-month candidate needs removal strictly before disposition; same day: 12 months."""
    state, clock = _opened(), _hearing_clock()
    moves = _deadlines.record_clock_facts(
        state,
        clock,
        {"entered_care_on": dt.date(2026, 3, 15), "disposition_on": dt.date(2026, 3, 15)},
        AT,
    )
    # Removal + 12 months: 15 Mar 2027 (disposition + 9 months, 15 Dec 2026, does not apply).
    assert moves == [
        {
            "rule": HEARING,
            "fact": "entered_care_on",
            "started": "2026-03-15",
            "occurrence": 1,
            "due_on": "2027-03-15",
        }
    ]
    [row] = state.added["deadlines"]
    assert row.basis == {"candidate": 1, "anchor": "entered_care_on"}


def test_a_finding_on_the_day_of_removal_moves_the_hearing_though_it_starts_that_day() -> None:
    """Reunification not required on the removal day: same start date, 30 days governs."""
    state, clock = _opened(), _hearing_clock()
    facts: dict[str, Any] = {"entered_care_on": dt.date(2026, 1, 10)}
    _record(state, clock, **facts)
    [row] = state.deadline_rows(HEARING)
    moves = _deadlines.record_clock_facts(
        state, clock, {"reunification_not_required_on": dt.date(2026, 1, 10)}, MID, facts=facts
    )
    # Removal + 12 months: 10 Jan 2027. Finding + 30 days: 10 Jan + 21 = 31 Jan, + 9 = 9 Feb 2026.
    assert moves == [
        {
            "rule": HEARING,
            "fact": "reunification_not_required_on",
            "governing": "reunification_not_required_on",
            "from": "2027-01-10",
            "to": "2026-02-09",
        }
    ]
    assert (row.start_on, row.due_on, row.basis) == (
        dt.date(2026, 1, 10),
        dt.date(2026, 2, 9),
        {"candidate": 2, "anchor": "reunification_not_required_on"},
    )


def test_a_disposition_after_a_review_was_held_does_not_touch_the_next_review() -> None:
    """Once a review is held, the candidates no longer rule the clock: occurrence 2 stays put."""
    state, clock, facts = _removed_10_january()
    moves = _deadlines.record_clock_facts(
        state, clock, {"case_review_held_on": dt.date(2026, 4, 1)}, MID, facts=facts
    )
    # Held 1 Apr 2026, on time (due 10 Jul): the next is due 6 months after it, 1 Oct 2026.
    assert moves == [
        {
            "rule": REVIEW,
            "fact": "case_review_held_on",
            "started": "2026-04-01",
            "occurrence": 2,
            "previous": "met",
        }
    ]
    _written(state)
    facts["case_review_held_on"] = dt.date(2026, 4, 1)
    moves = _deadlines.record_clock_facts(
        state, clock, {"disposition_on": dt.date(2026, 1, 15)}, MID, facts=facts
    )
    assert moves == []
    assert not state.pending
    assert _review_rows(state) == [
        (1, "met", dt.date(2026, 1, 10), dt.date(2026, 7, 10)),
        (2, "open", dt.date(2026, 4, 1), dt.date(2026, 10, 1)),
    ]


def _review_rows(state: CaseState) -> list[tuple[int, str, dt.date, dt.date]]:
    return [(r.occurrence, r.status, r.start_on, r.due_on) for r in state.deadline_rows(REVIEW)]


def test_a_disposition_after_the_review_was_settled_does_not_reopen_or_move_it() -> None:
    """A settled first review is history: a candidate recorded later changes nothing."""
    state, clock, facts = _removed_10_january()
    settled = _deadlines.close_open(state, clock, MID)
    assert settled == {REVIEW: "cancelled"}
    _written(state)
    moves = _deadlines.record_clock_facts(
        state, clock, {"disposition_on": dt.date(2026, 1, 15)}, MID, facts=facts
    )
    assert moves == []
    assert not state.pending
    assert _review_rows(state) == [(1, "cancelled", dt.date(2026, 1, 10), dt.date(2026, 7, 10))]


def test_an_earliest_of_rule_counted_beginning_with_makes_the_anchor_day_one() -> None:
    """A candidate of a beginning_with rule ends a day earlier than the same span counted after."""
    rule = dataclasses.replace(_louisiana().rule(REVIEW), counting="beginning_with")
    state, clock = _opened(), _clock(rule)
    moves = _deadlines.record_clock_facts(
        state, clock, {"entered_care_on": dt.date(2026, 1, 10)}, AT
    )
    # 6 months beginning with 10 Jan 2026: the last day is 9 Jul 2026.
    assert moves[0]["due_on"] == "2026-07-09"
    [row] = state.added["deadlines"]
    assert row.due_on == dt.date(2026, 7, 9)


def test_open_deadline_row_is_the_newest_open_row_of_that_rule_only() -> None:
    """open_deadline_row finds the rule's open row, never another rule's, nor a settled one."""
    la = _louisiana()
    state, clock = _opened(), _clock(la.rule(ASFA), la.rule(REVIEW))
    _record(state, clock, adjudicated_on=dt.date(2026, 3, 2))
    # Removed 10 Jan 2026: + 60 days is 11 Mar, after the finding; the ASFA clock stays.
    finding = {"adjudicated_on": dt.date(2026, 3, 2)}
    _record(state, clock, MID, facts=finding, entered_care_on=dt.date(2026, 1, 10))
    [asfa] = state.deadline_rows(ASFA)
    [review] = state.deadline_rows(REVIEW)
    assert _deadlines.open_deadline_row(state, ASFA) is asfa
    assert _deadlines.open_deadline_row(state, REVIEW) is review
    _record(state, clock, LATER, returned_home_on=dt.date(2026, 9, 1))
    assert asfa.status == "cancelled"
    assert _deadlines.open_deadline_row(state, ASFA) is None


# -- extensions (England) --------------------------------------------------------------------------

LONDON = "london"
#: Monday 5 January 2026, 10:00 in London (GMT), clear of bank holidays.
MONDAY = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)


def _england() -> nw.Pathway:
    return nw.bundled_pathways()["nim-uk-england"]


def _london(pathway: nw.Pathway | None = None) -> CaseClock:
    base = pathway or _england()
    return CaseClock("C-1", LONDON, base, WorkingCalendar(base.calendar, base.timezone))


def test_extending_a_capped_stage_deadline_names_its_number_of_the_cap() -> None:
    """An extension of a capped rule is recorded as 'extension 1 of 1 by <actor>: <reason>'."""
    state, clock = _opened(), _london()
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    [row] = state.rows["deadlines"]
    rule = clock.pathway.rule("referral_decision")
    at = MONDAY + dt.timedelta(days=2)
    new_due = _deadlines.extend(
        state,
        clock,
        row,
        rule,
        by=Duration.parse("5 working_days"),
        at=at,
        actor_id="tm",
        reason="ill",
    )
    # Due Mon 19 Jan 2026; 5 working days on: Mon 26 Jan 2026.
    assert new_due == dt.date(2026, 1, 26)
    assert (row.due_on, row.base_due_on, row.extensions) == (
        dt.date(2026, 1, 26),
        dt.date(2026, 1, 19),
        1,
    )
    assert row.adjustments == [
        {
            "kind": "extension",
            "at": at.isoformat(),
            "shift": "5 working_days",
            "previous_due_on": "2026-01-19",
            "due_on": "2026-01-26",
            "detail": "extension 1 of 1 by tm: ill",
        }
    ]


def test_extensions_of_an_uncapped_clock_are_numbered_without_a_cap() -> None:
    """care_proceedings has no limit: its extensions read 'extension N by ...', counting on."""
    state, clock = _opened(), _london()
    _deadlines.record_clock_facts(
        state, clock, {"proceedings_issued_on": dt.date(2026, 1, 5)}, MONDAY
    )
    _written(state)
    [row] = state.rows["deadlines"]
    rule = clock.pathway.rule("care_proceedings")
    first = _deadlines.extend(
        state, clock, row, rule, by=Duration.parse("8 weeks"), at=MONDAY, actor_id="co", reason="a"
    )
    _written(state)
    second = _deadlines.extend(
        state, clock, row, rule, by=Duration.parse("4 weeks"), at=MONDAY, actor_id="co", reason="b"
    )
    # Last day Sun 5 Jul 2026; + 8 weeks = Sun 30 Aug 2026; + 4 weeks = Sun 27 Sep 2026.
    assert (first, second) == (dt.date(2026, 8, 30), dt.date(2026, 9, 27))
    assert row.extensions == 2
    assert [a["detail"] for a in row.adjustments] == [
        "extension 1 by co: a",
        "extension 2 by co: b",
    ]
    assert [(a["previous_due_on"], a["due_on"], a["shift"]) for a in row.adjustments] == [
        ("2026-07-05", "2026-08-30", "8 weeks"),
        ("2026-08-30", "2026-09-27", "4 weeks"),
    ]


# -- reworking open deadlines for another version of the pathway ----------------------------------

#: The day after :data:`MONDAY`: when the case is moved onto another version.
TUESDAY = MONDAY + dt.timedelta(days=1)


def _version(pathway: nw.Pathway, *rules: DeadlineRule, drop: tuple[str, ...] = ()) -> nw.Pathway:
    """The next version of ``pathway`` with ``rules`` replacing those of the same name."""
    by_name = {rule.name: rule for rule in rules}
    deadlines = tuple(
        by_name.get(rule.name, rule) for rule in pathway.deadlines if rule.name not in drop
    )
    deadlines += tuple(r for r in rules if r.name not in {d.name for d in pathway.deadlines})
    return dataclasses.replace(pathway, version=pathway.version + 1, deadlines=deadlines)


def _referral_15_working_days() -> nw.Pathway:
    eng = _england()
    longer = Duration.parse("15 working_days")
    return _version(eng, dataclasses.replace(eng.rule("referral_decision"), duration=longer))


def _in_referral() -> tuple[CaseState, CaseClock]:
    """A London case in referral since Monday 5 January 2026: referral_decision due 19 Jan."""
    state, clock = _opened(), _london()
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    return state, clock


def _rework(
    state: CaseState,
    pathway: nw.Pathway,
    stage: str = "referral",
    facts: dict[str, Any] | None = None,
    pauses: tuple[tuple[dt.date, dt.date], ...] = (),
    at: dt.datetime = TUESDAY,
) -> list[dict[str, Any]]:
    return _deadlines.rework_open(
        state, _london(pathway), stage, facts or {}, pauses, dt.date(2026, 1, 5), at
    )


def test_reworking_a_longer_stage_deadline_moves_it_and_its_alarms() -> None:
    """A stage rule lengthened in the new version moves its open row, base and alarms with it."""
    state, _ = _in_referral()
    [row] = state.rows["deadlines"]
    old_alarms = sorted(a.id for a in state.rows["alarms"])
    changes = _rework(state, _referral_15_working_days())
    # 15 working days after Mon 5 Jan 2026: 6-9 Jan (4), 12-16 (9), 19-23 (14), Mon 26 Jan.
    assert changes == [
        {
            "deadline": "referral_decision",
            "occurrence": 1,
            "from": "2026-01-19",
            "to": "2026-01-26",
            "change": "moved",
        }
    ]
    assert (row.status, row.kind, row.stage, row.start_on) == (
        "open",
        "stage",
        "referral",
        dt.date(2026, 1, 5),
    )
    assert (row.base_due_on, row.due_on, row.adjustments, row.opens_on, row.basis) == (
        dt.date(2026, 1, 26),
        dt.date(2026, 1, 26),
        [],
        None,
        None,
    )
    # London is on GMT in January: 26 Jan ends at 00:00 UTC on 27 Jan.
    assert row.due_at == dt.datetime(2026, 1, 27, tzinfo=dt.UTC)
    assert set(state.changed["deadlines"]) == {row.id}
    assert sorted(state.deleted["alarms"]) == old_alarms
    # The reminder 3 working days before Mon 26 Jan: Wed 21 Jan.
    assert [(a.kind, a.label, a.due_at) for a in state.added["alarms"]] == [
        ("reminder", "reminder", dt.datetime(2026, 1, 21, tzinfo=dt.UTC)),
        ("breach", "breach", dt.datetime(2026, 1, 27, tzinfo=dt.UTC)),
        ("escalation", "team_manager", dt.datetime(2026, 1, 27, tzinfo=dt.UTC)),
    ]


def test_reworking_under_the_same_rules_reports_the_deadline_unchanged() -> None:
    """A rule the new version leaves alone keeps its due date and is reported unchanged."""
    state, _ = _in_referral()
    [row] = state.rows["deadlines"]
    changes = _rework(state, _version(_england()))
    assert changes == [
        {
            "deadline": "referral_decision",
            "occurrence": 1,
            "from": "2026-01-19",
            "to": "2026-01-19",
            "change": "unchanged",
        }
    ]
    assert (row.status, row.due_on, row.base_due_on) == (
        "open",
        dt.date(2026, 1, 19),
        dt.date(2026, 1, 19),
    )


def test_a_rule_the_new_version_drops_is_cancelled_with_its_alarms() -> None:
    """An open deadline whose rule the new version no longer has is cancelled, to None."""
    state, _ = _in_referral()
    [row] = state.rows["deadlines"]
    changes = _rework(state, _version(_england(), drop=("referral_decision",)))
    assert changes == [
        {
            "deadline": "referral_decision",
            "occurrence": 1,
            "from": "2026-01-19",
            "to": None,
            "change": "cancelled",
        }
    ]
    assert (row.status, row.settled_at, row.due_on) == ("cancelled", TUESDAY, dt.date(2026, 1, 19))
    assert {a.status for a in state.rows["alarms"]} == {"cancelled"}
    assert not state.added


def test_a_stage_map_cancels_the_old_stage_deadline_and_opens_the_new_stages() -> None:
    """Moved to assessment: referral_decision is cancelled, assessment opens from stage start."""
    state, _ = _in_referral()
    [row] = state.rows["deadlines"]
    changes = _rework(state, _version(_england()), stage="assessment")
    # 12 weeks after Mon 5 Jan 2026: Mon 30 Mar 2026.
    assert changes == [
        {
            "deadline": "referral_decision",
            "occurrence": 1,
            "from": "2026-01-19",
            "to": None,
            "change": "cancelled",
        },
        {
            "deadline": "assessment",
            "occurrence": 1,
            "from": None,
            "to": "2026-03-30",
            "change": "opened",
        },
    ]
    assert row.status == "cancelled"
    [added] = state.added["deadlines"]
    assert (added.rule, added.stage, added.start_on, added.due_on, added.status) == (
        "assessment",
        "assessment",
        dt.date(2026, 1, 5),
        dt.date(2026, 3, 30),
        "open",
    )


def test_reworking_replays_finished_pauses_and_granted_extensions_on_the_new_base() -> None:
    """Pauses (from the row's start) and extensions are applied again, rebuilt on the new dates."""
    state, clock = _in_referral()
    [row] = state.rows["deadlines"]
    # Paused Wed 7 to Wed 14 Jan (5 working days: 19 -> 26 Jan), then extended 5 working days
    # (26 Jan -> 2 Feb).
    _deadlines.shift_for_pause(state, clock, dt.date(2026, 1, 7), dt.date(2026, 1, 14), MONDAY)
    _written(state)
    rule = clock.pathway.rule("referral_decision")
    _deadlines.extend(
        state,
        clock,
        row,
        rule,
        by=Duration.parse("5 working_days"),
        at=MONDAY,
        actor_id="tm",
        reason="ill",
    )
    _written(state)
    assert row.due_on == dt.date(2026, 2, 2)
    pauses = (
        # Before the deadline started (an earlier stage): it moves nothing.
        (dt.date(2026, 1, 1), dt.date(2026, 1, 3)),
        (dt.date(2026, 1, 7), dt.date(2026, 1, 14)),
    )
    changes = _rework(state, _referral_15_working_days(), pauses=pauses)
    # New base Mon 26 Jan; + 5 paused working days = Mon 2 Feb; + 5 granted = Mon 9 Feb 2026.
    assert changes == [
        {
            "deadline": "referral_decision",
            "occurrence": 1,
            "from": "2026-02-02",
            "to": "2026-02-09",
            "change": "moved",
        }
    ]
    assert (row.base_due_on, row.due_on, row.extensions) == (
        dt.date(2026, 1, 26),
        dt.date(2026, 2, 9),
        1,
    )
    assert row.adjustments == [
        {
            "kind": "pause",
            # Replayed as of the resume: the start of Wed 14 Jan in London (GMT).
            "at": "2026-01-14T00:00:00+00:00",
            "shift": "5 working_days",
            "previous_due_on": "2026-01-26",
            "due_on": "2026-02-02",
            "detail": "paused 2026-01-07 to 2026-01-14",
        },
        {
            "kind": "extension",
            "at": MONDAY.isoformat(),
            "shift": "5 working_days",
            "previous_due_on": "2026-02-02",
            "due_on": "2026-02-09",
            "detail": "extension 1 of 1 by tm: ill",
        },
    ]
    assert row.due_at == dt.datetime(2026, 2, 10, tzinfo=dt.UTC)


def test_reworking_a_statutory_clock_ignores_pauses_but_keeps_its_extensions() -> None:
    """care_proceedings under a 30-week version: pauses never move it, its extension is kept."""
    state, clock = _in_referral()
    facts = {"proceedings_issued_on": dt.date(2026, 1, 5)}
    _deadlines.record_clock_facts(state, clock, facts, MONDAY)
    _written(state)
    [row] = state.deadline_rows("care_proceedings")
    rule = clock.pathway.rule("care_proceedings")
    _deadlines.extend(
        state, clock, row, rule, by=Duration.parse("8 weeks"), at=MONDAY, actor_id="co", reason="a"
    )
    _written(state)
    longer = dataclasses.replace(rule, duration=Duration.parse("30 weeks"))
    changes = _rework(
        state,
        _version(_england(), longer),
        facts=facts,
        pauses=((dt.date(2026, 1, 7), dt.date(2026, 1, 14)),),
    )
    # 30 weeks beginning with Mon 5 Jan 2026: 5 Jan + 210 days = Mon 3 Aug, last day Sun 2 Aug;
    # the 8 weeks granted: Sun 27 Sep 2026. (26 weeks + 8 weeks was Sun 30 Aug.) The team's
    # referral_decision, pausable, moves by the 5 paused working days: Mon 19 to Mon 26 Jan.
    assert changes == [
        {
            "deadline": "referral_decision",
            "occurrence": 1,
            "from": "2026-01-19",
            "to": "2026-01-26",
            "change": "moved",
        },
        {
            "deadline": "care_proceedings",
            "occurrence": 1,
            "from": "2026-08-30",
            "to": "2026-09-27",
            "change": "moved",
        },
    ]
    assert (row.base_due_on, row.due_on) == (dt.date(2026, 8, 2), dt.date(2026, 9, 27))
    assert [a["kind"] for a in row.adjustments] == ["extension"]
    assert (row.adjustments[0]["previous_due_on"], row.adjustments[0]["due_on"]) == (
        "2026-08-02",
        "2026-09-27",
    )


def test_a_clock_the_old_version_lacked_starts_from_the_facts_the_case_holds() -> None:
    """A statutory clock added by the new version opens from the date facts already recorded."""
    eng = _england()
    older = _version(eng, drop=("care_proceedings",))
    state = _opened()
    facts: dict[str, Any] = {"proceedings_issued_on": dt.date(2026, 1, 5), "consent": True}
    _deadlines.open_stage_deadlines(state, _london(older), "referral", MONDAY)
    _written(state)
    changes = _rework(state, _version(eng), facts=facts)
    # Issued Mon 5 Jan 2026: 26 weeks beginning with it end Sun 5 Jul 2026. lac_review has no
    # anchor recorded, so nothing opens for it.
    assert changes == [
        {
            "deadline": "referral_decision",
            "occurrence": 1,
            "from": "2026-01-19",
            "to": "2026-01-19",
            "change": "unchanged",
        },
        {
            "deadline": "care_proceedings",
            "occurrence": 1,
            "from": None,
            "to": "2026-07-05",
            "change": "opened",
        },
    ]
    [added] = state.added["deadlines"]
    assert (added.rule, added.kind, added.start_on, added.due_on) == (
        "care_proceedings",
        "clock",
        dt.date(2026, 1, 5),
        dt.date(2026, 7, 5),
    )


def test_a_clock_the_case_already_ran_is_not_started_again() -> None:
    """A statutory clock with any row (even settled) is history: reworking does not reopen it."""
    state, clock = _opened(), _london()
    facts = {"proceedings_issued_on": dt.date(2026, 1, 5)}
    _deadlines.record_clock_facts(state, clock, facts, MONDAY)
    _deadlines.settle_met_by(state, clock, "record_decision", MONDAY)
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    assert [(r.rule, r.status) for r in state.rows["deadlines"]] == [
        ("care_proceedings", "met"),
        ("referral_decision", "open"),
    ]
    changes = _rework(state, _version(_england()), facts=facts)
    assert changes == [
        {
            "deadline": "referral_decision",
            "occurrence": 1,
            "from": "2026-01-19",
            "to": "2026-01-19",
            "change": "unchanged",
        },
    ]
    assert [r.status for r in state.deadline_rows("care_proceedings")] == ["met"]
    assert "deadlines" not in state.added


def _la_rework(
    state: CaseState, pathway: nw.Pathway, facts: dict[str, Any], at: dt.datetime = MID
) -> list[dict[str, Any]]:
    clock = _clock(pathway=pathway)
    return _deadlines.rework_open(state, clock, "referral", facts, (), dt.date(2026, 3, 2), at)


def _la_version(*rules: DeadlineRule) -> nw.Pathway:
    """The next Louisiana version running only ``rules`` (no stage deadlines to open)."""
    la = _louisiana()
    return dataclasses.replace(la, version=la.version + 1, deadlines=rules)


def test_reworking_an_earliest_of_clock_works_the_governing_candidate_out_again() -> None:
    """A shorter removal candidate in the new version moves the first review, same basis."""
    state, _, facts = _removed_10_january()
    [row] = state.deadline_rows(REVIEW)
    review = _louisiana().rule(REVIEW)
    five = dataclasses.replace(
        review,
        candidates=(
            review.candidates[0],
            dataclasses.replace(review.candidates[1], duration=Duration.parse("5 months")),
        ),
    )
    changes = _la_rework(state, _la_version(five), facts)
    # Removal 10 Jan 2026 + 5 months: 10 Jun 2026 (was + 6 months, 10 Jul).
    assert changes == [
        {
            "deadline": REVIEW,
            "occurrence": 1,
            "from": "2026-07-10",
            "to": "2026-06-10",
            "change": "moved",
        }
    ]
    assert (row.start_on, row.base_due_on, row.due_on, row.basis) == (
        dt.date(2026, 1, 10),
        dt.date(2026, 6, 10),
        dt.date(2026, 6, 10),
        {"candidate": 1, "anchor": "entered_care_on"},
    )
    assert row.due_at == dt.datetime(2026, 6, 11, 5, 0, tzinfo=dt.UTC)


def test_an_earliest_of_clock_whose_candidates_no_longer_apply_is_cancelled() -> None:
    """A new version whose only candidate the case has not recorded cancels the open review."""
    state, _, facts = _removed_10_january()
    [row] = state.deadline_rows(REVIEW)
    review = _louisiana().rule(REVIEW)
    only_disposition = dataclasses.replace(review, candidates=(review.candidates[0],))
    changes = _la_rework(state, _la_version(only_disposition), facts)
    assert changes == [
        {
            "deadline": REVIEW,
            "occurrence": 1,
            "from": "2026-07-10",
            "to": None,
            "change": "cancelled",
        }
    ]
    assert (row.status, row.settled_at) == ("cancelled", MID)


def test_reworking_a_later_review_counts_from_the_review_held_not_the_candidates() -> None:
    """Occurrence 2 of an earliest_of clock runs the new recurring span from the review held."""
    state, clock, facts = _removed_10_january()
    _record(state, clock, MID, facts=facts, case_review_held_on=dt.date(2026, 4, 1))
    [_, second] = state.deadline_rows(REVIEW)
    review = _louisiana().rule(REVIEW)
    four = dataclasses.replace(review, recur_durations=(Duration.parse("4 months"),))
    facts["case_review_held_on"] = dt.date(2026, 4, 1)
    changes = _la_rework(state, _la_version(four), facts)
    # Held 1 Apr 2026 + 4 months: 1 Aug 2026 (was + 6 months, 1 Oct).
    assert changes == [
        {
            "deadline": REVIEW,
            "occurrence": 2,
            "from": "2026-10-01",
            "to": "2026-08-01",
            "change": "moved",
        }
    ]
    assert (second.start_on, second.base_due_on, second.due_on, second.basis) == (
        dt.date(2026, 4, 1),
        dt.date(2026, 8, 1),
        dt.date(2026, 8, 1),
        None,
    )


def test_reworking_a_cumulative_clock_keeps_its_periods_and_counts_the_new_threshold() -> None:
    """ASFA at 12 months in the new version: the stored periods count again towards 365 days."""
    state, clock = _in_care_from_2_march()
    _record(state, clock, LATER, returned_home_on=dt.date(2026, 9, 1))
    _record(state, clock, LATER, reentered_care_on=dt.date(2026, 11, 1))
    [_, row] = state.deadline_rows(ASFA)
    assert row.due_on == dt.date(2027, 8, 2)
    asfa = _louisiana().rule(ASFA)
    assert asfa.cumulative is not None
    twelve = dataclasses.replace(
        asfa, cumulative=dataclasses.replace(asfa.cumulative, reaches=Duration.parse("12 months"))
    )
    facts = {
        "adjudicated_on": dt.date(2026, 3, 2),
        "returned_home_on": dt.date(2026, 9, 1),
        "reentered_care_on": dt.date(2026, 11, 1),
    }
    changes = _la_rework(state, _la_version(twelve), facts, at=LATER)
    # 2 Mar 2026 + 12 months = 2 Mar 2027: 365 days. The first stay gave 183; 182 more from
    # 1 Nov 2026 (Nov 30, Dec 31, Jan 31, Feb 28, Mar 31, Apr 30 = 181 to 1 May) reach it on
    # 1 May 2027, so the clock is due the day after: 2 May 2027.
    assert changes == [
        {
            "deadline": ASFA,
            "occurrence": 2,
            "from": "2027-08-02",
            "to": "2027-05-02",
            "change": "moved",
        }
    ]
    assert (row.start_on, row.base_due_on, row.due_on) == (
        dt.date(2026, 11, 1),
        dt.date(2027, 5, 2),
        dt.date(2027, 5, 2),
    )
    assert row.basis == {"periods": [["2026-03-02", "2026-09-01"], ["2026-11-01", None]]}


# -- closing, pauses and the alarms that stand still with them (England) -------------------------


def test_closing_settles_only_open_deadlines_and_honours_the_closing_trigger() -> None:
    """close_open leaves settled rows alone; the trigger named in met_by meets its clock."""
    state, clock = _in_referral()
    _deadlines.record_clock_facts(state, clock, {"entered_care_on": dt.date(2026, 1, 5)}, MONDAY)
    _written(state)
    # lac_review settled first (held on time), then the case closes on the court's decision.
    _deadlines.record_clock_facts(state, clock, {"lac_review_held_on": dt.date(2026, 1, 6)}, MONDAY)
    _deadlines.record_clock_facts(
        state, clock, {"proceedings_issued_on": dt.date(2026, 1, 5)}, MONDAY
    )
    _written(state)
    [held] = [r for r in state.deadline_rows("lac_review") if r.status == "met"]
    closed_at = TUESDAY + dt.timedelta(days=1)
    settled = _deadlines.close_open(state, clock, closed_at, "record_decision")
    # referral_decision (due 19 Jan) and the 2nd lac_review are cancelled; care_proceedings
    # (due 5 Jul) is met by the decision; the review already held stays as it was.
    assert settled == {
        "referral_decision": "cancelled",
        "lac_review": "cancelled",
        "care_proceedings": "met",
    }
    assert (held.status, held.settled_at) == ("met", MONDAY)
    assert held.id not in state.changed["deadlines"]


def _two_referral_rules(decision: DeadlineRule | None = None) -> nw.Pathway:
    """England with a second, calendar-day deadline in referral: a letter due in 4 weeks."""
    eng = _england()
    letter = dataclasses.replace(
        eng.rule("referral_decision"), name="referral_letter", duration=Duration.parse("4 weeks")
    )
    letter = dataclasses.replace(letter, reminders=())
    rules = (decision,) if decision is not None else ()
    return _version(eng, *rules, letter)


def test_a_pause_moves_each_open_deadline_in_its_own_unit() -> None:
    """A working-day rule moves by the working days paused, a weeks rule by the dates paused."""
    state, clock = _opened(), _london(_two_referral_rules())
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    resumed_at = dt.datetime(2026, 1, 14, 10, tzinfo=dt.UTC)
    moved = _deadlines.shift_for_pause(
        state, clock, dt.date(2026, 1, 7), dt.date(2026, 1, 14), resumed_at
    )
    # Paused Wed 7 to Wed 14 Jan: 7 dates, 5 of them working days. referral_decision Mon 19 Jan
    # -> Mon 26 Jan; the letter, 4 weeks after 5 Jan = Mon 2 Feb -> Mon 9 Feb.
    assert moved == [
        {"deadline": "referral_decision", "from": "2026-01-19", "to": "2026-01-26"},
        {"deadline": "referral_letter", "from": "2026-02-02", "to": "2026-02-09"},
    ]
    decision, letter = state.rows["deadlines"]
    assert letter.adjustments == [
        {
            "kind": "pause",
            "at": resumed_at.isoformat(),
            "shift": "7 days",
            "previous_due_on": "2026-02-02",
            "due_on": "2026-02-09",
            "detail": "paused 2026-01-07 to 2026-01-14",
        }
    ]
    assert decision.adjustments[0]["shift"] == "5 working_days"
    assert (letter.base_due_on, letter.due_on) == (dt.date(2026, 2, 2), dt.date(2026, 2, 9))


def test_a_weekend_pause_moves_only_the_calendar_day_deadline() -> None:
    """No working day paused: the working-day rule stays, the weeks rule after it still moves."""
    state, clock = _opened(), _london(_two_referral_rules())
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    moved = _deadlines.shift_for_pause(
        state, clock, dt.date(2026, 1, 10), dt.date(2026, 1, 12), MONDAY
    )
    # Sat 10 and Sun 11 Jan: 2 dates, no working day. The letter: Mon 2 Feb -> Wed 4 Feb.
    assert moved == [{"deadline": "referral_letter", "from": "2026-02-02", "to": "2026-02-04"}]
    decision, letter = state.rows["deadlines"]
    assert (decision.due_on, decision.adjustments) == (dt.date(2026, 1, 19), [])
    assert letter.adjustments[0]["shift"] == "2 days"


def test_a_pause_skips_a_deadline_already_missed_but_moves_the_next() -> None:
    """A deadline due before the pause began is not moved; the open ones after it still are."""
    state, clock = _opened(), _london(_two_referral_rules())
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    moved = _deadlines.shift_for_pause(
        state, clock, dt.date(2026, 1, 20), dt.date(2026, 1, 22), MONDAY
    )
    # referral_decision was due Mon 19 Jan, before the pause on Tue 20 Jan: left alone. The
    # letter moves by 2 dates: Mon 2 Feb -> Wed 4 Feb.
    assert moved == [{"deadline": "referral_letter", "from": "2026-02-02", "to": "2026-02-04"}]


def test_a_pause_from_the_due_date_itself_still_moves_it() -> None:
    """Paused on the day a deadline falls due: it had not been missed, so it moves."""
    state, clock = _in_referral()
    moved = _deadlines.shift_for_pause(
        state, clock, dt.date(2026, 1, 19), dt.date(2026, 1, 21), MONDAY
    )
    # Mon 19 and Tue 20 Jan paused: 2 working days; Mon 19 -> Wed 21 Jan.
    assert moved == [{"deadline": "referral_decision", "from": "2026-01-19", "to": "2026-01-21"}]


def test_a_pause_leaves_settled_deadlines_where_they_were() -> None:
    """Only open deadlines move: one met before the pause keeps its date and adjustments."""
    state, clock = _in_referral()
    _deadlines.settle_stage_deadlines(state, clock, "referral", TUESDAY, closing=False)
    _deadlines.open_stage_deadlines(state, clock, "assessment", TUESDAY)
    _written(state)
    moved = _deadlines.shift_for_pause(
        state, clock, dt.date(2026, 1, 7), dt.date(2026, 1, 14), MONDAY
    )
    # assessment: 12 weeks after Tue 6 Jan = Tue 31 Mar; + 7 paused dates = Tue 7 Apr 2026.
    assert moved == [{"deadline": "assessment", "from": "2026-03-31", "to": "2026-04-07"}]
    [met] = state.deadline_rows("referral_decision")
    assert (met.status, met.due_on, met.adjustments) == ("met", dt.date(2026, 1, 19), [])


def test_monthly_and_mid_way_reminders_stand_still_with_a_paused_treatment() -> None:
    """After a pause, treatment's monthly and mid-way reminders count from the shifted start."""
    state, clock = _opened(), _london()
    _deadlines.open_stage_deadlines(state, clock, "treatment", MONDAY)
    _written(state)
    resumed_at = dt.datetime(2026, 1, 14, 10, tzinfo=dt.UTC)
    moved = _deadlines.shift_for_pause(
        state, clock, dt.date(2026, 1, 7), dt.date(2026, 1, 14), resumed_at
    )
    # 5 months after Mon 5 Jan: Fri 5 Jun 2026; 7 dates paused: Fri 12 Jun. The start stands
    # still too: 12 Jan. Monthly from it: 12 Feb, 12 Mar, 12 Apr, 12 May (12 Jun is the due
    # date). Mid-way: 12 Jan to 12 Jun is 151 days, half rounds to 76: 12 Jan + 76 = 29 Mar.
    # 10 working days before Fri 12 Jun: 11-8 Jun (4), 5-1 Jun (9), Fri 29 May. London is on
    # BST from 29 Mar (after its midnight): later local midnights are 23:00 UTC the day before.
    assert moved == [{"deadline": "treatment", "from": "2026-06-05", "to": "2026-06-12"}]
    utc = dt.UTC
    assert [(a.label, a.due_at) for a in state.added["alarms"]] == [
        ("monthly_update", dt.datetime(2026, 2, 12, tzinfo=utc)),
        ("monthly_update", dt.datetime(2026, 3, 12, tzinfo=utc)),
        ("monthly_update", dt.datetime(2026, 4, 11, 23, tzinfo=utc)),
        ("monthly_update", dt.datetime(2026, 5, 11, 23, tzinfo=utc)),
        ("mid_way_review", dt.datetime(2026, 3, 29, tzinfo=utc)),
        ("reminder", dt.datetime(2026, 5, 28, 23, tzinfo=utc)),
        ("breach", dt.datetime(2026, 6, 12, 23, tzinfo=utc)),
        ("team_manager", dt.datetime(2026, 6, 12, 23, tzinfo=utc)),
    ]


def test_a_mid_way_reminder_of_a_working_day_rule_moves_by_working_days() -> None:
    """The start of a working-day rule stands still by the working days paused, not the dates."""
    eng = _england()
    halfway = (Reminder(label="half", fraction=0.5),)
    decision = dataclasses.replace(eng.rule("referral_decision"), reminders=halfway)
    state, clock = _opened(), _london(_version(eng, decision))
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    _deadlines.shift_for_pause(state, clock, dt.date(2026, 1, 7), dt.date(2026, 1, 14), MONDAY)
    # Due Mon 19 -> Mon 26 Jan (5 working days paused); the start moves 5 working days too,
    # Mon 5 -> Mon 12 Jan. Half of 12 to 26 Jan (14 days) is 7: Mon 19 Jan.
    assert [(a.label, a.due_at) for a in state.added["alarms"]] == [
        ("half", dt.datetime(2026, 1, 19, tzinfo=dt.UTC)),
        ("breach", dt.datetime(2026, 1, 27, tzinfo=dt.UTC)),
        ("team_manager", dt.datetime(2026, 1, 27, tzinfo=dt.UTC)),
    ]


# -- explanations: why a stored deadline is due when it is ---------------------------------------


def test_a_stage_deadline_is_explained_with_its_stage_rule_and_extension() -> None:
    """A stage deadline names its stage, its span and calendar, and lists its extension."""
    state, clock = _in_referral()
    [row] = state.rows["deadlines"]
    at = MONDAY + dt.timedelta(days=2)
    rule = clock.pathway.rule("referral_decision")
    _deadlines.extend(
        state,
        clock,
        row,
        rule,
        by=Duration.parse("5 working_days"),
        at=at,
        actor_id="tm",
        reason="ill",
    )
    why = _deadlines.explanation(clock, row)
    # Due Mon 19 Jan, extended to Mon 26 Jan; no holiday between 5 and 26 Jan 2026.
    assert why == Explanation(
        start_on=dt.date(2026, 1, 5),
        anchor="entered stage referral",
        rule="referral_decision: 10 working_days (england-and-wales calendar)",
        base_due_on=dt.date(2026, 1, 19),
        skipped=(),
        adjustments=(
            Adjustment(
                kind="extension",
                at=at,
                shift="5 working_days",
                previous_due_on=dt.date(2026, 1, 19),
                due_on=dt.date(2026, 1, 26),
                detail="extension 1 of 1 by tm: ill",
            ),
        ),
        due_on=dt.date(2026, 1, 26),
        due_at=dt.datetime(2026, 1, 27, tzinfo=dt.UTC),
        timezone="Europe/London",
    )


def test_a_statutory_clock_counted_beginning_with_is_explained_so() -> None:
    """care_proceedings: its anchor fact, '26 weeks beginning with the start', never paused."""
    state, clock = _opened(), _london()
    _deadlines.record_clock_facts(
        state, clock, {"proceedings_issued_on": dt.date(2026, 1, 5)}, MONDAY
    )
    [row] = state.added["deadlines"]
    why = _deadlines.explanation(clock, row)
    assert why.anchor == "proceedings_issued_on (occurrence 1)"
    assert why.rule == (
        "care_proceedings: 26 weeks beginning with the start "
        "(england-and-wales calendar, not moved by pauses)"
    )
    # Weeks are calendar arithmetic: no holiday costs a day, so none is listed.
    assert (why.skipped, why.adjustments) == ((), ())
    assert (why.start_on, why.base_due_on, why.due_on) == (
        dt.date(2026, 1, 5),
        dt.date(2026, 7, 5),
        dt.date(2026, 7, 5),
    )


def test_a_working_day_clock_lists_the_holidays_it_skipped_and_a_review_names_its_occurrence() -> (
    None
):
    """lac_review: Easter's bank holidays are named; the 2nd review counts from the one held."""
    state, clock = _opened(), _london()
    _deadlines.record_clock_facts(state, clock, {"entered_care_on": dt.date(2026, 3, 23)}, MONDAY)
    _written(state)
    [first] = state.rows["deadlines"]
    why = _deadlines.explanation(clock, first)
    # 20 working days after Mon 23 Mar 2026, skipping Good Friday 3 Apr and Easter Monday 6 Apr:
    # Wed 22 Apr 2026.
    assert why.due_on == dt.date(2026, 4, 22)
    assert why.skipped == (
        (dt.date(2026, 4, 3), "Good Friday"),
        (dt.date(2026, 4, 6), "Easter Monday"),
    )
    assert why.anchor == "entered_care_on (occurrence 1)"
    assert (
        why.rule == "lac_review: 20 working_days (england-and-wales calendar, not moved by pauses)"
    )
    _deadlines.record_clock_facts(
        state, clock, {"lac_review_held_on": dt.date(2026, 4, 21)}, MONDAY
    )
    [_, second] = state.rows["deadlines"]
    why = _deadlines.explanation(clock, second)
    # Held Tue 21 Apr 2026: the 2nd is due 3 months after it, Tue 21 Jul 2026.
    assert (why.start_on, why.due_on) == (dt.date(2026, 4, 21), dt.date(2026, 7, 21))
    assert why.anchor == "lac_review_held_on (occurrence 2)"
    assert why.rule == "lac_review: 3 months (england-and-wales calendar, not moved by pauses)"
    assert why.skipped == ()


def test_an_earliest_of_clock_is_explained_by_its_governing_candidate() -> None:
    """case_review names the candidate that governs and how many there are."""
    state, clock, _ = _removed_10_january()
    [row] = state.deadline_rows(REVIEW)
    why = _deadlines.explanation(clock, row)
    assert why.anchor == (
        "entered_care_on + 6 months: the earliest of 2 candidates governs (occurrence 1)"
    )
    assert why.rule == "case_review: 6 months (louisiana calendar, not moved by pauses)"
    assert (why.base_due_on, why.due_on, why.timezone) == (
        dt.date(2026, 7, 10),
        dt.date(2026, 7, 10),
        "America/Chicago",
    )


def test_a_cumulative_clock_is_explained_by_its_periods_in_the_condition() -> None:
    """ASFA lists each period in care, ended or running, and the threshold it counts to."""
    state, clock = _in_care_from_2_march()
    _record(state, clock, LATER, returned_home_on=dt.date(2026, 9, 1))
    _record(state, clock, LATER, reentered_care_on=dt.date(2026, 11, 1))
    [_, row] = state.deadline_rows(ASFA)
    why = _deadlines.explanation(clock, row)
    assert why.anchor == (
        "days in the condition (2026-03-02 to 2026-09-01, from 2026-11-01) reaching 15 months "
        "within 22 months (occurrence 2)"
    )
    assert why.rule == "asfa_15_of_22: cumulative (louisiana calendar, not moved by pauses)"
    assert why.due_on == dt.date(2027, 8, 2)


def _window_clock() -> CaseClock:
    pathway = nw.load_pathway("tests/pathways/valid/window.yaml")
    return CaseClock("C-1", LONDON, pathway, WorkingCalendar(pathway.calendar, pathway.timezone))


def test_a_window_is_explained_with_the_day_it_opens() -> None:
    """A window's rule text names the day it opens; it never moves with pauses."""
    state, clock = _opened(), _window_clock()
    _deadlines.record_clock_facts(state, clock, {"entered_care_on": dt.date(2026, 1, 5)}, MONDAY)
    [row] = state.added["deadlines"]
    # 4 weeks after Mon 5 Jan 2026: Mon 2 Feb; 14 weeks: Mon 13 Apr 2026.
    assert (row.kind, row.opens_on, row.due_on) == (
        "window",
        dt.date(2026, 2, 2),
        dt.date(2026, 4, 13),
    )
    why = _deadlines.explanation(clock, row)
    assert why.rule == (
        "baseline_visit: 14 weeks (england-and-wales calendar, window opens 2026-02-02, "
        "not moved by pauses)"
    )
    assert why.anchor == "entered_care_on (occurrence 1)"


def test_a_deadline_whose_rule_the_version_no_longer_has_is_explained_from_its_row() -> None:
    """A settled row of a dropped rule says so, naming the version and the pathway."""
    state, clock = _in_referral()
    [row] = state.rows["deadlines"]
    _deadlines.close_open(state, clock, TUESDAY)
    newer = _london(_version(_england(), drop=("referral_decision",)))
    why = _deadlines.explanation(newer, row)
    version = _england().version + 1
    assert why.anchor == f"a rule version {version} no longer has"
    assert why.rule == "referral_decision: cancelled under an earlier version of nim-uk-england"
    assert why.skipped == ()
    assert (why.start_on, why.due_on) == (dt.date(2026, 1, 5), dt.date(2026, 1, 19))


def test_a_stored_row_becomes_the_public_deadline_with_every_field() -> None:
    """to_deadline copies the row's fields into a Deadline and attaches its explanation."""
    state, clock = _in_referral()
    [row] = state.rows["deadlines"]
    deadline = _deadlines.to_deadline(clock, row)
    assert deadline == Deadline(
        reference="C-1",
        stage="referral",
        name="referral_decision",
        due_on=dt.date(2026, 1, 19),
        due_at=dt.datetime(2026, 1, 20, tzinfo=dt.UTC),
        status="open",
        settled_at=None,
        extensions=0,
        kind="stage",
        occurrence=1,
        start_on=dt.date(2026, 1, 5),
        site=LONDON,
        opens_on=None,
    )
    assert deadline.explain() == _deadlines.explanation(clock, row)


# -- windows ---------------------------------------------------------------------------------------


def test_a_visit_before_the_window_opens_is_reported_for_refusal() -> None:
    """window_refusal names rule, fact, day and first day for a visit before the window opens."""
    state, clock = _opened(), _window_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    # Opens Mon 2 Feb 2026: 1 Feb is too early, 2 Feb is in.
    assert _deadlines.window_refusal(state, clock, {"baseline_visit_on": dt.date(2026, 2, 1)}) == (
        "baseline_visit",
        "baseline_visit_on",
        dt.date(2026, 2, 1),
        dt.date(2026, 2, 2),
    )
    assert (
        _deadlines.window_refusal(state, clock, {"baseline_visit_on": dt.date(2026, 2, 2)}) is None
    )
    assert _deadlines.window_refusal(state, clock, {"baseline_visit_on": "2026-02-01"}) is None
    assert not state.pending


def test_a_visit_to_a_settled_window_is_not_refused() -> None:
    """Once the window is settled, an early date is not checked against it."""
    state, clock = _opened(), _window_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    moves = _record(state, clock, MONDAY, baseline_visit_on=dt.date(2026, 2, 10))
    assert moves == [
        {"rule": "baseline_visit", "fact": "baseline_visit_on", "settled": "met", "occurrence": 1}
    ]
    assert (
        _deadlines.window_refusal(state, clock, {"baseline_visit_on": dt.date(2026, 1, 20)}) is None
    )


# -- settling by stage and by trigger --------------------------------------------------------------


def test_leaving_a_stage_again_settles_only_its_open_deadline() -> None:
    """Back in referral a second time: leaving settles the new row, the first keeps its record."""
    state, clock = _in_referral()
    [first] = state.rows["deadlines"]
    _deadlines.settle_stage_deadlines(state, clock, "referral", TUESDAY, closing=False)
    back = dt.datetime(2026, 1, 26, 10, tzinfo=dt.UTC)
    _deadlines.open_stage_deadlines(state, clock, "referral", back)
    _written(state)
    # The first was met on Tue 6 Jan; the second, from Mon 26 Jan, is due Mon 9 Feb: left on
    # Fri 13 Feb it is missed.
    left = dt.datetime(2026, 2, 13, 10, tzinfo=dt.UTC)
    settled = _deadlines.settle_stage_deadlines(state, clock, "referral", left, closing=False)
    assert settled == {"referral_decision": "missed"}
    assert (first.status, first.settled_at) == ("met", TUESDAY)
    assert first.id not in state.changed["deadlines"]


def test_closing_from_a_stage_meets_a_deadline_whose_rule_names_the_trigger() -> None:
    """settle_stage_deadlines with closing=True meets a rule whose met_by names the trigger."""
    eng = _england()
    decision = dataclasses.replace(eng.rule("referral_decision"), met_by=frozenset({"decline"}))
    state, clock = _opened(), _london(_version(eng, decision))
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    met = _deadlines.settle_stage_deadlines(
        state, clock, "referral", TUESDAY, closing=True, trigger="decline"
    )
    assert met == {"referral_decision": "met"}


def test_a_trigger_meets_only_the_open_occurrence_of_its_clock() -> None:
    """settle_met_by settles the open care_proceedings, not an earlier one already settled."""
    state, clock = _opened(), _london()
    _record(state, clock, MONDAY, proceedings_issued_on=dt.date(2026, 1, 5))
    # Fresh proceedings issued on 2 Feb: the first is settled met, the second runs to
    # 2 Feb + 182 days - 1 = Sun 2 Aug 2026.
    _record(state, clock, MONDAY, proceedings_issued_on=dt.date(2026, 2, 2))
    first, second = state.rows["deadlines"]
    assert (first.status, second.status, second.due_on) == ("met", "open", dt.date(2026, 8, 2))
    settled = _deadlines.settle_met_by(state, clock, "record_decision", TUESDAY)
    assert settled == {"care_proceedings": "met"}
    assert (first.settled_at, second.settled_at) == (MONDAY, TUESDAY)
    assert set(state.changed["deadlines"]) == {second.id}


def test_a_review_recorded_before_its_clock_started_starts_nothing() -> None:
    """lac_review_held_on with no entered_care_on: the move says nothing started."""
    state, clock = _opened(), _london()
    moves = _deadlines.record_clock_facts(
        state, clock, {"lac_review_held_on": dt.date(2026, 2, 2)}, MONDAY
    )
    assert moves == [{"rule": "lac_review", "fact": "lac_review_held_on", "started": None}]
    assert not state.pending


def test_a_mid_way_reminder_follows_an_earliest_of_clock_moved_earlier() -> None:
    """When a candidate moves the clock, a fraction reminder counts from the new anchor."""
    la = _louisiana()
    review = dataclasses.replace(la.rule(REVIEW), reminders=(Reminder(label="half", fraction=0.5),))
    state, clock = _opened(), _clock(review)
    early = dt.datetime(2026, 1, 20, 16, tzinfo=dt.UTC)
    facts: dict[str, Any] = {"entered_care_on": dt.date(2026, 1, 10)}
    _record(state, clock, early, **facts)
    _record(state, clock, early, facts=facts, disposition_on=dt.date(2026, 1, 15))
    [row] = state.deadline_rows(REVIEW)
    assert row.due_on == dt.date(2026, 4, 15)
    # 15 Jan to 15 Apr 2026 is 90 days; half is 45: 15 Jan + 45 = 1 Mar 2026, whose midnight in
    # Chicago (CST, UTC-6) is 06:00 UTC.
    half = [a.due_at for a in state.rows["alarms"] if a.label == "half" and a.status == "pending"]
    assert half == [dt.datetime(2026, 3, 1, 6, tzinfo=dt.UTC)]


# -- more reworking --------------------------------------------------------------------------------


def test_reworking_replays_a_pause_from_the_due_date_and_a_one_day_pause() -> None:
    """A pause of one working day counts, and so does one that began on the due date itself."""
    state, _ = _in_referral()
    [row] = state.rows["deadlines"]
    pauses = (
        (dt.date(2026, 1, 15), dt.date(2026, 1, 16)),
        (dt.date(2026, 1, 20), dt.date(2026, 1, 21)),
    )
    changes = _rework(state, _version(_england()), pauses=pauses)
    # Thu 15 Jan paused: 1 working day, Mon 19 -> Tue 20 Jan. Then paused on Tue 20 Jan, the
    # due date: 1 more working day, Wed 21 Jan.
    assert changes[0]["to"] == "2026-01-21"
    assert [(a["previous_due_on"], a["due_on"], a["shift"]) for a in row.adjustments] == [
        ("2026-01-19", "2026-01-20", "1 working_days"),
        ("2026-01-20", "2026-01-21", "1 working_days"),
    ]


def test_reworking_a_weeks_deadline_replays_a_pause_in_calendar_days() -> None:
    """A weeks rule's pause is replayed as dates paused, recorded as 'N days'."""
    state, clock = _opened(), _london()
    _deadlines.open_stage_deadlines(state, clock, "assessment", MONDAY)
    _written(state)
    [row] = state.rows["deadlines"]
    changes = _rework(
        state,
        _version(_england()),
        stage="assessment",
        pauses=((dt.date(2026, 1, 7), dt.date(2026, 1, 14)),),
    )
    # 12 weeks after Mon 5 Jan: Mon 30 Mar; 7 dates paused: Mon 6 Apr 2026.
    assert changes == [
        {
            "deadline": "assessment",
            "occurrence": 1,
            "from": "2026-03-30",
            "to": "2026-04-06",
            "change": "moved",
        }
    ]
    assert [a["shift"] for a in row.adjustments] == ["7 days"]


def test_reworking_a_paused_treatment_keeps_its_reminders_standing_still() -> None:
    """Reworked after a pause, treatment's monthly and mid-way reminders keep the moved start."""
    state, clock = _opened(), _london()
    _deadlines.open_stage_deadlines(state, clock, "treatment", MONDAY)
    _written(state)
    at = dt.datetime(2026, 1, 14, 10, tzinfo=dt.UTC)
    changes = _rework(
        state,
        _version(_england()),
        stage="treatment",
        pauses=((dt.date(2026, 1, 7), dt.date(2026, 1, 14)),),
        at=at,
    )
    # As when the pause was applied: due Fri 5 -> Fri 12 Jun; start 5 -> 12 Jan; monthly on
    # the 12th, mid-way 29 Mar (see the pause test above).
    assert changes[0]["to"] == "2026-06-12"
    utc = dt.UTC
    assert [(a.label, a.due_at) for a in state.added["alarms"]][:5] == [
        ("monthly_update", dt.datetime(2026, 2, 12, tzinfo=utc)),
        ("monthly_update", dt.datetime(2026, 3, 12, tzinfo=utc)),
        ("monthly_update", dt.datetime(2026, 4, 11, 23, tzinfo=utc)),
        ("monthly_update", dt.datetime(2026, 5, 11, 23, tzinfo=utc)),
        ("mid_way_review", dt.datetime(2026, 3, 29, tzinfo=utc)),
    ]


def test_a_cancelled_row_does_not_stop_the_rows_after_it_being_reworked() -> None:
    """After a dropped rule is cancelled, the next open deadline is still reworked."""
    state, clock = _in_referral()
    _record(state, clock, MONDAY, proceedings_issued_on=dt.date(2026, 1, 5))
    changes = _rework(
        state,
        _version(_england(), drop=("referral_decision",)),
        facts={"proceedings_issued_on": dt.date(2026, 1, 5)},
    )
    assert changes == [
        {
            "deadline": "referral_decision",
            "occurrence": 1,
            "from": "2026-01-19",
            "to": None,
            "change": "cancelled",
        },
        {
            "deadline": "care_proceedings",
            "occurrence": 1,
            "from": "2026-07-05",
            "to": "2026-07-05",
            "change": "unchanged",
        },
    ]


def _window_rework(rule: DeadlineRule) -> tuple[CaseState, list[dict[str, Any]]]:
    state, clock = _opened(), _window_clock()
    facts: dict[str, Any] = {"entered_care_on": dt.date(2026, 1, 5)}
    _record(state, clock, MONDAY, **facts)
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    newer = _version(clock.pathway, rule)
    changes = _deadlines.rework_open(
        state, _london(newer), "referral", facts, (), dt.date(2026, 1, 5), MONDAY
    )
    return state, changes


def test_reworking_a_window_counts_its_first_day_again() -> None:
    """A window opening 6 weeks 'beginning with' the anchor: first and last days both move."""
    visit = _window_clock().pathway.rule("baseline_visit")
    state, changes = _window_rework(
        dataclasses.replace(visit, opens=Duration.parse("6 weeks"), counting="beginning_with")
    )
    # Beginning with Mon 5 Jan 2026: 6 weeks end Sun 15 Feb, 14 weeks end Sun 12 Apr.
    assert changes[0] == {
        "deadline": "baseline_visit",
        "occurrence": 1,
        "from": "2026-04-13",
        "to": "2026-04-12",
        "change": "moved",
    }
    [row] = state.deadline_rows("baseline_visit")
    assert (row.kind, row.opens_on, row.due_on) == (
        "window",
        dt.date(2026, 2, 15),
        dt.date(2026, 4, 12),
    )
    opens = [a for a in state.added["alarms"] if a.label == "window_opens"]
    assert [a.due_at for a in opens] == [dt.datetime(2026, 2, 15, tzinfo=dt.UTC)]


def test_a_window_that_becomes_a_plain_clock_loses_its_first_day() -> None:
    """A new version without opens turns the row into a clock with no first day."""
    visit = _window_clock().pathway.rule("baseline_visit")
    state, changes = _window_rework(dataclasses.replace(visit, opens=None))
    assert changes[0]["change"] == "unchanged"
    [row] = state.deadline_rows("baseline_visit")
    assert (row.kind, row.opens_on, row.due_on) == ("clock", None, dt.date(2026, 4, 13))
    assert [a.label for a in state.alarms_of(row, "pending")] == ["breach", "manager"]


def test_a_stage_deadline_moved_to_another_stage_follows_the_case_there() -> None:
    """A rule the new version runs in the stage the case is mapped to keeps its row, restaged."""
    eng = _england()
    moved = dataclasses.replace(eng.rule("referral_decision"), stage="assessment")
    state, _ = _in_referral()
    [row] = state.rows["deadlines"]
    changes = _rework(state, _version(eng, moved), stage="assessment")
    # Still 10 working days from Mon 5 Jan: Mon 19 Jan. The assessment deadline opens too.
    assert changes == [
        {
            "deadline": "referral_decision",
            "occurrence": 1,
            "from": "2026-01-19",
            "to": "2026-01-19",
            "change": "unchanged",
        },
        {
            "deadline": "assessment",
            "occurrence": 1,
            "from": None,
            "to": "2026-03-30",
            "change": "opened",
        },
    ]
    assert (row.stage, row.status) == ("assessment", "open")


def test_reworking_moves_the_start_when_another_candidate_comes_to_govern() -> None:
    """A shorter disposition candidate in the new version governs: start, due and basis follow."""
    state, clock, facts = _removed_10_january()
    _record(state, clock, MID, facts=facts, disposition_on=dt.date(2026, 5, 20))
    facts["disposition_on"] = dt.date(2026, 5, 20)
    [row] = state.deadline_rows(REVIEW)
    assert row.basis == {"candidate": 1, "anchor": "entered_care_on"}
    review = _louisiana().rule(REVIEW)
    month = dataclasses.replace(review.candidates[0], duration=Duration.parse("1 months"))
    newer = _la_version(dataclasses.replace(review, candidates=(month, review.candidates[1])))
    changes = _la_rework(state, newer, facts)
    # Disposition 20 May 2026 + 1 month = 20 Jun 2026, before removal + 6 months (10 Jul).
    assert changes == [
        {
            "deadline": REVIEW,
            "occurrence": 1,
            "from": "2026-07-10",
            "to": "2026-06-20",
            "change": "moved",
        }
    ]
    assert (row.start_on, row.due_on, row.basis) == (
        dt.date(2026, 5, 20),
        dt.date(2026, 6, 20),
        {"candidate": 0, "anchor": "disposition_on"},
    )


def test_an_earliest_of_clock_that_becomes_anchored_keeps_its_stored_basis() -> None:
    """Reworked under a plain anchored rule, the row keeps the basis it was opened with."""
    state, _, facts = _removed_10_january()
    [row] = state.deadline_rows(REVIEW)
    review = _louisiana().rule(REVIEW)
    anchored = dataclasses.replace(
        review, candidates=(), anchor_fact="entered_care_on", duration=Duration.parse("6 months")
    )
    changes = _la_rework(state, _la_version(anchored), facts)
    # 10 Jan 2026 + 6 months: 10 Jul 2026, as before.
    assert changes[0]["change"] == "unchanged"
    assert row.basis == {"candidate": 1, "anchor": "entered_care_on"}


def test_reworking_a_cumulative_clock_in_its_first_period() -> None:
    """A single running period is kept and counted to the new threshold."""
    state, _ = _in_care_from_2_march()
    [row] = state.deadline_rows(ASFA)
    asfa = _louisiana().rule(ASFA)
    assert asfa.cumulative is not None
    twelve = dataclasses.replace(
        asfa, cumulative=dataclasses.replace(asfa.cumulative, reaches=Duration.parse("12 months"))
    )
    facts = {"adjudicated_on": dt.date(2026, 3, 2), "entered_care_on": dt.date(2026, 2, 1)}
    changes = _la_rework(state, _la_version(twelve), facts)
    # Unbroken from 2 Mar 2026: 12 months on, 2 Mar 2027.
    assert changes == [
        {
            "deadline": ASFA,
            "occurrence": 1,
            "from": "2027-06-02",
            "to": "2027-03-02",
            "change": "moved",
        }
    ]
    assert row.basis == {"periods": [["2026-03-02", None]]}


def test_a_clock_the_new_version_adds_opens_after_one_the_case_already_has() -> None:
    """lac_review, missing from the old version, opens from the facts; held reviews count."""
    eng = _england()
    older = _version(eng, drop=("lac_review",))
    state = _opened()
    _deadlines.open_stage_deadlines(state, _london(older), "referral", MONDAY)
    _record(state, _london(older), MONDAY, proceedings_issued_on=dt.date(2026, 1, 5))
    facts = {
        "proceedings_issued_on": dt.date(2026, 1, 5),
        "entered_care_on": dt.date(2026, 3, 23),
        "lac_review_held_on": dt.date(2026, 4, 21),
    }
    changes = _rework(state, _version(eng), facts=facts)
    # 1st review due Wed 22 Apr 2026 (Easter skipped), held 21 Apr: met; the 2nd is due 3
    # months after it, Tue 21 Jul 2026. Only the open one is reported as opened.
    assert changes[2:] == [
        {
            "deadline": "lac_review",
            "occurrence": 2,
            "from": None,
            "to": "2026-07-21",
            "change": "opened",
        }
    ]
    rows = state.deadline_rows("lac_review")
    assert [(r.occurrence, r.status, r.site) for r in rows] == [
        (1, "met", LONDON),
        (2, "open", LONDON),
    ]


def test_starting_an_added_clock_leaves_the_clocks_sharing_its_anchor_alone() -> None:
    """Scotland's icso_limit added later opens alone: the running interim_cso is not re-recorded."""
    sco = nw.bundled_pathways()["nim-uk-scotland"]
    older = _version(sco, drop=("icso_limit",))
    clock = CaseClock("C-1", "glasgow", older, WorkingCalendar(sco.calendar, sco.timezone))
    state = _opened()
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    facts: dict[str, Any] = {"icso_made_on": dt.date(2026, 3, 2)}
    _record(state, clock, MONDAY, **facts)
    newer = CaseClock("C-1", "glasgow", _version(sco), clock.calendar)
    changes = _deadlines.rework_open(
        state, newer, "referral", facts, (), dt.date(2026, 1, 5), MONDAY
    )
    # interim_cso: 22 days beginning with Mon 2 Mar = Mon 23 Mar. icso_limit: 66 days beginning
    # with 2 Mar = 2 Mar + 65 = Wed 6 May 2026.
    assert changes[1:] == [
        {
            "deadline": "interim_cso",
            "occurrence": 1,
            "from": "2026-03-23",
            "to": "2026-03-23",
            "change": "unchanged",
        },
        {
            "deadline": "icso_limit",
            "occurrence": 1,
            "from": None,
            "to": "2026-05-06",
            "change": "opened",
        },
    ]
    assert [(r.occurrence, r.status) for r in state.deadline_rows("interim_cso")] == [(1, "open")]


def test_reworking_a_window_counted_after_its_anchor_opens_it_on_the_day_counted() -> None:
    """A window opening 6 weeks after the anchor (day 0) opens on the 42nd day after it."""
    visit = _window_clock().pathway.rule("baseline_visit")
    state, changes = _window_rework(dataclasses.replace(visit, opens=Duration.parse("6 weeks")))
    # Mon 5 Jan 2026 + 42 days: Mon 16 Feb; the last day stays Mon 13 Apr.
    assert changes[0]["change"] == "unchanged"
    [row] = state.deadline_rows("baseline_visit")
    assert (row.opens_on, row.due_on) == (dt.date(2026, 2, 16), dt.date(2026, 4, 13))


# -- anchored and recurring clocks (England lac_review) --------------------------------------------


def _lac_clock() -> CaseClock:
    return _london(_version(_england(), drop=("care_proceedings",)))


def test_entering_care_opens_the_first_review_with_nothing_before_it() -> None:
    """The anchor opens occurrence 1, and the move says no earlier occurrence was settled."""
    state, clock = _opened(), _lac_clock()
    moves = _deadlines.record_clock_facts(
        state, clock, {"entered_care_on": dt.date(2026, 1, 5)}, MONDAY
    )
    # 20 working days after Mon 5 Jan 2026: Mon 2 Feb 2026.
    assert moves == [
        {
            "rule": "lac_review",
            "fact": "entered_care_on",
            "started": "2026-01-05",
            "occurrence": 1,
            "previous": None,
        }
    ]
    [row] = state.added["deadlines"]
    assert (row.occurrence, row.due_on) == (1, dt.date(2026, 2, 2))


def test_a_review_held_on_the_day_the_clock_started_meets_it() -> None:
    """Held on the anchor day itself: met, and the 2nd review runs 3 months from it."""
    state, clock = _opened(), _lac_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    moves = _deadlines.record_clock_facts(
        state, clock, {"lac_review_held_on": dt.date(2026, 1, 5)}, MONDAY
    )
    # Held Mon 5 Jan 2026: next due 3 months on, Sun 5 Apr 2026.
    assert moves == [
        {
            "rule": "lac_review",
            "fact": "lac_review_held_on",
            "started": "2026-01-05",
            "occurrence": 2,
            "previous": "met",
        }
    ]
    assert [(r.occurrence, r.status, r.due_on) for r in state.deadline_rows("lac_review")] == [
        (1, "met", dt.date(2026, 2, 2)),
        (2, "open", dt.date(2026, 4, 5)),
    ]


def test_a_review_date_corrected_earlier_reopens_the_same_occurrence() -> None:
    """A held date before the running occurrence began cancels it and reopens that occurrence."""
    state, clock = _opened(), _lac_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    _record(state, clock, MONDAY, lac_review_held_on=dt.date(2026, 1, 20))
    moves = _deadlines.record_clock_facts(
        state, clock, {"lac_review_held_on": dt.date(2026, 1, 15)}, TUESDAY
    )
    # Occurrence 2 ran from 20 Jan; the review was in fact held on 15 Jan: occurrence 2 again,
    # due 3 months after it, Wed 15 Apr 2026.
    assert moves == [
        {
            "rule": "lac_review",
            "fact": "lac_review_held_on",
            "started": "2026-01-15",
            "occurrence": 2,
            "previous": "cancelled",
        }
    ]
    assert [(r.occurrence, r.status, r.due_on) for r in state.deadline_rows("lac_review")] == [
        (1, "met", dt.date(2026, 2, 2)),
        (2, "cancelled", dt.date(2026, 4, 20)),
        (2, "open", dt.date(2026, 4, 15)),
    ]


def test_correcting_the_anchor_after_a_review_was_held_moves_nothing() -> None:
    """Once reviews have moved the clock on, a corrected anchor date changes nothing running."""
    state, clock = _opened(), _lac_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    _record(state, clock, MONDAY, lac_review_held_on=dt.date(2026, 1, 20))
    moves = _deadlines.record_clock_facts(
        state, clock, {"entered_care_on": dt.date(2026, 1, 7)}, TUESDAY
    )
    assert moves == [{"rule": "lac_review", "fact": "entered_care_on", "started": None}]
    assert not state.pending


# -- calendars: the site's closures count for the team, not for the law ---------------------------


def test_a_site_closure_moves_a_stage_deadline_but_not_a_statutory_clock() -> None:
    """Stage deadlines count the site's closures; statutory clocks count the law's working days."""
    eng = _england()
    closed = WorkingCalendar(eng.calendar, eng.timezone, {dt.date(2026, 1, 7): "staff training"})
    clock = CaseClock("C-1", LONDON, eng, closed)
    state = _opened()
    opened = _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    assert opened == ["referral_decision"]
    _deadlines.record_clock_facts(state, clock, {"entered_care_on": dt.date(2026, 1, 5)}, MONDAY)
    decision, review = state.added["deadlines"]
    # referral_decision: 10 working days after Mon 5 Jan skipping the closed Wed 7 Jan: Tue 20
    # Jan. lac_review: 20 working days after 5 Jan in the law's calendar: Mon 2 Feb 2026.
    assert (decision.rule, decision.due_on) == ("referral_decision", dt.date(2026, 1, 20))
    assert (review.rule, review.due_on) == ("lac_review", dt.date(2026, 2, 2))


# -- opening windows and their alarms --------------------------------------------------------------


def test_opening_a_window_plans_its_opening_reminder() -> None:
    """A window tells the team the day it opens, then breaches when it closes."""
    state, clock = _opened(), _window_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    [row] = state.deadline_rows("baseline_visit")
    alarms = state.alarms_of(row)
    # Opens Mon 2 Feb 2026 (London midnight, GMT); closes when Mon 13 Apr ends (BST: 23:00 UTC).
    assert [(a.kind, a.label, a.due_at, a.status, a.fired_at) for a in alarms] == [
        ("reminder", "window_opens", dt.datetime(2026, 2, 2, tzinfo=dt.UTC), "pending", None),
        ("breach", "breach", dt.datetime(2026, 4, 13, 23, tzinfo=dt.UTC), "pending", None),
        ("escalation", "manager", dt.datetime(2026, 4, 13, 23, tzinfo=dt.UTC), "pending", None),
    ]


def test_a_window_counted_beginning_with_its_anchor_opens_a_day_earlier() -> None:
    """Counted beginning_with, both the first and the last day of a window fall a day earlier."""
    pathway = _window_clock().pathway
    visit = dataclasses.replace(pathway.rule("baseline_visit"), counting="beginning_with")
    clock = _london(_version(pathway, visit))
    state = _opened()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    [row] = state.deadline_rows("baseline_visit")
    # 4 weeks beginning with Mon 5 Jan: Sun 1 Feb; 14 weeks: Sun 12 Apr 2026.
    assert (row.opens_on, row.due_on) == (dt.date(2026, 2, 1), dt.date(2026, 4, 12))


def _window_and_first_review() -> tuple[CaseState, CaseClock]:
    """The window pathway with a plain clock listed before the window, and a second visit fact."""
    pathway = _window_clock().pathway
    visit = pathway.rule("baseline_visit")
    review = dataclasses.replace(visit, name="first_review", opens=None, settled_by=())
    visit = dataclasses.replace(visit, settled_by=("home_visit_on", "baseline_visit_on"))
    rules = (pathway.rule("referral_decision"), review, visit)
    clock = _london(dataclasses.replace(pathway, version=pathway.version + 1, deadlines=rules))
    state = _opened()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    return state, clock


def test_a_window_listed_after_a_plain_clock_is_still_checked_before_it_opens() -> None:
    """window_refusal looks past clocks with no first day and facts not given, to the window."""
    state, clock = _window_and_first_review()
    refusal = _deadlines.window_refusal(state, clock, {"baseline_visit_on": dt.date(2026, 2, 1)})
    assert refusal == (
        "baseline_visit",
        "baseline_visit_on",
        dt.date(2026, 2, 1),
        dt.date(2026, 2, 2),
    )


def test_a_visit_settles_its_own_window_not_the_newest_deadline() -> None:
    """The visit settles the window's row (met, at the command), not the later referral row."""
    state, clock = _window_and_first_review()
    window = state.latest("baseline_visit")
    assert window is not None
    moves = _deadlines.record_clock_facts(
        state, clock, {"baseline_visit_on": dt.date(2026, 2, 10)}, TUESDAY
    )
    assert moves == [
        {"rule": "baseline_visit", "fact": "baseline_visit_on", "settled": "met", "occurrence": 1}
    ]
    assert (window.status, window.settled_at) == ("met", TUESDAY)
    assert set(state.changed["deadlines"]) == {window.id}
    assert [r.status for r in state.deadline_rows("referral_decision")] == ["open"]


# -- settling and alarms ---------------------------------------------------------------------------


def test_leaving_on_the_due_date_is_on_time_and_cancels_only_pending_alarms() -> None:
    """Left on the due date: met. Its pending alarms are cancelled, one already fired stays."""
    state, clock = _in_referral()
    [row] = state.rows["deadlines"]
    reminder, breach, escalation = state.rows["alarms"]
    state.change("alarms", reminder, status="fired", fired_at=reminder.due_at)
    _written(state)
    left = dt.datetime(2026, 1, 19, 17, tzinfo=dt.UTC)
    settled = _deadlines.settle_stage_deadlines(state, clock, "referral", left, closing=False)
    assert settled == {"referral_decision": "met"}
    assert (row.status, row.settled_at) == ("met", left)
    assert [a.status for a in state.rows["alarms"]] == ["fired", "cancelled", "cancelled"]
    assert set(state.changed["alarms"]) == {breach.id, escalation.id}
    assert set(state.changed["deadlines"]) == {row.id}


def test_closing_while_in_a_stage_cancels_what_the_trigger_does_not_meet() -> None:
    """settle_stage_deadlines with closing=True and another trigger cancels the stage deadline."""
    state, clock = _in_referral()
    settled = _deadlines.settle_stage_deadlines(
        state, clock, "referral", TUESDAY, closing=True, trigger="withdraw"
    )
    assert settled == {"referral_decision": "cancelled"}


def test_reworking_an_overdue_deadline_keeps_a_fired_breach_and_drops_past_reminders() -> None:
    """Re-planned after its due date: no past reminder, no second breach, the escalation again."""
    state, _ = _in_referral()
    [row] = state.rows["deadlines"]
    _reminder, breach, escalation = state.rows["alarms"]
    state.change("alarms", breach, status="fired", fired_at=breach.due_at)
    _written(state)
    late = dt.datetime(2026, 1, 21, 12, tzinfo=dt.UTC)
    changes = _rework(state, _version(_england()), at=late)
    assert changes[0]["change"] == "unchanged"
    # The reminder (Wed 14 Jan) is past and not raised again; the breach (midnight into Tue 20
    # Jan) already fired; the escalation at the same instant, still pending, is planned again.
    assert [(a.kind, a.label, a.due_at) for a in state.added["alarms"]] == [
        ("escalation", "team_manager", dt.datetime(2026, 1, 20, tzinfo=dt.UTC))
    ]
    assert sorted(a.status for a in state.alarms_of(row)) == ["fired", "pending"]
    assert escalation.id in state.deleted["alarms"]


def test_a_reminder_due_at_the_very_instant_of_the_command_is_still_raised() -> None:
    """A reminder falling exactly at 'now' is not in the past: it is planned."""
    state, clock = _in_referral()
    [row] = state.rows["deadlines"]
    rule = clock.pathway.rule("referral_decision")
    # Extended to Mon 26 Jan: its reminder is 3 working days before, Wed 21 Jan at 00:00 UTC.
    now = dt.datetime(2026, 1, 21, tzinfo=dt.UTC)
    _deadlines.extend(
        state,
        clock,
        row,
        rule,
        by=Duration.parse("5 working_days"),
        at=now,
        actor_id="tm",
        reason="x",
    )
    assert set(state.changed["deadlines"]) == {row.id}
    assert [(a.label, a.due_at) for a in state.added["alarms"]] == [
        ("reminder", now),
        ("breach", dt.datetime(2026, 1, 27, tzinfo=dt.UTC)),
        ("team_manager", dt.datetime(2026, 1, 27, tzinfo=dt.UTC)),
    ]


# -- pauses, more ---------------------------------------------------------------------------------


def test_a_pause_moves_the_team_deadline_listed_after_a_statutory_clock() -> None:
    """A clock that never pauses is skipped, and the stage deadline after it still moves."""
    state, clock = _opened(), _london()
    _record(state, clock, MONDAY, proceedings_issued_on=dt.date(2026, 1, 5))
    _deadlines.open_stage_deadlines(state, clock, "referral", MONDAY)
    _written(state)
    moved = _deadlines.shift_for_pause(
        state, clock, dt.date(2026, 1, 15), dt.date(2026, 1, 16), MONDAY
    )
    # Thu 15 Jan paused: 1 working day. referral_decision Mon 19 -> Tue 20 Jan.
    assert moved == [{"deadline": "referral_decision", "from": "2026-01-19", "to": "2026-01-20"}]


# -- anchored clocks, more -------------------------------------------------------------------------


def test_correcting_the_anchor_of_a_running_first_review_restarts_it() -> None:
    """entered_care_on corrected while the 1st review runs: cancelled, reopened from it."""
    state, clock = _opened(), _lac_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    moves = _deadlines.record_clock_facts(
        state, clock, {"entered_care_on": dt.date(2026, 1, 7)}, TUESDAY
    )
    # 20 working days after Wed 7 Jan 2026: Wed 4 Feb.
    assert moves == [
        {
            "rule": "lac_review",
            "fact": "entered_care_on",
            "started": "2026-01-07",
            "occurrence": 1,
            "previous": "cancelled",
        }
    ]
    assert [(r.occurrence, r.status, r.due_on) for r in state.deadline_rows("lac_review")] == [
        (1, "cancelled", dt.date(2026, 2, 2)),
        (1, "open", dt.date(2026, 2, 4)),
    ]


def test_a_review_held_late_is_missed_and_one_held_on_the_due_date_is_met() -> None:
    """Held after the due date: missed; the next held exactly on its due date: met."""
    state, clock = _opened(), _lac_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    # 1st due Mon 2 Feb; held Tue 3 Feb: missed. 2nd due 3 months after, Sun 3 May; held then.
    late = _record(state, clock, MONDAY, lac_review_held_on=dt.date(2026, 2, 3))
    on_time = _record(state, clock, MONDAY, lac_review_held_on=dt.date(2026, 5, 3))
    assert [m["previous"] for m in (*late, *on_time)] == ["missed", "met"]
    assert [(r.occurrence, r.status) for r in state.deadline_rows("lac_review")] == [
        (1, "missed"),
        (2, "met"),
        (3, "open"),
    ]


def test_after_a_clock_was_closed_a_review_opens_the_next_and_an_anchor_restarts_it() -> None:
    """With the last occurrence settled, a review opens the next one; the anchor opens number 1."""
    state, clock = _opened(), _lac_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    _deadlines.close_open(state, clock, MONDAY)
    _written(state)
    review = _record(state, clock, TUESDAY, lac_review_held_on=dt.date(2026, 1, 20))
    # Held Tue 20 Jan: occurrence 2 runs 3 months, to Mon 20 Apr 2026; nothing was open.
    assert review == [
        {
            "rule": "lac_review",
            "fact": "lac_review_held_on",
            "started": "2026-01-20",
            "occurrence": 2,
            "previous": None,
        }
    ]
    state, clock = _opened(), _lac_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    _deadlines.close_open(state, clock, MONDAY)
    _written(state)
    anchor = _record(state, clock, TUESDAY, entered_care_on=dt.date(2026, 2, 2))
    # Entered care again Mon 2 Feb: occurrence 1 again, 20 working days, Mon 2 Mar 2026.
    assert anchor == [
        {
            "rule": "lac_review",
            "fact": "entered_care_on",
            "started": "2026-02-02",
            "occurrence": 1,
            "previous": None,
        }
    ]
    assert [(r.occurrence, r.status, r.due_on) for r in state.deadline_rows("lac_review")] == [
        (1, "cancelled", dt.date(2026, 2, 2)),
        (1, "open", dt.date(2026, 3, 2)),
    ]


def test_a_review_dated_before_the_clock_began_reopens_the_first_on_the_review_span() -> None:
    """A review dated before the anchor cancels the 1st and reopens it, counted as a review."""
    state, clock = _opened(), _lac_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    moves = _record(state, clock, TUESDAY, lac_review_held_on=dt.date(2026, 1, 2))
    # Fri 2 Jan is before the 5 Jan start: occurrence 1 again, from 2 Jan with the review span
    # (3 months): Thu 2 Apr 2026.
    assert moves == [
        {
            "rule": "lac_review",
            "fact": "lac_review_held_on",
            "started": "2026-01-02",
            "occurrence": 1,
            "previous": "cancelled",
        }
    ]
    assert [(r.occurrence, r.status, r.due_on) for r in state.deadline_rows("lac_review")] == [
        (1, "cancelled", dt.date(2026, 2, 2)),
        (1, "open", dt.date(2026, 4, 2)),
    ]


def test_removal_before_disposition_makes_the_9_month_hearing_govern() -> None:
    """Removed before the disposition: disposition + 9 months applies and comes first."""
    state, clock = _opened(), _hearing_clock()
    moves = _deadlines.record_clock_facts(
        state,
        clock,
        {"entered_care_on": dt.date(2026, 1, 10), "disposition_on": dt.date(2026, 3, 15)},
        AT,
    )
    # 15 Mar 2026 + 9 months = 15 Dec 2026, before removal + 12 months (10 Jan 2027).
    assert moves[0]["due_on"] == "2026-12-15"
    [row] = state.added["deadlines"]
    assert row.basis == {"candidate": 0, "anchor": "disposition_on"}


def test_care_that_dropped_out_of_the_22_months_no_longer_counts() -> None:
    """March 2026 in care is outside the rolling 22 months by the time the threshold is reached."""
    state, clock = _in_care_from_2_march()
    _record(state, clock, LATER, returned_home_on=dt.date(2026, 4, 1))
    moves = _record(state, clock, LATER, reentered_care_on=dt.date(2027, 1, 2))
    # docs/legal-dates.md: all 457 days must come from the second stay, due Mon 3 Apr 2028.
    assert moves == [
        {"rule": ASFA, "fact": "reentered_care_on", "started": "2027-01-02", "due_on": "2028-04-03"}
    ]


def test_going_home_after_the_petition_records_the_period_on_the_settled_row() -> None:
    """The periods live on the newest row even once it is settled: leaving updates that row."""
    state, clock = _in_care_from_2_march()
    _record(state, clock, LATER, tpr_petition_filed_on=dt.date(2027, 1, 4))
    [row] = state.deadline_rows(ASFA)
    _deadlines.record_clock_facts(state, clock, {"returned_home_on": dt.date(2027, 3, 1)}, LATER)
    assert set(state.changed["deadlines"]) == {row.id}
    assert (row.status, row.basis) == ("met", {"periods": [["2026-03-02", "2027-03-01"]]})


# -- extension lengths -----------------------------------------------------------------------------


def test_an_extension_length_is_compared_with_the_step_where_each_would_land() -> None:
    """longer_than: further than the step is True; landing on the same day as the step is not."""
    clock = _london()
    care = clock.pathway.rule("care_proceedings")
    last_day = dt.date(2026, 7, 5)
    step = Duration.parse("8 weeks")
    # From Sun 5 Jul 2026: 8 weeks is Sun 30 Aug; 9 weeks Sun 6 Sep; 56 days Sun 30 Aug too;
    # 2 months Sat 5 Sep.
    assert _deadlines.longer_than(clock, care, last_day, Duration.parse("9 weeks"), step)
    assert not _deadlines.longer_than(clock, care, last_day, Duration.parse("56 days"), step)
    assert not _deadlines.longer_than(clock, care, last_day, Duration.parse("4 weeks"), step)
    assert _deadlines.longer_than(clock, care, last_day, Duration.parse("2 months"), step)


def test_working_days_are_compared_with_the_step_in_the_rules_own_calendar() -> None:
    """A stage rule's working days count the site's closures when compared with a weeks step."""
    eng = _england()
    closed = WorkingCalendar(eng.calendar, eng.timezone, {dt.date(2026, 1, 21): "training"})
    clock = CaseClock("C-1", LONDON, eng, closed)
    referral = eng.rule("referral_decision")
    due = dt.date(2026, 1, 19)
    # From Mon 19 Jan: 2 weeks is Mon 2 Feb. 10 working days is Mon 2 Feb in the law's calendar,
    # but Tue 3 Feb once the site's Wed 21 Jan closure is skipped: further than the step.
    assert _deadlines.longer_than(
        clock, referral, due, Duration.parse("10 working_days"), Duration.parse("2 weeks")
    )
    care = eng.rule("care_proceedings")
    assert not _deadlines.longer_than(
        clock, care, due, Duration.parse("10 working_days"), Duration.parse("2 weeks")
    )


# -- explanations of rows from older versions ------------------------------------------------------


def test_a_row_from_an_anchored_version_is_explained_by_the_first_candidate() -> None:
    """An earliest_of rule explaining a row with no candidate in its basis names candidate 0."""
    review = _louisiana().rule(REVIEW)
    anchored = dataclasses.replace(
        review, candidates=(), anchor_fact="entered_care_on", duration=Duration.parse("6 months")
    )
    state = _opened()
    _record(state, _clock(anchored), AT, entered_care_on=dt.date(2026, 1, 10))
    [row] = state.deadline_rows(REVIEW)
    assert row.basis is None
    why = _deadlines.explanation(_review_clock(), row)
    assert why.anchor == (
        "disposition_on + 3 months: the earliest of 2 candidates governs (occurrence 1)"
    )
    assert why.rule == "case_review: 3 months (louisiana calendar, not moved by pauses)"


def test_a_settled_row_from_before_a_clock_became_cumulative_lists_no_periods() -> None:
    """A cumulative rule explaining a row whose basis has no periods lists none."""
    asfa = _louisiana().rule(ASFA)
    older = dataclasses.replace(
        asfa,
        cumulative=None,
        candidates=(Candidate(anchor="adjudicated_on", duration=Duration.parse("15 months")),),
    )
    state = _opened()
    _record(state, _clock(older), AT, adjudicated_on=dt.date(2026, 3, 2))
    _deadlines.close_open(state, _clock(older), MID)
    [row] = state.deadline_rows(ASFA)
    why = _deadlines.explanation(_asfa_clock(), row)
    assert why.anchor == (
        "days in the condition () reaching 15 months within 22 months (occurrence 1)"
    )


def test_an_adjustment_stored_without_detail_is_explained_with_none() -> None:
    """An adjustment recorded without a detail (an older row) reads as an empty detail."""
    state, clock = _in_referral()
    [row] = state.rows["deadlines"]
    state.change(
        "deadlines",
        row,
        due_on=dt.date(2026, 1, 26),
        adjustments=[
            {
                "kind": "extension",
                "at": MONDAY.isoformat(),
                "shift": "5 working_days",
                "previous_due_on": "2026-01-19",
                "due_on": "2026-01-26",
            }
        ],
    )
    [adjustment] = _deadlines.explanation(clock, row).adjustments
    assert adjustment.detail == ""


def test_a_settled_window_and_a_later_review_become_public_deadlines() -> None:
    """to_deadline carries kind, occurrence, first day and when it was settled."""
    state, clock = _opened(), _window_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    _record(state, clock, TUESDAY, baseline_visit_on=dt.date(2026, 2, 10))
    [row] = state.deadline_rows("baseline_visit")
    visit = _deadlines.to_deadline(clock, row)
    assert (visit.kind, visit.stage, visit.status, visit.settled_at, visit.opens_on) == (
        "window",
        None,
        "met",
        TUESDAY,
        dt.date(2026, 2, 2),
    )
    state, clock = _opened(), _lac_clock()
    _record(state, clock, MONDAY, entered_care_on=dt.date(2026, 1, 5))
    _record(state, clock, MONDAY, lac_review_held_on=dt.date(2026, 1, 20))
    second = _deadlines.to_deadline(clock, state.deadline_rows("lac_review")[-1])
    assert (second.kind, second.occurrence, second.start_on, second.due_on) == (
        "clock",
        2,
        dt.date(2026, 1, 20),
        dt.date(2026, 4, 20),
    )
