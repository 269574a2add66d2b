"""The coordinator's report as one static, self-contained HTML file.

:func:`build_report` takes the :class:`~nim_workflow._report._summary.Summary` of an engine, lays
out every chart as plain numbers here (trends by month, cases in each stage by month, the case
timeline, pathway diagrams), builds its tables (:mod:`nim_workflow._report._tables`), and hands
them to a Jinja2 template with autoescaping on, so every reference, stage or site name reaches
the page escaped. The page loads nothing: its CSS and its one small script are embedded, its
charts are inline SVG drawn here (no script, no font, no network), and it holds no personal
details, only references, stages, dates and rule names. The script only sorts, filters and
exports the tables, which are complete without it.

The timeline draws at most :data:`TIMELINE_ROWS` cases, those most in need of attention, and
says how many it leaves out; the chart of cases in each stage by month covers every case. So
the page stays a few megabytes and quick to draw at a site of 10,000 cases.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jinja2

from nim_workflow._errors import InvalidInput
from nim_workflow._pathway._diagram import render_mermaid
from nim_workflow._report._summary import (
    CaseTimeline,
    DeadlineMark,
    SiteMonths,
    SiteSummary,
    Summary,
    site_months,
    summarize,
)
from nim_workflow._report._tables import SITE_TABLES, Labels, SiteData, Table, rule_label
from nim_workflow._report._trial import TrialData, TrialView, trial_view

if TYPE_CHECKING:
    from nim_workflow._engine import Engine
    from nim_workflow._pathway._model import Pathway

__all__ = [
    "TIMELINE_ROWS",
    "SiteView",
    "build_report",
    "render_report",
    "site_views",
]

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
STAGE_COLOURS: Mapping[str, str] = {
    "referral": "#CC79A7",
    "assessment": "#56B4E9",
    "treatment": "#009E73",
    "recommendation": "#E69F00",
    "court": "#0072B2",
}
_SPARE_COLOURS = ("#999999", "#F0E442", "#882255", "#44AA99", "#332288")
#: The breach marker's colour; it differs from every stage colour in shape as well as hue.
BREACH_COLOUR = "#D55E00"

# Timeline geometry, in SVG user units.
_LABEL_WIDTH = 118
_PLOT_WIDTH = 1030
_RIGHT_MARGIN = 22
_TOP = 34
_ROW = 20
_BAR_TOP = 4
_BAR_HEIGHT = 12
_BOTTOM = 12
_LOOK_AHEAD_DAYS = 31
#: The most cases the timeline draws: those most in need of attention (see attention_order).
TIMELINE_ROWS = 100

# Month chart geometry (trends, and cases in each stage by month).
_CHART_LEFT = 56
_CHART_PLOT = 1060
_CHART_RIGHT = 56
_CHART_TOP = 22
_CHART_HEIGHT = 170
_CHART_BOTTOM = 34
#: The referral bars' colour and the on-time line's (Okabe-Ito sky blue and black).
REFERRAL_COLOUR = "#56B4E9"
RATE_COLOUR = "#1a1a1a"

# Pathway diagram geometry.
_BOX_HEIGHT = 42
_LAYER_GAP = 84
_CHAR_WIDTH = 7.9
_NODE_GAP = 40


# -- the timeline ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One stay in one stage, as a coloured bar."""

    x: float
    y: float
    width: float
    height: float
    stage: str
    colour: str
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Shade:
    """A pause, shaded over the bars."""

    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Marker:
    """A deadline marker on a case's row.

    ``status`` is met, open, missed or overdue (the last two are breaches), or ``later`` for an
    open one due beyond the end of the axis, drawn at its right edge.
    """

    x: float
    y: float
    status: str
    name: str
    breach: bool
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One case's row of the timeline."""

    index: int
    reference: str
    y: float
    label_y: float
    bars: tuple[Bar, ...]
    shades: tuple[Shade, ...]
    markers: tuple[Marker, ...]
    end_x: float | None
    end_title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """A month line on the time axis."""

    x: float
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """A site's timeline chart, laid out."""

    width: float
    height: float
    plot_left: float
    plot_right: float
    top: float
    bottom: float
    rows: tuple[Row, ...]
    ticks: tuple[Tick, ...]
    as_of_x: float
    as_of_label: str
    start_label: str
    end_label: str
    #: How many cases the site has; ``len(rows)`` of them are drawn.
    total: int

    @property
    def hidden(self) -> int:
        """How many of the site's cases the timeline does not draw."""
        return self.total - len(self.rows)


