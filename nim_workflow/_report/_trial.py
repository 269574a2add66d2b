"""The report's trial section: per site and per arm, what the coordinator follows (TRIAL.md).

For each site with families, and each trial they are in, :func:`trial_sites` counts from one
bulk read (:func:`~nim_workflow._store._trial_reads.read_trial`, one statement per table, never
one per family or case):

- **enrolment and allocation**: families and children, per arm and not yet allocated, and the
  families in each trial status;
- **research visits**, per visit and arm: held in their window, held late, missed, pending (not
  held, the window not closed yet) and stopped (not held, the family withdrew consent or was lost
  to follow-up: visits stop, as :meth:`~nim_workflow.Engine.visits` marks them ``stopped``);
- **delivery**: the children's ``intervention_received`` (received, partly, not received, or not
  recorded);
- **placement moves** per child: the placements recorded after the first (mean and 0, 1, 2, 3+);
- **time to permanence**: a Kaplan-Meier curve per arm
  (:func:`~nim_workflow._survival.kaplan_meier`) from ``entered_care_on`` to
  ``permanence_achieved_on``. A child without permanence yet is censored at the report's date
  (the site's local date), or at its case's close if it closed without permanence; a child
  without ``entered_care_on`` (or whose dates are out of order) is left out and counted in a
  note.

:func:`trial_tables` turns each into the report's :class:`~nim_workflow._report._tables.Table`
model (sorted, filtered and downloaded like every other table) and :func:`trial_view` adds the
curves drawn as inline SVG by :mod:`nim_workflow._report._survival_chart`. Nothing here writes,
and nothing holds personal details: references, arms, statuses, dates and counts only.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from nim_workflow._errors import NimWorkflowError
from nim_workflow._report._survival_chart import (
    DAYS_PER_MONTH,
    SurvivalChart,
    layout_survival_chart,
    render_svg,
)
from nim_workflow._report._tables import Cell, Column, Row, Table
from nim_workflow._store._trial_reads import TrialRead, read_trial
from nim_workflow._survival import SurvivalCurve, kaplan_meier
from nim_workflow._trial import _visits
from nim_workflow._trial._model import Trial

if TYPE_CHECKING:
    from nim_workflow._engine import Engine

__all__ = [
    "DELIVERY_VALUES",
    "ChildOutcome",
    "FamilyCount",
    "TrialData",
    "TrialView",
    "VisitCount",
    "read_trials",
    "trial_sites",
    "trial_tables",
    "trial_view",
]

#: The values of ``intervention_received`` the trial's pathways declare, in the order shown.
DELIVERY_VALUES = ("received", "partly", "not_received")
_DELIVERY_LABELS = {
    "received": "Received",
    "partly": "Partly received",
    "not_received": "Not received",
    "": "Not recorded",
}
#: Why a child is left out of the time-to-permanence curves.
NO_ENTRY = "no entered_care_on"
OUT_OF_ORDER = "dates out of order"


@dataclass(frozen=True, slots=True, kw_only=True)
class FamilyCount:
    """A family as the section counts it: its arm (``None`` before allocation) and status."""

    reference: str
    arm: str | None
    status: str
    children: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildOutcome:
    """One child of an allocated family: delivery, moves and its time-to-permanence observation.

    ``observation`` is ``(days, event)`` for the Kaplan-Meier curve, ``None`` when the child is
    left out, ``left_out`` saying why.
    """

    reference: str
    family: str
    arm: str
    has_case: bool
    intervention: str | None
    placements: int
    moves: int
    observation: tuple[int, bool] | None
    left_out: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitCount:
    """How one research visit stands in one arm: each visit row counted once."""

    name: str
    title: str
    arm: str
    in_window: int = 0
    late: int = 0
    missed: int = 0
    pending: int = 0
    stopped: int = 0

    @property
    def total(self) -> int:
        """Every visit row counted."""
        return self.in_window + self.late + self.missed + self.pending + self.stopped


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialData:
    """One trial at one site, counted as of ``today`` (the site's local date)."""

    site: str
    trial: str
    title: str
    today: dt.date
    #: (arm id, title) for each arm, in the trial's order (arms only the families name, after).
    arms: tuple[tuple[str, str], ...]
    statuses: tuple[str, ...]
    families: tuple[FamilyCount, ...]
    children: tuple[ChildOutcome, ...]
    visits: tuple[VisitCount, ...]

    @property
    def allocated(self) -> bool:
        """Whether any family is allocated yet."""
        return any(f.arm is not None for f in self.families)

    def arm_title(self, arm: str) -> str:
        """The arm's title (its id if the trial has none)."""
        return dict(self.arms).get(arm, arm)

    def children_in(self, arm: str) -> list[ChildOutcome]:
        """The children allocated to ``arm`` whose case exists."""
        return [c for c in self.children if c.arm == arm and c.has_case]

    def curves(self, level: float = 0.95) -> dict[str, SurvivalCurve]:
        """The Kaplan-Meier curve of each arm, by arm id, in arm order."""
        return {
            arm: kaplan_meier(
                [c.observation for c in self.children_in(arm) if c.observation is not None],
                level=level,
            )
            for arm, _ in self.arms
        }

    def left_out(self, arm: str | None = None) -> Counter[str]:
        """How many children are left out of the curves (of ``arm``, or all), by reason."""
        return Counter(
            c.left_out
            for c in self.children
            if c.has_case and c.left_out and (arm is None or c.arm == arm)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialView:
    """One trial's part of a site's section, laid out: its tables, its chart and notes."""

    data: TrialData
    tables: tuple[Table, ...]
    chart: SurvivalChart | None
    svg: Markup
    notes: tuple[str, ...]

    @property
    def id(self) -> str:
        """The element id of the trial's part of the section."""
        return f"trial-{self.data.trial}-{self.data.site}"


# -- counting ------------------------------------------------------------------------------------


def _facts(stored: Any) -> Mapping[str, Any]:
    if stored is None:
        return {}
    if isinstance(stored, Mapping):
        return stored
    loaded = json.loads(stored)
    return loaded if isinstance(loaded, Mapping) else {}


def _date(value: Any) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


def _observation(
    facts: Mapping[str, Any], closed_on: dt.date | None, today: dt.date
) -> tuple[tuple[int, bool] | None, str | None]:
    """``(days, event)`` from entry to care to permanence (or censoring), or why it is left out.

    Permanence recorded on or before ``today`` is the event; otherwise the child is censored at
    ``today``, or at its case's close when that came first (closed without permanence).
    """
    entered = _date(facts.get("entered_care_on"))
    if entered is None:
        return None, NO_ENTRY
    permanence = _date(facts.get("permanence_achieved_on"))
    if permanence is not None and permanence <= today:
        end, event = permanence, True
    else:
        end = today if closed_on is None else min(closed_on, today)
        event = False
    days = (end - entered).days
    if days < 0:
        return None, OUT_OF_ORDER
    return (days, event), None


def trial_sites(
    read: TrialRead,
    trials: Mapping[str, Trial],
    at: dt.datetime,
    zone_of: Callable[[str, str], dt.tzinfo],
) -> dict[str, tuple[TrialData, ...]]:
    """Each site's trials as :class:`TrialData`, counted as of the aware instant ``at``.

    ``trials`` are the engine's trials by id (a trial it no longer runs is shown by its ids);
    ``zone_of(site, trial)`` is the site's time zone, which sets its "today" and the local date
    a case closed on.
    """
    groups: dict[tuple[str, str], list[Any]] = {}
    for family in read.families:
        groups.setdefault((family.site, family.trial), []).append(family)
    children_of: dict[str, list[Any]] = {}
    for child in read.children:
        children_of.setdefault(child.family, []).append(child)
    visits_of: dict[str, list[Any]] = {}
    for visit in read.visits:
        visits_of.setdefault(visit.family, []).append(visit)
    out: dict[str, list[TrialData]] = {}
    for (site, trial_id), rows in sorted(groups.items()):
        trial = trials.get(trial_id)
        zone = zone_of(site, trial_id)
        today = at.astimezone(zone).date()
        arms = [
            (arm, definition.title) for arm, definition in (trial.arms if trial else {}).items()
        ]
        for row in rows:
            if row.arm is not None and all(row.arm != a for a, _ in arms):
                arms.append((row.arm, row.arm))
        statuses = list(trial.statuses) if trial else []
        for row in rows:
            if row.status not in statuses:
                statuses.append(row.status)
        visit_titles = (
            {rule.name: rule.title or rule.name for rule in trial.visits} if trial else {}
        )
        visit_order = {rule.name: i for i, rule in enumerate(trial.visits)} if trial else {}
        families: list[FamilyCount] = []
        children: list[ChildOutcome] = []
        tallies: dict[tuple[str, str], dict[str, int]] = {}
        for row in rows:
            kids = children_of.get(row.reference, [])
            families.append(
                FamilyCount(
                    reference=row.reference, arm=row.arm, status=row.status, children=len(kids)
                )
            )
            if row.arm is None:
                continue
            for kid in kids:
                case = read.cases.get(kid.reference)
                facts = _facts(case.facts) if case is not None else {}
                closed_on = (
                    case.closed_at.astimezone(zone).date()
                    if case is not None and case.closed_at is not None
                    else None
                )
                observation, left_out = _observation(facts, closed_on, today)
                received = facts.get("intervention_received")
                children.append(
                    ChildOutcome(
                        reference=kid.reference,
                        family=row.reference,
                        arm=row.arm,
                        has_case=case is not None,
                        intervention=None if received in (None, "") else str(received),
                        placements=len(read.placements.get(kid.reference, [])),
                        moves=read.moves(kid.reference),
                        observation=observation if case is not None else None,
                        left_out=left_out if case is not None else None,
                    )
                )
            status_on = row.status_at.astimezone(zone).date()
            for visit in visits_of.get(row.reference, []):
                tally = tallies.setdefault((visit.name, row.arm), Counter())
                if _visits.stopped(visit.held_on, visit.closes_on, row.status, status_on):
                    tally["stopped"] += 1
                else:
                    state = _visits.status(visit.held_on, visit.opens_on, visit.closes_on, today)
                    tally[state] += 1
        arm_order = {arm: i for i, (arm, _) in enumerate(arms)}
        visits = tuple(
            VisitCount(
                name=name,
                title=visit_titles.get(name, name),
                arm=arm,
                in_window=tally.get("in_window", 0),
                late=tally.get("late", 0),
                missed=tally.get("missed", 0),
                pending=tally.get("pending", 0),
                stopped=tally.get("stopped", 0),
            )
            for (name, arm), tally in sorted(
                tallies.items(),
                key=lambda item: (
                    visit_order.get(item[0][0], len(visit_order)),
                    item[0][0],
                    arm_order.get(item[0][1], len(arm_order)),
                ),
            )
        )
        out.setdefault(site, []).append(
            TrialData(
                site=site,
                trial=trial_id,
                title=trial.title if trial else trial_id,
                today=today,
                arms=tuple(arms),
                statuses=tuple(statuses),
                families=tuple(families),
                children=tuple(children),
                visits=visits,
            )
        )
    return {site: tuple(found) for site, found in out.items()}


def read_trials(
    engine: Engine, *, site: str | None = None, at: dt.datetime
) -> dict[str, tuple[TrialData, ...]]:
    """Each site's trials (those with families), counted as of ``at``: one bulk read.

    :func:`~nim_workflow._store._trial_reads.read_trial` reads the families, their children,
    visits, cases and placements with one statement per table, whatever their number.
    """
    with engine._snapshot() as conn:
        read = read_trial(conn, site)
    if not read.families:
        return {}
    known = engine.trials

    def zone_of(site_id: str, trial_id: str) -> dt.tzinfo:
        trial = known.get(trial_id)
        if trial is None:
            return dt.UTC
        try:
            return engine._family_calendar(trial, site_id, None).tz
        except (NimWorkflowError, KeyError):  # a site or pathway no longer declared: UTC
            return dt.UTC

    return trial_sites(read, known, at, zone_of)


# -- the tables ----------------------------------------------------------------------------------


def _int(value: int) -> Cell:
    return Cell(text=str(value))


def _months(days: float) -> float:
    return days / DAYS_PER_MONTH


def _decimal(value: float | None, places: int = 1) -> Cell:
    if value is None:
        return Cell(text="-", value="")
    text = f"{value:.{places}f}"
    return Cell(text=text, value=text)


def _share(count: int, total: int) -> Cell:
    if not total:
        return Cell(text=str(count))
    return Cell(text=f"{count} ({count / total * 100:.0f}%)", value=str(count))


def _table_id(data: TrialData, name: str) -> str:
    return f"trial-{data.trial}-{name}-{data.site}"


def _measure(key: str, text: str) -> Cell:
    return Cell(text=text, value=key)


def _arm_columns(data: TrialData, suffix: str = "", label: str = "") -> tuple[Column, ...]:
    return tuple(
        Column(
            key=f"{arm}{suffix}",
            label=f"{title}{label}",
            sort="number",
            hint=arm,
        )
        for arm, title in data.arms
    )


def enrolment_table(data: TrialData) -> Table:
    """Families and children enrolled, allocated per arm, and the families in each status."""
    columns = (
        Column(key="measure", label="Measure", titled=True),
        *_arm_columns(data),
        Column(key="not_allocated", label="Not allocated yet", sort="number"),
        Column(key="all", label="All", sort="number"),
    )
    groups: list[str | None] = [arm for arm, _ in data.arms] + [None]

    def counts(pick: Callable[[FamilyCount], int]) -> tuple[Cell, ...]:
        per = [sum(pick(f) for f in data.families if f.arm == arm) for arm in groups]
        return (*(_int(n) for n in per), _int(sum(per)))

    def holding(status: str) -> Callable[[FamilyCount], int]:
        return lambda family: int(family.status == status)

    rows = [
        Row(cells=(_measure("families", "Families"), *counts(lambda f: 1))),
        Row(cells=(_measure("children", "Children"), *counts(lambda f: f.children))),
    ]
    for status in data.statuses:
        rows.append(
            Row(
                cells=(
                    _measure(f"status_{status}", f"Families {status.replace('_', ' ')}"),
                    *counts(holding(status)),
                ),
                data=(("status", status),),
            )
        )
    allocated = sum(f.arm is not None for f in data.families)
    return Table(
        id=_table_id(data, "enrolment"),
        name=f"{data.trial}-enrolment",
        site=data.site,
        heading="Enrolment and allocation",
        badge=f"{allocated} of {len(data.families)} allocated",
        note=(
            "Families and their children enrolled at the site, by the arm the trial's portal "
            "allocated them to; the families in each trial status (not the children's service "
            "status)."
        ),
        css="trial-enrolment",
        columns=columns,
        rows=tuple(rows),
    )


def visits_table(data: TrialData) -> Table:
    """Each research visit per arm: held in window, late, missed, pending, stopped."""
    columns = (
        Column(key="visit", label="Visit", titled=True),
        Column(key="arm", label="Arm", titled=True),
        Column(key="in_window", label="Held in window", sort="number"),
        Column(key="late", label="Held late", sort="number"),
        Column(key="missed", label="Missed", sort="number"),
        Column(key="pending", label="Pending", sort="number"),
        Column(key="stopped", label="Stopped", sort="number"),
        Column(key="total", label="Visits", sort="number"),
    )
    rows = tuple(
        Row(
            cells=(
                Cell(text=v.title, value=v.name, hint=v.name),
                Cell(text=data.arm_title(v.arm), value=v.arm, hint=v.arm),
                Cell(text=str(v.in_window), css="in-window"),
                Cell(text=str(v.late), css="late"),
                Cell(text=str(v.missed), css="missed"),
                Cell(text=str(v.pending), css="pending"),
                Cell(text=str(v.stopped), css="stopped"),
                _int(v.total),
            ),
            data=(("visit", v.name), ("arm", v.arm)),
        )
        for v in data.visits
    )
    return Table(
        id=_table_id(data, "visits"),
        name=f"{data.trial}-visits",
        site=data.site,
        heading="Research visits",
        note=(
            f"As of {data.today.isoformat()}. Pending: not held, its window not closed yet. "
            "Missed: not held by the window's last day. Stopped: not held, the family withdrew "
            "consent or was lost to follow-up (research visits stop; the case does not)."
        ),
        css="trial-visits",
        columns=columns,
        rows=rows,
        empty="No research visits planned yet.",
    )


def delivery_table(data: TrialData) -> Table:
    """How many children received the allocated intervention, per arm."""
    columns = (Column(key="delivery", label="Intervention", titled=True), *_arm_columns(data))
    per_arm = {arm: data.children_in(arm) for arm, _ in data.arms}
    seen = list(DELIVERY_VALUES)
    for kids in per_arm.values():
        for kid in kids:
            if kid.intervention is not None and kid.intervention not in seen:
                seen.append(kid.intervention)
    rows = []
    for value in [*seen, ""]:
        cells = []
        for arm, _ in data.arms:
            kids = per_arm[arm]
            count = sum((kid.intervention or "") == value for kid in kids)
            cells.append(_share(count, len(kids)))
        rows.append(
            Row(
                cells=(Cell(text=_DELIVERY_LABELS.get(value, value), value=value), *cells),
                data=(("delivery", value or "not_recorded"),),
            )
        )
    totals = [_int(len(per_arm[arm])) for arm, _ in data.arms]
    rows.append(Row(cells=(Cell(text="Children", value="children"), *totals)))
    return Table(
        id=_table_id(data, "delivery"),
        name=f"{data.trial}-delivery",
        site=data.site,
        heading="Delivery of the allocated intervention",
        note="Each allocated child's intervention_received, as recorded on its case.",
        css="trial-delivery",
        columns=columns,
        rows=tuple(rows),
    )


def moves_table(data: TrialData) -> Table:
    """Placement moves per child: mean and how many children moved 0, 1, 2, 3+ times."""
    columns = (Column(key="measure", label="Placement moves", titled=True), *_arm_columns(data))
    per_arm = {arm: data.children_in(arm) for arm, _ in data.arms}

    def mean(kids: Sequence[ChildOutcome]) -> Cell:
        if not kids:
            return Cell(text="-", value="")
        value = sum(k.moves for k in kids) / len(kids)
        return Cell(text=f"{value:.2f}", value=f"{value:.4f}".rstrip("0").rstrip("."))

    def bucket(moves: int) -> int:
        return min(moves, 3)

    rows = [
        Row(cells=(_measure("children", "Children"), *(_int(len(k)) for k in per_arm.values()))),
        Row(cells=(_measure("mean", "Mean moves per child"), *map(mean, per_arm.values()))),
    ]
    for n, label in ((0, "0 moves"), (1, "1 move"), (2, "2 moves"), (3, "3 or more moves")):
        rows.append(
            Row(
                cells=(
                    _measure(f"moves_{n}{'_or_more' if n == 3 else ''}", label),
                    *(
                        _share(sum(bucket(k.moves) == n for k in kids), len(kids))
                        for kids in per_arm.values()
                    ),
                ),
                data=(("moves", str(n)),),
            )
        )
    rows.append(
        Row(
            cells=(
                _measure("no_placement", "No placement recorded"),
                *(_int(sum(k.placements == 0 for k in kids)) for kids in per_arm.values()),
            )
        )
    )
    return Table(
        id=_table_id(data, "moves"),
        name=f"{data.trial}-moves",
        site=data.site,
        heading="Placement moves per child",
        note=(
            "A move is each placement recorded (placed_on) after the child's first. Children "
            "with no placement recorded count as 0 moves."
        ),
        css="trial-moves",
        columns=columns,
        rows=tuple(rows),
    )


def permanence_table(data: TrialData, curves: Mapping[str, SurvivalCurve]) -> Table:
    """Per arm: children followed, permanence achieved, censored, left out, median time."""
    columns = (
        Column(key="arm", label="Arm", titled=True),
        Column(key="children", label="Children", sort="number"),
        Column(key="permanence", label="Permanence achieved", sort="number"),
        Column(key="censored", label="Censored", sort="number"),
        Column(key="left_out", label="Left out", sort="number"),
        Column(key="median_days", label="Median days", sort="number"),
        Column(key="median_months", label="Median months", sort="number"),
    )
    rows = []
    for arm, title in data.arms:
        curve = curves[arm]
        median = curve.median
        rows.append(
            Row(
                cells=(
                    Cell(text=title, value=arm, hint=arm),
                    _int(curve.subjects),
                    Cell(text=str(curve.total_events), css="events"),
                    Cell(text=str(curve.total_censored), css="censored"),
                    _int(sum(data.left_out(arm).values())),
                    Cell(text="not reached", value="")
                    if median is None
                    else Cell(text=f"{median:g}", css="median"),
                    Cell(text="not reached", value="")
                    if median is None
                    else _decimal(_months(median)),
                ),
                data=(("arm", arm),),
            )
        )
    return Table(
        id=_table_id(data, "permanence"),
        name=f"{data.trial}-permanence",
        site=data.site,
        heading="Time to permanence",
        note=(
            "Kaplan-Meier, from entered_care_on to permanence_achieved_on. Censored: without "
            f"permanence on {data.today.isoformat()}, or when the case closed without it. "
            "Median: the first day half the children had permanence (not reached: fewer than "
            "half yet). Left out: no entered_care_on, or dates out of order."
        ),
        css="trial-permanence",
        columns=columns,
        rows=tuple(rows),
    )


def at_risk_table(
    data: TrialData, curves: Mapping[str, SurvivalCurve], months: Iterable[int]
) -> Table:
    """Per arm at each month of the chart's axis: children still at risk, and events by then."""
    columns = (
        Column(key="month", label="Month", sort="number"),
        *_arm_columns(data, "_at_risk", ": at risk"),
        *_arm_columns(data, "_permanence", ": permanence by then"),
    )
    observations = {
        arm: [c.observation for c in data.children_in(arm) if c.observation is not None]
        for arm, _ in data.arms
    }
    rows = []
    for month in months:
        day = month * DAYS_PER_MONTH
        at_risk = [sum(d >= day for d, _ in observations[arm]) for arm, _ in data.arms]
        events = [sum(e and d <= day for d, e in observations[arm]) for arm, _ in data.arms]
        rows.append(
            Row(
                cells=(_int(month), *map(_int, at_risk), *map(_int, events)),
                data=(("month", str(month)),),
            )
        )
    del curves  # the counts come from the observations the curves were made from
    return Table(
        id=_table_id(data, "at-risk"),
        name=f"{data.trial}-at-risk",
        site=data.site,
        heading="Number at risk",
        note=(
            "Children still followed without permanence at the start of each month of the "
            "chart's axis (a month is 365.25 / 12 days), and how many had permanence by then."
        ),
        css="trial-at-risk",
        columns=columns,
        rows=tuple(rows),
    )


def trial_tables(
    data: TrialData, curves: Mapping[str, SurvivalCurve], months: Iterable[int] = ()
) -> tuple[Table, ...]:
    """The trial's tables at a site: only enrolment before any family is allocated."""
    if not data.allocated:
        return (enrolment_table(data),)
    return (
        enrolment_table(data),
        visits_table(data),
        delivery_table(data),
        moves_table(data),
        permanence_table(data, curves),
        at_risk_table(data, curves, months),
    )


def trial_view(data: TrialData) -> TrialView:
    """Lay out one trial at one site: its tables and its time-to-permanence chart."""
    notes: list[str] = []
    if not data.allocated:
        notes.append(
            f"No family allocated yet: {len(data.families)} "
            f"{'family' if len(data.families) == 1 else 'families'} enrolled. Visits, "
            "delivery, placement moves and time to permanence appear once the trial's portal "
            "allocates them."
        )
        return TrialView(
            data=data,
            tables=trial_tables(data, {}),
            chart=None,
            svg=Markup(""),
            notes=tuple(notes),
        )
    curves = data.curves()
    labels = {data.arm_title(arm): curve for arm, curve in curves.items()}
    if len(labels) < len(curves):  # two arms with one title: tell them apart by their ids
        labels = {f"{data.arm_title(arm)} ({arm})": curve for arm, curve in curves.items()}
    chart = layout_survival_chart(
        labels,
        title=f"Time to permanence by arm at {data.site} ({data.title})",
        x_label="Months since entering care",
        y_label="Children with permanence",
    )
    step = 1 if len(chart.month_ticks) < 2 else int(chart.month_ticks[1].label)
    months = range(0, chart.months + 1, step)
    left_out = data.left_out()
    if left_out:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(left_out.items()))
        total = sum(left_out.values())
        notes.append(
            f"{total} {'child is' if total == 1 else 'children are'} left out of the time to "
            f"permanence ({reasons})."
        )
    # Arm titles and ids reach the page only through render_svg, which escapes every text.
    svg = Markup(render_svg(chart))
    return TrialView(
        data=data,
        tables=trial_tables(data, curves, months),
        chart=chart,
        svg=svg,
        notes=tuple(notes),
    )
