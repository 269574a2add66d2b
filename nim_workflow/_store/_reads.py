"""The read side's SQL: listing statements built once, and the bulk reads behind the report.

The engine's listings (``cases``, ``due``, ``overdue``, ``history``) run statements built here at
import, with bound parameters, so a call only binds values. The coordinator's report reads every
site (or one) and the command line's ``cases`` listing reads the stays it shows with one
statement per table instead of one per case: :func:`read_sites` and :func:`read_histories`.

Open deadlines are selected with the literal ``status = 'open'``, the predicate of the partial
indexes on ``nimwf_deadlines`` (migration 0005): a planner can only use a partial index when it
can see the query implies the index's condition, which a bound parameter would hide from it.

Nothing here writes. Pathways and calendars come through a :class:`Resolver`, which asks the
engine once per pathway version (and site) per read rather than once per row.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Dialect

from nim_workflow._calendar import WorkingCalendar
from nim_workflow._deadlines import CaseClock
from nim_workflow._pathway._model import Pathway
from nim_workflow._store._schema import UTCDateTime, cases, deadlines, pauses, stage_intervals
from nim_workflow._values import StageInterval

__all__ = [
    "HISTORY",
    "OPEN",
    "PAUSES",
    "Resolver",
    "SiteRead",
    "Stay",
    "WorkingDayCounter",
    "cases_query",
    "open_deadlines_query",
    "read_histories",
    "read_sites",
    "stage_interval",
    "working_days",
]

#: ``status = 'open'`` with the literal the partial indexes name (not a bound parameter).
OPEN = deadlines.c.status == sa.literal_column("'open'")

_first = itemgetter(0)


# -- listings ---------------------------------------------------------------------------------


def _cases_statement(
    by_site: bool, by_stage: bool, open_only: bool, by_worker: bool
) -> sa.Select[Any]:
    query = sa.select(cases).order_by(cases.c.opened_at, cases.c.reference)
    if by_site:
        query = query.where(cases.c.site == sa.bindparam("site"))
    if by_stage:
        query = query.where(cases.c.stage == sa.bindparam("stage"))
    if by_worker:
        query = query.where(cases.c.worker == sa.bindparam("worker"))
    if open_only:
        query = query.where(cases.c.closed_at.is_(None))
    return query


_CASES = {key: _cases_statement(*key) for key in itertools.product((False, True), repeat=4)}


def cases_query(
    site: str | None, stage: str | None, open_only: bool, worker: str | None = None
) -> tuple[sa.Select[Any], dict[str, str]]:
    """``Engine.cases``' statement for these filters, and its parameters."""
    given = {"site": site, "stage": stage, "worker": worker}
    params = {name: value for name, value in given.items() if value is not None}
    key = (site is not None, stage is not None, open_only, worker is not None)
    return _CASES[key], params


#: The open cases' holders and stages, for caseloads (``Engine.caseloads``), everywhere or at
#: one site (``site`` bound).
OPEN_CASELOAD = {
    by_site: (
        sa.select(cases.c.reference, cases.c.site, cases.c.worker, cases.c.stage, cases.c.paused_at)
        .where(cases.c.closed_at.is_(None))
        .where(cases.c.site == sa.bindparam("site") if by_site else sa.true())
        .order_by(cases.c.site, cases.c.worker, cases.c.reference)
    )
    for by_site in (False, True)
}


def _open_deadlines_statement(inclusive: bool, by_site: bool, after: bool) -> sa.Select[Any]:
    limit = sa.bindparam("limit", type_=deadlines.c.due_at.type)
    query = (
        sa.select(deadlines, cases.c.pathway_id, cases.c.pathway_version)
        .join(cases, cases.c.reference == deadlines.c.reference)
        .where(OPEN, deadlines.c.due_at <= limit if inclusive else deadlines.c.due_at < limit)
    )
    if after:
        query = query.where(
            deadlines.c.due_at > sa.bindparam("after", type_=deadlines.c.due_at.type)
        )
    if by_site:
        query = query.where(deadlines.c.site == sa.bindparam("site"))
    return query.order_by(deadlines.c.due_at, deadlines.c.reference, deadlines.c.id)


