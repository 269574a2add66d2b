"""Deadlines through the engine: stage deadlines, statutory clocks, pauses, extensions, explain().

Every expected due date below is worked out by hand from PATHWAYS.md ("Rules of the calendar")
and the published bank and state holidays, with the arithmetic in a comment beside it, so a
test never merely repeats what the calendar code computes. Each test runs on SQLite and on
PostgreSQL (``db_url``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from datetime import date

import pytest
from deadline_helpers import (
    CHICAGO_TZ,
    CLINICIAN,
    COORDINATOR,
    COURT_OFFICER,
    ENGLAND,
    LONDON_TZ,
    LOUISIANA,
    SCOTLAND,
    SOCIAL_WORKER,
    TEAM_MANAGER,
    FakeClock,
    action_counts,
    case_in_stage,
    chicago,
    deadline,
    enter,
    london,
    migrated_engine,
    open_case,
    utc,
)

import nim_workflow as nw


@pytest.fixture
def engine(db_url: str) -> Iterator[nw.Engine]:
    """A migrated engine on an empty database, its clock fixed well before any case time."""
    with migrated_engine(db_url, FakeClock(utc(2026, 1, 1))) as built:
        yield built


# -- stage deadlines: working days ---------------------------------------------------------------

# referral_decision is 10 working days in all three pathways; the case is opened at 10:00 UTC,
# the same local date at every site. Holidays are the published ones (gov.uk; Louisiana R.S. 1:55).
REFERRALS = [
    # Fri 2026-12-18. London: 21,22,23,24 (4); Fri 25 Christmas, Sat 26, Sun 27, Mon 28 Boxing
    # Day substitute; 29,30,31 (7); Fri 1 Jan New Year; Mon 4, Tue 5, Wed 6 (10) -> 2027-01-06.
    ("LDN-1218", ENGLAND, utc(2026, 12, 18, 10), date(2027, 1, 6)),
    # Glasgow: as London to Thu 31 (7); Fri 1 Jan New Year; Sat 2 Jan falls at a weekend, so
    # Mon 4 Jan is its substitute day; Tue 5, Wed 6, Thu 7 (10) -> 2027-01-07.
    ("GLA-1218", SCOTLAND, utc(2026, 12, 18, 10), date(2027, 1, 7)),
    # Tue 2026-12-29. London: 30, 31 (2); Fri 1 Jan; Mon 4 .. Fri 8 (7); 11, 12, 13 (10).
    ("LDN-1229", ENGLAND, utc(2026, 12, 29, 10), date(2027, 1, 13)),
    # Glasgow: 30, 31 (2); Fri 1 Jan, Mon 4 Jan (2 January substitute); 5..8 (6); 11..14 (10).
    ("GLA-1229", SCOTLAND, utc(2026, 12, 29, 10), date(2027, 1, 14)),
    # Wed 2027-12-22. London: 23, 24 (2); Mon 27 and Tue 28 are the Christmas and Boxing Day
    # substitutes; 29, 30, 31 (5); Mon 3 Jan 2028 New Year substitute; 4..7 (9); Mon 10 (10).
    ("LDN-2027-1222", ENGLAND, utc(2027, 12, 22, 10), date(2028, 1, 10)),
    # Glasgow: the same to Fri 31 (5); Mon 3 and Tue 4 Jan 2028 are the New Year's Day and
    # 2 January substitutes; 5, 6, 7 (8); Mon 10, Tue 11 (10).
    ("GLA-2027-1222", SCOTLAND, utc(2027, 12, 22, 10), date(2028, 1, 11)),
    # Wed 2026-11-25. London: 26, 27 (2); Mon 30 .. Fri 4 Dec (7); 7, 8, 9 (10).
    ("LDN-1125", ENGLAND, utc(2026, 11, 25, 10), date(2026, 12, 9)),
    # Glasgow: 26, 27 (2); Mon 30 Nov is St Andrew's Day; 1..4 Dec (6); 7..10 (10).
    ("GLA-1125", SCOTLAND, utc(2026, 11, 25, 10), date(2026, 12, 10)),
    # Wed 2027-03-24. London: Thu 25 (1); Good Friday 26, Easter Monday 29; 30, 31, 1, 2 (5);
    # 5..9 Apr (10).
    ("LDN-0324", ENGLAND, utc(2027, 3, 24, 10), date(2027, 4, 9)),
    # Scotland's bank holidays have Good Friday but no Easter Monday; Glasgow's council closes on
    # Easter Monday all the same (pathways/closures/glasgow.yaml): as London -> 9 April.
    ("GLA-0324", SCOTLAND, utc(2027, 3, 24, 10), date(2027, 4, 9)),
    # Wed 2027-07-28. London: 29, 30 (2); 2..6 Aug (7); 9, 10, 11 (10). (Its summer bank holiday
    # is the last Monday, 30 August.)
    ("LDN-0728", ENGLAND, utc(2027, 7, 28, 10), date(2027, 8, 11)),
    # Glasgow: Scotland's summer bank holiday is the first Monday, 2 August: 29, 30 (2);
    # 3..6 (6); 9..12 (10).
    ("GLA-0728", SCOTLAND, utc(2027, 7, 28, 10), date(2027, 8, 12)),
    # Fri 2027-02-05, 10:00 in Chicago. Mon 8 (1); Tue 9 Mardi Gras; 10, 11, 12 (4); Mon 15
    # Washington's Birthday; 16..19 (8); Mon 22, Tue 23 (10).
    ("NOLA-0205", LOUISIANA, utc(2027, 2, 5, 16), date(2027, 2, 23)),
]


def test_referral_decision_counts_working_days_of_each_sites_calendar(engine: nw.Engine) -> None:
    """referral_decision is 10 working days in the site's own calendar, substitute days included."""
    for reference, pathway, at, _ in REFERRALS:
        open_case(engine, reference, pathway, at)
    actual = {ref: deadline(engine, ref, "referral_decision").due_on for ref, *_ in REFERRALS}
    assert actual == {ref: due for ref, _, _, due in REFERRALS}
    # Over Christmas 2026 the two UK calendars differ only by Scotland's 4 January substitute.
    ldn = deadline(engine, "LDN-1218", "referral_decision").explain()
    gla = deadline(engine, "GLA-1218", "referral_decision").explain()
    assert [day for day, _ in gla.skipped if day not in {d for d, _ in ldn.skipped}] == [
        date(2027, 1, 4)
    ]
    assert all(d.status == "open" and d.kind == "stage" for d in engine.deadlines("GLA-1218"))


def test_stage_clock_starts_on_the_local_date_of_entry(engine: nw.Engine) -> None:
    """A case entered just after local midnight (BST) or before it (CST) counts from that date."""
    # 2027-06-30T23:30Z is 00:30 BST on Thu 1 July: 2, 5, 6, 7, 8, 9 (6); 12..15 (10).
    open_case(engine, "LDN-BST", ENGLAND, utc(2027, 6, 30, 23, 30))
    # 2027-02-05T03:00Z is 21:00 CST on Thu 4 February: 5, 8 (2); Tue 9 Mardi Gras; 10, 11, 12
    # (5); Mon 15 Washington's Birthday; 16..19 (9); Mon 22 (10).
    open_case(engine, "NOLA-CST", LOUISIANA, utc(2027, 2, 5, 3))
    ldn = deadline(engine, "LDN-BST", "referral_decision")
    nola = deadline(engine, "NOLA-CST", "referral_decision")
    assert (ldn.start_on, ldn.due_on) == (date(2027, 7, 1), date(2027, 7, 15))
    assert (nola.start_on, nola.due_on) == (date(2027, 2, 4), date(2027, 2, 22))