def _colour_for(stage: str, order: Sequence[str]) -> str:
    known = STAGE_COLOURS.get(stage)
    if known is not None:
        return known
    spare = [s for s in order if s not in STAGE_COLOURS]
    index = spare.index(stage) if stage in spare else len(spare)
    return _SPARE_COLOURS[index % len(_SPARE_COLOURS)]


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def attention_order(timelines: Iterable[CaseTimeline]) -> list[CaseTimeline]:
    """Cases most in need of attention first: the order the timeline draws them in.

    Cases with an overdue deadline come first, the longest overdue first; then the other open
    cases with an open deadline, the one due soonest first; then open cases without one, the
    longest in their stage first; then closed cases, the most recently closed first. Ties go
    by reference.
    """

    def key(timeline: CaseTimeline) -> tuple[int, float, str]:
        if timeline.closed_at is not None:
            return (3, -timeline.closed_at.timestamp(), timeline.reference)
        overdue = [m.due_at for m in timeline.deadlines if m.status == "overdue"]
        if overdue:
            return (0, min(overdue).timestamp(), timeline.reference)
        due = [m.due_at for m in timeline.deadlines if m.status == "open"]
        if due:
            return (1, min(due).timestamp(), timeline.reference)
        entered = timeline.spans[-1].entered_at if timeline.spans else timeline.opened_at
        return (2, entered.timestamp(), timeline.reference)

    return sorted(timelines, key=key)


def layout_timeline(
    timelines: Sequence[CaseTimeline],
    at: dt.datetime,
    stage_order: Sequence[str],
    titles: Mapping[str, str] | None = None,
    *,
    total: int | None = None,
) -> Timeline:
    """Lay out the case rows on one time axis from the first month any case opened to ``at``.

    ``titles`` name the stages in the tooltips (their identifiers follow in brackets);
    ``total`` is how many cases the site has when ``timelines`` are only some of them.
    """
    titles = titles or {}
    starts = [t.opened_at for t in timelines] or [at]
    first = _month_start(min(starts).astimezone(dt.UTC).date())
    start = dt.datetime.combine(first, dt.time(0), tzinfo=dt.UTC)
    # A month past ``at`` shows what falls due next; anything later waits at the right edge.
    end = max(at, start + dt.timedelta(days=28)) + dt.timedelta(days=_LOOK_AHEAD_DAYS)
    span = (end - start).total_seconds()
    left = float(_LABEL_WIDTH)
    right = left + _PLOT_WIDTH

    def x_of(moment: dt.datetime) -> float:
        fraction = (moment - start).total_seconds() / span
        return round(left + min(max(fraction, 0.0), 1.0) * _PLOT_WIDTH, 2)

    def x_of_day(day: dt.date, *, end_of_day: bool = False) -> float:
        moment = dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)
        return x_of(moment + dt.timedelta(days=1) if end_of_day else moment)

    rows = []
    for index, timeline in enumerate(timelines):
        top = _TOP + index * _ROW
        bar_y = top + _BAR_TOP
        mid = bar_y + _BAR_HEIGHT / 2
        bars = []
        for span_ in timeline.spans:
            stop = span_.left_at or at
            x0, x1 = x_of(span_.entered_at), x_of(stop)
            until = span_.left_at.date().isoformat() if span_.left_at else "now"
            days = (stop - span_.entered_at).days
            stage_title = titles.get(span_.stage, span_.stage)
            bars.append(
                Bar(
                    x=x0,
                    y=bar_y,
                    width=max(round(x1 - x0, 2), 1.5),
                    height=_BAR_HEIGHT,
                    stage=span_.stage,
                    colour=_colour_for(span_.stage, stage_order),
                    title=(
                        f"{timeline.reference}: {stage_title} ({span_.stage}) from "
                        f"{span_.entered_at.date().isoformat()} to {until} ({days} days)"
                    ),
                )
            )
        shades = []
        for paused_at, resumed_at in timeline.pauses:
            stop = resumed_at or at
            x0, x1 = x_of(paused_at), x_of(stop)
            until = resumed_at.date().isoformat() if resumed_at else "now (still paused)"
            shades.append(
                Shade(
                    x=x0,
                    y=bar_y - 2,
                    width=max(round(x1 - x0, 2), 1.5),
                    height=_BAR_HEIGHT + 4,
                    title=(
                        f"{timeline.reference}: paused {paused_at.date().isoformat()} to {until} "
                        f"({(stop - paused_at).days} days)"
                    ),
                )
            )
        markers = tuple(
            Marker(
                # A met deadline sits where it was met; the others where they fall (or fell) due.
                x=x_of(mark.settled_at)
                if mark.status == "met" and mark.settled_at is not None
                else x_of_day(mark.due_on, end_of_day=True),
                y=mid,
                status="later" if mark.due_at > end else mark.status,
                name=mark.name,
                breach=mark.breached,
                title=_marker_title(timeline.reference, mark),
            )
            for mark in sorted(timeline.deadlines, key=lambda m: (m.breached, m.due_on))
        )
        end_x = x_of(timeline.closed_at) if timeline.closed_at is not None else None
        end_title = (
            f"{timeline.reference}: closed {timeline.closed_at.date().isoformat()}"
            f" ({timeline.outcome or 'closed'})"
            if timeline.closed_at is not None
            else ""
        )
        rows.append(
            Row(
                index=index,
                reference=timeline.reference,
                y=top,
                label_y=mid + 4,
                bars=tuple(bars),
                shades=tuple(shades),
                markers=markers,
                end_x=end_x,
                end_title=end_title,
            )
        )

    ticks = []
    month = first
    months = (end.date().year - first.year) * 12 + end.date().month - first.month
    step = 1 if months <= 14 else 2 if months <= 30 else 3
    counter = 0
    while month <= end.date():
        if counter % step == 0:
            label = (
                month.strftime("%b %Y")
                if month.month == 1 or counter == 0
                else month.strftime("%b")
            )
            ticks.append(Tick(x=x_of_day(month), label=label))
        counter += 1
        month = _next_month(month)
    height = _TOP + len(rows) * _ROW + _BOTTOM
    return Timeline(
        width=right + _RIGHT_MARGIN,
        height=height,
        plot_left=left,
        plot_right=right,
        top=_TOP - 6,
        bottom=height - _BOTTOM + 4,
        rows=tuple(rows),
        ticks=tuple(ticks),
        as_of_x=x_of(at),
        as_of_label=f"as of {at.date().isoformat()}",
        start_label=first.isoformat(),
        end_label=at.date().isoformat(),
        total=len(rows) if total is None else total,
    )


