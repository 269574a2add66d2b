"""The layout of one time-to-permanence chart: Kaplan-Meier curves, one per arm, as plain numbers.

:func:`layout_survival_chart` places several :class:`~nim_workflow._survival.SurvivalCurve`
values on one chart in SVG user units: each curve's rising step line (the share of children who
have achieved permanence, ``1 - S``), its shaded confidence band, a "+" on the line at each day
on which children were censored (last seen without permanence), the month axis, the 0-100% axis
and a legend entry per curve giving its children and events. The result is frozen dataclasses a
Jinja template can draw; :func:`render_svg` draws them itself as one self-contained ``<svg>``
string, every text escaped. Nothing here reads the engine or the database.

Days become months at 365.25 / 12 days a month, so month 12 sits at day 365.25.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass

from nim_workflow._errors import InvalidInput
from nim_workflow._survival import SurvivalCurve

__all__ = [
    "BandLayout",
    "CensorMark",
    "ChartTick",
    "CurveLayout",
    "LegendEntry",
    "SurvivalChart",
    "layout_survival_chart",
    "render_svg",
]

#: Days in an average month: month ``m`` of the axis sits at day ``m * DAYS_PER_MONTH``.
DAYS_PER_MONTH = 365.25 / 12

# Okabe-Ito colours, copied from _html.py's palette (blue and orange) so this file does not
# depend on a module that is being rewritten; further curves take the rest of the palette.
ARM_BLUE = "#0072B2"
ARM_ORANGE = "#E69F00"
_CURVE_COLOURS = (ARM_BLUE, ARM_ORANGE, "#009E73", "#CC79A7", "#56B4E9", "#000000")
# A dash pattern per curve, so the arms differ in shape as well as hue ("" is solid).
_CURVE_DASHES = ("", "7 4", "2 3", "10 3 2 3", "4 2", "1 2")

# Geometry, in SVG user units.
_WIDTH = 900
_PLOT_LEFT = 64
_PLOT_RIGHT = 876
_TOP = 18
_PLOT_HEIGHT = 300
_AXIS_LABEL_GAP = 38  # from the plot's bottom to the month axis' title
_LEGEND_GAP = 62  # from the plot's bottom to the first legend row
_LEGEND_ROW = 20
_BOTTOM_MARGIN = 10
_MARK_HALF = 4.5  # half the width of a censoring "+"
_BAND_OPACITY = 0.18


@dataclass(frozen=True, slots=True, kw_only=True)
class ChartTick:
    """A labelled position on an axis: ``at`` is x on the month axis, y on the percent axis."""

    at: float
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CensorMark:
    """A "+" on a curve at a day on which ``count`` children were censored."""

    x: float
    y: float
    day: float
    count: int
    d: str
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BandLayout:
    """A curve's confidence band as a closed SVG path (upper bound forwards, lower back)."""

    d: str
    colour: str
    opacity: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LegendEntry:
    """A curve's legend line: its colour and dash, a sample line's ends, and its text."""

    x: float
    y: float
    colour: str
    dash: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CurveLayout:
    """One curve drawn: its step line ``d`` (empty when it follows no child), band and marks."""

    label: str
    colour: str
    dash: str
    d: str
    band: BandLayout | None
    marks: tuple[CensorMark, ...]
    legend: LegendEntry
    children: int
    events: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SurvivalChart:
    """A time-to-permanence chart: curves over a month axis and a 0-100% axis.

    ``days`` is the length of the month axis in days (``months`` whole months); a curve
    observed beyond it is cut at the edge. :meth:`x_of` and :meth:`y_of` give the positions of
    a day and of a proportion.
    """

    width: float
    height: float
    plot_left: float
    plot_right: float
    top: float
    bottom: float
    months: int
    days: float
    level: float
    curves: tuple[CurveLayout, ...]
    month_ticks: tuple[ChartTick, ...]
    percent_ticks: tuple[ChartTick, ...]
    x_label: str
    y_label: str
    x_label_y: float
    title: str
    description: str

    def x_of(self, day: float) -> float:
        """The x of ``day`` (rounded as the layout rounds)."""
        return _x(day, self.days)

    def y_of(self, proportion: float) -> float:
        """The y of a proportion achieving permanence, 0 at the bottom and 1 at the top."""
        return _y(proportion)


