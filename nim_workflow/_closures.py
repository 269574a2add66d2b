"""Site closures shipped as data: read a site's closure file and expand its rules into dates.

A site may close on days its pathway's holiday calendar does not know: Glasgow's council holidays,
the Jefferson Parish court closures (PATHWAYS.md, "Rules of the calendar"). They are data a site
ships beside the pathway, one YAML file per site in ``pathways/closures/`` (inside a wheel,
``nim_workflow/_bundled/closures/``), never code::

    site: jefferson-parish        # the site id cases are opened at
    calendar: louisiana           # the pathway calendar the file is meant for
    title: 24th Judicial District Court (Jefferson Parish) closures
    closures:
      - {name: Lundi Gras, easter: -48}
      - {name: Day after Thanksgiving, month: 11, weekday: thursday, nth: 4, offset: 1}

Movable feasts recur, so each closure is a small rule, not dates typed per year. Every entry has a
``name`` and exactly one rule, plus an optional ``offset``:

* ``{date: 2026-06-15}``: once, on that date.
* ``{month: 12, day: 24}``: every year on that day (29 February: in leap years only).
* ``{easter: -48}``: every year, that many days from Western Easter Sunday.
* ``{month: 7, weekday: monday, nth: 3}``: every year, the nth such weekday of the month; ``nth``
  is 1 to 5, or -1 to -5 counting from the end of the month. A 5th the month lacks closes nothing.
* ``offset: N`` (-366 to 366): N days added after the rule.

Loading is the pathway loader's pipeline, and reuses its parse step (lines kept; tags, aliases
and duplicate keys refused): every problem in a file, or across the bundled files, is reported at
once as a :class:`PathwayError` naming file, line and field. Rules expand to the dates of the years
2000 to 2100, the range the ``holidays`` package covers for the United Kingdom.
"""

from __future__ import annotations

import calendar
import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TypeVar

# python-dateutil is the library the holidays package computes its own Easter-based holidays
# with, so a site's closures and the bank holidays agree on the date of Easter.
from dateutil.easter import easter as _dateutil_easter

from nim_workflow._errors import PathwayError, Problem
from nim_workflow._pathway._bundled import _bundled_dir
from nim_workflow._pathway._loader import _BROKEN, DOCUMENT, FILE, _kind, _Node, _parse
from nim_workflow._pathway._model import CALENDARS, CalendarName

__all__ = [
    "CLOSURE_YEARS",
    "ClosureRule",
    "SiteClosures",
    "bundled_closures",
    "expand",
    "load_closure_folder",
    "load_closures",
    "load_closures_text",
]

#: The years rules are expanded for unless a caller asks for others.
CLOSURE_YEARS = range(2000, 2101)

_SUFFIX = ".yaml"
_FOLDER = "closures"
_TOP_KEYS = ("site", "calendar", "title", "closures")
_RULE_KEYS = ("name", "date", "month", "day", "weekday", "nth", "easter", "offset")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: The furthest an ``offset`` or ``easter`` may move a date: beyond a year it is a typo.
_MAX_SHIFT = 366
_RULE_SHAPES = "date, month with day, month with weekday and nth, or easter"
_NTH_RANGE = "1 to 5 (the 3rd Monday: 3) or -1 to -5 (counting from the month's end; -1: the last)"
_V = TypeVar("_V")


