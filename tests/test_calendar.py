"""Tests for nim_workflow._calendar: working days, calendar arithmetic, local dates and pauses."""

from __future__ import annotations

import calendar as stdlib_calendar
import dataclasses
import re
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import holidays
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nim_workflow._calendar import WorkingCalendar, calendar_for
from nim_workflow._errors import InvalidInput
from nim_workflow._pathway._model import CALENDARS, UNITS, Duration, Unit

ENGLAND = WorkingCalendar("england-and-wales", "Europe/London")
SCOTLAND = WorkingCalendar("scotland", "Europe/London")
LOUISIANA = WorkingCalendar("louisiana", "America/Chicago")
ALL = (ENGLAND, SCOTLAND, LOUISIANA)

# The published bank holidays (gov.uk/bank-holidays), as the weekdays they are taken on: a holiday
# falling at a weekend appears here only as its substitute day.
ENGLAND_AND_WALES_BANK_HOLIDAYS = {
    2026: [
        date(2026, 1, 1),  # New Year's Day (Thursday)
        date(2026, 4, 3),  # Good Friday (Easter Sunday is 5 April)
        date(2026, 4, 6),  # Easter Monday
        date(2026, 5, 4),  # Early May bank holiday, first Monday of May
        date(2026, 5, 25),  # Spring bank holiday, last Monday of May
        date(2026, 8, 31),  # Summer bank holiday, last Monday of August
        date(2026, 12, 25),  # Christmas Day (Friday)
        date(2026, 12, 28),  # Boxing Day (substitute day): 26 December is a Saturday
    ],
    2027: [
        date(2027, 1, 1),  # New Year's Day (Friday)
        date(2027, 3, 26),  # Good Friday (Easter Sunday is 28 March)
        date(2027, 3, 29),  # Easter Monday
        date(2027, 5, 3),  # Early May bank holiday
        date(2027, 5, 31),  # Spring bank holiday
        date(2027, 8, 30),  # Summer bank holiday
        date(2027, 12, 27),  # Christmas Day (substitute day): 25 December is a Saturday
        date(2027, 12, 28),  # Boxing Day (substitute day): 26 December is a Sunday
    ],
}
SCOTLAND_BANK_HOLIDAYS = {
    2026: [
        date(2026, 1, 1),  # New Year's Day
        date(2026, 1, 2),  # 2nd January (Friday)
        date(2026, 4, 3),  # Good Friday; Scotland has no Easter Monday bank holiday
        date(2026, 5, 4),  # Early May bank holiday
        date(2026, 5, 25),  # Spring bank holiday
        # One-off: appointed by Royal Proclamation of 3 February 2026 for the men's team's first
        # World Cup finals match since 1998; gov.uk lists it ("World Cup bank holiday") and so does
        # the holidays package. It was missing from the list this suite was first specified with.
        date(2026, 6, 15),
        date(2026, 8, 3),  # Summer bank holiday: the FIRST Monday of August in Scotland
        date(2026, 11, 30),  # St Andrew's Day (Monday)
        date(2026, 12, 25),  # Christmas Day
        date(2026, 12, 28),  # Boxing Day (substitute day)
    ],
    2027: [
        date(2027, 1, 1),  # New Year's Day (Friday)
        date(2027, 1, 4),  # 2nd January (substitute day): 2 January is a Saturday
        date(2027, 3, 26),  # Good Friday
        date(2027, 5, 3),  # Early May bank holiday
        date(2027, 5, 31),  # Spring bank holiday
        date(2027, 8, 2),  # Summer bank holiday, first Monday of August
        date(2027, 11, 30),  # St Andrew's Day (Tuesday)
        date(2027, 12, 27),  # Christmas Day (substitute day)
        date(2027, 12, 28),  # Boxing Day (substitute day)
    ],
}