# -- stage deadlines: weeks and months -----------------------------------------------------------

CALENDAR_STAGES = [
    # Scotland assessment, 3 months: 30 November + 3 months is "30 February", clamped to 28th.
    ("GLA-A1", SCOTLAND, "assessment", utc(2026, 11, 30, 10), date(2027, 2, 28)),
    # 31 January + 3 months is "31 April", clamped to the 30th.
    ("GLA-A2", SCOTLAND, "assessment", utc(2027, 1, 31, 10), date(2027, 4, 30)),
    # Scotland treatment, 9 months: 31 May 2027 + 9 months is "31 February 2028", a leap year.
    ("GLA-T1", SCOTLAND, "treatment", utc(2027, 5, 31, 10), date(2028, 2, 29)),
    # England assessment, 12 weeks = 84 days: 5 April + 25 (30 April) + 31 (31 May) + 28.
    ("LDN-A1", ENGLAND, "assessment", utc(2027, 4, 5, 10), date(2027, 6, 28)),
    # England treatment, 5 months: 30 September 2026 + 5 months is "30 February", so the 28th.
    ("LDN-T1", ENGLAND, "treatment", utc(2026, 9, 30, 10), date(2027, 2, 28)),
    # England final_report, 4 weeks = 28 days: 1 February 2027 + 28 = 1 March (February has 28).
    ("LDN-F1", ENGLAND, "recommendation", utc(2027, 2, 1, 10), date(2027, 3, 1)),
    # Louisiana treatment, 9 months: 31 May 2026 + 9 months is "31 February 2027", so the 28th.
    ("NOLA-T1", LOUISIANA, "treatment", utc(2026, 5, 31, 15), date(2027, 2, 28)),
]
STAGE_RULE = {
    "assessment": "assessment",
    "treatment": "treatment",
    "recommendation": "final_report",
}


def test_weeks_and_months_deadlines_use_calendar_arithmetic_with_month_end_clamping(
    engine: nw.Engine,
) -> None:
    """Weeks add 7-day steps; months step whole months and clamp to a shorter month's end."""
    for reference, pathway, stage, at, _ in CALENDAR_STAGES:
        case_in_stage(engine, reference, pathway, stage, at)
    actual = {
        ref: deadline(engine, ref, STAGE_RULE[stage]).due_on
        for ref, _, stage, _, _ in CALENDAR_STAGES
    }
    assert actual == {ref: due for ref, _, _, _, due in CALENDAR_STAGES}


def test_due_at_is_the_end_of_the_local_due_date_across_the_spring_clock_change(
    engine: nw.Engine,
) -> None:
    """due_at is local midnight after the due date, with the offset that midnight has."""
    # England assessment 12 weeks from Sun 3 January 2027: 3 Jan + 28 (31 Jan) + 28 (28 Feb)
    # + 28 = Sun 28 March, the day BST starts (01:00 UTC). It ends at 00:00 BST on 29 March,
    # which is 23:00 UTC on the 28th: a 23-hour day.
    case_in_stage(engine, "LDN-DST", ENGLAND, "assessment", utc(2027, 1, 3, 10))
    # Scotland assessment 3 months from 27 December 2026 = 27 March 2027, still GMT at its end.
    case_in_stage(engine, "GLA-DST", SCOTLAND, "assessment", utc(2026, 12, 27, 10))
    # Louisiana assessment 3 months from 14 December 2026 = Sun 14 March 2027, the day CDT
    # starts (02:00 CST); it ends at 00:00 CDT (UTC-5) on the 15th = 05:00 UTC.
    case_in_stage(engine, "NOLA-DST", LOUISIANA, "assessment", utc(2026, 12, 14, 15))
    # ... and from 13 December: Sat 13 March, ending at 00:00 CST (UTC-6) = 06:00 UTC on the 14th.
    case_in_stage(engine, "NOLA-CST", LOUISIANA, "assessment", utc(2026, 12, 13, 15))
    got = {
        ref: (d.due_on, d.due_at)
        for ref in ("LDN-DST", "GLA-DST", "NOLA-DST", "NOLA-CST")
        for d in [deadline(engine, ref, "assessment")]
    }
    assert got == {
        "LDN-DST": (date(2027, 3, 28), utc(2027, 3, 28, 23)),
        "GLA-DST": (date(2027, 3, 27), utc(2027, 3, 28, 0)),
        "NOLA-DST": (date(2027, 3, 14), utc(2027, 3, 15, 5)),
        "NOLA-CST": (date(2027, 3, 13), utc(2027, 3, 14, 6)),
    }
    assert got["LDN-DST"][1] == dt.datetime(2027, 3, 29, tzinfo=LONDON_TZ)
    assert got["NOLA-DST"][1] == dt.datetime(2027, 3, 15, tzinfo=CHICAGO_TZ)


# -- settling: met, missed, cancelled -----------------------------------------------------------

# England assessment entered Mon 5 April 2027: 12 weeks -> Mon 28 June 2027 (BST, UTC+1).
ASSESSMENT_ENTERED = utc(2027, 4, 5, 10)
ASSESSMENT_DUE = date(2027, 6, 28)


def test_leaving_is_met_or_missed_by_the_local_date_not_the_utc_date(engine: nw.Engine) -> None:
    """Leaving at 23:30 local on the due date is met; at 00:30 local the day after, missed."""
    case_in_stage(engine, "LDN-MET", ENGLAND, "assessment", ASSESSMENT_ENTERED)
    case_in_stage(engine, "LDN-MISS", ENGLAND, "assessment", ASSESSMENT_ENTERED)
    assert deadline(engine, "LDN-MET", "assessment").due_on == ASSESSMENT_DUE
    # 22:30 UTC is 23:30 BST on the due date; 23:30 UTC, still the due date in UTC, is 00:30 BST
    # on 29 June, the day after.
    on_time, late = utc(2027, 6, 28, 22, 30), utc(2027, 6, 28, 23, 30)
    assert (on_time, late) == (london(2027, 6, 28, 23, 30), london(2027, 6, 29, 0, 30))
    enter(engine, "LDN-MET", "treatment", on_time)
    enter(engine, "LDN-MISS", "treatment", late)
    met, missed = (deadline(engine, ref, "assessment") for ref in ("LDN-MET", "LDN-MISS"))
    assert (met.status, met.settled_at) == ("met", on_time)
    assert (missed.status, missed.settled_at) == ("missed", late)
    assert engine.audit("LDN-MET")[-1].detail["deadlines_settled"] == {"assessment": "met"}
    assert engine.audit("LDN-MISS")[-1].detail["deadlines_settled"] == {"assessment": "missed"}
    # The next stage's clock starts on the local date of entry: 5 months from 28 June -> 28
    # November; from 29 June -> 29 November.
    assert deadline(engine, "LDN-MET", "treatment").due_on == date(2027, 11, 28)
    assert deadline(engine, "LDN-MISS", "treatment").due_on == date(2027, 11, 29)

    # In Louisiana the local date is behind UTC: 23:30 CDT on the due date is 04:30 UTC the day
    # after, and still met. Assessment 3 months from 1 April 2027 -> 1 July 2027 (CDT, UTC-5).
    case_in_stage(engine, "NOLA-MET", LOUISIANA, "assessment", utc(2027, 4, 1, 15))
    case_in_stage(engine, "NOLA-MISS", LOUISIANA, "assessment", utc(2027, 4, 1, 15))
    enter(engine, "NOLA-MET", "treatment", chicago(2027, 7, 1, 23, 30))
    enter(engine, "NOLA-MISS", "treatment", utc(2027, 7, 2, 5, 30))  # 00:30 CDT on 2 July
    assert deadline(engine, "NOLA-MET", "assessment").status == "met"
    assert deadline(engine, "NOLA-MISS", "assessment").status == "missed"