def _easter(year: int) -> date:
    """Western Easter Sunday of ``year``."""
    sunday: date = _dateutil_easter(year)
    return sunday


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosureRule:
    """One closure entry of a file: its name and rule. Exactly one of the rule forms is set.

    ``on`` (a one-off date), ``month`` with ``day``, ``month`` with ``weekday`` (0 is Monday) and
    ``nth``, or ``easter`` (days from Western Easter Sunday); ``offset`` days are added after.
    ``line`` is where the entry is in its file.
    """

    name: str
    line: int
    on: date | None = None
    month: int | None = None
    day: int | None = None
    weekday: int | None = None
    nth: int | None = None
    easter: int | None = None
    offset: int = 0

    def dates(self, years: Iterable[int] = CLOSURE_YEARS) -> Iterator[date]:
        """The dates this rule closes whose year is one of ``years``, in order."""
        wanted = sorted(set(years))
        if not wanted:
            return
        if self.on is not None:
            bases: Iterable[date | None] = [self.on]
        else:
            # An offset can carry a date over New Year, so the years either side are looked at.
            low, high = max(wanted[0] - 1, 1), min(wanted[-1] + 1, 9999)
            bases = (self._base(year) for year in range(low, high + 1))
        keep = frozenset(wanted)
        for base in bases:
            if base is None:
                continue
            try:
                day = base + timedelta(days=self.offset)
            except OverflowError:
                continue
            if day.year in keep:
                yield day

    def _base(self, year: int) -> date | None:
        """The rule's date in ``year`` before the offset, or ``None`` if it has none that year."""
        if self.easter is not None:
            try:
                return _easter(year) + timedelta(days=self.easter)
            except (OverflowError, ValueError):  # a year dateutil or date cannot reach
                return None
        if self.month is None:  # pragma: no cover - a checked rule always has a form
            return None
        length = calendar.monthrange(year, self.month)[1]
        if self.day is not None:
            return date(year, self.month, self.day) if self.day <= length else None
        if self.weekday is None or self.nth is None:  # pragma: no cover - checked on loading
            return None
        if self.nth > 0:
            first = date(year, self.month, 1).weekday()
            number = 1 + (self.weekday - first) % 7 + 7 * (self.nth - 1)
        else:
            last = date(year, self.month, length).weekday()
            number = length - (last - self.weekday) % 7 - 7 * (-self.nth - 1)
        return date(year, self.month, number) if 1 <= number <= length else None


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteClosures:
    """A site's closures: the file they came from, its rules, and the dates they close.

    ``days`` holds each closed date once, in order, with its name (the names of rules that close
    the same date are joined with " and ").
    """

    site: str
    calendar: CalendarName
    title: str
    source: str
    rules: tuple[ClosureRule, ...]
    days: tuple[tuple[date, str], ...]

    @property
    def dates(self) -> frozenset[date]:
        """The closed dates."""
        return frozenset(day for day, _ in self.days)

    @property
    def names(self) -> dict[date, str]:
        """Each closed date with its name (a fresh dict)."""
        return dict(self.days)


def expand(rules: Iterable[ClosureRule], years: Iterable[int] = CLOSURE_YEARS) -> dict[date, str]:
    """The dates ``rules`` close in ``years``, in order, each with its name."""
    wanted = tuple(years)
    named: dict[date, list[str]] = {}
    for rule in rules:
        for day in rule.dates(wanted):
            names = named.setdefault(day, [])
            if rule.name not in names:
                names.append(rule.name)
    return {day: " and ".join(named[day]) for day in sorted(named)}


# --- loading -------------------------------------------------------------------------------------


def load_closures(
    path: str | os.PathLike[str], years: Iterable[int] = CLOSURE_YEARS
) -> SiteClosures:
    """Load and check the closure file at ``path`` and expand its rules for ``years``.

    Raises :class:`PathwayError` listing every problem in the file, in file order; a file that
    cannot be read is one problem with no line.
    """
    source = os.fspath(path)
    problems: list[Problem] = []
    read = _read(Path(source), source, problems)
    closures = None if read is None else _check(read, source, problems, years)
    if problems or closures is None:
        raise PathwayError(_in_order(problems))
    return closures[0]


def load_closures_text(
    text: str, source: str = "<string>", years: Iterable[int] = CLOSURE_YEARS
) -> SiteClosures:
    """Check a closure file given as YAML text; ``source`` names it in problems."""
    problems: list[Problem] = []
    closures = _check(text, source, problems, years)
    if problems or closures is None:
        raise PathwayError(_in_order(problems))
    return closures[0]