def _x(day: float, days: float) -> float:
    return round(_PLOT_LEFT + (_PLOT_RIGHT - _PLOT_LEFT) * day / days, 2)


def _y(proportion: float) -> float:
    return round(_TOP + _PLOT_HEIGHT * (1.0 - proportion), 2)


def _num(value: float) -> str:
    """A coordinate as short text: at most two decimals, no trailing zeros, never ``-0``."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _month_step(months: int) -> int:
    """A month step giving at most 13 labelled ticks."""
    for step in (1, 2, 3, 6, 12):
        if months <= step * 12:
            return step
    return 12 * math.ceil(months / 144)


def _axis_months(longest_day: float, months: int | None) -> int:
    if months is not None:
        if isinstance(months, bool) or not isinstance(months, int) or months < 1:
            raise InvalidInput(
                f"months must be a whole number of at least 1, not {months!r}", field="months"
            )
        return months
    if longest_day <= 0:
        return 12  # nothing observed yet: a year's axis rather than a sliver
    wanted = math.ceil(longest_day / DAYS_PER_MONTH - 1e-9)
    step = _month_step(wanted)
    return step * math.ceil(wanted / step)


def _fmt_months(day: float) -> str:
    return f"{day / DAYS_PER_MONTH:.1f} months"


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _legend_text(label: str, curve: SurvivalCurve) -> str:
    children = curve.subjects
    if not children:
        return f"{label}: no children"
    median = (
        f"median {_fmt_months(curve.median)}" if curve.median is not None else "median not reached"
    )
    return (
        f"{label}: {_plural(children, 'child', 'children')}, "
        f"{curve.total_events} with permanence, {curve.total_censored} censored; {median}"
    )


def _curve_layout(
    label: str, curve: SurvivalCurve, index: int, days: float, legend_y: float
) -> CurveLayout:
    colour = _CURVE_COLOURS[index % len(_CURVE_COLOURS)]
    dash = _CURVE_DASHES[index % len(_CURVE_DASHES)]
    legend = LegendEntry(
        x=_PLOT_LEFT, y=legend_y, colour=colour, dash=dash, text=_legend_text(label, curve)
    )
    shown = [i for i, t in enumerate(curve.times) if t <= days]
    if not shown:
        return CurveLayout(
            label=label,
            colour=colour,
            dash=dash,
            d="",
            band=None,
            marks=(),
            legend=legend,
            children=0,
            events=0,
        )
    rising = curve.cumulative_incidence
    band_low = curve.cumulative_incidence_lower
    band_high = curve.cumulative_incidence_upper
    end = _x(min(curve.times[-1], days), days)
    # The step line: level until the next event day, then straight up (an event at day 0
    # starts the line above the axis, as S(0) < 1 then).
    line = [f"M {_num(_x(0, days))} {_num(_y(rising[0]))}"]
    upper = [(_x(0, days), _y(band_high[0]))]
    lower = [(_x(0, days), _y(band_low[0]))]
    for i in shown[1:]:
        if not curve.events[i]:
            continue
        x = _x(curve.times[i], days)
        line.append(f"H {_num(x)} V {_num(_y(rising[i]))}")
        upper += [(x, upper[-1][1]), (x, _y(band_high[i]))]
        lower += [(x, lower[-1][1]), (x, _y(band_low[i]))]
    line.append(f"H {_num(end)}")
    upper.append((end, upper[-1][1]))
    lower.append((end, lower[-1][1]))
    outline = upper + lower[::-1]
    band = BandLayout(
        d="M " + " L ".join(f"{_num(x)} {_num(y)}" for x, y in outline) + " Z",
        colour=colour,
        opacity=_BAND_OPACITY,
    )
    marks = []
    for i in shown:
        if not curve.censored[i]:
            continue
        x, y = _x(curve.times[i], days), _y(rising[i])
        marks.append(
            CensorMark(
                x=x,
                y=y,
                day=curve.times[i],
                count=curve.censored[i],
                d=(
                    f"M {_num(x - _MARK_HALF)} {_num(y)} H {_num(x + _MARK_HALF)} "
                    f"M {_num(x)} {_num(y - _MARK_HALF)} V {_num(y + _MARK_HALF)}"
                ),
                title=(
                    f"{label}: {_plural(curve.censored[i], 'child', 'children')} without "
                    f"permanence when last seen on day {_num(curve.times[i])} "
                    f"({_fmt_months(curve.times[i])})"
                ),
            )
        )
    return CurveLayout(
        label=label,
        colour=colour,
        dash=dash,
        d=" ".join(line),
        band=band,
        marks=tuple(marks),
        legend=legend,
        children=curve.subjects,
        events=curve.total_events,
    )


def layout_survival_chart(
    curves: Mapping[str, SurvivalCurve],
    *,
    title: str,
    months: int | None = None,
    x_label: str = "Months",
    y_label: str = "Children with permanence",
) -> SurvivalChart:
    """Lay out ``curves`` (label → curve, drawn in that order) on one time-to-permanence chart.

    Each curve is drawn as the share achieving permanence, ``1 - S``, rising from 0 at day 0
    and level after its last event until its last observed day. ``months`` fixes the month axis
    (so two sites' charts share a scale; observations beyond it are cut off); by default it runs
    to the longest observed day, rounded up to a whole tick. Every curve must have the same
    confidence ``level``; a chart with no curves, or with curves of no children, is still laid
    out (its axes and legend say so).
    """
    levels = {curve.level for curve in curves.values()}
    if len(levels) > 1:
        raise InvalidInput(
            f"curves must share one confidence level, not {sorted(levels)}", field="curves"
        )
    level = levels.pop() if levels else 0.95
    longest = max((c.times[-1] for c in curves.values() if c.times), default=0.0)
    axis_months = _axis_months(longest, months)
    days = axis_months * DAYS_PER_MONTH
    bottom = _TOP + _PLOT_HEIGHT
    legend_top = bottom + _LEGEND_GAP
    laid = tuple(
        _curve_layout(label, curve, i, days, legend_top + _LEGEND_ROW * i)
        for i, (label, curve) in enumerate(curves.items())
    )
    step = _month_step(axis_months)
    month_ticks = tuple(
        ChartTick(at=_x(m * DAYS_PER_MONTH, days), label=str(m))
        for m in range(0, axis_months + 1, step)
    )
    percent_ticks = tuple(ChartTick(at=_y(p / 100), label=f"{p}%") for p in range(0, 101, 25))
    summaries = "; ".join(entry.legend.text for entry in laid) or "no arms to show"
    cut = (
        f" Observations after month {axis_months} are not shown."
        if months is not None and longest > days
        else ""
    )
    description = (
        f"Kaplan-Meier estimate of the share of children achieving permanence over "
        f"{axis_months} months, one line per arm, with {level * 100:g}% confidence bands "
        f"(Greenwood, log-log). Children still without permanence are censored at the day "
        f"they were last seen, marked +. {summaries}.{cut}"
    )
    return SurvivalChart(
        width=_WIDTH,
        height=legend_top + _LEGEND_ROW * max(len(laid), 1) + _BOTTOM_MARGIN,
        plot_left=_PLOT_LEFT,
        plot_right=_PLOT_RIGHT,
        top=_TOP,
        bottom=bottom,
        months=axis_months,
        days=days,
        level=level,
        curves=laid,
        month_ticks=month_ticks,
        percent_ticks=percent_ticks,
        x_label=x_label,
        y_label=y_label,
        x_label_y=bottom + _AXIS_LABEL_GAP,
        title=title,
        description=description,
    )


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def render_svg(chart: SurvivalChart) -> str:
    """``chart`` as one self-contained ``<svg>`` element (no script, font or link), text escaped.

    Curves are ``<path class="km-curve">``, bands ``<path class="km-band">`` and censoring
    marks ``<path class="km-censor">``, each with ``data-arm`` naming its curve.
    """
    left, right, top, bottom = chart.plot_left, chart.plot_right, chart.top, chart.bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="km-chart" role="img" '
        f'viewBox="0 0 {_num(chart.width)} {_num(chart.height)}" '
        f'width="{_num(chart.width)}" height="{_num(chart.height)}" '
        f'font-family="system-ui, sans-serif" font-size="11">',
        f"<title>{html.escape(chart.title)}</title>",
        f"<desc>{html.escape(chart.description)}</desc>",
    ]
    for tick in chart.percent_ticks:
        out.append(
            f'<line class="grid-line" x1="{_num(left)}" x2="{_num(right)}" '
            f'y1="{_num(tick.at)}" y2="{_num(tick.at)}" stroke="#e3e3e3"/>'
            f'<text class="tick" x="{_num(left - 6)}" y="{_num(tick.at + 3.5)}" '
            f'text-anchor="end" fill="#555">{html.escape(tick.label)}</text>'
        )
    for tick in chart.month_ticks:
        out.append(
            f'<line class="month-tick" x1="{_num(tick.at)}" x2="{_num(tick.at)}" '
            f'y1="{_num(bottom)}" y2="{_num(bottom + 5)}" stroke="#555"/>'
            f'<text class="tick" x="{_num(tick.at)}" y="{_num(bottom + 17)}" '
            f'text-anchor="middle" fill="#555">{html.escape(tick.label)}</text>'
        )
    out.append(
        f'<path class="axis" d="M {_num(left)} {_num(top)} V {_num(bottom)} H {_num(right)}" '
        f'fill="none" stroke="#1a1a1a"/>'
        f'<text class="axis-label" x="{_num((left + right) / 2)}" y="{_num(chart.x_label_y)}" '
        f'text-anchor="middle">{html.escape(chart.x_label)}</text>'
        f'<text class="axis-label" transform="rotate(-90)" x="{_num(-(top + bottom) / 2)}" '
        f'y="14" text-anchor="middle">{html.escape(chart.y_label)}</text>'
    )
    for curve in chart.curves:
        arm = _attr(curve.label)
        if curve.band is not None:
            out.append(
                f'<path class="km-band" data-arm="{arm}" d="{curve.band.d}" '
                f'fill="{curve.band.colour}" fill-opacity="{curve.band.opacity:g}" stroke="none"/>'
            )
    for curve in chart.curves:
        arm = _attr(curve.label)
        dash = f' stroke-dasharray="{curve.dash}"' if curve.dash else ""
        if curve.d:
            out.append(
                f'<path class="km-curve" data-arm="{arm}" d="{curve.d}" fill="none" '
                f'stroke="{curve.colour}" stroke-width="2"{dash}>'
                f"<title>{html.escape(curve.legend.text)}</title></path>"
            )
        out.extend(
            f'<path class="km-censor" data-arm="{arm}" d="{mark.d}" stroke="{curve.colour}" '
            f'stroke-width="1.5"><title>{html.escape(mark.title)}</title></path>'
            for mark in curve.marks
        )
        entry = curve.legend
        out.append(
            f'<g class="km-legend" data-arm="{arm}">'
            f'<line x1="{_num(entry.x)}" x2="{_num(entry.x + 28)}" y1="{_num(entry.y)}" '
            f'y2="{_num(entry.y)}" stroke="{entry.colour}" stroke-width="2"{dash}/>'
            f'<text x="{_num(entry.x + 36)}" y="{_num(entry.y + 4)}">'
            f"{html.escape(entry.text)}</text></g>"
        )
    out.append("</svg>")
    return "".join(out)