def test_closing_cancels_open_stage_deadlines_and_keeps_missed_ones(engine: nw.Engine) -> None:
    """Closing cancels a stage deadline not yet past due; one already past due is missed."""
    open_case(engine, "LDN-W", ENGLAND, utc(2026, 12, 18, 10))  # referral due 6 January 2027
    closed_at = utc(2026, 12, 21, 11)
    engine.fire("LDN-W", "withdraw", actor=TEAM_MANAGER, reason="family moved away", at=closed_at)
    cancelled = deadline(engine, "LDN-W", "referral_decision")
    assert (cancelled.status, cancelled.settled_at) == ("cancelled", closed_at)

    # Declining on the due date itself closes the case too: cancelled, not met.
    open_case(engine, "LDN-D", ENGLAND, utc(2026, 12, 18, 10))
    engine.fire(
        "LDN-D",
        "decline_referral",
        actor=TEAM_MANAGER,
        reason="not eligible",
        at=london(2027, 1, 6, 17),
    )
    assert deadline(engine, "LDN-D", "referral_decision").status == "cancelled"

    # Withdrawn on 1 July, after the assessment fell due (28 June): it stays on record as missed.
    case_in_stage(engine, "LDN-WL", ENGLAND, "assessment", ASSESSMENT_ENTERED)
    engine.fire("LDN-WL", "withdraw", actor=TEAM_MANAGER, reason="withdrawn", at=utc(2027, 7, 1))
    assert deadline(engine, "LDN-WL", "assessment").status == "missed"
    assert engine.overdue(at=utc(2027, 12, 1)) == []


# -- statutory clocks --------------------------------------------------------------------------


def test_care_proceedings_runs_26_weeks_from_issue(engine: nw.Engine) -> None:
    """care_proceedings: 26 weeks beginning with proceedings_issued_on (the issue day is day 1)."""
    open_case(engine, "LDN-CP", ENGLAND, utc(2027, 1, 25, 10))
    assert [d.name for d in engine.deadlines("LDN-CP")] == ["referral_decision"]
    engine.record(
        "LDN-CP",
        {"proceedings_issued_on": "2027-02-01"},
        actor=COURT_OFFICER,
        at=utc(2027, 2, 3, 9),
    )
    # 26 weeks = 182 days with Mon 1 Feb 2027 as day 1: the last day is 1 Feb + 181 days:
    # 27 (28 Feb) + 31 + 30 + 31 + 30 + 31 (31 Jul) = 180, + 1 = Sun 1 August 2027; BST, so it
    # ends at 23:00 UTC that day.
    clock = deadline(engine, "LDN-CP", "care_proceedings")
    assert (clock.kind, clock.stage, clock.occurrence) == ("clock", None, 1)
    assert (clock.start_on, clock.due_on, clock.status) == (
        date(2027, 2, 1),
        date(2027, 8, 1),
        "open",
    )
    assert clock.due_at == utc(2027, 8, 1, 23)


def test_england_lac_review_recurs_from_the_date_each_review_was_held(engine: nw.Engine) -> None:
    """lac_review: 20 working days, then 3 months from the 1st review held, then every 6 months."""
    open_case(engine, "LDN-LAC", ENGLAND, utc(2027, 3, 22, 9))
    # A review recorded before the child entered care has no running clock to move on.
    engine.record(
        "LDN-LAC",
        {"lac_review_held_on": date(2027, 3, 1)},
        actor=SOCIAL_WORKER,
        at=utc(2027, 3, 22, 9, 30),
    )
    assert [d.name for d in engine.deadlines("LDN-LAC")] == ["referral_decision"]
    engine.record(
        "LDN-LAC",
        {"entered_care_on": date(2027, 3, 22)},
        actor=SOCIAL_WORKER,
        at=utc(2027, 3, 22, 10),
    )
    # 20 working days from Mon 22 March 2027: 23, 24, 25 (3); Good Friday 26, Easter Monday 29;
    # 30, 31, 1, 2 (7); 5..9 (12); 12..16 (17); 19, 20, 21 (20) -> Wed 21 April.
    first = deadline(engine, "LDN-LAC", "lac_review", 1)
    assert (first.start_on, first.due_on) == (date(2027, 3, 22), date(2027, 4, 21))

    engine.record(
        "LDN-LAC",
        {"lac_review_held_on": date(2027, 4, 14)},
        actor=SOCIAL_WORKER,
        at=utc(2027, 4, 15, 10),
    )
    # Held 14 April, a week early: met. The 2nd runs 3 months from 14 April (the date held,
    # not the 21st it was due) -> 14 July, not 21 July.
    assert deadline(engine, "LDN-LAC", "lac_review", 1).status == "met"
    second = deadline(engine, "LDN-LAC", "lac_review", 2)
    assert (second.start_on, second.due_on, second.status) == (
        date(2027, 4, 14),
        date(2027, 7, 14),
        "open",
    )

    engine.record(
        "LDN-LAC",
        {"lac_review_held_on": date(2027, 7, 20)},
        actor=SOCIAL_WORKER,
        at=utc(2027, 7, 20, 15),
    )
    # Held 20 July, after the 14th: missed. Then 6 months from 20 July -> 20 January 2028.
    assert deadline(engine, "LDN-LAC", "lac_review", 2).status == "missed"
    assert deadline(engine, "LDN-LAC", "lac_review", 3).due_on == date(2028, 1, 20)

    engine.record(
        "LDN-LAC",
        {"lac_review_held_on": date(2028, 1, 10)},
        actor=SOCIAL_WORKER,
        at=utc(2028, 1, 10, 15),
    )
    # And every 6 months after that: 10 January 2028 + 6 months -> 10 July 2028.
    assert deadline(engine, "LDN-LAC", "lac_review", 3).status == "met"
    fourth = deadline(engine, "LDN-LAC", "lac_review", 4)
    assert (fourth.start_on, fourth.due_on) == (date(2028, 1, 10), date(2028, 7, 10))
    statuses = [d.status for d in engine.deadlines("LDN-LAC") if d.name == "lac_review"]
    assert statuses == ["met", "missed", "met", "open"]