_OPEN_DEADLINES = {
    (inclusive, by_site, after): _open_deadlines_statement(inclusive, by_site, after)
    for inclusive in (False, True)
    for by_site in (False, True)
    for after in (False, True)
}


def open_deadlines_query(
    *,
    limit: dt.datetime,
    inclusive: bool,
    site: str | None,
    after: dt.datetime | None = None,
) -> tuple[sa.Select[Any], dict[str, Any]]:
    """Open deadlines due before ``limit`` (or at it, if ``inclusive``), soonest first.

    With ``after``, only those due after that instant: not yet overdue at it.
    Ordered by due instant, reference and id: the order of the partial indexes, so a listing is
    one range scan. Each row carries its case's pathway id and version.
    """
    params: dict[str, Any] = {"limit": limit}
    if site is not None:
        params["site"] = site
    if after is not None:
        params["after"] = after
    return _OPEN_DEADLINES[(inclusive, site is not None, after is not None)], params


#: One case's stays, oldest first (``reference`` bound).
HISTORY = (
    sa.select(stage_intervals)
    .where(stage_intervals.c.reference == sa.bindparam("reference"))
    .order_by(stage_intervals.c.id)
)

#: One case's pauses, oldest first (``reference`` bound).
PAUSES = (
    sa.select(pauses.c.paused_at, pauses.c.resumed_at)
    .where(pauses.c.reference == sa.bindparam("reference"))
    .order_by(pauses.c.id)
)

#: The case that changed last (``updated_at``: actions, not refusals or alarms), anywhere or at a
#: site; ``site`` bound in the second.
LATEST_CHANGE = {
    by_site: (
        sa.select(cases.c.reference, cases.c.updated_at)
        .where(cases.c.updated_at.is_not(None))
        .where(cases.c.site == sa.bindparam("site") if by_site else sa.true())
        .order_by(cases.c.updated_at.desc(), cases.c.reference)
        .limit(1)
    )
    for by_site in (False, True)
}

#: Every pause of every case, or of one site's cases (``site`` bound), oldest first per case.
ALL_PAUSES = {
    by_site: (
        sa.select(pauses.c.reference, pauses.c.paused_at, pauses.c.resumed_at)
        .join(cases, cases.c.reference == pauses.c.reference)
        .where(cases.c.site == sa.bindparam("site") if by_site else sa.true())
        .order_by(pauses.c.reference, pauses.c.id)
    )
    for by_site in (False, True)
}

#: Every deadline of every case with its stage, in id order (the report's bulk read, which
#: leaves the stage out, is shaped for the report's own use).
ALL_DEADLINES = sa.select(
    deadlines.c.reference,
    deadlines.c.rule,
    deadlines.c.kind,
    deadlines.c.stage,
    deadlines.c.occurrence,
    deadlines.c.due_on,
    deadlines.c.due_at,
    deadlines.c.status,
    deadlines.c.settled_at,
    deadlines.c.extensions,
).order_by(deadlines.c.id)


def by_reference(rows: Iterable[Any]) -> dict[str, list[Any]]:
    """Rows grouped by their ``reference``, each case's in the order read."""
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row.reference, []).append(row)
    return grouped


def read_pauses(conn: Connection, site: str | None = None) -> dict[str, list[Any]]:
    """Every case's pauses (of ``site``'s cases) by reference, oldest first; none: left out.

    Each row has ``paused_at`` and ``resumed_at``.
    """
    bound = {} if site is None else {"site": site}
    return by_reference(conn.execute(ALL_PAUSES[site is not None], bound))


# -- pathways and calendars, once per read ----------------------------------------------------


