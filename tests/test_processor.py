"""The deadline processor: reminders, breaches and escalations fire on time, and each exactly once.

Alarm instants are worked out by hand: a reminder falls at the start (local midnight) of its
date, a breach and its escalation at the end of the due date, both in the site's time zone.
Concurrency is tested with several engines on one database: threads on SQLite, spawned processes
on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date

import pytest
from deadline_helpers import (
    COORDINATOR,
    COURT_OFFICER,
    ENGLAND,
    LOUISIANA,
    SCOTLAND,
    TEAM_MANAGER,
    FakeClock,
    action_counts,
    alarm_keys,
    alarm_statuses,
    case_in_stage,
    deadline,
    enter,
    event_keys,
    migrated_engine,
    open_case,
    process_due_worker,
    utc,
)

import nim_workflow as nw
from nim_workflow import _engine as _engine_module

TICK = dt.timedelta(microseconds=1)


@pytest.fixture
def engine(db_url: str) -> Iterator[nw.Engine]:
    """A migrated engine on an empty database, its clock fixed before any case time."""
    with migrated_engine(db_url, FakeClock(utc(2026, 1, 1))) as built:
        yield built


def _alarm_events(events: list[nw.Event], reference: str) -> list[tuple[str, str, str, str]]:
    return [key for key in event_keys(events) if key[0] == reference]


# -- on time, and only once ---------------------------------------------------------------------

# England treatment entered Mon 1 February 2027, 5 months -> Thu 1 July 2027 (BST).
#   monthly_update every month from the start: 1 March, 1 April, 1 May, 1 June (1 July is the
#     due date itself, so no update then);
#   mid_way_review at half-time: 1 February -> 1 July is 150 days; 75 days on is 17 April;
#   reminder 10 working days before 1 July: 30, 29, 28 June, 25 .. 21 June (8), 18, 17 -> 17 June;
#   breach and escalation when 1 July ends: 00:00 BST on 2 July = 23:00 UTC on 1 July.
# A reminder fires at local midnight: 00:00 GMT = 00:00 UTC in March, 00:00 BST = 23:00 UTC the
# day before from 28 March on.
TREATMENT_ALARMS = [
    (utc(2027, 3, 1, 0), [("reminder", "monthly_update")]),
    (utc(2027, 3, 31, 23), [("reminder", "monthly_update")]),
    (utc(2027, 4, 16, 23), [("reminder", "mid_way_review")]),
    (utc(2027, 4, 30, 23), [("reminder", "monthly_update")]),
    (utc(2027, 5, 31, 23), [("reminder", "monthly_update")]),
    (utc(2027, 6, 16, 23), [("reminder", "reminder")]),
    (utc(2027, 7, 1, 23), [("breach", "breach"), ("escalation", "team_manager")]),
]


def test_treatment_alarms_fire_on_their_instants_never_early_and_once(engine: nw.Engine) -> None:
    """England treatment's monthly updates, mid-way review, reminder, breach and escalation."""
    case_in_stage(engine, "LDN-T", ENGLAND, "treatment", utc(2027, 2, 1, 10))
    assert deadline(engine, "LDN-T", "treatment").due_on == date(2027, 7, 1)
    for instant, expected in TREATMENT_ALARMS:
        assert engine.process_due(at=instant - TICK, allow_future=True) == [], (
            f"fired early, before {instant}"
        )
        fired = engine.process_due(at=instant, allow_future=True)
        assert [(e.kind, e.detail["label"]) for e in fired] == expected, instant
        assert all(e.reference == "LDN-T" and e.detail["deadline"] == "treatment" for e in fired)
        assert engine.process_due(at=instant, allow_future=True) == []
    assert engine.process_due(at=utc(2028, 1, 1), allow_future=True) == []
    counts = action_counts(engine, "LDN-T")
    assert (counts["reminder"], counts["breach"], counts["escalation"]) == (6, 1, 1)