def test_scotland_lac_review_and_cso_review(engine: nw.Engine) -> None:
    """Scotland: lac_review 6 weeks from placement, 3 months, then 6; cso_review 12 months."""
    open_case(engine, "GLA-LAC", SCOTLAND, utc(2026, 11, 16, 9))
    engine.record(
        "GLA-LAC", {"placed_on": date(2026, 11, 16)}, actor=SOCIAL_WORKER, at=utc(2026, 11, 16, 10)
    )
    # 6 weeks = 42 days from 16 November 2026: 14 (30 Nov) + 28 = 28 December (a bank holiday:
    # a weeks rule is calendar arithmetic and does not skip it).
    assert deadline(engine, "GLA-LAC", "lac_review", 1).due_on == date(2026, 12, 28)
    engine.record(
        "GLA-LAC",
        {"lac_review_held_on": date(2026, 12, 21)},
        actor=SOCIAL_WORKER,
        at=utc(2026, 12, 21, 16),
    )
    # Held 21 December: met; 3 months from then -> 21 March 2027.
    assert deadline(engine, "GLA-LAC", "lac_review", 1).status == "met"
    assert deadline(engine, "GLA-LAC", "lac_review", 2).due_on == date(2027, 3, 21)
    engine.record(
        "GLA-LAC",
        {"lac_review_held_on": date(2027, 3, 31)},
        actor=SOCIAL_WORKER,
        at=utc(2027, 3, 31, 16),
    )
    # Held 31 March, after the 21st: missed; 6 months from 31 March is "31 September" -> 30th.
    assert deadline(engine, "GLA-LAC", "lac_review", 2).status == "missed"
    assert deadline(engine, "GLA-LAC", "lac_review", 3).due_on == date(2027, 9, 30)

    # cso_review: the order lapses one year after it was made, so its review is due the day
    # before the anniversary (12 months beginning with cso_made_on).
    open_case(engine, "GLA-CSO", SCOTLAND, utc(2026, 6, 29, 9))
    engine.record(
        "GLA-CSO", {"cso_made_on": date(2026, 6, 30)}, actor=COURT_OFFICER, at=utc(2026, 7, 1, 9)
    )
    cso = deadline(engine, "GLA-CSO", "cso_review")
    # 30 June 2026 + 12 months = 30 June 2027, less a day: 29 June 2027, ending 23:00 UTC (BST).
    assert (cso.start_on, cso.due_on, cso.due_at) == (
        date(2026, 6, 30),
        date(2027, 6, 29),
        utc(2027, 6, 29, 23),
    )


def test_louisiana_permanency_hearing_every_twelve_months(engine: nw.Engine) -> None:
    """permanency_hearing: 12 months from entering care, then 12 months from each hearing held."""
    open_case(engine, "NOLA-PH", LOUISIANA, utc(2026, 3, 31, 15))
    engine.record(
        "NOLA-PH",
        {"entered_care_on": date(2026, 3, 31)},
        actor=SOCIAL_WORKER,
        at=utc(2026, 3, 31, 16),
    )
    # 31 March 2026 + 12 months = 31 March 2027; it ends at 00:00 CDT on 1 April = 05:00 UTC.
    first = deadline(engine, "NOLA-PH", "permanency_hearing", 1)
    assert (first.due_on, first.due_at) == (date(2027, 3, 31), utc(2027, 4, 1, 5))
    engine.record(
        "NOLA-PH",
        {"permanency_hearing_held_on": date(2027, 2, 26)},
        actor=COURT_OFFICER,
        at=utc(2027, 2, 26, 20),
    )
    # Held 26 February 2027: met; next 12 months from that date -> 26 February 2028.
    assert deadline(engine, "NOLA-PH", "permanency_hearing", 1).status == "met"
    assert deadline(engine, "NOLA-PH", "permanency_hearing", 2).due_on == date(2028, 2, 26)
    engine.record(
        "NOLA-PH",
        {"permanency_hearing_held_on": date(2028, 3, 1)},
        actor=COURT_OFFICER,
        at=utc(2028, 3, 1, 20),
    )
    # Held 1 March 2028, late: missed; and 12 months again -> 1 March 2029.
    assert deadline(engine, "NOLA-PH", "permanency_hearing", 2).status == "missed"
    assert deadline(engine, "NOLA-PH", "permanency_hearing", 3).due_on == date(2029, 3, 1)


def test_statutory_clocks_stop_when_the_case_closes(engine: nw.Engine) -> None:
    """Closing a case cancels its running clocks, and their alarms never fire."""
    open_case(
        engine,
        "LDN-STOP",
        ENGLAND,
        utc(2027, 2, 1, 9),
        facts={"proceedings_issued_on": date(2027, 2, 1), "entered_care_on": date(2027, 2, 1)},
    )
    assert {d.name for d in engine.deadlines("LDN-STOP") if d.status == "open"} == {
        "referral_decision",
        "care_proceedings",
        "lac_review",
    }
    engine.fire(
        "LDN-STOP",
        "withdraw",
        actor=TEAM_MANAGER,
        reason="proceedings discontinued",
        at=utc(2027, 2, 10, 9),
    )
    assert {d.name: d.status for d in engine.deadlines("LDN-STOP")} == {
        "referral_decision": "cancelled",
        "care_proceedings": "cancelled",
        "lac_review": "cancelled",
    }
    assert engine.process_due(at=utc(2028, 1, 1), allow_future=True) == []
    assert engine.due(before=utc(2030, 1, 1)) == []


def test_closing_after_a_clock_fell_due_records_it_missed(engine: nw.Engine) -> None:
    """A statutory clock already past due when the case closes is missed, not cancelled."""
    # entered_care_on Mon 1 Feb 2027: the first LAC review is due 20 working days on, 1 March.
    open_case(
        engine,
        "LDN-LATE",
        ENGLAND,
        utc(2027, 2, 1, 9),
        facts={"entered_care_on": date(2027, 2, 1)},
    )
    assert deadline(engine, "LDN-LATE", "lac_review").due_on == date(2027, 3, 1)
    engine.fire(
        "LDN-LATE", "withdraw", actor=TEAM_MANAGER, reason="moved area", at=utc(2027, 3, 10, 9)
    )
    assert deadline(engine, "LDN-LATE", "lac_review").status == "missed"


def test_the_courts_decision_on_time_meets_the_care_proceedings_clock(engine: nw.Engine) -> None:
    """record_decision by the 26-week date meets care_proceedings; after it, it is missed."""
    # Issued Mon 1 Feb 2027: 26 weeks beginning with it end on Sun 1 Aug 2027.
    for reference, decided in (
        ("LDN-ONTIME", utc(2027, 7, 30, 9)),
        ("LDN-LATE", utc(2027, 8, 2, 9)),
    ):
        case_in_stage(
            engine,
            reference,
            ENGLAND,
            "court",
            utc(2027, 2, 1, 9),
            facts={"proceedings_issued_on": date(2027, 2, 1)},
        )
        assert deadline(engine, reference, "care_proceedings").due_on == date(2027, 8, 1)
        engine.fire(
            reference,
            "record_decision",
            actor=COURT_OFFICER,
            facts={"decision": "kinship_care"},
            at=decided,
        )
    assert deadline(engine, "LDN-ONTIME", "care_proceedings").status == "met"
    assert deadline(engine, "LDN-LATE", "care_proceedings").status == "missed"


def test_withdrawing_before_the_26_weeks_cancels_care_proceedings(engine: nw.Engine) -> None:
    """Only the court's decision meets the clock: a withdrawal in time cancels it."""
    _proceedings_case(engine, "LDN-WD")
    engine.fire(
        "LDN-WD", "withdraw", actor=TEAM_MANAGER, reason="discontinued", at=utc(2027, 3, 1, 9)
    )
    assert deadline(engine, "LDN-WD", "care_proceedings").status == "cancelled"