class Resolver:
    """The pathway versions and site calendars one read needs, each asked of the engine once.

    ``pathway_of(pathway_id, version)`` and ``calendar(pathway, site)`` are the engine's own
    look-ups; this only remembers their answers for the length of one read.
    """

    __slots__ = ("_calendar", "_calendars", "_pathway_of", "_pathways")

    def __init__(
        self,
        pathway_of: Callable[[str, int], Pathway],
        calendar: Callable[[Pathway, str], WorkingCalendar],
    ) -> None:
        self._pathway_of = pathway_of
        self._calendar = calendar
        self._pathways: dict[tuple[str, int], Pathway] = {}
        self._calendars: dict[tuple[str, int, str], tuple[Pathway, WorkingCalendar]] = {}

    def pathway(self, pathway_id: str, version: int) -> Pathway:
        """The definition a case runs on."""
        key = (pathway_id, version)
        found = self._pathways.get(key)
        if found is None:
            found = self._pathways[key] = self._pathway_of(pathway_id, version)
        return found

    def pathway_and_calendar(
        self, pathway_id: str, version: int, site: str
    ) -> tuple[Pathway, WorkingCalendar]:
        """A case's definition and the calendar of its site on it."""
        key = (pathway_id, version, site)
        found = self._calendars.get(key)
        if found is None:
            pathway = self.pathway(pathway_id, version)
            found = self._calendars[key] = (pathway, self._calendar(pathway, site))
        return found

    def clock(self, row: Any) -> CaseClock:
        """The deadline clock of a row's case (the row has its reference, site and pathway)."""
        pathway, calendar = self.pathway_and_calendar(row.pathway_id, row.pathway_version, row.site)
        return CaseClock(row.reference, row.site, pathway, calendar)


def working_days(
    stage: str,
    entered_at: dt.datetime,
    left_at: dt.datetime | None,
    pathway: Pathway,
    calendar: WorkingCalendar,
    now: dt.datetime,
    count: Callable[[dt.date, dt.date], int] | None = None,
) -> int:
    """The working days of one stay, as ``Engine.history`` counts them.

    From the local date the case entered the stage to the one it left; a stay still open counts
    up to ``now``, unless its stage is final (a closed case's last stage), which counts nothing.
    Instants read from the database are aware, so they go straight to the site's zone. ``count``
    stands in for ``calendar.count_working_days`` (a :class:`WorkingDayCounter` of it).
    """
    end = left_at or (None if pathway.stage(stage).final else now)
    if end is None:
        return 0
    tz = calendar.tz
    return (count or calendar.count_working_days)(
        entered_at.astimezone(tz).date(), end.astimezone(tz).date()
    )


class WorkingDayCounter:
    """``calendar.count_working_days`` for many stays, from one remembered rank per date.

    A date's rank is the working days between a fixed anchor date (the first asked about) and
    it, negative before the anchor. The days ``d`` with ``start < d <= end`` split at any date,
    so their count is ``rank(end) - rank(start)``: each distinct date is counted once per read,
    not once per stay.
    """

    __slots__ = ("_anchor", "_calendar", "_ranks")

    def __init__(self, calendar: WorkingCalendar) -> None:
        self._calendar = calendar
        self._anchor: dt.date | None = None
        self._ranks: dict[dt.date, int] = {}

    def __call__(self, start: dt.date, end: dt.date) -> int:
        if end <= start:
            return 0
        return self._rank(end) - self._rank(start)

    def _rank(self, day: dt.date) -> int:
        rank = self._ranks.get(day)
        if rank is None:
            anchor = self._anchor
            if anchor is None:
                anchor = self._anchor = day
            count = self._calendar.count_working_days
            rank = count(anchor, day) if day >= anchor else -count(day, anchor)
            self._ranks[day] = rank
        return rank


def stage_interval(
    row: Any, pathway: Pathway, calendar: WorkingCalendar, now: dt.datetime
) -> StageInterval:
    """A stored stay (a ``nimwf_stage_intervals`` row) as ``Engine.history`` reports it."""
    return StageInterval(
        stage=row.stage,
        entered_at=row.entered_at,
        left_at=row.left_at,
        trigger=row.entered_by,
        working_days=working_days(row.stage, row.entered_at, row.left_at, pathway, calendar, now),
        left_by=row.left_by,
    )


# -- bulk reads -------------------------------------------------------------------------------

_INTERVAL_COLUMNS = (
    stage_intervals.c.reference,
    stage_intervals.c.stage,
    stage_intervals.c.entered_at,
    stage_intervals.c.left_at,
    stage_intervals.c.entered_by,
    stage_intervals.c.left_by,
    cases.c.pathway_id,
    cases.c.pathway_version,
    cases.c.site,
)