def test_breach_and_escalation_name_who_to_escalate_to(engine: nw.Engine) -> None:
    """The escalation's detail names team_manager; both are audited by the system actor."""
    case_in_stage(engine, "LDN-E", ENGLAND, "treatment", utc(2027, 2, 1, 10))
    fired = engine.process_due(at=utc(2027, 7, 1, 23), allow_future=True)
    by_kind = {e.kind: e for e in fired if e.kind != "reminder"}
    assert by_kind["escalation"].detail["escalate_to"] == "team_manager"
    assert by_kind["breach"].detail["due_on"] == "2027-07-01"
    audited = [e for e in engine.audit("LDN-E") if e.action in {"breach", "escalation"}]
    assert [e.action for e in audited] == ["breach", "escalation"]
    assert all(e.actor_id.startswith("system") for e in audited)
    assert audited[1].detail["escalate_to"] == "team_manager"


def test_referral_reminder_and_breach_fire_exactly_at_their_instants(engine: nw.Engine) -> None:
    """Nothing fires a microsecond early; each alarm fires at its instant, whatever the calls."""
    # London referral from Fri 18 December 2026 is due Wed 6 January 2027 (test_deadlines).
    # Reminder 3 working days before: Tue 5 (1), Mon 4 (2), [Fri 1 New Year's Day], Thu 31
    # December (3): 00:00 GMT = 00:00 UTC on 31 December. Breach: 00:00 UTC on 7 January.
    open_case(engine, "LDN-R", ENGLAND, utc(2026, 12, 18, 10))
    assert engine.process_due(at=utc(2026, 12, 31) - TICK, allow_future=True) == []
    assert _alarm_events(engine.process_due(at=utc(2026, 12, 31), allow_future=True), "LDN-R") == [
        ("LDN-R", "referral_decision", "reminder", "reminder")
    ]
    assert engine.process_due(at=utc(2027, 1, 7) - TICK, allow_future=True) == []
    assert _alarm_events(engine.process_due(at=utc(2027, 1, 7), allow_future=True), "LDN-R") == [
        ("LDN-R", "referral_decision", "breach", "breach"),
        ("LDN-R", "referral_decision", "escalation", "team_manager"),
    ]


def test_repeated_processing_fires_nothing_twice(engine: nw.Engine) -> None:
    """However often process_due runs, the audit log holds each alarm once."""
    open_case(engine, "LDN-1", ENGLAND, utc(2026, 12, 18, 10))
    open_case(engine, "GLA-1", SCOTLAND, utc(2026, 12, 18, 10))
    case_in_stage(engine, "NOLA-1", LOUISIANA, "treatment", utc(2027, 1, 4, 15))
    instants = [utc(2027, 1, 1), utc(2027, 1, 7), utc(2027, 1, 8), utc(2027, 12, 31)]
    first = [engine.process_due(at=at, allow_future=True) for at in instants]
    counts = action_counts(engine)
    again = [engine.process_due(at=at, allow_future=True) for at in instants * 3]
    assert again == [[]] * len(again)
    assert action_counts(engine) == counts
    assert (
        sum(len(events) for events in first)
        == counts["reminder"] + counts["breach"] + counts["escalation"]
    )
    # Each case: one reminder, one breach, one escalation for its open deadline.
    assert (counts["breach"], counts["escalation"]) == (3, 3)
    assert set(alarm_keys(engine).values()) == {1}


def test_met_deadlines_raise_no_breach(engine: nw.Engine) -> None:
    """A deadline settled before its due date never breaches: its pending alarms are closed."""
    open_case(engine, "LDN-OK", ENGLAND, utc(2026, 12, 18, 10))  # due 6 January 2027
    assert [e.kind for e in engine.process_due(at=utc(2026, 12, 31), allow_future=True)] == [
        "reminder"
    ]
    enter(engine, "LDN-OK", "assessment", utc(2027, 1, 5, 10))
    fired = engine.process_due(at=utc(2027, 1, 20), allow_future=True)
    assert [k for k in event_keys(fired) if k[1] == "referral_decision"] == []
    assert deadline(engine, "LDN-OK", "referral_decision").status == "met"