def test_re_recording_the_anchor_date_restarts_the_first_clock(engine: nw.Engine) -> None:
    """A corrected entered_care_on restarts the first review's 20-working-day clock, not met."""
    open_case(engine, "LDN-FIX", ENGLAND, utc(2027, 3, 22, 9))
    engine.record(
        "LDN-FIX",
        {"entered_care_on": date(2027, 3, 22)},
        actor=SOCIAL_WORKER,
        at=utc(2027, 3, 22, 10),
    )
    # The date was wrong: the child came into care on Wed 24 March. Recording the anchor again
    # is a correction (or a new start), never evidence that the first review was held.
    engine.record(
        "LDN-FIX",
        {"entered_care_on": date(2027, 3, 24)},
        actor=SOCIAL_WORKER,
        at=utc(2027, 3, 24, 10),
    )
    statuses = [d.status for d in engine.deadlines("LDN-FIX") if d.name == "lac_review"]
    assert statuses == ["cancelled", "open"]
    # 20 working days from Wed 24 March 2027: 25 (1); Good Friday 26, Easter Monday 29; 30, 31,
    # 1, 2 (5); 5..9 (10); 12..16 (15); 19..23 (20) -> Fri 23 April.
    restarted = deadline(engine, "LDN-FIX", "lac_review")
    assert (restarted.start_on, restarted.due_on) == (date(2027, 3, 24), date(2027, 4, 23))
    why = restarted.explain()
    assert "entered_care_on" in why.anchor
    assert "20 working" in why.rule
    # The review duty is the law's (reg 33): a pause of the team's work does not move it.
    engine.pause("LDN-FIX", actor=TEAM_MANAGER, reason="x", at=utc(2027, 3, 25, 10))
    engine.resume("LDN-FIX", actor=TEAM_MANAGER, at=utc(2027, 3, 30, 10))
    assert deadline(engine, "LDN-FIX", "lac_review").due_on == date(2027, 4, 23)
    # And the review held after it is the first: the next is due 3 months on, not 6.
    engine.record(
        "LDN-FIX",
        {"lac_review_held_on": date(2027, 4, 20)},
        actor=SOCIAL_WORKER,
        at=utc(2027, 4, 20, 15),
    )
    assert deadline(engine, "LDN-FIX", "lac_review").due_on == date(2027, 7, 20)


# -- pauses -------------------------------------------------------------------------------------


def _christmas_case(engine: nw.Engine, reference: str) -> None:
    """An England case opened Mon 21 December 2026 with both statutory clocks running."""
    open_case(
        engine,
        reference,
        ENGLAND,
        utc(2026, 12, 21, 10),
        facts={"proceedings_issued_on": date(2026, 12, 21), "entered_care_on": date(2026, 12, 21)},
    )


# From Mon 21 December 2026 (see REFERRALS for the holidays):
#   referral_decision, 10 working days: 22, 23, 24 (3); 29, 30, 31 (6); 4..7 Jan (10) -> 7 Jan.
#   lac_review, 20 working days: ... 8 (11); 11..15 (16); 18..21 (20) -> 21 January 2027.
#   care_proceedings, 26 weeks beginning with the issue day, so issue + 181 days: 10 (31 Dec)
#   + 31 + 28 + 31 + 30 + 31 = 161, + 20 -> Sun 20 June 2027.
CHRISTMAS_DUE = {
    "referral_decision": date(2027, 1, 7),
    "lac_review": date(2027, 1, 21),
    "care_proceedings": date(2027, 6, 20),
}


def test_pause_over_christmas_moves_stage_deadlines_and_never_the_laws_clocks(
    engine: nw.Engine,
) -> None:
    """Paused Thu 24 Dec, resumed Tue 29 Dec: the stage deadline moves, the statutory clocks not."""
    _christmas_case(engine, "LDN-P")
    assert {d.name: d.due_on for d in engine.deadlines("LDN-P")} == CHRISTMAS_DUE
    engine.pause("LDN-P", actor=COORDINATOR, reason="child in hospital", at=utc(2026, 12, 24, 10))
    assert engine.case("LDN-P").paused
    engine.resume("LDN-P", actor=COORDINATOR, at=utc(2026, 12, 29, 9))
    # Paused dates 24, 25, 26, 27, 28 December: 5 dates; the working days among them are only
    # Thu 24 (25 Christmas, 26-27 weekend, 28 Boxing Day substitute). The court's 26 weeks and
    # the looked-after review run on (s.32, reg 33): no pause of the team's work moves them.
    assert {d.name: d.due_on for d in engine.deadlines("LDN-P")} == {
        "referral_decision": date(2027, 1, 8),  # 7 January + 1 working day (Fri 8)
        "lac_review": date(2027, 1, 21),
        "care_proceedings": date(2027, 6, 20),
    }
    shifts = {
        d.name: [(a.kind, a.shift, a.previous_due_on, a.due_on) for a in d.explain().adjustments]
        for d in engine.deadlines("LDN-P")
    }
    assert shifts["care_proceedings"] == shifts["lac_review"] == []
    assert shifts["referral_decision"][0][0] == "pause"
    assert shifts["referral_decision"][0][1].startswith("1 working")
    assert deadline(engine, "LDN-P", "care_proceedings").due_at == utc(2027, 6, 20, 23)
    assert action_counts(engine, "LDN-P")["resumed"] == 1


def test_pause_and_resume_on_the_same_local_date_moves_nothing(engine: nw.Engine) -> None:
    """A pause resumed the same local date has no paused dates, so nothing moves."""
    _christmas_case(engine, "LDN-SAME")
    engine.pause("LDN-SAME", actor=TEAM_MANAGER, reason="check", at=utc(2026, 12, 22, 9))
    engine.resume("LDN-SAME", actor=TEAM_MANAGER, at=utc(2026, 12, 22, 23, 59))
    after = engine.deadlines("LDN-SAME")
    assert {d.name: d.due_on for d in after} == CHRISTMAS_DUE
    assert all(d.explain().adjustments == () for d in after)
    # 23:30 UTC on 17 June and 00:30 UTC on 18 June are both 18 June in London (BST).
    open_case(engine, "LDN-BSTP", ENGLAND, utc(2027, 6, 14, 9))
    before = deadline(engine, "LDN-BSTP", "referral_decision").due_on
    engine.pause("LDN-BSTP", actor=TEAM_MANAGER, reason="check", at=utc(2027, 6, 17, 23, 30))
    engine.resume("LDN-BSTP", actor=TEAM_MANAGER, at=utc(2027, 6, 18, 0, 30))
    assert deadline(engine, "LDN-BSTP", "referral_decision").due_on == before


def test_a_deadline_past_due_when_paused_is_not_moved(engine: nw.Engine) -> None:
    """A deadline already missed when the clock stopped stays where it was."""
    open_case(engine, "LDN-LATE", ENGLAND, utc(2026, 12, 18, 10))  # referral due 6 January 2027
    engine.pause("LDN-LATE", actor=TEAM_MANAGER, reason="late", at=utc(2027, 1, 8, 10))
    engine.resume("LDN-LATE", actor=TEAM_MANAGER, at=utc(2027, 1, 12, 10))
    late = deadline(engine, "LDN-LATE", "referral_decision")
    assert (late.due_on, late.explain().adjustments) == (date(2027, 1, 6), ())


def test_a_paused_case_refuses_fire_but_accepts_record(engine: nw.Engine) -> None:
    """While paused, fire raises CasePaused (audited as denied) and record still works."""
    open_case(engine, "LDN-PF", ENGLAND, utc(2027, 2, 1, 9))
    engine.record("LDN-PF", {"consent_recorded": True}, actor=SOCIAL_WORKER, at=utc(2027, 2, 1, 10))
    with pytest.raises(nw.PermissionDenied):  # pausing is for team managers and coordinators
        engine.pause("LDN-PF", actor=CLINICIAN, reason="x", at=utc(2027, 2, 2, 8))
    assert not engine.case("LDN-PF").paused
    engine.pause("LDN-PF", actor=COORDINATOR, reason="awaiting court", at=utc(2027, 2, 2, 9))
    with pytest.raises(nw.CasePaused):
        engine.fire("LDN-PF", "accept_referral", actor=TEAM_MANAGER, at=utc(2027, 2, 3, 9))
    denied = engine.audit("LDN-PF")[-1]
    assert (denied.action, denied.detail["error"]) == ("denied", "CasePaused")
    assert engine.case("LDN-PF").stage == "referral"
    assert engine.allowed_triggers("LDN-PF", TEAM_MANAGER) == []

    case = engine.record(
        "LDN-PF",
        {"proceedings_issued_on": date(2027, 2, 3)},
        actor=COURT_OFFICER,
        at=utc(2027, 2, 3, 10),
    )
    assert case.paused
    assert case.facts["proceedings_issued_on"] == date(2027, 2, 3)
    # 26 weeks beginning with 3 February 2027: 3 February + 181 days = 3 August 2027.
    assert deadline(engine, "LDN-PF", "care_proceedings").due_on == date(2027, 8, 3)
    engine.resume("LDN-PF", actor=COORDINATOR, at=utc(2027, 2, 8, 9))
    # The court's clock started during the pause and ran through it all the same.
    assert deadline(engine, "LDN-PF", "care_proceedings").due_on == date(2027, 8, 3)
    engine.fire("LDN-PF", "accept_referral", actor=TEAM_MANAGER, at=utc(2027, 2, 8, 10))
    assert engine.case("LDN-PF").stage == "assessment"