def _histories_statement(
    by_site: bool, by_stage: bool, open_only: bool, latest: bool
) -> sa.Select[Any]:
    query = sa.select(*_INTERVAL_COLUMNS).join(
        cases, cases.c.reference == stage_intervals.c.reference
    )
    if by_site:
        query = query.where(cases.c.site == sa.bindparam("site"))
    if by_stage:
        query = query.where(cases.c.stage == sa.bindparam("stage"))
    if open_only:
        query = query.where(cases.c.closed_at.is_(None))
    if latest:
        newer = stage_intervals.alias("newer")
        query = query.where(
            stage_intervals.c.id
            == sa.select(sa.func.max(newer.c.id))
            .where(newer.c.reference == stage_intervals.c.reference)
            .scalar_subquery()
        )
    return query.order_by(stage_intervals.c.id)


_HISTORIES = {
    (by_site, by_stage, open_only, latest): _histories_statement(
        by_site, by_stage, open_only, latest
    )
    for by_site in (False, True)
    for by_stage in (False, True)
    for open_only in (False, True)
    for latest in (False, True)
}


def read_histories(
    conn: Connection,
    resolver: Resolver,
    now: dt.datetime,
    *,
    site: str | None,
    stage: str | None,
    open_only: bool,
    latest: bool,
) -> dict[str, list[StageInterval]]:
    """``Engine.history(reference, at=now)`` of every case the filters select, by reference.

    The filters are ``Engine.cases``'. With ``latest`` only each case's newest stay is read.
    """
    params = {}
    if site is not None:
        params["site"] = site
    if stage is not None:
        params["stage"] = stage
    query = _HISTORIES[(site is not None, stage is not None, open_only, latest)]
    out: dict[str, list[StageInterval]] = {}
    for row in conn.execute(query, params):
        pathway, calendar = resolver.pathway_and_calendar(
            row.pathway_id, row.pathway_version, row.site
        )
        interval = stage_interval(row, pathway, calendar, now)
        found = out.get(row.reference)
        if found is None:
            out[row.reference] = [interval]
        else:
            found.append(interval)
    return out


class _FastUTCDateTime(UTCDateTime):
    """``UTCDateTime`` read faster, for the bulk reads' hundreds of thousands of rows.

    The same values, with less work per value. SQLite hands back the stored text: the usual
    path parses it, then re-attaches UTC with ``datetime.replace`` (slow on Python 3.11), while
    parsing the text with its UTC offset appended gives the same aware datetime in one step.
    PostgreSQL's driver hands back an aware datetime, which only needs moving to UTC (nothing,
    in a session reading in UTC, where it comes with ``datetime.UTC`` itself). Anything
    else (text already carrying an offset, a date alone, a naive value) takes the usual path.
    """

    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        usual = super().result_processor(dialect, coltype)
        if usual is None:
            return None
        utc = dt.UTC
        if dialect.name == "postgresql":

            def moved(value: Any) -> Any:
                if value is None:
                    return None
                if isinstance(value, dt.datetime) and value.tzinfo is not None:
                    return value if value.tzinfo is utc else value.astimezone(utc)
                return usual(value)

            return moved
        if dialect.name != "sqlite":
            return usual
        parse = dt.datetime.fromisoformat

        def parsed(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, str):
                try:
                    instant = parse(value + "+00:00")
                except ValueError:
                    instant = None
                if instant is not None and instant.tzinfo is utc:
                    return instant
            return usual(value)

        return parsed


_FAST_UTC = _FastUTCDateTime()


def _instant(column: sa.Column[Any]) -> sa.Label[Any]:
    """A UTCDateTime column read through :class:`_FastUTCDateTime`, under its own name."""
    return sa.type_coerce(column, _FAST_UTC).label(column.name)


# -- the report's read: whole sites, one statement per table ----------------------------------
#
# Of one site, each table is read joined to the site's cases (the indexes on the cases' site and
# on each table's reference find them); of every site, each table is read whole, front to back,
# with no join. The rows are plain: the report unpacks them by position (see SiteRead). Only the
# cases come in order; the rest are put in id order per case after grouping, which needs no
# collation and spares the database a sort of the whole read.