def non_working_weekdays(cal: WorkingCalendar, year: int) -> list[date]:
    """Every Monday-to-Friday date of ``year`` that ``cal`` says is not a working day."""
    first = date(year, 1, 1)
    days = (first + timedelta(days=i) for i in range(366))
    return [d for d in days if d.year == year and d.weekday() < 5 and not cal.is_working_day(d)]


def working(amount: int) -> Duration:
    """A working-days duration."""
    return Duration(amount=amount, unit="working_days")


# -- the published holidays ----------------------------------------------------------------


@pytest.mark.parametrize("year", [2026, 2027])
def test_england_and_wales_non_working_weekdays_are_the_published_bank_holidays(year: int) -> None:
    """England and Wales loses exactly the published bank holidays and substitute days."""
    assert non_working_weekdays(ENGLAND, year) == ENGLAND_AND_WALES_BANK_HOLIDAYS[year]


@pytest.mark.parametrize("year", [2026, 2027])
def test_scotland_non_working_weekdays_are_the_published_bank_holidays(year: int) -> None:
    """Scotland loses exactly its published bank holidays and substitute days."""
    assert non_working_weekdays(SCOTLAND, year) == SCOTLAND_BANK_HOLIDAYS[year]


def test_wales_has_the_same_bank_holidays_as_england() -> None:
    """The holidays package gives Wales the very dates it gives England, so one calendar serves."""
    years = range(1975, 2101)
    england = holidays.country_holidays("GB", subdiv="ENG", years=years, expand=False)
    wales = holidays.country_holidays("GB", subdiv="WLS", years=years, expand=False)
    assert dict(england) == dict(wales)


def test_substitute_days_are_named_after_their_holiday() -> None:
    """A substitute day is non-working and its reason names the holiday it stands in for."""
    assert ENGLAND.non_working_reason(date(2026, 12, 28)) == "Boxing Day (observed)"
    assert ENGLAND.non_working_reason(date(2027, 12, 27)) == "Christmas Day (observed)"
    assert SCOTLAND.non_working_reason(date(2027, 1, 4)) == "New Year Holiday (observed)"


def test_non_working_reason_names_weekends_holidays_and_working_days() -> None:
    """Weekends are named by weekday, holidays by name (even at a weekend), working days None."""
    assert ENGLAND.non_working_reason(date(2026, 12, 19)) == "Saturday"
    assert ENGLAND.non_working_reason(date(2026, 12, 20)) == "Sunday"
    assert ENGLAND.non_working_reason(date(2026, 12, 26)) == "Boxing Day"
    assert ENGLAND.non_working_reason(date(2026, 8, 31)) == "Late Summer Bank Holiday"
    assert SCOTLAND.non_working_reason(date(2026, 11, 30)) == "Saint Andrew's Day"
    assert ENGLAND.non_working_reason(date(2026, 11, 30)) is None
    assert ENGLAND.non_working_reason(date(2026, 12, 24)) is None


def test_louisiana_keeps_mardi_gras() -> None:
    """Mardi Gras (9 Feb 2027, 17 Feb 2026) is a state holiday in the default public category."""
    assert LOUISIANA.non_working_reason(date(2027, 2, 9)) == "Mardi Gras"
    assert LOUISIANA.non_working_reason(date(2026, 2, 17)) == "Mardi Gras"
    assert ENGLAND.is_working_day(date(2027, 2, 9))
    # Mon 8 Feb 2027 + 1 working day: Tue 9 is Mardi Gras, so Wed 10.
    assert LOUISIANA.add(date(2027, 2, 8), working(1)) == date(2027, 2, 10)
    assert ENGLAND.add(date(2027, 2, 8), working(1)) == date(2027, 2, 9)


def test_louisiana_observes_a_saturday_new_year_on_the_friday_before() -> None:
    """1 Jan 2028 is a Saturday, so Fri 31 Dec 2027 is off, although it falls in another year."""
    assert LOUISIANA.non_working_reason(date(2027, 12, 31)) == "New Year's Day (observed)"
    # Each calendar object looks the year up afresh, so the answer cannot depend on which years
    # some earlier test happened to touch first.
    fresh = WorkingCalendar("louisiana", "America/Chicago")
    assert not fresh.is_working_day(date(2027, 12, 31))