def test_a_pause_that_pushes_a_working_day_deadline_over_easter_names_the_holidays(
    engine: nw.Engine,
) -> None:
    """explain() names Good Friday and Easter Monday when a pause moves a due date over them."""
    open_case(engine, "LDN-EASTER", ENGLAND, utc(2027, 3, 8, 10))
    # 10 working days from Mon 8 March 2027: 9..12 (4); 15..19 (9); Mon 22 (10).
    assert deadline(engine, "LDN-EASTER", "referral_decision").due_on == date(2027, 3, 22)
    engine.pause("LDN-EASTER", actor=TEAM_MANAGER, reason="x", at=utc(2027, 3, 10, 10))
    engine.resume("LDN-EASTER", actor=TEAM_MANAGER, at=utc(2027, 3, 17, 10))
    # Paused 10..16 March: working days 10, 11, 12, 15, 16 = 5. From 22 March: 23, 24, 25 (3);
    # Good Friday 26, Easter Monday 29; 30, 31 (5) -> 31 March.
    moved = deadline(engine, "LDN-EASTER", "referral_decision")
    assert moved.due_on == date(2027, 3, 31)
    text = str(moved.explain())
    assert "2027-03-26" in text
    assert "Good Friday" in text
    assert "2027-03-29" in text
    assert "Easter Monday" in text


# -- extensions ---------------------------------------------------------------------------------


def _proceedings_case(engine: nw.Engine, reference: str) -> None:
    """An England case whose care proceedings were issued Mon 1 February 2027 (due 2 August)."""
    open_case(
        engine,
        reference,
        ENGLAND,
        utc(2027, 2, 1, 9),
        facts={"proceedings_issued_on": date(2027, 2, 1)},
    )


def test_care_proceedings_extends_by_what_the_court_grants_with_no_cap(engine: nw.Engine) -> None:
    """The court officer records each extension the court grants: up to 8 weeks, any number."""
    _proceedings_case(engine, "LDN-EXT")
    grants = ["8 weeks", None, "3 weeks", dt.timedelta(days=10), "8 weeks"]
    extended = [
        engine.extend_deadline(
            "LDN-EXT",
            "care_proceedings",
            actor=COURT_OFFICER,
            reason=f"court extended the timetable ({n})",
            at=utc(2027, 7, 1 + n, 10),
            by=by,
        )
        for n, by in enumerate(grants)
    ]
    # From Sun 1 August 2027: + 56 days = 26 September (30 in Aug, 26 in Sep); + 56 (None is the
    # full step) = 21 November (4 + 31 + 21); + 21 = 12 December; + 10 = 22 December;
    # + 56 = 16 February 2028 (9 + 31 + 16).
    assert [(d.due_on, d.extensions) for d in extended] == [
        (date(2027, 9, 26), 1),
        (date(2027, 11, 21), 2),
        (date(2027, 12, 12), 3),
        (date(2027, 12, 22), 4),
        (date(2028, 2, 16), 5),
    ]
    assert extended[-1].due_at == utc(2028, 2, 17, 0)  # GMT in February
    events = engine.audit("LDN-EXT")
    assert [e.detail["by"] for e in events[-5:]] == [
        "8 weeks",
        "8 weeks",
        "3 weeks",
        "10 days",
        "8 weeks",
    ]
    assert [e.detail["limit"] for e in events[-5:]] == [None] * 5
    assert events[-1].detail["due_on"] == "2028-02-16"
    assert events[-1].reason == "court extended the timetable (4)"
    shifts = [a.shift for a in extended[-1].explain().adjustments]
    assert shifts == ["8 weeks", "8 weeks", "3 weeks", "10 days", "8 weeks"]


@pytest.mark.parametrize(
    ("by", "message"),
    [
        ("9 weeks", "longer than the most"),
        ("57 days", "longer than the most"),
        ("3 months", "longer than the most"),
        ("0 days", "longer than zero"),
        ("-1 weeks", "not a duration"),
        (dt.timedelta(days=0), "longer than zero"),
        (dt.timedelta(days=-7), "longer than zero"),
        (dt.timedelta(hours=36), "whole number of days"),
        ("eight weeks", "not a duration"),
        (8, "must be a duration"),
    ],
)
def test_an_extension_longer_than_the_step_or_not_a_length_is_refused(
    engine: nw.Engine, by: object, message: str
) -> None:
    """by= beyond the step, zero, negative or not a duration: InvalidInput, nothing written."""
    _proceedings_case(engine, "LDN-BY")
    before = len(engine.audit("LDN-BY"))
    with pytest.raises(nw.InvalidInput, match=message) as refused:
        engine.extend_deadline(
            "LDN-BY",
            "care_proceedings",
            actor=COURT_OFFICER,
            reason="court order",
            at=utc(2027, 7, 1),
            by=by,  # type: ignore[arg-type]
        )
    assert refused.value.field == "by"
    clock = deadline(engine, "LDN-BY", "care_proceedings")
    assert (clock.due_on, clock.extensions) == (date(2027, 8, 1), 0)
    assert len(engine.audit("LDN-BY")) == before


def test_extending_care_proceedings_needs_the_court_officer(engine: nw.Engine) -> None:
    """A team manager may not extend care_proceedings (PermissionDenied); a court officer may."""
    _proceedings_case(engine, "LDN-ROLE")
    with pytest.raises(nw.PermissionDenied) as refused:
        engine.extend_deadline(
            "LDN-ROLE", "care_proceedings", actor=TEAM_MANAGER, reason="no", at=utc(2027, 7, 1)
        )
    assert refused.value.required == ("court_officer",)
    denied = engine.audit("LDN-ROLE")[-1]
    assert (denied.action, denied.actor_id, denied.detail["error"]) == (
        "denied",
        TEAM_MANAGER.id,
        "PermissionDenied",
    )
    assert deadline(engine, "LDN-ROLE", "care_proceedings").due_on == date(2027, 8, 1)
    allowed = engine.extend_deadline(
        "LDN-ROLE",
        "care_proceedings",
        actor=COURT_OFFICER,
        reason="court order",
        at=utc(2027, 7, 1),
    )
    assert allowed.due_on == date(2027, 9, 26)


def test_an_extension_needs_a_reason(engine: nw.Engine) -> None:
    """Without a reason (none, empty or blank) an extension is refused with RequirementsNotMet."""
    _proceedings_case(engine, "LDN-WHY")
    for reason in (None, "", "   "):
        with pytest.raises(nw.RequirementsNotMet) as refused:
            engine.extend_deadline(
                "LDN-WHY",
                "care_proceedings",
                actor=COURT_OFFICER,
                reason=reason,
                at=utc(2027, 7, 1),
            )
        assert "reason" in refused.value.missing
    assert deadline(engine, "LDN-WHY", "care_proceedings").extensions == 0
    assert action_counts(engine, "LDN-WHY")["denied"] == 3