_CASE_COLUMNS = (
    cases.c.reference,
    cases.c.pathway_id,
    cases.c.pathway_version,
    cases.c.stage,
    _instant(cases.c.opened_at),
    _instant(cases.c.stage_entered_at),
    _instant(cases.c.closed_at),
    cases.c.outcome,
    _instant(cases.c.paused_at),
    cases.c.worker,
    cases.c.site,
)
_STAY_COLUMNS = (
    stage_intervals.c.id,
    stage_intervals.c.reference,
    stage_intervals.c.stage,
    _instant(stage_intervals.c.entered_at),
    _instant(stage_intervals.c.left_at),
    stage_intervals.c.left_by,
)
# Named as the public Deadline names its fields.
_DEADLINE_COLUMNS = (
    deadlines.c.id,
    deadlines.c.reference,
    deadlines.c.rule.label("name"),
    deadlines.c.kind,
    deadlines.c.occurrence,
    deadlines.c.due_on,
    _instant(deadlines.c.due_at),
    deadlines.c.status,
    _instant(deadlines.c.settled_at),
    deadlines.c.extensions,
)
_PAUSE_COLUMNS = (
    pauses.c.id,
    pauses.c.reference,
    _instant(pauses.c.paused_at),
    _instant(pauses.c.resumed_at),
)


@dataclass(frozen=True, slots=True)
class _ReportRead:
    cases: sa.Select[Any]
    stays: sa.Select[Any]
    deadlines: sa.Select[Any]
    pauses: sa.Select[Any]
    # Open deadlines due before ``limit``, in the order ``Engine.due`` lists them (the
    # database's order, collation included), from the partial indexes.
    upcoming: sa.Select[Any]


def _report_read(by_site: bool) -> _ReportRead:
    def of_site(query: sa.Select[Any], table: sa.Table) -> sa.Select[Any]:
        if not by_site:
            return query
        return query.join(cases, cases.c.reference == table.c.reference).where(
            cases.c.site == sa.bindparam("site")
        )

    upcoming = sa.select(*_DEADLINE_COLUMNS, deadlines.c.stage, deadlines.c.site).where(
        OPEN, deadlines.c.due_at < sa.bindparam("limit", type_=deadlines.c.due_at.type)
    )
    if by_site:
        upcoming = upcoming.where(deadlines.c.site == sa.bindparam("site"))
    every_case = sa.select(*_CASE_COLUMNS)
    if by_site:
        every_case = every_case.where(cases.c.site == sa.bindparam("site"))
    return _ReportRead(
        cases=every_case.order_by(cases.c.opened_at, cases.c.reference),
        stays=of_site(sa.select(*_STAY_COLUMNS), stage_intervals),
        deadlines=of_site(sa.select(*_DEADLINE_COLUMNS), deadlines),
        pauses=of_site(sa.select(*_PAUSE_COLUMNS), pauses),
        upcoming=of_site(upcoming, deadlines).order_by(
            deadlines.c.due_at, deadlines.c.reference, deadlines.c.id
        ),
    )


_OF_SITE = _report_read(by_site=True)
_OF_EVERY_SITE = _report_read(by_site=False)

#: A stay as the report reads it: (stage, entered_at, left_at, left_by, working_days).
Stay = tuple[str, dt.datetime, dt.datetime | None, str | None, int]


@dataclass(frozen=True, slots=True)
class SiteRead:
    """Everything the report reads about one site's cases.

    Rows are plain tuples, unpacked by position (hundreds of thousands of them: a named
    attribute costs a dictionary look-up each time):

    * ``cases``: (reference, pathway_id, pathway_version, stage, opened_at, stage_entered_at,
      closed_at, outcome, paused_at, worker, site), in ``Engine.cases`` order (opened, then
      reference);
    * ``history``: by reference, the case's stays in ``Engine.history`` order, each a
      :data:`Stay` whose working days are those ``Engine.history(reference, at)`` gives;
    * ``deadlines``: by reference, the case's deadlines in ``Engine.deadlines`` order, each
      (id, reference, name, kind, occurrence, due_on, due_at, status, settled_at, extensions);
    * ``pauses``: by reference, (paused_at, resumed_at) in ``Engine.pauses`` order;
    * ``open_deadlines``: the site's open deadlines due before the read's ``until``, in
      ``Engine.due(until, site)`` order, as rows like ``deadlines``' with their ``stage`` and
      ``site`` added, which also answer to those names.

    The mappings by reference may hold other sites' cases too (one read of every site shares
    them): look up only this site's.
    """

    cases: Sequence[Any]
    history: Mapping[str, list[Stay]]
    deadlines: Mapping[str, list[Any]]
    pauses: Mapping[str, list[tuple[dt.datetime, dt.datetime | None]]]
    open_deadlines: Sequence[Any]