# -- working days across the holidays where England and Scotland differ -------------------


def test_ten_working_days_across_christmas_and_new_year() -> None:
    """Ten working days after Fri 18 Dec 2026 is 6 Jan in England and 7 Jan in Scotland."""
    # Both: Mon 21 to Thu 24 Dec are days 1-4; Fri 25 (Christmas), the weekend and Mon 28
    # (Boxing Day substitute) are lost; Tue 29 to Thu 31 are days 5-7; Fri 1 Jan is lost.
    # England: Mon 4, Tue 5, Wed 6 Jan are days 8-10.
    # Scotland: 2 Jan 2027 is a Saturday, so Mon 4 Jan is its substitute and is lost too;
    # Tue 5, Wed 6, Thu 7 are days 8-10.
    start = date(2026, 12, 18)
    assert ENGLAND.add(start, working(10)) == date(2027, 1, 6)
    assert SCOTLAND.add(start, working(10)) == date(2027, 1, 7)


def test_five_working_days_across_new_year_2026() -> None:
    """Five working days after Wed 31 Dec 2025 is 8 Jan in England and 9 Jan in Scotland."""
    # England loses Thu 1 Jan only: Fri 2, Mon 5, Tue 6, Wed 7, Thu 8.
    # Scotland also loses Fri 2 Jan (its 2nd January holiday): Mon 5 to Fri 9.
    start = date(2025, 12, 31)
    assert ENGLAND.add(start, working(5)) == date(2026, 1, 8)
    assert SCOTLAND.add(start, working(5)) == date(2026, 1, 9)


def test_three_working_days_across_st_andrews_day() -> None:
    """Three working days after Thu 26 Nov 2026 is 1 Dec in England, 2 Dec in Scotland."""
    # Fri 27 Nov is day 1; Mon 30 Nov is St Andrew's Day in Scotland only.
    # England: Mon 30, Tue 1 Dec are days 2-3. Scotland: Tue 1, Wed 2 Dec are days 2-3.
    start = date(2026, 11, 26)
    assert ENGLAND.add(start, working(3)) == date(2026, 12, 1)
    assert SCOTLAND.add(start, working(3)) == date(2026, 12, 2)


def test_twenty_working_days_across_the_august_bank_holidays() -> None:
    """Twenty working days after Fri 31 Jul 2026 is 28 Aug in England, 31 Aug in Scotland."""
    # August 2026 has 21 weekdays, Mon 3 to Mon 31. Scotland's summer holiday is Mon 3 Aug
    # (first Monday), England's is Mon 31 Aug (last Monday). England counts 3-28 Aug as days
    # 1-20; Scotland starts on Tue 4 and needs Mon 31 as its 20th day.
    start = date(2026, 7, 31)
    assert ENGLAND.add(start, working(20)) == date(2026, 8, 28)
    assert SCOTLAND.add(start, working(20)) == date(2026, 8, 31)


def test_subtract_counts_working_days_back_from_a_due_date() -> None:
    """A reminder 10 working days before a due date skips the same holidays going backwards."""
    assert ENGLAND.subtract(date(2027, 1, 6), working(10)) == date(2026, 12, 18)
    assert SCOTLAND.subtract(date(2027, 1, 7), working(10)) == date(2026, 12, 18)
    # Back from Tue 30 Mar 2027, the day after Easter Monday: England loses Mon 29 and
    # Fri 26 Mar (Good Friday), so 1 working day before is Thu 25 Mar;
    # Scotland only loses Fri 26 Mar, so it is Mon 29 Mar.
    assert ENGLAND.subtract(date(2027, 3, 30), working(1)) == date(2027, 3, 25)
    assert SCOTLAND.subtract(date(2027, 3, 30), working(1)) == date(2027, 3, 29)