def test_a_rule_without_an_extension_refuses_one(engine: nw.Engine) -> None:
    """lac_review allows no extension: ExtensionNotAllowed, audited as denied."""
    open_case(
        engine,
        "LDN-NOEXT",
        ENGLAND,
        utc(2027, 2, 1, 9),
        facts={"entered_care_on": date(2027, 2, 1)},
    )
    with pytest.raises(nw.ExtensionNotAllowed):
        engine.extend_deadline(
            "LDN-NOEXT", "lac_review", actor=TEAM_MANAGER, reason="busy", at=utc(2027, 2, 5)
        )
    assert engine.audit("LDN-NOEXT")[-1].action == "denied"


def test_stage_deadline_extensions_use_their_own_step(engine: nw.Engine) -> None:
    """referral_decision extends once by 5 working days; Scotland treatment once by 3 months."""
    open_case(engine, "LDN-RX", ENGLAND, utc(2026, 12, 18, 10))  # due 6 January 2027
    extended = engine.extend_deadline(
        "LDN-RX",
        "referral_decision",
        actor=TEAM_MANAGER,
        reason="awaiting consent",
        at=utc(2027, 1, 4, 10),
    )
    # 6 January + 5 working days: 7, 8 (2); 11, 12, 13 (5) -> 13 January.
    assert extended.due_on == date(2027, 1, 13)
    with pytest.raises(nw.ExtensionNotAllowed):
        engine.extend_deadline(
            "LDN-RX",
            "referral_decision",
            actor=TEAM_MANAGER,
            reason="again",
            at=utc(2027, 1, 5, 10),
        )

    case_in_stage(engine, "GLA-TX", SCOTLAND, "treatment", utc(2027, 1, 15, 10))
    # 9 months from 15 January 2027 -> 15 October 2027; + 3 months -> 15 January 2028 (12 months).
    assert deadline(engine, "GLA-TX", "treatment").due_on == date(2027, 10, 15)
    longer = engine.extend_deadline(
        "GLA-TX",
        "treatment",
        actor=TEAM_MANAGER,
        reason="GIFT: up to 12 months",
        at=utc(2027, 9, 1, 10),
    )
    assert (longer.due_on, longer.extensions) == (date(2028, 1, 15), 1)


# -- explain() ----------------------------------------------------------------------------------


def test_explain_names_anchor_rule_holidays_and_due_date_for_a_working_day_rule(
    engine: nw.Engine,
) -> None:
    """A working-day deadline explains its start, rule, each holiday skipped and its due date."""
    open_case(engine, "LDN-X", ENGLAND, utc(2026, 12, 18, 10))
    why = deadline(engine, "LDN-X", "referral_decision").explain()
    assert why.start_on == date(2026, 12, 18)
    assert "referral" in why.anchor
    assert "referral_decision" in why.rule
    assert "10 working" in why.rule
    assert why.skipped == (
        (date(2026, 12, 25), "Christmas Day"),
        (date(2026, 12, 28), "Boxing Day (observed)"),
        (date(2027, 1, 1), "New Year's Day"),
    )
    assert (why.base_due_on, why.due_on, why.adjustments) == (
        date(2027, 1, 6),
        date(2027, 1, 6),
        (),
    )
    lines = why.lines()
    assert "2026-12-18" in lines[0]
    assert any("2026-12-25" in line and "Christmas Day" in line for line in lines)
    assert any("2026-12-28" in line and "Boxing Day" in line for line in lines)
    assert any("2027-01-01" in line and "New Year" in line for line in lines)
    assert "2027-01-06" in lines[-1]
    assert "Europe/London" in lines[-1]
    assert str(why) == "\n".join(lines)


def test_explain_lists_each_pause_and_extension_and_the_final_due_date(engine: nw.Engine) -> None:
    """After a pause and two extensions explain() shows each step, in order, and the final date."""
    case_in_stage(engine, "LDN-XP", ENGLAND, "treatment", utc(2027, 2, 1, 9))
    engine.pause("LDN-XP", actor=COORDINATOR, reason="child in hospital", at=utc(2027, 3, 1, 10))
    engine.resume("LDN-XP", actor=COORDINATOR, at=utc(2027, 3, 11, 10))
    for n, reason in enumerate(("parent unwell", "new carer joined")):
        engine.extend_deadline(
            "LDN-XP",
            "treatment",
            actor=TEAM_MANAGER,
            reason=reason,
            at=utc(2027, 6, 1 + n, 10),
        )
    # treatment is 5 months from Mon 1 February 2027: 1 July; + 10 paused dates (1..10 March)
    # = 11 July; + 1 month = 11 August; + 1 month = 11 September 2027.
    why = deadline(engine, "LDN-XP", "treatment").explain()
    assert "entered stage treatment" in why.anchor
    assert "5 months" in why.rule
    assert why.skipped == ()  # a months rule counts calendar dates: no holiday is skipped
    assert [(a.kind, a.previous_due_on, a.due_on) for a in why.adjustments] == [
        ("pause", date(2027, 7, 1), date(2027, 7, 11)),
        ("extension", date(2027, 7, 11), date(2027, 8, 11)),
        ("extension", date(2027, 8, 11), date(2027, 9, 11)),
    ]
    assert (why.base_due_on, why.due_on, why.due_at) == (
        date(2027, 7, 1),
        date(2027, 9, 11),
        utc(2027, 9, 11, 23),
    )
    lines = why.lines()
    assert "2027-02-01" in lines[0]
    assert "treatment" in lines[0]
    assert "5 months" in lines[1]
    assert "2027-07-01" in lines[1]
    pause_line, *extension_lines = lines[2:5]
    assert "pause" in pause_line
    assert "2027-03-01" in pause_line
    assert "2027-07-11" in pause_line
    assert "parent unwell" in extension_lines[0]
    assert "new carer joined" in extension_lines[1]
    assert "2027-09-11" in extension_lines[1]
    assert "2027-09-11" in lines[-1]


def test_explain_says_a_statutory_clock_counts_beginning_with_and_never_pauses(
    engine: nw.Engine,
) -> None:
    """care_proceedings' explanation says it counts from the issue day as day 1 and runs on."""
    _proceedings_case(engine, "LDN-XB")
    engine.pause("LDN-XB", actor=COORDINATOR, reason="hearing adjourned", at=utc(2027, 3, 1, 10))
    engine.resume("LDN-XB", actor=COORDINATOR, at=utc(2027, 3, 11, 10))
    why = deadline(engine, "LDN-XB", "care_proceedings").explain()
    assert "26 weeks beginning with" in why.rule
    assert "not moved by pauses" in why.rule
    assert why.adjustments == ()
    assert (why.base_due_on, why.due_on) == (date(2027, 8, 1), date(2027, 8, 1))


def test_explain_names_the_recurring_fact_for_later_occurrences(engine: nw.Engine) -> None:
    """A later lac_review occurrence is anchored on lac_review_held_on, and says which one."""
    open_case(
        engine, "LDN-XR", ENGLAND, utc(2027, 3, 22, 9), facts={"entered_care_on": date(2027, 3, 22)}
    )
    engine.record(
        "LDN-XR",
        {"lac_review_held_on": date(2027, 4, 14)},
        actor=SOCIAL_WORKER,
        at=utc(2027, 4, 14, 16),
    )
    first = deadline(engine, "LDN-XR", "lac_review", 1).explain()
    second = deadline(engine, "LDN-XR", "lac_review", 2).explain()
    assert "entered_care_on" in first.anchor
    assert [day for day, _ in first.skipped] == [date(2027, 3, 26), date(2027, 3, 29)]
    assert "lac_review_held_on" in second.anchor
    assert "2" in second.anchor
    assert "3 months" in second.rule
    assert second.skipped == ()
    assert (second.start_on, second.due_on) == (date(2027, 4, 14), date(2027, 7, 14))


