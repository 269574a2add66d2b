"""Working-day arithmetic on a site's local dates: the one place that knows the calendar rules.

A :class:`WorkingCalendar` says which local dates are working days at a site (no weekend, no bank
or state holiday of its calendar, no site closure) and does the date arithmetic the deadline rules
need (PATHWAYS.md, "Rules of the calendar"): N working days, days, weeks or months after or before
a date, how far a pause moves a deadline, and the UTC instants at which a local date starts and
ends. It is pure: no clock, no database, no engine.

Holidays come from the ``holidays`` package, never from lists typed in here:

* ``england-and-wales``: ``GB`` subdivision ``ENG``. The package builds ``ENG`` and ``WLS`` from the
  same code (New Year's Day, Good Friday, Easter Monday, May Day, Spring and Late Summer bank
  holidays, Christmas and Boxing Day), so the two are identical, as gov.uk's single "England and
  Wales" list is.
* ``scotland``: ``GB`` subdivision ``SCT`` (2 January, the first Monday of August and St Andrew's
  Day; no Easter Monday; one-off proclaimed days such as 15 June 2026).
* ``louisiana``: ``US`` subdivision ``LA``: the state holidays, including Mardi Gras, Good Friday
  and Election Day in even years.

Only the package's ``public`` category is used. It is the only category it has for the United
Kingdom, and for the United States it holds the state's legal holidays; the others
(``government``: the federal employees' list, ``half_day``, ``unofficial``: Valentine's Day and the
like) are not days a Louisiana office closes. Substitute days are separate entries named
``"<holiday> (observed)"`` (gov.uk calls them "substitute day"), present because ``observed`` is on
by default. Beyond the package's range (to 2100 for the United Kingdom) a date has no holidays,
only weekends.
"""

from __future__ import annotations

import calendar
import functools
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from nim_workflow._errors import InvalidInput
from nim_workflow._pathway._model import CALENDARS, CalendarName, Counting, Duration, Unit

__all__ = ["WorkingCalendar", "calendar_for"]

_ONE_DAY = timedelta(days=1)
_SATURDAY = 5
_WEEKEND_NAMES = {5: "Saturday", 6: "Sunday"}

#: ``(country, subdivision)`` in the ``holidays`` package for each calendar a pathway may name.
_SOURCES: Mapping[CalendarName, tuple[str, str]] = MappingProxyType(
    {
        "england-and-wales": ("GB", "ENG"),
        "scotland": ("GB", "SCT"),
        "louisiana": ("US", "LA"),
    }
)


@functools.lru_cache(maxsize=1024)
def _holidays_in(name: CalendarName, year: int) -> Mapping[date, str]:
    """The holidays of calendar ``name`` that fall in ``year`` (weekend ones included), by date.

    A plain read-only snapshot rather than the package's object: that object, with its default
    ``expand=True``, populates a missing year inside ``in`` and ``get``, so lookups would mutate a
    dict other threads may be reading, and it grows without bound. Here each year is built once,
    with ``expand=False``, and cached; the cache is a pure function of its arguments, so sharing it
    between calendars (and engines) is invisible to them.

    The neighbouring years are populated too and filtered, because a holiday's substitute can
    land in another year (in the United States, a New Year's Day on a Saturday is observed on the
    31 December before), and which year's run emits it is the package's business, not ours.
    """
    country, subdivision = _SOURCES[name]
    source = holidays.country_holidays(
        country,
        subdiv=subdivision,
        years=range(year - 1, year + 2),
        expand=False,
        categories="public",
    )
    return MappingProxyType({day: title for day, title in source.items() if day.year == year})


def _weekdays_through(day: date) -> int:
    """How many Monday-to-Friday dates there are from 1 January of year 1 up to ``day``."""
    # Ordinal 1 (1 January of year 1) is a Monday, so each run of 7 ordinals holds 5 weekdays.
    weeks, rest = divmod(day.toordinal(), 7)
    return weeks * 5 + min(rest, 5)


def _add_months(day: date, months: int) -> date:
    """``day`` moved by whole calendar months, clamped to the last day of a shorter month."""
    year, month_index = divmod(day.year * 12 + day.month - 1 + months, 12)
    month = month_index + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _check_date(value: object, field_name: str) -> date:
    # A datetime is a date subclass; letting one in would silently drop its time and zone.
    if not isinstance(value, date) or isinstance(value, datetime):
        raise InvalidInput(
            f"{field_name} must be a datetime.date, not {type(value).__name__}", field=field_name
        )
    return value


def _check_names(closures: Mapping[date, str]) -> dict[date, str]:
    for day, name in closures.items():
        if not isinstance(name, str):
            raise InvalidInput(
                f"closures: the name of {day!r} must be text, not {type(name).__name__}",
                field="closures",
            )
    return dict(closures)