def test_a_reminder_not_processed_before_the_deadline_was_met_is_dropped(engine: nw.Engine) -> None:
    """A reminder still pending when its deadline is met is not raised afterwards."""
    open_case(engine, "LDN-OK2", ENGLAND, utc(2026, 12, 18, 10))  # reminder due 31 December
    enter(engine, "LDN-OK2", "assessment", utc(2027, 1, 5, 10))
    fired = engine.process_due(at=utc(2027, 1, 20), allow_future=True)
    assert [k for k in event_keys(fired) if k[1] == "referral_decision"] == []


def test_an_extension_moves_the_breach(engine: nw.Engine) -> None:
    """After an extension the breach fires at the new due date's end, not the old one's."""
    open_case(
        engine,
        "LDN-X",
        ENGLAND,
        utc(2027, 2, 1, 9),
        facts={"proceedings_issued_on": date(2027, 2, 1)},
    )
    engine.extend_deadline(
        "LDN-X", "care_proceedings", actor=COURT_OFFICER, reason="court order", at=utc(2027, 7, 1)
    )

    # Due Sun 1 August 2027 (26 weeks beginning with the issue day), extended by 8 weeks to
    # Sun 26 September 2027. Its reminder, 10 working days before: 24, 23, 22, 21, 20 (5), 17,
    # 16, 15, 14, 13 (10) -> Mon 13 September, at 00:00 BST = 23:00 UTC on 12 September.
    # Breach: 23:00 UTC on 26 September.
    def proceedings(events: list[nw.Event]) -> list[str]:
        return [e.kind for e in events if e.detail["deadline"] == "care_proceedings"]

    assert proceedings(engine.process_due(at=utc(2027, 9, 12, 23) - TICK, allow_future=True)) == []
    assert proceedings(engine.process_due(at=utc(2027, 9, 12, 23), allow_future=True)) == [
        "reminder"
    ]
    assert proceedings(engine.process_due(at=utc(2027, 9, 26, 23) - TICK, allow_future=True)) == []
    assert proceedings(engine.process_due(at=utc(2027, 9, 26, 23), allow_future=True)) == [
        "breach",
        "escalation",
    ]


def test_a_pause_moves_the_mid_way_review_with_the_clock(engine: nw.Engine) -> None:
    """The mid-way review is half the running time in: a pause moves it by the whole pause."""
    case_in_stage(engine, "LDN-MID", ENGLAND, "treatment", utc(2027, 2, 1, 10))
    engine.pause("LDN-MID", actor=COORDINATOR, reason="admitted", at=utc(2027, 2, 10, 10))
    engine.resume("LDN-MID", actor=COORDINATOR, at=utc(2027, 3, 12, 10))
    # Paused 10 February .. 11 March: 19 + 11 = 30 dates. Due 1 July + 30 days -> 31 July.
    # The clock stood still for those 30 days, so half-time (75 running days, 17 April without
    # the pause) moves 30 days too -> 17 May, at 00:00 BST = 23:00 UTC on 16 May.
    assert deadline(engine, "LDN-MID", "treatment").due_on == date(2027, 7, 31)

    def mid_way(events: list[nw.Event]) -> list[str]:
        return [e.detail["alarm_due_at"] for e in events if e.detail["label"] == "mid_way_review"]

    assert mid_way(engine.process_due(at=utc(2027, 5, 16, 23) - TICK, allow_future=True)) == []
    assert len(mid_way(engine.process_due(at=utc(2027, 5, 16, 23), allow_future=True))) == 1


# -- due() and overdue() ------------------------------------------------------------------------


