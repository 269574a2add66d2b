"""The coordinator's view as data: what every site's cases look like at one instant.

:func:`summarize` reads an :class:`~nim_workflow.Engine` through its internal bulk read: every
site's cases (or one site's), with their stays, deadlines and pauses, one statement per table and
never one per case. It returns a tree of frozen dataclasses: per site, the open cases by stage
with their days in stage, how long completed stages took, the on-time rate of every deadline
rule, what is overdue and what falls due soon, and one timeline per case for drawing. The figures
are exactly those the public per-case reads (``history``, ``deadlines``, ``pauses``, ``overdue``,
``due``) would give. :func:`site_months` counts a site's history month by month from those
timelines (referrals, deadlines met and missed, cases in each stage at each month's end), and
:func:`format_summary` turns the tree into the plain-text table the command line and the demo
print. Nothing here holds personal details: only references, stages, dates, rule names and
outcomes.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from nim_workflow import _validate
from nim_workflow._errors import InvalidInput
from nim_workflow._values import is_overdue

if TYPE_CHECKING:
    from nim_workflow._engine import Engine
    from nim_workflow._report._trial import TrialData
    from nim_workflow._store._reads import SiteRead, Stay

__all__ = [
    "CaseTimeline",
    "DeadlineItem",
    "DeadlineMark",
    "MonthTrend",
    "OnTimeRate",
    "OpenCase",
    "SiteMonths",
    "SiteSummary",
    "StageDurations",
    "StageGroup",
    "StageMonth",
    "StageSpan",
    "Summary",
    "format_summary",
    "percentile",
    "site_months",
    "summarize",
]

#: How far ahead "due soon" looks.
DUE_SOON_DAYS = 14
#: Intervals left by this trigger were cut short, so they say nothing about how long a stage takes.
_WITHDRAW = "withdraw"

MarkStatus = Literal["met", "missed", "open", "overdue"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenCase:
    """An open case and how long it has been in its current stage."""

    reference: str
    pathway_id: str
    stage: str
    stage_entered_at: dt.datetime
    entered_on: dt.date
    days_in_stage: int
    working_days_in_stage: int
    paused: bool
    #: The staff id of the worker who holds it (``Engine.assign``); ``None``: unassigned.
    worker: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StageGroup:
    """The open cases of one stage, longest in the stage first."""

    stage: str
    title: str
    cases: tuple[OpenCase, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StageDurations:
    """How long completed stays in one stage took: median and 90th percentile.

    Calendar days count local dates from entering to leaving; working days follow the site's
    calendar. Stays ended by a withdrawal are left out: they were cut short.
    """

    stage: str
    title: str
    count: int
    median_days: float
    p90_days: float
    median_working_days: float
    p90_working_days: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OnTimeRate:
    """How often one deadline rule was kept: ``rate = met / (met + missed)``.

    ``open`` counts the unsettled ones (open or overdue) and ``open_overdue`` those of them that
    are overdue; neither is in the rate yet.
    Cancelled deadlines (a case closed before they fell due) count for neither. ``rate`` is
    ``None`` when nothing was settled.
    """

    rule: str
    kind: Literal["stage", "clock", "window"]
    met: int
    missed: int
    open: int
    open_overdue: int

    @property
    def settled(self) -> int:
        """Deadlines of this rule that were met or missed."""
        return self.met + self.missed

    @property
    def rate(self) -> float | None:
        """The share met of those settled, or ``None`` if none were settled."""
        return self.met / self.settled if self.settled else None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadlineItem:
    """One open deadline in the overdue or due-soon list.

    ``days`` is how many days past due (overdue list) or until due (due-soon list), counted on
    the site's local dates.
    """

    reference: str
    name: str
    stage: str | None
    kind: Literal["stage", "clock", "window"]
    occurrence: int
    due_on: dt.date
    days: int
    extensions: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StageSpan:
    """One stay of a case in a stage; ``left_at`` is ``None`` while it is still there."""

    stage: str
    entered_at: dt.datetime
    left_at: dt.datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadlineMark:
    """A deadline as the timeline draws it.

    ``status`` is the deadline's :attr:`~nim_workflow.Deadline.state` at the summary's instant:
    ``met``, ``missed`` (settled late, or past due when the case closed), ``overdue`` (open and
    past due) or ``open`` (not yet due). ``breached`` is true for missed and overdue.
    """

    name: str
    kind: Literal["stage", "clock", "window"]
    occurrence: int
    due_on: dt.date
    due_at: dt.datetime
    status: MarkStatus
    settled_at: dt.datetime | None
    extensions: int

    @property
    def breached(self) -> bool:
        """Whether the deadline was, or is now, past due without being met."""
        return self.status in ("missed", "overdue")


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseTimeline:
    """Everything needed to draw one case: its stays, deadlines and pauses."""

    reference: str
    pathway_id: str
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    outcome: str | None
    stage: str
    spans: tuple[StageSpan, ...]
    deadlines: tuple[DeadlineMark, ...]
    pauses: tuple[tuple[dt.datetime, dt.datetime | None], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MonthTrend:
    """One month of a site, in the site's local time: referrals and deadlines settled.

    ``opened`` counts the cases opened (referrals) in the month. ``met`` and ``missed`` count
    the deadlines settled in the month (by the local date they were settled on, or fell due on
    when no settling instant is stored), by the same definitions as :class:`OnTimeRate`:
    cancelled deadlines count for neither, open and overdue ones not yet.
    """

    month: dt.date
    opened: int
    met: int
    missed: int

    @property
    def settled(self) -> int:
        """Deadlines settled in the month, met or missed."""
        return self.met + self.missed

    @property
    def rate(self) -> float | None:
        """The share met of those settled in the month, or ``None`` if none were."""
        return self.met / self.settled if self.settled else None


@dataclass(frozen=True, slots=True, kw_only=True)
class StageMonth:
    """How many of a site's cases were in each stage at the end of one month.

    The end of the month is local midnight starting the next month, or the summary's instant for
    the month it falls in. ``counts`` holds (stage, cases) for every stage counted (the
    non-final stages of the pathways, in pathway order), zeros included.
    """

    month: dt.date
    counts: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        """Cases open at the end of the month."""
        return sum(count for _, count in self.counts)


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteSummary:
    """The coordinator's view of one site."""

    site: str
    pathway_ids: tuple[str, ...]
    opened: int
    closed: int
    outcomes: tuple[tuple[str, int], ...]
    open_by_stage: tuple[StageGroup, ...]
    stage_durations: tuple[StageDurations, ...]
    on_time: tuple[OnTimeRate, ...]
    overdue: tuple[DeadlineItem, ...]
    due_soon: tuple[DeadlineItem, ...]
    timelines: tuple[CaseTimeline, ...]

    @property
    def open(self) -> int:
        """How many of the site's cases are open."""
        return self.opened - self.closed


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """The coordinator's view of every site (or one), as of ``at``.

    ``trials`` holds, by site, the trials with families there (read only when ``summarize`` is
    asked for them): each site's trial section of the report.
    """

    at: dt.datetime
    sites: tuple[SiteSummary, ...]
    pathway_ids: tuple[str, ...]
    due_soon_days: int = DUE_SOON_DAYS
    trials: Mapping[str, tuple[TrialData, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )


# -- building the summary -------------------------------------------------------------------------


def summarize(
    engine: Engine, *, site: str | None = None, at: dt.datetime, trials: bool = False
) -> Summary:
    """Summarise every site (or only ``site``) as of the aware instant ``at``.

    ``at`` is the moment the view is taken: days in stage run up to it, and the overdue and
    due-soon lists are measured from it. The cases are read as they are stored now, so ``at`` is
    normally the engine's present (the simulated present in the demo). With ``trials``, the
    trials' families are read too (one more bulk read, :func:`~nim_workflow._report._trial.
    read_trials`) into :attr:`Summary.trials`, and a site with families but no case yet is
    summarised (empty) so that its trial section has a place.
    """
    if not isinstance(at, dt.datetime) or at.utcoffset() is None:
        raise InvalidInput("summarize needs a timezone-aware datetime for at", field="at")
    at = at.astimezone(dt.UTC)
    _validate.optional_lookup(site, "site")
    horizon = at + dt.timedelta(days=DUE_SOON_DAYS)
    reads = engine._bulk_sites(site, at=at, until=horizon)
    found: Mapping[str, tuple[TrialData, ...]] = MappingProxyType({})
    if trials:
        from nim_workflow._report._trial import read_trials  # the trial section imports us
        from nim_workflow._store._reads import SiteRead

        found = MappingProxyType(read_trials(engine, site=site, at=at))
        empty = SiteRead(cases=(), history={}, deadlines={}, pauses={}, open_deadlines=())
        reads = {**dict.fromkeys(found, empty), **reads}
    summaries = tuple(_site_summary(engine, name, reads[name], at) for name in sorted(reads))
    pathway_ids = tuple(sorted({pid for s in summaries for pid in s.pathway_ids}))
    return Summary(at=at, sites=summaries, pathway_ids=pathway_ids, trials=found)


def _site_summary(engine: Engine, site: str, read: SiteRead, at: dt.datetime) -> SiteSummary:
    # The read's rows are plain tuples, unpacked by position: SiteRead lists their fields.
    cases = read.cases
    pathway_ids = tuple(sorted({case[1] for case in cases}))
    order, titles = _stage_order(engine, pathway_ids)
    # Not engine.calendar(): a site whose cases are stored but that is no longer declared is
    # still reported, on its pathway's calendar.
    calendars = {pid: engine._calendar(engine.pathway(pid), site) for pid in pathway_ids}
    zones = {pid: cal.tz for pid, cal in calendars.items()}
    finals = {pid: _final_stages(engine, pid) for pid in pathway_ids}
    # The site's local date now, on each pathway's calendar (they may differ in time zone).
    todays = {pid: cal.local_date(at) for pid, cal in calendars.items()}
    pathway_of = {case[0]: case[1] for case in cases}
    no_history: list[Stay] = []
    no_rows: list[Any] = []

    open_cases: list[OpenCase] = []
    durations: dict[str, list[tuple[int, int]]] = {}
    rates: dict[str, _RateCount] = {}
    timelines: list[CaseTimeline] = []
    for (
        reference,
        pid,
        _,
        stage,
        opened_at,
        stage_entered_at,
        closed_at,
        outcome,
        paused_at,
        worker,
        _,
    ) in cases:
        tz = zones[pid]
        history = read.history.get(reference, no_history)
        for stay_stage, entered_at, left_at, left_by, stay_days in history:
            if left_at is None or left_by == _WITHDRAW:
                continue
            days = (left_at.astimezone(tz).date() - entered_at.astimezone(tz).date()).days
            durations.setdefault(stay_stage, []).append((days, stay_days))
        if closed_at is None:
            entered_on = stage_entered_at.astimezone(tz).date()
            open_cases.append(
                OpenCase(
                    reference=reference,
                    pathway_id=pid,
                    stage=stage,
                    stage_entered_at=stage_entered_at,
                    entered_on=entered_on,
                    days_in_stage=max(0, (todays[pid] - entered_on).days),
                    working_days_in_stage=history[-1][4] if history else 0,
                    paused=paused_at is not None,
                    worker=worker,
                )
            )
        marks = []
        for (
            _,
            _,
            name,
            kind,
            occurrence,
            due_on,
            due_at,
            status,
            settled_at,
            extensions,
        ) in read.deadlines.get(reference, no_rows):
            count = rates.get(name)
            if count is None:
                count = rates[name] = _RateCount(kind=kind)
            shown = _mark_status(status, due_at, at)
            if shown is None:
                continue
            count.add(shown)
            marks.append(
                DeadlineMark(
                    name=name,
                    kind=kind,
                    occurrence=occurrence,
                    due_on=due_on,
                    due_at=due_at,
                    status=shown,
                    settled_at=settled_at,
                    extensions=extensions,
                )
            )
        final = finals[pid]
        timelines.append(
            CaseTimeline(
                reference=reference,
                pathway_id=pid,
                opened_at=opened_at,
                closed_at=closed_at,
                outcome=outcome,
                stage=stage,
                spans=tuple(
                    [
                        StageSpan(stage=stay[0], entered_at=stay[1], left_at=stay[2])
                        for stay in history
                        if stay[0] not in final
                    ]
                ),
                deadlines=tuple(marks),
                pauses=tuple(read.pauses.get(reference, no_rows)),
            )
        )

    groups = []
    for stage in _ordered(order, {c.stage for c in open_cases}):
        members = sorted(
            (c for c in open_cases if c.stage == stage),
            key=lambda c: (-c.days_in_stage, c.reference),
        )
        groups.append(StageGroup(stage=stage, title=titles.get(stage, stage), cases=tuple(members)))

    stage_durations = []
    for stage in _ordered(order, set(durations)):
        values = durations[stage]
        calendar_days = sorted(v[0] for v in values)
        working = sorted(v[1] for v in values)
        stage_durations.append(
            StageDurations(
                stage=stage,
                title=titles.get(stage, stage),
                count=len(values),
                median_days=percentile(calendar_days, 0.5),
                p90_days=percentile(calendar_days, 0.9),
                median_working_days=percentile(working, 0.5),
                p90_working_days=percentile(working, 0.9),
            )
        )

    rule_order = _rule_order(engine, pathway_ids)
    on_time = tuple(
        OnTimeRate(
            rule=name,
            kind=rates[name].kind,
            met=rates[name].met,
            missed=rates[name].missed,
            open=rates[name].open,
            open_overdue=rates[name].overdue,
        )
        for name in _ordered(rule_order, set(rates))
    )

    def item(deadline: _DeadlineRow, days: int) -> DeadlineItem:
        return DeadlineItem(
            reference=deadline.reference,
            name=deadline.name,
            stage=deadline.stage,
            kind=deadline.kind,
            occurrence=deadline.occurrence,
            due_on=deadline.due_on,
            days=days,
            extensions=deadline.extensions,
        )

    def today(reference: str) -> dt.date:
        return todays[pathway_of[reference]]

    # The site's open deadlines due before the due-soon horizon, soonest first (as ``due``
    # lists them): those overdue at ``at`` (as ``overdue(at)`` lists them, by the same test),
    # and the rest, which fall due soon (as ``due(..., include_overdue=False, at=at)``).
    upcoming = [d for d in read.open_deadlines if d.reference in pathway_of]
    overdue = tuple(
        item(d, (today(d.reference) - d.due_on).days)
        for d in upcoming
        if is_overdue(d.status, d.due_at, at)
    )
    due_soon = tuple(
        item(d, (d.due_on - today(d.reference)).days)
        for d in upcoming
        if not is_overdue(d.status, d.due_at, at)
    )
    closed = [c for c in cases if c.closed_at is not None]
    outcomes = Counter(c.outcome or "closed" for c in closed)

    return SiteSummary(
        site=site,
        pathway_ids=pathway_ids,
        opened=len(cases),
        closed=len(closed),
        outcomes=tuple(sorted(outcomes.items(), key=lambda kv: (-kv[1], kv[0]))),
        open_by_stage=tuple(groups),
        stage_durations=tuple(stage_durations),
        on_time=on_time,
        overdue=overdue,
        due_soon=due_soon,
        timelines=tuple(timelines),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteMonths:
    """A site's history month by month: :class:`MonthTrend` and :class:`StageMonth` rows."""

    site: str
    trends: tuple[MonthTrend, ...]
    stages: tuple[StageMonth, ...]


def site_months(
    site: SiteSummary,
    zones: Mapping[str, dt.tzinfo],
    stage_order: Sequence[str],
    at: dt.datetime,
) -> SiteMonths:
    """A site's history by local month, from the month its first case opened to ``at``'s.

    ``zones`` maps each of the site's pathways to its time zone (the one its calendar counts
    in): each case's dates are read in its pathway's zone, and the month ends in that of the
    site's first pathway. ``stage_order`` lists the stages to count, in order.

    Built from the summary's timelines in one pass over each case's stays and deadlines: every
    open date and settled deadline falls in one month (those after ``at``'s month, read as
    stored now, are left out), and every stay adds one to the month ends it spans and nothing
    elsewhere (a difference array over the month ends), so the work grows with the history,
    never with cases times months.
    """
    opened_on: list[dt.date] = []
    settled_on: list[tuple[dt.date, bool]] = []
    for timeline in site.timelines:
        tz = zones.get(timeline.pathway_id, dt.UTC)
        opened_on.append(timeline.opened_at.astimezone(tz).date())
        settled_on += [
            ((mark.settled_at or mark.due_at).astimezone(tz).date(), mark.status == "met")
            for mark in timeline.deadlines
            if mark.status in ("met", "missed")
        ]
    if not opened_on:
        return SiteMonths(site=site.site, trends=(), stages=())
    tz = zones.get(site.pathway_ids[0], dt.UTC) if site.pathway_ids else dt.UTC
    today = at.astimezone(tz).date()
    first = min(opened_on).replace(day=1)
    last = today.replace(day=1)
    months: list[dt.date] = []
    month = first
    while month <= last:
        months.append(month)
        month = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    index = {m: i for i, m in enumerate(months)}
    opened = [0] * len(months)
    met = [0] * len(months)
    missed = [0] * len(months)
    for day in opened_on:
        i = index.get(day.replace(day=1))
        if i is not None:
            opened[i] += 1
    for day, kept in settled_on:
        i = index.get(day.replace(day=1))
        if i is not None:
            if kept:
                met[i] += 1
            else:
                missed[i] += 1
    # The instant each month ends: local midnight of the next month's first day, or ``at``.
    ends = [
        dt.datetime.combine(
            (m.replace(day=28) + dt.timedelta(days=4)).replace(day=1), dt.time(0), tzinfo=tz
        ).astimezone(dt.UTC)
        for m in months
    ]
    ends[-1] = min(ends[-1], at)
    columns = {stage: i for i, stage in enumerate(stage_order)}
    delta = [[0] * (len(months) + 1) for _ in stage_order]
    for timeline in site.timelines:
        for span in timeline.spans:
            column = columns.get(span.stage)
            if column is None:
                continue
            # In the stage at a month's end when entered by then and not yet left.
            start = bisect.bisect_left(ends, span.entered_at)
            stop = len(months) if span.left_at is None else bisect.bisect_left(ends, span.left_at)
            if start < stop:
                delta[column][start] += 1
                delta[column][stop] -= 1
    running = [0] * len(stage_order)
    stage_months = []
    for i, m in enumerate(months):
        for column in range(len(stage_order)):
            running[column] += delta[column][i]
        stage_months.append(
            StageMonth(month=m, counts=tuple(zip(stage_order, running, strict=True)))
        )
    trends = tuple(
        MonthTrend(month=m, opened=opened[i], met=met[i], missed=missed[i])
        for i, m in enumerate(months)
    )
    return SiteMonths(site=site.site, trends=trends, stages=tuple(stage_months))


@dataclass(slots=True)
class _RateCount:
    kind: Literal["stage", "clock", "window"]
    met: int = 0
    missed: int = 0
    open: int = 0
    overdue: int = 0

    def add(self, status: MarkStatus) -> None:
        if status == "met":
            self.met += 1
        elif status == "missed":
            self.missed += 1
        elif status == "overdue":
            self.open += 1
            self.overdue += 1
        else:
            self.open += 1


class _DeadlineRow(Protocol):
    """What the summary reads of a deadline: a ``Deadline``'s fields, or a bulk-read row."""

    @property
    def reference(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def kind(self) -> Literal["stage", "clock", "window"]: ...
    @property
    def occurrence(self) -> int: ...
    @property
    def due_on(self) -> dt.date: ...
    @property
    def due_at(self) -> dt.datetime: ...
    @property
    def status(self) -> str: ...
    @property
    def settled_at(self) -> dt.datetime | None: ...
    @property
    def extensions(self) -> int: ...


def _mark_status(status: str, due_at: dt.datetime, at: dt.datetime) -> MarkStatus | None:
    """How a deadline counts at ``at`` (its ``state`` then); ``None`` for a cancelled one."""
    if status == "met":
        return "met"
    if status == "missed":
        return "missed"
    if status == "cancelled":
        # Cancelled before it fell due (closing marks an overdue deadline missed): it neither
        # counts for the rate nor appears on the timeline.
        return None
    return "overdue" if is_overdue(status, due_at, at) else "open"


def _final_stages(engine: Engine, pathway_id: str) -> frozenset[str]:
    return engine.pathway(pathway_id).final_stages


def _stage_order(engine: Engine, pathway_ids: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    order: list[str] = []
    titles: dict[str, str] = {}
    for pid in pathway_ids:
        for stage in engine.pathway(pid).stages:
            if stage.id not in titles:
                order.append(stage.id)
                titles[stage.id] = stage.title
    return order, titles


def _rule_order(engine: Engine, pathway_ids: Iterable[str]) -> list[str]:
    order: list[str] = []
    for pid in pathway_ids:
        for rule in engine.pathway(pid).deadlines:
            if rule.name not in order:
                order.append(rule.name)
    return order


def _ordered(order: Sequence[str], present: set[str]) -> list[str]:
    """``present`` in the order given, then anything unknown alphabetically."""
    known = [name for name in order if name in present]
    return known + sorted(present - set(order))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of sorted values, linearly interpolated between ranks.

    The same definition as numpy's default: position ``(n - 1) * q`` in the sorted list. The
    median is ``q = 0.5``. An empty list has no quantile: ``nan``.
    """
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = math.ceil(position)
    lower = float(sorted_values[low])
    return lower + (float(sorted_values[high]) - lower) * (position - low)


# -- plain text -----------------------------------------------------------------------------------


def format_summary(summary: Summary) -> str:
    """The coordinator's summary as plain-text tables, one block per site."""
    lines = [f"Coordinator's summary as of {summary.at.strftime('%Y-%m-%d %H:%M')} UTC"]
    if not summary.sites:
        lines += ["", "No cases."]
    for site in summary.sites:
        lines += ["", *_site_text(site, summary.due_soon_days)]
    return "\n".join(lines) + "\n"


def _site_text(site: SiteSummary, due_soon_days: int) -> list[str]:
    title = f"== {site.site} ({', '.join(site.pathway_ids) or 'no pathway'}) =="
    outcomes = ", ".join(f"{name} {count}" for name, count in site.outcomes)
    lines = [
        title,
        f"Cases: {site.opened} opened, {site.open} open, {site.closed} closed"
        + (f" ({outcomes})" if outcomes else ""),
        "",
    ]
    rows = [
        [
            g.stage,
            c.reference,
            c.entered_on.isoformat(),
            str(c.days_in_stage),
            str(c.working_days_in_stage),
            "paused" if c.paused else "",
        ]
        for g in site.open_by_stage
        for c in g.cases
    ]
    lines.append("Open cases by stage")
    lines += _table(
        ["stage", "reference", "in stage since", "days", "working days", ""], rows, "llrrrl"
    )
    lines.append("")
    lines.append("Stage durations (completed stays)")
    lines += _table(
        ["stage", "n", "median days", "p90 days", "median wd", "p90 wd"],
        [
            [
                d.stage,
                str(d.count),
                _num(d.median_days),
                _num(d.p90_days),
                _num(d.median_working_days),
                _num(d.p90_working_days),
            ]
            for d in site.stage_durations
        ],
        "lrrrrr",
    )
    lines.append("")
    lines.append("On-time rate by deadline rule (met / (met + missed))")
    lines += _table(
        ["deadline", "met", "missed", "on time", "unsettled", "overdue"],
        [
            [r.rule, str(r.met), str(r.missed), _rate(r.rate), str(r.open), str(r.open_overdue)]
            for r in site.on_time
        ],
        "lrrrrr",
    )
    lines.append("")
    lines.append(f"Overdue ({len(site.overdue)})")
    lines += _table(
        ["reference", "deadline", "stage", "due on", "days overdue"],
        [_item_row(i) for i in site.overdue],
        "lllrr",
    )
    lines.append("")
    lines.append(f"Due in the next {due_soon_days} days ({len(site.due_soon)})")
    lines += _table(
        ["reference", "deadline", "stage", "due on", "days left"],
        [_item_row(i) for i in site.due_soon],
        "lllrr",
    )
    return lines


def _item_row(item: DeadlineItem) -> list[str]:
    name = item.name if item.occurrence == 1 else f"{item.name} #{item.occurrence}"
    return [
        item.reference,
        name,
        item.stage or "(statutory)",
        item.due_on.isoformat(),
        str(item.days),
    ]


def _num(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    if not rows:
        return ["  (none)"]
    widths = [max(len(str(cell)) for cell in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if how == "r" else cell.ljust(width)
            for cell, width, how in zip(cells, widths, align, strict=True)
        ]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]