def _marker_title(reference: str, mark: DeadlineMark) -> str:
    name = mark.name if mark.occurrence == 1 else f"{mark.name} #{mark.occurrence}"
    name = f"{rule_label(mark.name)} ({name})"
    what = {"clock": "statutory clock", "window": "window"}.get(mark.kind, "stage deadline")
    due = mark.due_on.isoformat()
    settled = mark.settled_at.date().isoformat() if mark.settled_at is not None else ""
    state = {
        "met": f"met on {settled}",
        "missed": f"BREACH: missed, settled {settled}",
        "overdue": "BREACH: overdue",
        "open": "open",
    }[mark.status]
    extended = f"; extended {mark.extensions}x" if mark.extensions else ""
    return f"{reference}: {name} ({what}) due {due}: {state}{extended}"


# -- the pathway diagram --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Box:
    """A stage in the pathway diagram."""

    stage: str
    title: str
    x: float
    y: float
    width: float
    height: float
    initial: bool
    final: bool
    colour: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    """One or more transitions into one stage, drawn as one arrow labelled with their triggers.

    ``path`` ends in the arrowhead; ``stubs`` are the extra lines of a transition from several
    stages, which join its lane at the ``joins`` dots.
    """

    path: str
    label: str
    label_x: float
    label_y: float
    anchor: str
    title: str
    stubs: tuple[str, ...] = ()
    joins: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagram:
    """A pathway's state diagram, laid out in layers from the initial stage down."""

    pathway_id: str
    version: int
    title: str
    width: float
    height: float
    boxes: tuple[Box, ...]
    edges: tuple[Edge, ...]
    start_x: float
    start_y: float
    mermaid: str