def test_zero_working_days_is_the_start_itself() -> None:
    """The start date is day 0, even when it is itself a holiday."""
    assert ENGLAND.add(date(2026, 12, 25), working(0)) == date(2026, 12, 25)
    assert ENGLAND.count_working_days(date(2026, 12, 25), date(2026, 12, 25)) == 0


def test_count_working_days_excludes_start_and_includes_end() -> None:
    """count_working_days counts start < d <= end, and is 0 when end is not after start."""
    assert ENGLAND.count_working_days(date(2026, 12, 18), date(2027, 1, 6)) == 10
    assert SCOTLAND.count_working_days(date(2026, 12, 18), date(2027, 1, 6)) == 9
    assert ENGLAND.count_working_days(date(2027, 1, 6), date(2026, 12, 18)) == 0


def test_working_days_in_counts_first_but_not_stop() -> None:
    """working_days_in counts first <= d < stop."""
    # Thu 24 Dec counts; 25-28 Dec do not; Tue 29 Dec is the stop date and is left out.
    assert ENGLAND.working_days_in(date(2026, 12, 24), date(2026, 12, 29)) == 1
    assert ENGLAND.working_days_in(date(2026, 12, 29), date(2026, 12, 24)) == 0


# -- site closures ---------------------------------------------------------------------------


def test_a_site_closure_is_skipped_and_reported() -> None:
    """A closure day costs a working day and is listed, with its label, by skipped()."""
    site = WorkingCalendar(
        "england-and-wales", "Europe/London", [date(2026, 12, 24)], closure_label="office closed"
    )
    assert not site.is_working_day(date(2026, 12, 24))
    assert site.non_working_reason(date(2026, 12, 24)) == "office closed"
    # The closure on Thu 24 Dec pushes the England answer (6 Jan) one working day on.
    assert site.add(date(2026, 12, 18), working(10)) == date(2027, 1, 7)
    assert site.skipped(date(2026, 12, 18), date(2027, 1, 7)) == [
        (date(2026, 12, 24), "office closed"),
        (date(2026, 12, 25), "Christmas Day"),
        (date(2026, 12, 28), "Boxing Day (observed)"),
        (date(2027, 1, 1), "New Year's Day"),
    ]


def test_skipped_leaves_out_weekends_and_the_start_date() -> None:
    """skipped() lists only weekday holidays after start, up to and including end."""
    # Sat 26 Dec (Boxing Day itself) is a weekend day and is left out; its substitute is listed.
    assert ENGLAND.skipped(date(2026, 12, 25), date(2026, 12, 28)) == [
        (date(2026, 12, 28), "Boxing Day (observed)")
    ]
    assert ENGLAND.skipped(date(2026, 12, 21), date(2026, 12, 24)) == []


def test_closures_must_be_dates() -> None:
    """A datetime among the closures is refused rather than silently truncated."""
    with pytest.raises(InvalidInput):
        WorkingCalendar("scotland", "Europe/London", [datetime(2026, 12, 24, tzinfo=UTC)])


# -- calendar arithmetic -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "amount", "expected"),
    [
        (date(2027, 1, 31), 1, date(2027, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),  # 2028 is a leap year
        (date(2026, 8, 31), 1, date(2026, 9, 30)),
        (date(2026, 1, 31), 5, date(2026, 6, 30)),  # LIFT treatment, 5 months
        (date(2026, 5, 31), 9, date(2027, 2, 28)),  # GIFT treatment, 9 months, across a year
        (date(2026, 1, 30), 1, date(2026, 2, 28)),
        (date(2026, 2, 28), 1, date(2026, 3, 28)),  # no snapping to month end from the 28th
        (date(2026, 11, 15), 3, date(2027, 2, 15)),
    ],
)
def test_months_step_calendar_months_and_clamp_to_month_end(
    start: date, amount: int, expected: date
) -> None:
    """A month step from the 29th-31st lands on the last day of a shorter month."""
    assert ENGLAND.add(start, Duration(amount=amount, unit="months")) == expected