def test_due_and_overdue_list_open_deadlines_by_instant_and_site(engine: nw.Engine) -> None:
    """due(before=) and overdue(at=) return the open deadlines in range, filtered by site."""
    # London from Fri 18 Dec 2026: due 6 January 2027, ends 00:00 UTC on 7 January.
    open_case(engine, "LDN-1", ENGLAND, utc(2026, 12, 18, 10))
    # Croydon (an England site) from Mon 21 Dec: 22, 23, 24, 29, 30, 31 (6); 4..7 Jan (10).
    open_case(engine, "CRO-1", ENGLAND, utc(2026, 12, 21, 10), site="croydon")
    # Glasgow from Fri 18 Dec: due 7 January 2027 (4 January is a Scottish holiday).
    open_case(engine, "GLA-1", SCOTLAND, utc(2026, 12, 18, 10))
    # Louisiana from Mon 4 Jan 2027: 5..8 (4); 11..15 (9); [Mon 18 MLK Day]; Tue 19 (10). It ends
    # at 00:00 CST on 20 January = 06:00 UTC.
    open_case(engine, "NOLA-1", LOUISIANA, utc(2027, 1, 4, 15))

    def refs(deadlines: list[nw.Deadline]) -> list[tuple[str, date]]:
        return [(d.reference, d.due_on) for d in deadlines]

    assert refs(engine.due(before=utc(2027, 1, 6, 12))) == []
    assert refs(engine.due(before=utc(2027, 1, 7, 12))) == [("LDN-1", date(2027, 1, 6))]
    assert refs(engine.due(before=utc(2027, 1, 8, 12))) == [
        ("LDN-1", date(2027, 1, 6)),
        ("CRO-1", date(2027, 1, 7)),
        ("GLA-1", date(2027, 1, 7)),
    ]
    assert refs(engine.due(before=utc(2027, 2, 1), site="croydon")) == [("CRO-1", date(2027, 1, 7))]
    assert refs(engine.due(before=utc(2027, 2, 1), site="new-orleans")) == [
        ("NOLA-1", date(2027, 1, 19))
    ]

    assert refs(engine.overdue(at=utc(2027, 1, 7) - TICK)) == []
    assert refs(engine.overdue(at=utc(2027, 1, 7))) == [("LDN-1", date(2027, 1, 6))]
    assert refs(engine.overdue(at=utc(2027, 1, 8), site="glasgow")) == [("GLA-1", date(2027, 1, 7))]
    assert refs(engine.overdue(at=utc(2027, 1, 20, 6) - TICK, site="new-orleans")) == []
    assert refs(engine.overdue(at=utc(2027, 1, 20, 6), site="new-orleans")) == [
        ("NOLA-1", date(2027, 1, 19))
    ]
    with pytest.raises(nw.UnknownSite, match="unknown site 'nowhere'"):
        engine.overdue(at=utc(2027, 1, 8), site="nowhere")

    # A deadline settled on time leaves both lists.
    enter(engine, "CRO-1", "assessment", utc(2027, 1, 6, 10))
    assert [d.reference for d in engine.overdue(at=utc(2027, 1, 9))] == ["LDN-1", "GLA-1"]
    assert all(d.status == "open" for d in engine.due(before=utc(2028, 1, 1)))


# -- paused cases -------------------------------------------------------------------------------