def _by_case(rows: Iterable[Any]) -> dict[str, list[Any]]:
    """Rows (id, reference, ...) grouped by reference, each case's in id order."""
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        found = grouped.get(row[1])
        if found is None:
            grouped[row[1]] = [row]
        else:
            found.append(row)
    for found in grouped.values():
        if len(found) > 1:
            found.sort(key=_first)
    return grouped


def _stays(
    rows: Sequence[Any],
    pathway: Pathway,
    tz: dt.tzinfo,
    count: WorkingDayCounter,
    now: dt.datetime,
) -> list[Stay]:
    """One case's stays (rows of ``_STAY_COLUMNS``, in order) with their working days.

    Each is :func:`working_days` of the stay, written out for the hundreds of thousands of stays
    of a large read: where one stay ends at the instant the next begins, as a transition's do,
    the local date is worked out once.
    """
    out: list[Stay] = []
    last_at: dt.datetime | None = None
    last_on: dt.date | None = None
    for _, _, stage, entered, left, left_by in rows:
        if last_on is not None and entered == last_at:
            entered_on = last_on
        else:
            entered_on = entered.astimezone(tz).date()
        end = left or (None if pathway.stage(stage).final else now)
        days = 0
        if end is not None:
            end_on = end.astimezone(tz).date()
            days = count(entered_on, end_on)
            last_at, last_on = end, end_on
        out.append((stage, entered, left, left_by, days))
    return out


def read_sites(
    conn: Connection,
    resolver: Resolver,
    site: str | None,
    *,
    now: dt.datetime,
    until: dt.datetime,
) -> dict[str, SiteRead]:
    """Every site's cases (or ``site``'s), with their stays, deadlines and pauses, by site.

    Five statements whatever the number of cases or sites. Stays count working days up to
    ``now``. Asked for one site, the answer has that site even if it has no cases.
    """
    statements = _OF_EVERY_SITE if site is None else _OF_SITE
    bound = {} if site is None else {"site": site}
    every_case = conn.execute(statements.cases, bound).all()

    history: dict[str, list[Stay]] = {}
    stays = _by_case(conn.execute(statements.stays, bound).all())
    # One counter per calendar: a site's, on each pathway version its cases run on.
    counters: dict[tuple[str, int, str], WorkingDayCounter] = {}
    for reference, pathway_id, version, *_, case_site in every_case:
        rows = stays.get(reference)
        if rows is not None:
            pathway, calendar = resolver.pathway_and_calendar(pathway_id, version, case_site)
            count = counters.get((pathway_id, version, case_site))
            if count is None:
                count = counters[(pathway_id, version, case_site)] = WorkingDayCounter(calendar)
            history[reference] = _stays(rows, pathway, calendar.tz, count, now)
    paused = {
        reference: [(row[2], row[3]) for row in rows]
        for reference, rows in _by_case(conn.execute(statements.pauses, bound).all()).items()
    }
    by_case = _by_case(conn.execute(statements.deadlines, bound).all())
    upcoming = conn.execute(statements.upcoming, {**bound, "limit": until}).all()

    of_site: dict[str, list[Any]] = {} if site is None else {site: []}
    for case in every_case:
        of_site.setdefault(case[-1], []).append(case)
    reads = {}
    for name, site_cases in of_site.items():
        references = {case[0] for case in site_cases}
        reads[name] = SiteRead(
            cases=site_cases,
            history=history,
            deadlines=by_case,
            pauses=paused,
            # As ``due(until, site)`` lists them, of this site's cases.
            open_deadlines=[d for d in upcoming if d.site == name and d.reference in references],
        )
    return reads