@dataclass(frozen=True, slots=True, init=False)
class WorkingCalendar:
    """The working days of one site: a named holiday calendar, a time zone and closure days.

    Immutable and cheap to share. Equal calendars (same name, zone, closures with their names, and
    label) compare and hash equal. Dates given and returned are the site's local dates; instants
    are aware. ``closures`` may be a mapping from each date to its name ("Lundi Gras"); a closure
    without a name is called ``closure_label``.
    """

    name: CalendarName
    timezone: str
    closures: frozenset[date]
    closure_label: str
    # The closures that have a name, sorted: compared and hashed with the rest.
    _closure_names: tuple[tuple[date, str], ...] = field(repr=False)
    _name_of: Mapping[date, str] = field(compare=False, repr=False)
    _tz: ZoneInfo = field(compare=False, repr=False)
    # Per year, the sorted Monday-to-Friday dates that are not working days (holidays and
    # closures); filled lazily, so the frozen object only ever gains memoised facts.
    _blocked: dict[int, tuple[date, ...]] = field(compare=False, repr=False)

    def __init__(
        self,
        name: CalendarName,
        timezone: str,
        closures: Iterable[date] | Mapping[date, str] = (),
        closure_label: str = "site closure",
    ) -> None:
        """Build the calendar; raise :class:`InvalidInput` for an unknown name or zone."""
        if name not in CALENDARS:
            raise InvalidInput(
                f"unknown calendar {name!r}; expected one of {', '.join(CALENDARS)}",
                field="calendar",
            )
        try:
            tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as error:
            raise InvalidInput(
                f"unknown time zone {timezone!r}; expected an IANA name such as Europe/London",
                field="timezone",
            ) from error
        closed = frozenset(_check_date(day, "closures") for day in closures)
        names = _check_names(closures) if isinstance(closures, Mapping) else {}
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "timezone", timezone)
        object.__setattr__(self, "closures", closed)
        object.__setattr__(self, "closure_label", closure_label)
        object.__setattr__(self, "_closure_names", tuple(sorted(names.items())))
        object.__setattr__(self, "_name_of", MappingProxyType(names))
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_blocked", {})

    @property
    def tz(self) -> ZoneInfo:
        """The site's time zone."""
        return self._tz

    # -- which days work -------------------------------------------------------------------

    def is_working_day(self, day: date) -> bool:
        """Whether ``day`` is neither a weekend day, nor a holiday, nor a site closure."""
        return (
            day.weekday() < _SATURDAY
            and day not in _holidays_in(self.name, day.year)
            and day not in self.closures
        )

    def non_working_reason(self, day: date) -> str | None:
        """Why ``day`` is not a working day, or ``None`` if it is one.

        The holiday's name wins over the closure's name (or label), which wins over the weekday
        name, so a Boxing Day that falls on a Saturday reads "Boxing Day".
        """
        holiday = _holidays_in(self.name, day.year).get(day)
        if holiday is not None:
            return holiday
        if day in self.closures:
            return self._name_of.get(day, self.closure_label)
        return _WEEKEND_NAMES.get(day.weekday())

    def _blocked_reason(self, day: date) -> str:
        """The holiday name or closure name (or label) of a date known to be one or the other."""
        return _holidays_in(self.name, day.year).get(day) or self._name_of.get(
            day, self.closure_label
        )

    def _blocked_weekdays(self, year: int) -> tuple[date, ...]:
        blocked = self._blocked.get(year)
        if blocked is None:
            days = set(_holidays_in(self.name, year)).union(
                day for day in self.closures if day.year == year
            )
            blocked = tuple(sorted(day for day in days if day.weekday() < _SATURDAY))
            self._blocked[year] = blocked
        return blocked

    def _blocked_between(self, after: date, through: date) -> list[date]:
        """The non-working weekdays ``d`` with ``after < d <= through``, in order."""
        found: list[date] = []
        for year in range(after.year, through.year + 1):
            blocked = self._blocked_weekdays(year)
            found.extend(blocked[bisect_right(blocked, after) : bisect_right(blocked, through)])
        return found

    def skipped(self, start: date, end: date) -> list[tuple[date, str]]:
        """The holidays and closures ``d`` with ``start < d <= end`` that cost a working day.

        Weekend days are left out, even a holiday that falls on one: it was not a working day
        anyway, and its substitute day (which is listed) is what moved a due date.
        """
        return [(day, self._blocked_reason(day)) for day in self._blocked_between(start, end)]

    # -- counting --------------------------------------------------------------------------

    def count_working_days(self, start: date, end: date) -> int:
        """The number of working days ``d`` with ``start < d <= end``; 0 if ``end <= start``.

        ``count_working_days(d, add_working_days(d, n)) == n`` for every ``n >= 0``.
        """
        if end <= start:
            return 0
        weekdays = _weekdays_through(end) - _weekdays_through(start)
        return weekdays - len(self._blocked_between(start, end))

    def working_days_in(self, first: date, stop: date) -> int:
        """The number of working days ``d`` with ``first <= d < stop`` (the dates of a pause)."""
        if stop <= first:
            return 0
        return self.count_working_days(first - _ONE_DAY, stop - _ONE_DAY)

    # -- arithmetic ------------------------------------------------------------------------

    def add_working_days(self, start: date, n: int) -> date:
        """The ``n``-th working day after ``start`` (``start`` is day 0); before it if ``n < 0``."""
        step = _ONE_DAY if n >= 0 else -_ONE_DAY
        remaining = abs(n)
        day = start
        while remaining:
            day += step
            if self.is_working_day(day):
                remaining -= 1
        return day

    def add(self, start: date, duration: Duration, counting: Counting = "after") -> date:
        """The local date ``duration`` after ``start``, per the rules of the calendar.

        Working days skip weekends, holidays and closures; days and weeks are plain calendar
        arithmetic (so a weeks deadline may fall on a holiday); months step whole calendar months,
        and from the 29th, 30th or 31st land on the last day of a shorter month.

        ``counting="beginning_with"`` is the statute's "N beginning with ``start``": ``start`` is
        day 1, so the last day is one day earlier than "after" (26 weeks beginning with Monday
        5 January 2026 end on Sunday 5 July). For working days it is the Nth working day counting
        ``start`` itself when ``start`` is one.
        """
        if counting == "after":
            return self._move(start, duration.unit, duration.amount)
        if duration.unit == "working_days":
            return self.add_working_days(start - _ONE_DAY, duration.amount)
        return self._move(start, duration.unit, duration.amount) - _ONE_DAY

    def subtract(self, end: date, duration: Duration) -> date:
        """The local date ``duration`` before ``end`` ("10 working days before the due date")."""
        return self._move(end, duration.unit, -duration.amount)

    def _move(self, day: date, unit: Unit, amount: int) -> date:
        match unit:
            case "working_days":
                return self.add_working_days(day, amount)
            case "days":
                return day + timedelta(days=amount)
            case "weeks":
                return day + timedelta(weeks=amount)
            case "months":
                return _add_months(day, amount)
        raise InvalidInput(f"unknown unit {unit!r}", field="unit")  # pragma: no cover

    # -- pauses ----------------------------------------------------------------------------

    def pause_shift(self, unit: Unit, paused_on: date, resumed_on: date) -> int:
        """How far a pause moves an open deadline whose rule is in ``unit``.

        The paused dates are ``paused_on`` up to, not including, ``resumed_on``: their count for
        days, weeks and months rules, the working days among them for working-day rules. A pause
        and resume on the same date (or a resume dated earlier) moves nothing.
        """
        if resumed_on <= paused_on:
            return 0
        if unit == "working_days":
            return self.working_days_in(paused_on, resumed_on)
        return (resumed_on - paused_on).days

    def shift(self, due_on: date, unit: Unit, count: int) -> date:
        """``due_on`` moved later by ``count`` (from :meth:`pause_shift`) in the rule's terms.

        Calendar days for days, weeks and months rules; working days for working-day rules.
        """
        if count < 0:
            raise InvalidInput(f"a shift cannot be negative, got {count}", field="count")
        if unit == "working_days":
            return self.add_working_days(due_on, count)
        return due_on + timedelta(days=count)

    # -- local dates and instants ----------------------------------------------------------

    def local_date(self, instant: datetime) -> date:
        """The site's local date at ``instant``; raise :class:`InvalidInput` if it is naive."""
        if not isinstance(instant, datetime):
            raise InvalidInput(
                f"expected a datetime, not {type(instant).__name__}", field="instant"
            )
        if instant.utcoffset() is None:
            raise InvalidInput(
                f"naive datetime {instant.isoformat()}: give an aware datetime (e.g. in UTC)",
                field="instant",
            )
        return instant.astimezone(self._tz).date()

    def start_of(self, day: date) -> datetime:
        """The UTC instant at which the local date ``day`` begins."""
        # fold=0 also covers zones whose clocks jump at midnight: a midnight that does not exist
        # is read with the offset before the jump, which is exactly the instant the day starts;
        # a midnight that happens twice is read as its first occurrence.
        local_midnight = datetime.combine(day, time(0), tzinfo=self._tz)
        return local_midnight.astimezone(UTC)

    def end_of(self, day: date) -> datetime:
        """The UTC instant at which ``day`` ends (the start of the next local date).

        A deadline due on ``day`` is missed at this instant. Across a daylight-saving change the
        day is 23 or 25 hours long, so this is not ``start_of(day) + 24 hours``.
        """
        return self.start_of(day + _ONE_DAY)


@functools.lru_cache(maxsize=64)
def _shared_calendar(name: CalendarName, timezone: str) -> WorkingCalendar:
    return WorkingCalendar(name, timezone)


def calendar_for(
    name: CalendarName,
    timezone: str,
    closures: Iterable[date] | Mapping[date, str] = (),
    closure_label: str = "site closure",
) -> WorkingCalendar:
    """The calendar for a pathway's ``calendar`` and ``timezone``, plus a site's closures.

    ``closures`` are dates, or a mapping from each date to its name. Without closures the same
    immutable instance is handed out every time.
    """
    closed: Iterable[date] | Mapping[date, str] = (
        dict(closures) if isinstance(closures, Mapping) else tuple(closures)
    )
    if not closed and closure_label == "site closure":
        return _shared_calendar(name, timezone)
    return WorkingCalendar(name, timezone, closed, closure_label)