def load_closure_folder(
    folder: Traversable | str | os.PathLike[str], years: Iterable[int] = CLOSURE_YEARS
) -> dict[str, SiteClosures]:
    """Every ``*.yaml`` closure file directly in ``folder``, keyed by site.

    A missing folder holds no closures. Raises :class:`PathwayError` listing every problem in every
    file, a site given by two files among them.
    """
    wanted = tuple(years)
    return load_folder(
        folder,
        lambda text, source, _where, problems: _check(text, source, problems, wanted),
        key=lambda closures: closures.site,
        duplicate=lambda closures, first: f"site {closures.site!r} already has closures in {first}",
    )


_Item = TypeVar("_Item")


def load_folder(
    folder: Traversable | str | os.PathLike[str],
    check: Callable[[str, str, Traversable | Path, list[Problem]], tuple[_Item, int] | None],
    *,
    key: Callable[[_Item], str],
    duplicate: Callable[[_Item, str], str],
) -> dict[str, _Item]:
    """Every ``*.yaml`` file directly in ``folder``, checked by ``check`` and keyed by ``key``.

    ``check(text, source, folder, problems)`` returns the item and the line of its key, or
    ``None``; a second file with the same key is a problem at that line, worded by
    ``duplicate(item, first_source)``. A missing folder holds nothing. Raises
    :class:`PathwayError` listing every problem in every file. Closure and site folders share it.
    """
    where = folder if isinstance(folder, Traversable) else Path(folder)
    if not where.is_dir():
        return {}
    entries = sorted(
        (entry for entry in where.iterdir() if entry.name.endswith(_SUFFIX) and entry.is_file()),
        key=lambda entry: entry.name,
    )
    found: dict[str, _Item] = {}
    problems: list[Problem] = []
    for entry in entries:
        source = str(entry)
        mine: list[Problem] = []
        text = _read(entry, source, mine)
        checked = None if text is None else check(text, source, where, mine)
        if checked is not None and not mine:
            item, key_line = checked
            first = found.get(key(item))
            if first is None:
                found[key(item)] = item
            else:
                mine.append(
                    Problem(
                        file=source,
                        line=key_line,
                        field="site",
                        message=duplicate(item, str(getattr(first, "source", ""))),
                    )
                )
        problems.extend(_in_order(mine))
    if problems:
        raise PathwayError(problems)
    return found


@functools.cache
def _bundled() -> dict[str, SiteClosures]:
    return load_closure_folder(_bundled_dir() / _FOLDER)


def bundled_closures() -> dict[str, SiteClosures]:
    """The closures bundled with the library (``pathways/closures/``), keyed by site.

    Loaded once per process; the dict is fresh on each call. Raises :class:`PathwayError` if a
    bundled file is invalid.
    """
    return dict(_bundled())


def _in_order(problems: list[Problem]) -> list[Problem]:
    # Stable: problems found on one line keep the order they were found in.
    return sorted(problems, key=lambda problem: problem.line or 0)


def _read(entry: Traversable, source: str, problems: list[Problem]) -> str | None:
    """The file's text, or ``None`` with the problem reported when it cannot be read as UTF-8."""
    try:
        data = entry.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        problems.append(Problem(source, None, FILE, f"cannot read it: {reason}"))
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.append(Problem(source, line, DOCUMENT, "is not UTF-8 text"))
        return None


def _check(
    text: str, source: str, problems: list[Problem], years: Iterable[int]
) -> tuple[SiteClosures, int] | None:
    """Parse and check one file: its closures and the line of its ``site``, or ``None``."""
    before = len(problems)
    root = _parse(text, source, problems)
    if root is None:
        last = problems[-1] if len(problems) > before else None
        if last is not None and last.message.startswith("is empty"):
            # The parse step speaks of pathway files; say what a closure file holds instead.
            problems[-1] = Problem(
                source,
                last.line,
                DOCUMENT,
                f"is empty; a closure file is a mapping with the keys {', '.join(_TOP_KEYS)}",
            )
        return None
    return _Checker(source, problems).site_closures(root, years)