def _layers(pathway: Pathway) -> dict[str, int]:
    """Each stage's layer: the longest forward path to it from the initial stage."""
    stages = [s.id for s in pathway.stages]
    successors: dict[str, list[str]] = {s: [] for s in stages}
    for transition in pathway.transitions:
        for source in transition.sources:
            if transition.dest != source and transition.dest not in successors[source]:
                successors[source].append(transition.dest)
    # Depth-first order from the initial stage; an edge back to a stage on the current path
    # closes a cycle and is left out of the layering (it is still drawn).
    order: list[str] = []
    state: dict[str, int] = {}
    forward: dict[str, list[str]] = {s: [] for s in stages}

    def visit(node: str) -> None:
        state[node] = 1
        for nxt in successors[node]:
            if state.get(nxt) == 1:
                continue
            forward[node].append(nxt)
            if nxt not in state:
                visit(nxt)
        state[node] = 2
        order.append(node)

    for root in [pathway.initial_stage, *stages]:
        if root not in state:
            visit(root)
    layer = dict.fromkeys(stages, 0)
    for node in reversed(order):
        for nxt in forward[node]:
            layer[nxt] = max(layer[nxt], layer[node] + 1)
    return layer


@dataclass(slots=True)
class _Route:
    """A transition (or merged transitions) that runs in a lane beside the boxes."""

    sources: list[str]
    dest: str
    label: str
    title: str
    side: int  # +1: the right-hand side (forward), -1: the left (backward)
    span: int
    lane_x: float = 0.0


#: Transitions from at least this many stages are drawn as one lane that each source joins.
_BUS_SOURCES = 3
_LANE_GAP = 26.0
_LABEL_CHAR = 6.7
_LABEL_LINE = 14.0


def _free_label_y(
    y: float, span_x: tuple[float, float], placed: Sequence[tuple[float, float, float]]
) -> float:
    """``y``, or the nearest line below it where a label over ``span_x`` overlaps no other."""
    while any(
        x0 < span_x[1] and span_x[0] < x1 and abs(y - other) < _LABEL_LINE
        for x0, x1, other in placed
    ):
        y += _LABEL_LINE + 1
    return y