def test_months_subtract_clamps_the_same_way() -> None:
    """Going back a month from 31 March lands on the last day of February."""
    months = Duration(amount=1, unit="months")
    assert ENGLAND.subtract(date(2026, 3, 31), months) == date(2026, 2, 28)
    assert ENGLAND.subtract(date(2028, 3, 31), months) == date(2028, 2, 29)
    assert ENGLAND.subtract(date(2027, 1, 15), months) == date(2026, 12, 15)


def test_weeks_and_days_ignore_holidays() -> None:
    """Weeks and days are plain calendar arithmetic, so they may land on a bank holiday."""
    # 12 weeks (84 days) after Mon 2 Mar 2026 is Mon 25 May 2026, the Spring bank holiday.
    assert ENGLAND.add(date(2026, 3, 2), Duration(amount=12, unit="weeks")) == date(2026, 5, 25)
    assert ENGLAND.add(date(2026, 7, 1), Duration(amount=26, unit="weeks")) == date(2026, 12, 30)
    assert ENGLAND.add(date(2026, 12, 20), Duration(amount=5, unit="days")) == date(2026, 12, 25)
    assert ENGLAND.subtract(date(2026, 5, 25), Duration(amount=4, unit="weeks")) == date(
        2026, 4, 27
    )


# -- local dates and instants ----------------------------------------------------------------


def test_end_of_the_spring_change_day_in_london() -> None:
    """28 Mar 2027 (BST from 01:00 UTC) runs 00:00Z to 23:00Z: a 23-hour local date."""
    assert ENGLAND.start_of(date(2027, 3, 28)) == datetime(2027, 3, 28, 0, 0, tzinfo=UTC)
    assert ENGLAND.end_of(date(2027, 3, 28)) == datetime(2027, 3, 28, 23, 0, tzinfo=UTC)
    # In summer a London date ends at 23:00 UTC.
    assert ENGLAND.end_of(date(2027, 6, 1)) == datetime(2027, 6, 1, 23, 0, tzinfo=UTC)


def test_end_of_dates_around_the_autumn_change_in_london() -> None:
    """BST ends 31 Oct 2027 at 01:00 UTC; that date lasts 25 hours and later ones end at 00:00Z."""
    assert ENGLAND.start_of(date(2027, 10, 31)) == datetime(2027, 10, 30, 23, 0, tzinfo=UTC)
    assert ENGLAND.end_of(date(2027, 10, 31)) == datetime(2027, 11, 1, 0, 0, tzinfo=UTC)
    assert ENGLAND.end_of(date(2027, 11, 5)) == datetime(2027, 11, 6, 0, 0, tzinfo=UTC)


def test_end_of_dates_around_the_changes_in_chicago() -> None:
    """Louisiana dates end at 05:00Z under CDT and 06:00Z under CST (14 Mar and 7 Nov 2027)."""
    # CDT starts Sun 14 Mar 2027 at 02:00 CST: the date starts at 06:00Z and ends at 05:00Z.
    assert LOUISIANA.start_of(date(2027, 3, 14)) == datetime(2027, 3, 14, 6, 0, tzinfo=UTC)
    assert LOUISIANA.end_of(date(2027, 3, 14)) == datetime(2027, 3, 15, 5, 0, tzinfo=UTC)
    # CDT ends Sun 7 Nov 2027 at 02:00 CDT: that date lasts 25 hours.
    assert LOUISIANA.start_of(date(2027, 11, 7)) == datetime(2027, 11, 7, 5, 0, tzinfo=UTC)
    assert LOUISIANA.end_of(date(2027, 11, 7)) == datetime(2027, 11, 8, 6, 0, tzinfo=UTC)


def test_local_date_uses_the_site_zone() -> None:
    """An instant late in the UTC evening is already tomorrow in London in summer."""
    instant = datetime(2027, 3, 28, 23, 30, tzinfo=UTC)
    assert ENGLAND.local_date(instant) == date(2027, 3, 29)
    assert LOUISIANA.local_date(instant) == date(2027, 3, 28)