def test_alarms_of_a_paused_case_wait_and_move_with_the_resume(engine: nw.Engine) -> None:
    """A paused case raises nothing; on resume its alarms move with its deadline."""
    # Both opened Mon 11 January 2027: 12..15 (4); 18..22 (9); 25 (10) -> due Mon 25 January.
    # Reminder 3 working days before: 22, 21, 20 -> Wed 20 January. Breach 00:00 UTC on the 26th.
    open_case(engine, "LDN-P", ENGLAND, utc(2027, 1, 11, 10))
    open_case(engine, "LDN-C", ENGLAND, utc(2027, 1, 11, 10))
    engine.pause("LDN-P", actor=COORDINATOR, reason="family abroad", at=utc(2027, 1, 15, 10))
    fired = engine.process_due(at=utc(2027, 1, 21), allow_future=True)
    assert _alarm_events(fired, "LDN-C") == [("LDN-C", "referral_decision", "reminder", "reminder")]
    fired = engine.process_due(at=utc(2027, 1, 28), allow_future=True)
    assert {e.reference for e in fired} == {"LDN-C"}
    assert sorted(e.kind for e in fired) == ["breach", "escalation"]
    assert engine.process_due(at=utc(2027, 1, 31), allow_future=True) == []

    engine.resume("LDN-P", actor=COORDINATOR, at=utc(2027, 2, 1, 9))
    # Paused 15..31 January: working days 15, 18..22, 25..29 = 11. 25 January + 11 working days:
    # 26..29 (4); 1..5 Feb (9); 8, 9 (11) -> Tue 9 February. Its reminder: 8, 5, 4 -> Thu 4 Feb.
    assert deadline(engine, "LDN-P", "referral_decision").due_on == date(2027, 2, 9)
    assert engine.process_due(at=utc(2027, 2, 1, 9), allow_future=True) == []
    assert engine.process_due(at=utc(2027, 2, 4) - TICK, allow_future=True) == []
    assert _alarm_events(engine.process_due(at=utc(2027, 2, 4), allow_future=True), "LDN-P") == [
        ("LDN-P", "referral_decision", "reminder", "reminder")
    ]
    assert engine.process_due(at=utc(2027, 2, 10) - TICK, allow_future=True) == []
    assert [e.kind for e in engine.process_due(at=utc(2027, 2, 10), allow_future=True)] == [
        "breach",
        "escalation",
    ]
    counts = action_counts(engine, "LDN-P")
    assert (counts["reminder"], counts["breach"], counts["escalation"]) == (1, 1, 1)


def test_a_case_paused_past_its_due_date_breaches_after_resume(engine: nw.Engine) -> None:
    """A breach that fell due while the case was paused fires once it resumes, and only once."""
    open_case(engine, "LDN-PB", ENGLAND, utc(2026, 12, 18, 10))  # due 6 January 2027
    engine.process_due(at=utc(2026, 12, 31), allow_future=True)  # its reminder
    engine.pause("LDN-PB", actor=TEAM_MANAGER, reason="x", at=utc(2027, 1, 8, 10))
    assert engine.process_due(at=utc(2027, 1, 9), allow_future=True) == []
    engine.resume("LDN-PB", actor=TEAM_MANAGER, at=utc(2027, 1, 11, 10))
    assert [e.kind for e in engine.process_due(at=utc(2027, 1, 11, 11), allow_future=True)] == [
        "breach",
        "escalation",
    ]
    assert engine.process_due(at=utc(2027, 1, 12), allow_future=True) == []


# -- downtime: the clock jumps ------------------------------------------------------------------


def test_after_downtime_the_first_process_fires_everything_due_once(db_url: str) -> None:
    """After a clock jump the first process_due fires all that fell due, once; a second, none."""
    clock = FakeClock(utc(2027, 1, 4, 9))
    with migrated_engine(db_url, clock) as first:
        for n in range(3):
            open_case(first, f"LDN-{n}", ENGLAND, None)  # at the engine's clock
        case_in_stage(first, "LDN-T", ENGLAND, "treatment", clock.now)
        open_case(first, "GLA-1", SCOTLAND, clock.now, facts={"placed_on": date(2027, 1, 4)})
        # Louisiana's permanency hearing is due 4 January 2028: still pending after the jump; its
        # case review (the earliest of removal + 6 months, art. 692) fell due on 4 July 2027.
        open_case(first, "NOLA-1", LOUISIANA, clock.now, facts={"entered_care_on": "2027-01-04"})
        assert first.process_due() == []

        clock.set(utc(2027, 9, 1, 9))
        fired = first.process_due()
        due = alarm_statuses(first, due_by=clock.now)
        assert due["pending"] == 0
        assert len(fired) == due["fired"] > 0
        assert all(e.at == clock.now for e in fired)
        counts = action_counts(first)
        assert Counter(e.kind for e in fired) == Counter(
            {k: counts[k] for k in ("reminder", "breach", "escalation")}
        )
        assert set(alarm_keys(first).values()) == {1}
        # Every open deadline due by September breached: five referrals (LDN-T's was met when it
        # went straight on), LDN-T's treatment (due 4 June) and GLA-1's first lac_review (6 weeks
        # from 4 January: 15 February).
        breached = {(e.reference, e.detail["deadline"]) for e in fired if e.kind == "breach"}
        assert {
            ("LDN-0", "referral_decision"),
            ("LDN-1", "referral_decision"),
            ("LDN-2", "referral_decision"),
            ("GLA-1", "referral_decision"),
            ("NOLA-1", "referral_decision"),
            ("LDN-T", "treatment"),
            ("GLA-1", "lac_review"),
            ("NOLA-1", "case_review"),
        } == breached
        assert first.process_due() == []

        with nw.Engine(db_url, clock=clock) as second:
            assert second.process_due() == []
            assert second.process_due(at=utc(2027, 12, 1), allow_future=True) == []
        assert alarm_statuses(first, due_by=utc(2027, 12, 1))["pending"] == 0
        # NOLA-1's permanency hearing (due 4 January 2028) still has its alarms to come.
        assert alarm_statuses(first)["pending"] >= 3
        assert first.verify_audit().ok