def test_a_site_closure_moves_stage_deadlines_but_never_a_statutory_working_day_clock(
    db_url: str,
) -> None:
    """A London office closure on Wed 7 Jan 2026 delays the referral, not the LAC review.

    The regulations' working day is any day but a weekend day, Christmas Day, Good Friday or a
    bank holiday (Care Planning, Placement and Case Review (England) Regulations 2010, reg. 2),
    so the first review stays 20 working days after entry to care whatever the office does.
    """
    closed = {"london": [date(2026, 1, 7)]}
    with migrated_engine(db_url, FakeClock(utc(2026, 1, 5)), closures=closed) as engine:
        open_case(
            engine,
            "LDN-CL",
            ENGLAND,
            utc(2026, 1, 5, 10),
            facts={"entered_care_on": date(2026, 1, 5)},
        )
        # referral_decision, 10 working days from Mon 5 Jan: 6, 8, 9 (3, the 7th closed);
        # 12..16 (8); 19, 20 (10) -> Tue 20 Jan. lac_review, 20 working days: 6..9 (4),
        # 12..16 (9), 19..23 (14), 26..30 (19), Mon 2 Feb (20).
        assert deadline(engine, "LDN-CL", "referral_decision").due_on == date(2026, 1, 20)
        review = deadline(engine, "LDN-CL", "lac_review")
        assert review.due_on == date(2026, 2, 2)
        assert review.explain().skipped == ()


# -- one vocabulary: overdue in every read ---------------------------------------------------------

# LDN-O opened Mon 5 January 2026: referral decision due Mon 19 January (10 working days), which
# ends at midnight UTC (GMT in winter): due_at 2026-01-20 00:00 UTC. LDN-N opened Mon 12 January:
# due Mon 26 January. LDN-M accepted on 6 January: its referral decision met.
O_DUE_AT = utc(2026, 1, 20)


@pytest.fixture
def three_referrals(db_url: str) -> Iterator[tuple[nw.Engine, FakeClock]]:
    """LDN-O overdue, LDN-N open and LDN-M met, on a clock at Wed 21 January 2026, 09:00 UTC."""
    clock = FakeClock(utc(2026, 1, 5, 10))
    with migrated_engine(db_url, clock) as built:
        open_case(built, "LDN-O", ENGLAND, utc(2026, 1, 5, 10))
        open_case(built, "LDN-M", ENGLAND, utc(2026, 1, 5, 10))
        enter(built, "LDN-M", "assessment", utc(2026, 1, 6, 10))
        open_case(built, "LDN-N", ENGLAND, utc(2026, 1, 12, 10))
        clock.set(utc(2026, 1, 21, 9))
        yield built, clock


def _referrals(found: list[nw.Deadline]) -> list[tuple[str, str]]:
    return [(d.reference, d.state) for d in found if d.name == "referral_decision"]


def test_a_deadline_past_due_is_overdue_in_every_read(
    three_referrals: tuple[nw.Engine, FakeClock],
) -> None:
    """deadlines(), due() and overdue() all say overdue for an open deadline past due."""
    engine, _ = three_referrals
    late = deadline(engine, "LDN-O", "referral_decision")
    assert (late.status, late.overdue, late.state) == ("open", True, "overdue")
    pending = deadline(engine, "LDN-N", "referral_decision")
    assert (pending.status, pending.overdue, pending.state) == ("open", False, "open")
    met = deadline(engine, "LDN-M", "referral_decision")
    assert (met.status, met.overdue, met.state) == ("met", False, "met")
    # The same deadline, read by overdue() and due(), is the same value, flag and all.
    assert engine.overdue() == [late]
    assert _referrals(engine.due(before=utc(2026, 2, 1))) == [
        ("LDN-O", "overdue"),
        ("LDN-N", "open"),
    ]
    assert late in engine.due(before=utc(2026, 2, 1))


def test_due_can_leave_out_what_is_already_overdue(
    three_referrals: tuple[nw.Engine, FakeClock],
) -> None:
    """due(include_overdue=False) lists only deadlines not yet overdue; the default is as before."""
    engine, _ = three_referrals
    before = utc(2026, 2, 1)
    assert _referrals(engine.due(before=before, include_overdue=False)) == [("LDN-N", "open")]
    assert all(not d.overdue for d in engine.due(before=before, include_overdue=False))
    assert [d.reference for d in engine.due(before, "london", include_overdue=False)] == ["LDN-N"]
    # Measured from at= when given: on 15 January neither was overdue yet.
    earlier = engine.due(before=before, include_overdue=False, at=utc(2026, 1, 15))
    assert _referrals(earlier) == [("LDN-O", "open"), ("LDN-N", "open")]


def test_overdue_is_judged_at_the_instant_of_the_read_as_overdue_judges_it(
    three_referrals: tuple[nw.Engine, FakeClock],
) -> None:
    """At its due instant a deadline is overdue in every read; a microsecond before, in none."""
    engine, clock = three_referrals
    just_before = O_DUE_AT - dt.timedelta(microseconds=1)
    for when, state in ((O_DUE_AT, "overdue"), (just_before, "open")):
        late = [d for d in engine.overdue(at=when) if d.reference == "LDN-O"]
        assert bool(late) is (state == "overdue")
        read = [d for d in engine.deadlines("LDN-O", at=when) if d.name == "referral_decision"]
        assert read[0].state == state
        kept = engine.due(before=utc(2026, 2, 1), include_overdue=False, at=when)
        assert ("LDN-O" in {d.reference for d in kept}) is (state == "open")
        clock.set(when)
        assert deadline(engine, "LDN-O", "referral_decision").state == state
        assert _referrals(engine.due(before=utc(2026, 2, 1)))[0] == ("LDN-O", state)


def test_the_reads_refuse_a_naive_instant(three_referrals: tuple[nw.Engine, FakeClock]) -> None:
    """deadlines(at=) and due(at=) take aware datetimes only, as every instant in the API."""
    engine, _ = three_referrals
    naive = dt.datetime(2026, 1, 21, 9)
    with pytest.raises(nw.InvalidInput):
        engine.deadlines("LDN-O", at=naive)
    with pytest.raises(nw.InvalidInput):
        engine.due(before=utc(2026, 2, 1), at=naive)


def test_extend_deadline_returns_the_deadline_as_of_the_extension(
    three_referrals: tuple[nw.Engine, FakeClock],
) -> None:
    """An extension that leaves the deadline past due returns it overdue; a longer one, open."""
    engine, _ = three_referrals
    # Due Mon 19 January; one working day more is Tue 20 January, ended by the 21st.
    short = engine.extend_deadline(
        "LDN-O", "referral_decision", actor=TEAM_MANAGER, reason="late", by="1 working_days"
    )
    assert (short.due_on, short.overdue, short.state) == (date(2026, 1, 20), True, "overdue")
    # LDN-N's (due Mon 26 January) plus 5 working days is Mon 2 February: open.
    longer = engine.extend_deadline(
        "LDN-N", "referral_decision", actor=TEAM_MANAGER, reason="awaiting records"
    )
    assert (longer.due_on, longer.overdue, longer.state) == (date(2026, 2, 2), False, "open")