def test_naive_datetimes_are_refused() -> None:
    """A naive datetime has no instant, so local_date raises InvalidInput (a ValueError)."""
    with pytest.raises(InvalidInput) as raised:
        ENGLAND.local_date(datetime(2027, 3, 28, 12, 0))
    assert raised.value.field == "instant"
    assert isinstance(raised.value, ValueError)


# -- pauses ----------------------------------------------------------------------------------


def test_pause_over_the_christmas_bank_holidays_in_england() -> None:
    """Paused Thu 24 Dec, resumed Tue 29 Dec 2026: 5 calendar dates, 1 working day."""
    # Paused dates: Thu 24 (working), Fri 25 (Christmas), Sat 26, Sun 27, Mon 28 (Boxing Day
    # substitute). Tue 29, the resume date, is not paused.
    paused, resumed = date(2026, 12, 24), date(2026, 12, 29)
    assert ENGLAND.pause_shift("days", paused, resumed) == 5
    assert ENGLAND.pause_shift("weeks", paused, resumed) == 5
    assert ENGLAND.pause_shift("months", paused, resumed) == 5
    assert ENGLAND.pause_shift("working_days", paused, resumed) == 1
    # A working-days deadline due Wed 6 Jan 2027 moves one working day, to Thu 7 Jan;
    # a weeks deadline due the same day moves five calendar days, to Mon 11 Jan.
    assert ENGLAND.shift(date(2027, 1, 6), "working_days", 1) == date(2027, 1, 7)
    assert ENGLAND.shift(date(2027, 1, 6), "weeks", 5) == date(2027, 1, 11)


def test_pause_over_st_andrews_day_counts_differently_in_scotland() -> None:
    """Paused Fri 27 Nov, resumed Tue 1 Dec 2026: 2 working days in England, 1 in Scotland."""
    paused, resumed = date(2026, 11, 27), date(2026, 12, 1)
    assert ENGLAND.pause_shift("working_days", paused, resumed) == 2
    assert SCOTLAND.pause_shift("working_days", paused, resumed) == 1
    assert SCOTLAND.pause_shift("days", paused, resumed) == 4


@pytest.mark.parametrize("unit", UNITS)
def test_pause_and_resume_on_the_same_date_moves_nothing(unit: Unit) -> None:
    """Resuming on the pause date (or earlier) shifts nothing, and a zero shift is a no-op."""
    day = date(2026, 12, 24)
    assert ENGLAND.pause_shift(unit, day, day) == 0
    assert ENGLAND.pause_shift(unit, day, day - timedelta(days=3)) == 0
    assert ENGLAND.shift(day, unit, 0) == day


def test_negative_shift_is_refused() -> None:
    """shift only moves due dates later; a negative count is refused, naming it."""
    with pytest.raises(InvalidInput, match="a shift cannot be negative, got -1") as refused:
        ENGLAND.shift(date(2027, 1, 6), "days", -1)
    assert refused.value.field == "count"


# -- construction ------------------------------------------------------------------------------


def test_unknown_calendar_or_zone_is_refused() -> None:
    """A calendar name outside CALENDARS, or a zone IANA does not know, raises InvalidInput."""
    with pytest.raises(InvalidInput) as raised:
        WorkingCalendar("wales", "Europe/London")  # type: ignore[arg-type]
    assert raised.value.field == "calendar"
    with pytest.raises(InvalidInput) as raised:
        WorkingCalendar("scotland", "Europe/Glasgow")
    assert raised.value.field == "timezone"