def layout_diagram(pathway: Pathway) -> Diagram:
    """Lay out a pathway as equal boxes in layers, the initial stage on top.

    A transition to the next layer is a straight arrow. One that skips layers runs in a lane
    beside the boxes (forward on the right, backward on the left), the lanes spanning most
    layers outermost; a transition from many stages (``withdraw`` from every open stage) is one
    lane that each source joins, so the picture stays readable.
    """
    layer = _layers(pathway)
    order = [s.id for s in pathway.stages]
    box_width = max(
        max(_CHAR_WIDTH * len(s.title) + 30, 6.6 * len(s.id) + 30, 150.0) for s in pathway.stages
    )
    by_layer: dict[int, list[str]] = {}
    for stage in order:
        by_layer.setdefault(layer[stage], []).append(stage)
    widest = max(len(members) for members in by_layer.values())
    column = widest * box_width + (widest - 1) * _NODE_GAP

    straight: list[tuple[str, str, list[str]]] = []
    routes: list[_Route] = []
    pairs: dict[tuple[str, str], list[str]] = {}
    for transition in pathway.transitions:
        if len(transition.sources) >= _BUS_SOURCES:
            spans = [layer[transition.dest] - layer[src] for src in transition.sources]
            routes.append(
                _Route(
                    sources=list(transition.sources),
                    dest=transition.dest,
                    label=transition.trigger,
                    title=f"{transition.trigger}: {', '.join(transition.sources)} -> "
                    f"{transition.dest}",
                    side=1 if min(spans) > 0 else -1,
                    span=0,  # innermost: its stubs then cross no other lane
                )
            )
            continue
        for source in transition.sources:
            triggers = pairs.setdefault((source, transition.dest), [])
            if transition.trigger not in triggers:
                triggers.append(transition.trigger)
    for (source, dest), triggers in pairs.items():
        hop = layer[dest] - layer[source]
        if hop == 1:
            straight.append((source, dest, triggers))
        else:
            label = ", ".join(triggers)
            routes.append(
                _Route(
                    sources=[source],
                    dest=dest,
                    label=label,
                    title=f"{source} -> {dest}: {label}",
                    side=1 if hop > 0 else -1,
                    span=abs(hop),
                )
            )

    left_routes = sorted((r for r in routes if r.side < 0), key=lambda r: (r.span, r.label))
    right_routes = sorted((r for r in routes if r.side > 0), key=lambda r: (r.span, r.label))
    left_room = (
        max(
            (_LANE_GAP * (i + 1) + _LABEL_CHAR * len(r.label) + 8)
            for i, r in enumerate(left_routes)
        )
        if left_routes
        else 0.0
    )
    left = 24.0 + left_room
    top = 46.0
    right = left + column
    for i, route in enumerate(left_routes):
        route.lane_x = left - _LANE_GAP * (i + 1)
    for i, route in enumerate(right_routes):
        route.lane_x = right + _LANE_GAP * (i + 1)

    boxes: dict[str, Box] = {}
    for n, members in sorted(by_layer.items()):
        row_width = len(members) * box_width + (len(members) - 1) * _NODE_GAP
        x = left + (column - row_width) / 2
        for stage_id in members:
            definition = pathway.stage(stage_id)
            boxes[stage_id] = Box(
                stage=stage_id,
                title=definition.title,
                x=round(x, 2),
                y=top + n * _LAYER_GAP,
                width=round(box_width, 2),
                height=_BOX_HEIGHT,
                initial=definition.initial,
                final=definition.final,
                colour="#DDDDDD" if definition.final else STAGE_COLOURS.get(stage_id, "#BBBBBB"),
            )
            x += box_width + _NODE_GAP

    # Each box side hands out attachment points (ports) evenly along its height, one per lane
    # end, so lines leaving or entering one box never share a point.
    # A line leaving a port runs sideways to its lane, whose vertical then goes up or down from
    # the port. Ports whose lane goes up come first, inner lanes on top; then those going down,
    # outer lanes on top. No sideways line then crosses another lane of the same box.
    ends: dict[tuple[str, int], list[tuple[tuple[int, float], _Route, bool]]] = {}
    for route in routes:
        distance = abs(route.lane_x - (left + column / 2))
        for source in route.sources:
            up = layer[route.dest] < layer[source]
            key = (0, distance) if up else (1, -distance)
            ends.setdefault((source, route.side), []).append((key, route, False))
        up = any(layer[src] < layer[route.dest] for src in route.sources)
        key = (0, distance) if up else (1, -distance)
        ends.setdefault((route.dest, route.side), []).append((key, route, True))
    ports: dict[tuple[str, int, int, bool], float] = {}
    for (stage_id, _side), items in ends.items():
        box = boxes[stage_id]
        items.sort(key=lambda item: item[0])
        for k, (_, route, incoming) in enumerate(items):
            ports[(stage_id, route.side, id(route), incoming)] = round(
                box.y + box.height * (k + 1) / (len(items) + 1), 1
            )

    edges: list[Edge] = []
    for source, dest, triggers in straight:
        a, b = boxes[source], boxes[dest]
        sx, sy = a.x + a.width / 2, a.y + a.height
        dx, dy = b.x + b.width / 2, b.y
        label = ", ".join(triggers)
        edges.append(
            Edge(
                path=f"M {sx:.1f} {sy:.1f} L {dx:.1f} {dy - 1:.1f}",
                label=label,
                label_x=round((sx + dx) / 2 + 8, 1),
                label_y=round((sy + dy) / 2 + 4, 1),
                anchor="start",
                title=f"{source} -> {dest}: {label}",
            )
        )
    label_right = right
    placed: list[tuple[float, float, float]] = []
    for route in routes:
        side = route.side
        lane = route.lane_x
        dest_box = boxes[route.dest]
        dest_x = dest_box.x + dest_box.width if side > 0 else dest_box.x
        dest_y = ports[(route.dest, side, id(route), True)]
        starts = []
        for source in route.sources:
            box = boxes[source]
            starts.append(
                (box.x + box.width if side > 0 else box.x, ports[(source, side, id(route), False)])
            )
        first_y = (
            min(y for _, y in starts)
            if dest_y > min(y for _, y in starts)
            else max(y for _, y in starts)
        )
        arrow_end = dest_x + (2 if side > 0 else -2)
        path = f"M {lane:.1f} {first_y:.1f} V {dest_y:.1f} H {arrow_end:.1f}"
        stubs = tuple(f"M {x:.1f} {y:.1f} H {lane:.1f}" for x, y in starts)
        joins = tuple((lane, y) for _, y in starts) if len(starts) > 1 else ()
        label_x = lane + 5 if side > 0 else lane - 5
        extent = _LABEL_CHAR * len(route.label)
        span_x = (label_x, label_x + extent) if side > 0 else (label_x - extent, label_x)
        label_y = _free_label_y((first_y + dest_y) / 2 + 4, span_x, placed)
        placed.append((*span_x, label_y))
        label_right = max(label_right, label_x + extent)
        edges.append(
            Edge(
                path=path,
                label=route.label,
                label_x=round(label_x, 1),
                label_y=round(label_y, 1),
                anchor="start" if side > 0 else "end",
                title=route.title,
                stubs=stubs,
                joins=joins,
            )
        )
    max_layer = max(layer.values())
    initial = boxes[pathway.initial_stage]
    return Diagram(
        pathway_id=pathway.id,
        version=pathway.version,
        title=pathway.title,
        width=round(label_right + 24, 1),
        height=top + max_layer * _LAYER_GAP + _BOX_HEIGHT + 24,
        boxes=tuple(boxes[s] for s in order),
        edges=tuple(edges),
        start_x=initial.x + initial.width / 2,
        start_y=initial.y - 26,
        mermaid=render_mermaid(pathway),
    )