# -- concurrency --------------------------------------------------------------------------------


def _open_due_cohort(engine: nw.Engine, count: int) -> None:
    """``count`` cases over the three pathways, all with alarms due by 2027-12-31."""
    for n in range(count):
        opened = utc(2027, 1, 4 + n % 20, 10)
        match n % 4:
            case 0:
                case_in_stage(engine, f"LDN-T{n:02}", ENGLAND, "treatment", opened)
            case 1:
                placed = {"placed_on": opened.date()}
                open_case(engine, f"GLA-{n:02}", SCOTLAND, opened, facts=placed)
            case 2:
                open_case(engine, f"NOLA-{n:02}", LOUISIANA, opened)
            case _:
                open_case(
                    engine,
                    f"LDN-{n:02}",
                    ENGLAND,
                    opened,
                    facts={"proceedings_issued_on": opened.date()},
                )


PROCESS_AT = utc(2027, 12, 31, 12)


def test_four_threads_with_their_own_engines_fire_each_alarm_once_on_sqlite(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four engines in four threads processing at the same instant fire each alarm once."""
    with migrated_engine(sqlite_url) as setup:
        _open_due_cohort(setup, 16)
        expected = alarm_statuses(setup, due_by=PROCESS_AT)["pending"]
        assert expected > 50

    barrier = threading.Barrier(4)
    fired: list[int] = []
    windows: list[tuple[float, float]] = []
    errors: list[BaseException] = []
    # Small batches: the due alarms are many transactions, so the threads contend all along.
    monkeypatch.setattr(_engine_module, "_PROCESS_BATCH", 10)

    def work() -> None:
        try:
            with nw.Engine(sqlite_url, clock=FakeClock(PROCESS_AT)) as own:
                barrier.wait(timeout=30)
                began = time.monotonic()
                fired.append(len(own.process_due(at=PROCESS_AT, allow_future=True)))
                windows.append((began, time.monotonic()))
        except BaseException as exc:  # reported by the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(fired) == 4
    # They ran at once: every call began before any ended. SQLite has one writer at a time,
    # so one thread may fire them all while the others wait and then find nothing left.
    assert len(windows) == 4
    assert max(began for began, _ in windows) < min(ended for _, ended in windows)

    with migrated_engine(sqlite_url) as check:
        statuses = alarm_statuses(check, due_by=PROCESS_AT)
        # Reminders caught up after their deadline passed lapse; everything else fires.
        assert statuses["pending"] == 0
        assert statuses["fired"] + statuses["lapsed"] == expected
        assert sum(fired) == statuses["fired"] > 40
        keys = alarm_keys(check)
        assert sum(keys.values()) == statuses["fired"]
        assert set(keys.values()) == {1}
        assert check.verify_audit().ok


def test_four_processes_fire_each_alarm_once_on_postgresql(fresh_pg_url: str) -> None:
    """Four spawned worker processes, each with its own engine, fire each due alarm exactly once."""
    with migrated_engine(fresh_pg_url) as setup:
        _open_due_cohort(setup, 40)
        expected = alarm_statuses(setup, due_by=PROCESS_AT)["pending"]
        assert expected > 150

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    workers = [
        ctx.Process(
            target=process_due_worker, args=(fresh_pg_url, PROCESS_AT.isoformat(), barrier, results)
        )
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=180) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    results.close()
    results.join_thread()
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    assert [status for status, *_ in outcomes] == ["ok"] * 4, outcomes
    # They worked at once: more than one fired alarms, and the firing workers' windows overlap.
    firing = [(began, ended) for _, count, began, ended in outcomes if count]
    assert len(firing) >= 2, outcomes
    assert max(began for began, _ in firing) < min(ended for _, ended in firing), outcomes

    with migrated_engine(fresh_pg_url) as check:
        statuses = alarm_statuses(check, due_by=PROCESS_AT)
        # Reminders caught up after their deadline passed lapse; everything else fires.
        assert statuses["pending"] == 0
        assert statuses["fired"] + statuses["lapsed"] == expected
        assert sum(count for _, count, *_ in outcomes) == statuses["fired"] > 100
        keys = alarm_keys(check)
        assert sum(keys.values()) == statuses["fired"]  # none lost
        assert set(keys.values()) == {1}  # none twice
        assert check.process_due(at=PROCESS_AT, allow_future=True) == []
        assert check.verify_audit().ok


def test_a_reminder_caught_up_after_its_deadline_lapses(engine: nw.Engine) -> None:
    """Processing only after the due date fires the breach and lapses the stale reminder."""
    # Opened Mon 11 January 2027: due Mon 25 January, reminded Wed 20 January.
    open_case(engine, "LDN-L", ENGLAND, utc(2027, 1, 11, 10))
    fired = engine.process_due(at=utc(2027, 2, 1), allow_future=True)
    assert sorted(e.kind for e in fired) == ["breach", "escalation"]
    assert alarm_statuses(engine)["lapsed"] == 1
    assert action_counts(engine, "LDN-L")["reminder"] == 0
    assert engine.process_due(at=utc(2027, 3, 1), allow_future=True) == []


def _pending_alarm_times(engine: nw.Engine, exclude: str | None = None) -> list[dt.datetime]:
    """Pending alarms' times straight from the table, optionally leaving one case out."""
    import sqlalchemy as sa

    from nim_workflow._store._schema import alarms

    query = sa.select(alarms.c.due_at).where(alarms.c.status == "pending")
    if exclude is not None:
        query = query.where(alarms.c.reference != exclude)
    with engine.sqlalchemy_engine.connect() as conn:
        return [row.due_at.astimezone(dt.UTC) for row in conn.execute(query)]


def test_next_due_at_is_the_earliest_pending_alarm(engine: nw.Engine) -> None:
    """next_due_at() is the earliest pending alarm, moves on as alarms fire, skips paused cases."""
    open_case(engine, "NEXT-LATE", ENGLAND, utc(2026, 3, 6, 9, 30))
    open_case(engine, "NEXT-EARLY", ENGLAND, utc(2026, 3, 2, 9, 30))
    pending = _pending_alarm_times(engine)
    assert len(set(pending)) == 3, pending
    first = engine.next_due_at()
    assert first == min(pending) < max(pending)
    # NEXT-EARLY's referral decision (10 working days from Mon 2 March) is due Mon 16 March,
    # breached as 17 March begins; its reminder comes as Wed 11 March begins (GMT = UTC).
    assert first == utc(2026, 3, 11)
    engine.process_due(at=first, allow_future=True)
    after = engine.next_due_at()
    assert after is not None
    assert after > first
    assert after == min(_pending_alarm_times(engine))
    engine.pause("NEXT-EARLY", actor=COORDINATOR, reason="adjourned", at=first + TICK)
    assert engine.next_due_at() == min(_pending_alarm_times(engine, exclude="NEXT-EARLY"))