def test_calendar_is_immutable_and_compares_by_value() -> None:
    """Calendars cannot be changed, and equal configurations are equal and hash alike."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        ENGLAND.name = "scotland"  # type: ignore[misc]
    same = WorkingCalendar("england-and-wales", "Europe/London")
    assert same == ENGLAND
    assert hash(same) == hash(ENGLAND)
    assert same != WorkingCalendar("england-and-wales", "Europe/London", [date(2026, 12, 24)])
    assert ENGLAND.tz.key == "Europe/London"


def test_calendar_for_shares_calendars_without_closures() -> None:
    """calendar_for hands out one instance per (name, zone), and a fresh one with closures."""
    assert calendar_for("scotland", "Europe/London") is calendar_for("scotland", "Europe/London")
    site = calendar_for("scotland", "Europe/London", [date(2026, 12, 24)])
    assert site.closures == frozenset({date(2026, 12, 24)})
    assert not site.is_working_day(date(2026, 12, 24))


# -- properties ------------------------------------------------------------------------------

calendars = st.sampled_from(ALL)
days = st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31))


@given(cal=calendars, start=days, n=st.integers(min_value=0, max_value=400))
def test_add_working_days_lands_on_a_working_day_and_counts_back(
    cal: WorkingCalendar, start: date, n: int
) -> None:
    """For n >= 1 the result is a working day; count_working_days recovers n for every n >= 0."""
    end = cal.add_working_days(start, n)
    if n >= 1:
        assert cal.is_working_day(end)
    assert cal.count_working_days(start, end) == n


@given(cal=calendars, start=days, n=st.integers(min_value=0, max_value=400))
def test_subtract_undoes_add_on_working_days(cal: WorkingCalendar, start: date, n: int) -> None:
    """From a working day, n working days on and n back (or back and on) is the same day."""
    day = start if cal.is_working_day(start) else cal.add_working_days(start, 1)
    assert cal.subtract(cal.add(day, working(n)), working(n)) == day
    assert cal.add(cal.subtract(day, working(n)), working(n)) == day


@given(cal=calendars, start=days, months=st.integers(min_value=0, max_value=240))
def test_month_steps_never_go_back_and_clamp_the_day(
    cal: WorkingCalendar, start: date, months: int
) -> None:
    """add(d, N months) is on or after d and keeps d's day unless the month is shorter."""
    end = cal.add(start, Duration(amount=months, unit="months"))
    assert end >= start
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == months
    assert end.day == min(start.day, stdlib_calendar.monthrange(end.year, end.month)[1])


@given(
    cal=calendars,
    due_on=days,
    unit=st.sampled_from(UNITS),
    count=st.integers(min_value=0, max_value=400),
)
def test_shift_never_moves_a_date_earlier(
    cal: WorkingCalendar, due_on: date, unit: Unit, count: int
) -> None:
    """A shift moves a deadline later by exactly ``count`` of its rule's days, never sooner."""
    shifted = cal.shift(due_on, unit, count)
    assert shifted >= due_on
    if unit != "working_days":
        assert shifted == due_on + timedelta(days=count)
        return
    # Day by day: exactly ``count`` working days lie after due_on up to the new date, which is
    # itself one of them (or due_on itself when nothing was paused).
    between = [due_on + timedelta(days=i) for i in range(1, (shifted - due_on).days + 1)]
    assert sum(cal.is_working_day(d) for d in between) == count
    assert count == 0 or cal.is_working_day(shifted)


@given(cal=calendars, paused_on=days, length=st.integers(min_value=0, max_value=60))
def test_pause_shift_matches_counting_dates_one_by_one(
    cal: WorkingCalendar, paused_on: date, length: int
) -> None:
    """pause_shift counts the paused dates, or the working days among them, as a loop would."""
    resumed_on = paused_on + timedelta(days=length)
    paused = [paused_on + timedelta(days=i) for i in range(length)]
    assert cal.pause_shift("days", paused_on, resumed_on) == len(paused)
    assert cal.pause_shift("working_days", paused_on, resumed_on) == sum(
        cal.is_working_day(d) for d in paused
    )


@given(cal=calendars, day=days)
def test_a_local_date_runs_from_start_of_to_end_of(cal: WorkingCalendar, day: date) -> None:
    """start_of(d) and the last microsecond before end_of(d) both fall on local date d."""
    start, end = cal.start_of(day), cal.end_of(day)
    assert start.utcoffset() == timedelta(0)
    assert cal.local_date(start) == day
    assert cal.local_date(end - timedelta(microseconds=1)) == day
    assert cal.local_date(end) == day + timedelta(days=1)
    assert timedelta(hours=23) <= end - start <= timedelta(hours=25)