class _Checker:
    """Reads the :class:`_Node` tree of one closure file, reporting every problem it finds.

    Each reader reports what is wrong with its node and returns ``None``; callers carry on with the
    rest, so one run finds every problem.
    """

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self._source = source
        self._problems = problems

    def _bad(self, node: _Node, message: str) -> None:
        self._problems.append(Problem(self._source, node.line, node.field, message))

    def _mapping(
        self, node: _Node, allowed: tuple[str, ...], required: tuple[str, ...]
    ) -> dict[str, _Node] | None:
        if not isinstance(node.value, dict):
            if node.value is not _BROKEN:
                self._bad(node, f"must be a mapping, not {_kind(node)}")
            return None
        entries = node.value
        for key, child in entries.items():
            if key not in allowed:
                self._bad(child, f"unknown key {key!r}; expected one of {', '.join(allowed)}")
        for key in required:
            if key not in entries:
                field = f"{node.path}.{key}" if node.path else key
                self._problems.append(Problem(self._source, node.line, field, "is missing"))
        return {key: child for key, child in entries.items() if key in allowed}

    def _string(self, node: _Node) -> str | None:
        if isinstance(node.value, str):
            if node.value.strip():
                return node.value
            self._bad(node, "must not be empty")
        elif isinstance(node.value, bool | int | float):
            self._bad(node, f"must be text, not {_kind(node)} (quote it if you meant text)")
        elif node.value is not _BROKEN:
            self._bad(node, f"must be text, not {_kind(node)}")
        return None

    def _int(self, node: _Node, low: int, high: int) -> int | None:
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool):
            if low <= value <= high:
                return value
            self._bad(node, f"must be from {low} to {high}, not {value}")
        elif value is not _BROKEN:
            self._bad(node, f"must be a whole number from {low} to {high}, not {_kind(node)}")
        return None

    # The file.

    def site_closures(self, root: _Node, years: Iterable[int]) -> tuple[SiteClosures, int] | None:
        """Check the whole file; its closures and the line of ``site``, or ``None``."""
        before = len(self._problems)
        top = self._mapping(root, _TOP_KEYS, _TOP_KEYS)
        if top is None:
            return None
        site = self._string(top["site"]) if "site" in top else None
        title = self._string(top["title"]) if "title" in top else None
        named = self._calendar(top["calendar"]) if "calendar" in top else None
        rules = self._rules(top["closures"]) if "closures" in top else None
        if (
            len(self._problems) > before
            or site is None
            or title is None
            or named is None
            or rules is None
        ):
            return None
        closures = SiteClosures(
            site=site,
            calendar=named,
            title=title,
            source=self._source,
            rules=rules,
            days=tuple(expand(rules, years).items()),
        )
        return closures, top["site"].line

    def _calendar(self, node: _Node) -> CalendarName | None:
        name = self._string(node)
        if name is None:
            return None
        for known in CALENDARS:
            if name == known:
                return known
        self._bad(node, f"unknown calendar {name!r}; expected one of {', '.join(CALENDARS)}")
        return None

    def _rules(self, node: _Node) -> tuple[ClosureRule, ...] | None:
        # An empty list is allowed: a site may keep a file with nothing in it yet.
        if not isinstance(node.value, list):
            if node.value is not _BROKEN:
                self._bad(node, f"must be a list, not {_kind(node)}")
            return None
        rules = [self._rule(item) for item in node.value]
        return None if None in rules else tuple(rule for rule in rules if rule is not None)

    # One entry.

    def _rule(self, node: _Node) -> ClosureRule | None:
        before = len(self._problems)
        entries = self._mapping(node, _RULE_KEYS, ("name",))
        if entries is None:
            return None

        def read(key: str, reader: Callable[[_Node], _V | None]) -> _V | None:
            child = entries.get(key)
            return None if child is None else reader(child)

        name = read("name", self._string)
        on = read("date", self._date)
        month = read("month", lambda n: self._int(n, 1, 12))
        day = read("day", lambda n: self._int(n, 1, 31))
        weekday = read("weekday", self._weekday)
        nth = read("nth", self._nth)
        easter = read("easter", lambda n: self._int(n, -_MAX_SHIFT, _MAX_SHIFT))
        offset = read("offset", lambda n: self._int(n, -_MAX_SHIFT, _MAX_SHIFT))
        # Checked against a leap year: 29 February is a date, in the years that have one.
        if month is not None and day is not None and day > calendar.monthrange(2000, month)[1]:
            self._bad(
                entries["day"],
                f"{day} {calendar.month_name[month]} is not a date in any year",
            )
        self._check_shape(node, entries)
        if len(self._problems) > before or name is None:
            return None
        return ClosureRule(
            name=name,
            line=node.line,
            on=on,
            month=month,
            day=day,
            weekday=weekday,
            nth=nth,
            easter=easter,
            offset=offset or 0,
        )

    def _check_shape(self, node: _Node, entries: Mapping[str, _Node]) -> None:
        """Report an entry that is not exactly one rule form."""
        given = [
            key for key in ("date", "month", "day", "weekday", "nth", "easter") if key in entries
        ]
        if "date" in entries or "easter" in entries:
            lead = "date" if "date" in entries else "easter"
            others = [key for key in given if key != lead]
            if others:
                self._bad(
                    node,
                    f"{lead} cannot be combined with {' and '.join(others)}; a rule is one of "
                    f"{_RULE_SHAPES}",
                )
        elif "month" in entries:
            if "day" in entries and ("weekday" in entries or "nth" in entries):
                self._bad(node, "give month with day, or month with weekday and nth, not both")
            elif "day" not in entries and "weekday" not in entries and "nth" not in entries:
                self._bad(node, "month needs a day, or a weekday and nth (the 3rd Monday: 3)")
            elif "day" not in entries and "nth" not in entries:
                self._bad(node, "weekday needs nth: which one of the month (1 to 5, -1 the last)")
            elif "day" not in entries and "weekday" not in entries:
                self._bad(node, "nth needs a weekday (monday to sunday)")
        elif given:
            verb = "needs" if len(given) == 1 else "need"
            self._bad(
                node, f"{' and '.join(given)} {verb} a month; a rule is one of {_RULE_SHAPES}"
            )
        else:
            self._bad(node, f"needs a rule: {_RULE_SHAPES}")

    def _date(self, node: _Node) -> date | None:
        # A date-like scalar reaches here as its text: the parse step never builds timestamps.
        if isinstance(node.value, str) and _ISO_DATE.fullmatch(node.value):
            try:
                return date.fromisoformat(node.value)
            except ValueError:
                self._bad(node, f"{node.value} is not a date in the calendar")
                return None
        if node.value is not _BROKEN:
            self._bad(node, f"must be a date written YYYY-MM-DD, not {_kind(node)}")
        return None

    def _weekday(self, node: _Node) -> int | None:
        name = self._string(node)
        if name is None:
            return None
        if name in _WEEKDAYS:
            return _WEEKDAYS.index(name)
        self._bad(node, f"unknown weekday {name!r}; expected one of {', '.join(_WEEKDAYS)}")
        return None

    def _nth(self, node: _Node) -> int | None:
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool):
            if value != 0 and -5 <= value <= 5:
                return value
            self._bad(node, f"must be {_NTH_RANGE}, not {value}")
        elif value is not _BROKEN:
            self._bad(node, f"must be a whole number, {_NTH_RANGE}, not {_kind(node)}")
        return None