# -- the month charts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """A bar, or one stage's part of a stacked bar, in a month chart."""

    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str
    stage: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """A month's on-time rate on the trend chart."""

    x: float
    y: float
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AxisTick:
    """A labelled value on a chart's vertical axis (``y``) or a month on its horizontal one."""

    at: float
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MonthChart:
    """A chart of one value (or a stack of values) per month, with an optional rate line.

    Trends: ``blocks`` are the referral bars and ``points`` (joined by ``line``) the on-time
    rate, read on the right-hand axis ``rate_ticks``. Stages: ``blocks`` are the stacked stage
    counts at each month's end.
    """

    width: float
    height: float
    plot_left: float
    plot_right: float
    top: float
    bottom: float
    blocks: tuple[Block, ...]
    count_ticks: tuple[AxisTick, ...]
    months: tuple[AxisTick, ...]
    points: tuple[Point, ...] = ()
    line: str = ""
    rate_ticks: tuple[AxisTick, ...] = ()
    title: str
    description: str


def _count_step(largest: int) -> int:
    """A round step giving at most five grid lines up to ``largest``."""
    step = 1
    while True:
        for multiple in (1, 2, 5):
            if largest <= step * multiple * 5:
                return step * multiple
        step *= 10


def _month_axis(months: Sequence[dt.date]) -> tuple[float, tuple[AxisTick, ...]]:
    """The width of one month's slot and the month labels (thinned so they never crowd)."""
    slot = _CHART_PLOT / max(len(months), 1)
    every = max(1, math.ceil(len(months) / 18))
    ticks = tuple(
        AxisTick(
            at=round(_CHART_LEFT + slot * (i + 0.5), 2),
            label=m.strftime("%b %Y") if m.month == 1 or i == 0 else m.strftime("%b"),
        )
        for i, m in enumerate(months)
        if i % every == 0
    )
    return slot, ticks


def _count_ticks(largest: int) -> tuple[int, tuple[AxisTick, ...]]:
    step = _count_step(largest)
    top = max(step, math.ceil(largest / step) * step)
    ticks = tuple(
        AxisTick(at=round(_CHART_TOP + _CHART_HEIGHT * (1 - v / top), 2), label=str(v))
        for v in range(0, top + 1, step)
    )
    return top, ticks