def test_every_calendar_name_builds() -> None:
    """Every calendar a pathway may name has a holidays source."""
    for name in CALENDARS:
        assert WorkingCalendar(name, "UTC").is_working_day(date(2026, 6, 3))


def test_the_holidays_floor_is_the_first_release_that_knows_every_proclaimed_day() -> None:
    """pyproject requires holidays>=0.91: older releases silently lack Scotland's 15 June 2026."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    (spec,) = [d for d in dependencies if re.match(r"holidays\b", d)]
    floor = re.fullmatch(r"holidays>=(\d+)\.(\d+)", spec.replace(" ", ""))
    assert floor is not None, spec
    assert (int(floor.group(1)), int(floor.group(2))) >= (0, 91)
    scotland = WorkingCalendar("scotland", "Europe/London")
    assert not scotland.is_working_day(date(2026, 6, 15))
    assert WorkingCalendar("england-and-wales", "Europe/London").is_working_day(date(2026, 6, 15))


# -- "beginning with": the statute's count, worked by hand --------------------------------------


@pytest.mark.parametrize(
    ("start", "amount", "unit", "after", "beginning_with"),
    [
        # 26 weeks beginning with Monday 5 January 2026 end on Sunday 5 July (CA 1989 s.32).
        (date(2026, 1, 5), 26, "weeks", date(2026, 7, 6), date(2026, 7, 5)),
        # 22 days beginning with Wednesday 4 March: the 22nd day counting 4 March is 25 March.
        (date(2026, 3, 4), 22, "days", date(2026, 3, 26), date(2026, 3, 25)),
        # 10 working days from Monday 2 March 2026: after it, Monday 16 March; beginning with
        # it (2-6 and 9-13 March), Friday 13 March.
        (date(2026, 3, 2), 10, "working_days", date(2026, 3, 16), date(2026, 3, 13)),
        # From Saturday 7 March the first working day counted is Monday 9 March either way:
        # 9-13 and 16-20 March.
        (date(2026, 3, 7), 10, "working_days", date(2026, 3, 20), date(2026, 3, 20)),
        # One month beginning with 15 April ends on 14 May.
        (date(2026, 4, 15), 1, "months", date(2026, 5, 15), date(2026, 5, 14)),
    ],
)
def test_after_and_beginning_with_count_as_worked_by_hand(
    start: date, amount: int, unit: Unit, after: date, beginning_with: date
) -> None:
    """'N after' starts counting the next day; 'N beginning with' counts the start day itself."""
    duration = Duration(amount=amount, unit=unit)
    assert ENGLAND.add(start, duration) == after
    assert ENGLAND.add(start, duration, "after") == after
    assert ENGLAND.add(start, duration, "beginning_with") == beginning_with


def test_refusals_say_what_is_wrong() -> None:
    """Bad calendar names, dates, instants and closure names are refused with what and where."""
    with pytest.raises(InvalidInput, match="unknown calendar 'narnia'; expected one of "):
        WorkingCalendar("narnia", "UTC")
    with pytest.raises(InvalidInput, match=r"closures must be a datetime\.date, not str") as bad:
        WorkingCalendar("england-and-wales", "UTC", ["2026-01-01"])  # type: ignore[list-item]
    assert bad.value.field == "closures"
    with pytest.raises(InvalidInput, match="expected a datetime, not date") as naive:
        ENGLAND.local_date(date(2026, 1, 1))  # type: ignore[arg-type]
    assert naive.value.field == "instant"
    with pytest.raises(InvalidInput, match=r"the name of .* must be text, not int"):
        calendar_for("england-and-wales", "UTC", {date(2026, 1, 2): 7})  # type: ignore[dict-item]
