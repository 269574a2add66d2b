"""The coordinator's view as data: what every site's cases look like at one instant.

:func:`summarize` reads an :class:`~nim_workflow.Engine` through its public read calls only
(``cases``, ``history``, ``deadlines``, ``pauses``, ``overdue``, ``due``, ``calendar``) and returns
a tree of frozen dataclasses: per site, the open cases by stage with their days in stage, how
long completed stages took, the on-time rate of every deadline rule, what is overdue and what
falls due soon, and one timeline per case for drawing. :func:`format_summary` turns that tree into
the plain-text table the command line and the demo print. Nothing here holds personal details:
only references, stages, dates, rule names and outcomes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from nim_workflow._errors import InvalidInput

if TYPE_CHECKING:
    from nim_workflow._engine import Engine
    from nim_workflow._values import Case, Deadline

__all__ = [
    "CaseTimeline",
    "DeadlineItem",
    "DeadlineMark",
    "OnTimeRate",
    "OpenCase",
    "SiteSummary",
    "StageDurations",
    "StageGroup",
    "StageSpan",
    "Summary",
    "format_summary",
    "percentile",
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

    ``open_overdue`` counts the open ones already past due, which are not in the rate yet.
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

    ``status`` is ``met``, ``missed`` (settled late, or past due when the case closed),
    ``overdue`` (open and past due) or ``open`` (not yet due). ``breached`` is true for missed
    and overdue.
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
    """The coordinator's view of every site (or one), as of ``at``."""

    at: dt.datetime
    sites: tuple[SiteSummary, ...]
    pathway_ids: tuple[str, ...]
    due_soon_days: int = DUE_SOON_DAYS


# -- building the summary -------------------------------------------------------------------------


def summarize(engine: Engine, *, site: str | None = None, at: dt.datetime) -> Summary:
    """Summarise every site (or only ``site``) as of the aware instant ``at``.

    ``at`` is the moment the view is taken: days in stage run up to it, and the overdue and
    due-soon lists are measured from it. The cases are read as they are stored now, so ``at`` is
    normally the engine's present (the simulated present in the demo).
    """
    if not isinstance(at, dt.datetime) or at.utcoffset() is None:
        raise InvalidInput("summarize needs a timezone-aware datetime for at", field="at")
    at = at.astimezone(dt.UTC)
    every_case = engine.cases(site=site, open_only=False)
    sites = [site] if site is not None else sorted({case.site for case in every_case})
    summaries = tuple(
        _site_summary(engine, name, [c for c in every_case if c.site == name], at) for name in sites
    )
    pathway_ids = tuple(sorted({pid for s in summaries for pid in s.pathway_ids}))
    return Summary(at=at, sites=summaries, pathway_ids=pathway_ids)


def _site_summary(engine: Engine, site: str, cases: Sequence[Case], at: dt.datetime) -> SiteSummary:
    pathway_ids = tuple(sorted({case.pathway_id for case in cases}))
    order, titles = _stage_order(engine, pathway_ids)
    calendars = {pid: engine.calendar(site, pid) for pid in pathway_ids}
    pathway_of = {case.reference: case.pathway_id for case in cases}

    open_cases: list[OpenCase] = []
    durations: dict[str, list[tuple[int, int]]] = {}
    rates: dict[str, _RateCount] = {}
    timelines: list[CaseTimeline] = []
    for case in cases:
        cal = calendars[case.pathway_id]
        history = engine.history(case.reference, at=at)
        for interval in history:
            if interval.left_at is None or interval.left_by == _WITHDRAW:
                continue
            days = (cal.local_date(interval.left_at) - cal.local_date(interval.entered_at)).days
            durations.setdefault(interval.stage, []).append((days, interval.working_days))
        if case.is_open:
            current = history[-1] if history else None
            entered_on = cal.local_date(case.stage_entered_at)
            open_cases.append(
                OpenCase(
                    reference=case.reference,
                    pathway_id=case.pathway_id,
                    stage=case.stage,
                    stage_entered_at=case.stage_entered_at,
                    entered_on=entered_on,
                    days_in_stage=max(0, (cal.local_date(at) - entered_on).days),
                    working_days_in_stage=current.working_days if current is not None else 0,
                    paused=case.paused,
                )
            )
        marks = []
        for deadline in engine.deadlines(case.reference):
            rule_name = deadline.name
            count = rates.setdefault(rule_name, _RateCount(kind=deadline.kind))
            mark = _mark(deadline, at)
            if mark is None:
                continue
            count.add(mark.status)
            marks.append(mark)
        timelines.append(
            CaseTimeline(
                reference=case.reference,
                pathway_id=case.pathway_id,
                opened_at=case.opened_at,
                closed_at=case.closed_at,
                outcome=case.outcome,
                stage=case.stage,
                spans=tuple(
                    StageSpan(stage=i.stage, entered_at=i.entered_at, left_at=i.left_at)
                    for i in history
                    if i.stage not in _final_stages(engine, case.pathway_id)
                ),
                deadlines=tuple(marks),
                pauses=tuple(engine.pauses(case.reference)),
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

    def item(deadline: Deadline, days: int) -> DeadlineItem:
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
        return calendars[pathway_of[reference]].local_date(at)

    overdue = tuple(
        item(d, (today(d.reference) - d.due_on).days)
        for d in engine.overdue(at=at, site=site)
        if d.reference in pathway_of
    )
    horizon = at + dt.timedelta(days=DUE_SOON_DAYS)
    due_soon = tuple(
        item(d, (d.due_on - today(d.reference)).days)
        for d in engine.due(before=horizon, site=site)
        if d.reference in pathway_of and d.due_at > at
    )
    outcomes = Counter(c.outcome or "closed" for c in cases if not c.is_open)
    return SiteSummary(
        site=site,
        pathway_ids=pathway_ids,
        opened=len(cases),
        closed=sum(1 for c in cases if not c.is_open),
        outcomes=tuple(sorted(outcomes.items(), key=lambda kv: (-kv[1], kv[0]))),
        open_by_stage=tuple(groups),
        stage_durations=tuple(stage_durations),
        on_time=on_time,
        overdue=overdue,
        due_soon=due_soon,
        timelines=tuple(timelines),
    )


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


def _mark(deadline: Deadline, at: dt.datetime) -> DeadlineMark | None:
    """How a deadline counts at ``at``; ``None`` for a cancelled one."""
    status: MarkStatus
    if deadline.status == "met":
        status = "met"
    elif deadline.status == "missed":
        status = "missed"
    elif deadline.status == "cancelled":
        # Cancelled before it fell due (closing marks an overdue deadline missed): it neither
        # counts for the rate nor appears on the timeline.
        return None
    else:
        status = "overdue" if deadline.due_at <= at else "open"
    return DeadlineMark(
        name=deadline.name,
        kind=deadline.kind,
        occurrence=deadline.occurrence,
        due_on=deadline.due_on,
        due_at=deadline.due_at,
        status=status,
        settled_at=deadline.settled_at,
        extensions=deadline.extensions,
    )


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
        ["deadline", "met", "missed", "on time", "open", "open past due"],
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