def layout_trends(months: SiteMonths) -> MonthChart | None:
    """Referrals per month as bars, the on-time rate of each month as a line; ``None``: no data.

    A month with no deadline settled has no rate: the line breaks there rather than dropping.
    """
    trends = months.trends
    if not trends:
        return None
    slot, month_ticks = _month_axis([t.month for t in trends])
    top, count_ticks = _count_ticks(max(t.opened for t in trends))
    bottom = _CHART_TOP + _CHART_HEIGHT
    blocks = []
    points = []
    line: list[str] = []
    previous = False
    for i, t in enumerate(trends):
        x = _CHART_LEFT + slot * i
        height = _CHART_HEIGHT * t.opened / top
        label = t.month.strftime("%B %Y")
        blocks.append(
            Block(
                x=round(x + slot * 0.15, 2),
                y=round(bottom - height, 2),
                width=round(slot * 0.7, 2),
                height=round(height, 2),
                colour=REFERRAL_COLOUR,
                title=f"{label}: {t.opened} referral{'' if t.opened == 1 else 's'}",
            )
        )
        if t.rate is None:
            previous = False
            continue
        px = round(x + slot / 2, 2)
        py = round(_CHART_TOP + _CHART_HEIGHT * (1 - t.rate), 2)
        points.append(
            Point(
                x=px,
                y=py,
                title=(f"{label}: {t.rate * 100:.0f}% on time ({t.met} met, {t.missed} missed)"),
            )
        )
        line.append(f"{'L' if previous else 'M'} {px} {py}")
        previous = True
    rate_ticks = tuple(
        AxisTick(at=round(_CHART_TOP + _CHART_HEIGHT * (1 - q), 2), label=f"{q * 100:.0f}%")
        for q in (0, 0.25, 0.5, 0.75, 1)
    )
    first, last = trends[0].month.strftime("%B %Y"), trends[-1].month.strftime("%B %Y")
    return MonthChart(
        width=_CHART_LEFT + _CHART_PLOT + _CHART_RIGHT,
        height=_CHART_TOP + _CHART_HEIGHT + _CHART_BOTTOM,
        plot_left=_CHART_LEFT,
        plot_right=_CHART_LEFT + _CHART_PLOT,
        top=_CHART_TOP,
        bottom=bottom,
        blocks=tuple(blocks),
        count_ticks=count_ticks,
        months=month_ticks,
        points=tuple(points),
        line=" ".join(line),
        rate_ticks=rate_ticks,
        title=f"Referrals and on-time rate by month at {months.site}, {first} to {last}",
        description=(
            f"Bars: cases opened each month ({sum(t.opened for t in trends)} in all). Line: "
            "the share of deadlines settled that month that were met (right-hand axis). The "
            "table below gives the same figures."
        ),
    )


def layout_stage_months(
    months: SiteMonths, stage_order: Sequence[str], titles: Mapping[str, str]
) -> MonthChart | None:
    """Cases in each stage at each month's end, stacked in pathway order; ``None``: no data."""
    rows = months.stages
    if not rows:
        return None
    slot, month_ticks = _month_axis([m.month for m in rows])
    top, count_ticks = _count_ticks(max(m.total for m in rows))
    bottom = _CHART_TOP + _CHART_HEIGHT
    blocks = []
    for i, m in enumerate(rows):
        x = _CHART_LEFT + slot * i
        base = float(bottom)
        label = m.month.strftime("%B %Y")
        for stage, count in m.counts:
            if not count:
                continue
            height = _CHART_HEIGHT * count / top
            base -= height
            blocks.append(
                Block(
                    x=round(x + slot * 0.1, 2),
                    y=round(base, 2),
                    width=round(slot * 0.8, 2),
                    height=round(height, 2),
                    colour=_colour_for(stage, stage_order),
                    title=(
                        f"{label}: {count} in {titles.get(stage, stage)} ({stage}), {m.total} open"
                    ),
                    stage=stage,
                )
            )
    first, last = rows[0].month.strftime("%B %Y"), rows[-1].month.strftime("%B %Y")
    return MonthChart(
        width=_CHART_LEFT + _CHART_PLOT + _CHART_RIGHT,
        height=_CHART_TOP + _CHART_HEIGHT + _CHART_BOTTOM,
        plot_left=_CHART_LEFT,
        plot_right=_CHART_LEFT + _CHART_PLOT,
        top=_CHART_TOP,
        bottom=bottom,
        blocks=tuple(blocks),
        count_ticks=count_ticks,
        months=month_ticks,
        title=f"Open cases in each stage at the end of each month at {months.site}, "
        f"{first} to {last}",
        description=(
            "Stacked bars, one per month: how many of the site's cases were in each stage at "
            "the month's end (this month: now), every case counted. The table below gives the "
            "same figures."
        ),
    )


# -- the page -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LegendItem:
    """A stage colour in the legend."""

    stage: str
    title: str
    colour: str


@functools.cache
def _environment() -> jinja2.Environment:
    """The template's environment, made (and the template compiled) once per process."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("nim_workflow._report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["thousands"] = "{:,}".format
    return env


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteView:
    """One site's section of the page, laid out."""

    site: SiteSummary
    timeline: Timeline
    legend: tuple[LegendItem, ...]
    trends: MonthChart | None
    stages: MonthChart | None
    #: Every table of the site's section: those of its cases, then those of its trials.
    tables: tuple[Table, ...]
    #: The site's trial section: one view per trial with families at the site (none: no section).
    trials: tuple[TrialView, ...] = ()

    @property
    def case_tables(self) -> tuple[Table, ...]:
        """The tables of the site's cases (:data:`SITE_TABLES`), drawn before its trials'."""
        theirs = {table.id for trial in self.trials for table in trial.tables}
        return tuple(table for table in self.tables if table.id not in theirs)


def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def site_views(
    summary: Summary,
    pathways: Iterable[Pathway],
    trials: Mapping[str, Sequence[TrialData]] | None = None,
) -> tuple[SiteView, ...]:
    """Lay out every site's section: its charts, its timeline and its tables.

    ``pathways`` are those the summary's cases run on: their stage titles label the page and
    their time zones set the months. ``trials`` are the trials with families at each site
    (:func:`~nim_workflow._report._trial.trial_sites`; default: the summary's own,
    :attr:`Summary.trials`): a site with some has a trial section.
    """
    trials = summary.trials if trials is None else trials
    used = list(pathways)
    stage_order: list[str] = []
    titles: dict[str, str] = {}
    for pathway in used:
        for stage in pathway.stages:
            if stage.id not in titles:
                titles[stage.id] = stage.title
                if not stage.final:
                    stage_order.append(stage.id)
    by_id = {p.id: p for p in used}
    zones = {p.id: _zone(p.timezone) for p in used}
    labels = Labels(stages=titles)
    sites = []
    for site in summary.sites:
        legend: list[LegendItem] = []
        for pid in site.pathway_ids:
            for stage in by_id[pid].stages if pid in by_id else ():
                if not stage.final and all(item.stage != stage.id for item in legend):
                    colour = _colour_for(stage.id, stage_order)
                    legend.append(LegendItem(stage=stage.id, title=stage.title, colour=colour))
        site_stages = [item.stage for item in legend] or stage_order
        months = site_months(site, zones, site_stages, summary.at)
        drawn = attention_order(site.timelines)[:TIMELINE_ROWS]
        site_trials = tuple(trial_view(found) for found in trials.get(site.site, ()))
        data = SiteData(
            summary=summary, site=site, months=months, labels=labels, stage_order=site_stages
        )
        sites.append(
            SiteView(
                site=site,
                timeline=layout_timeline(
                    drawn, summary.at, stage_order, titles, total=len(site.timelines)
                ),
                legend=tuple(legend),
                trends=layout_trends(months),
                stages=layout_stage_months(months, stage_order, titles),
                tables=(
                    *(make(data) for make in SITE_TABLES),
                    *(table for view in site_trials for table in view.tables),
                ),
                trials=site_trials,
            )
        )
    return tuple(sites)


def render_report(
    summary: Summary,
    pathways: Iterable[Pathway],
    trials: Mapping[str, Sequence[TrialData]] | None = None,
) -> str:
    """Render a summary and the diagrams of ``pathways`` as the report's HTML.

    ``trials`` (by site; default: the summary's own) add each site's trial section.
    """
    used = list(pathways)
    sites = site_views(summary, used, trials)
    import nim_workflow  # the package's version, read when rendering: __init__ may import us

    template = _environment().get_template("report.html.j2")
    return template.render(
        summary=summary,
        sites=sites,
        diagrams=[layout_diagram(p) for p in used],
        breach_colour=BREACH_COLOUR,
        referral_colour=REFERRAL_COLOUR,
        rate_colour=RATE_COLOUR,
        version=nim_workflow.__version__,
        as_of=summary.at.strftime("%Y-%m-%d %H:%M"),
        as_of_date=summary.at.date().isoformat(),
    )


def build_report(engine: Engine, *, site: str | None = None, at: dt.datetime | None = None) -> str:
    """The coordinator's report for every site (or one) as one self-contained HTML page.

    ``at`` is the instant the report is taken at (aware; default: the engine's clock). The page
    needs no network: its style is embedded and its charts are inline SVG.
    """
    when = engine.now() if at is None else at
    if not isinstance(when, dt.datetime) or when.utcoffset() is None:
        raise InvalidInput("build_report needs a timezone-aware datetime for at", field="at")
    summary = summarize(engine, site=site, at=when, trials=True)
    return render_report(summary, [engine.pathway(pid) for pid in summary.pathway_ids])
