"""The time-to-permanence chart: step lines, bands, censoring marks, axes, legend, escaping."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest

from nim_workflow._errors import InvalidInput
from nim_workflow._report._survival_chart import (
    DAYS_PER_MONTH,
    SurvivalChart,
    layout_survival_chart,
    render_svg,
)
from nim_workflow._survival import SurvivalCurve, kaplan_meier

SVG = "{http://www.w3.org/2000/svg}"

# Two arms: the hand-worked example of test_survival.py, and a smaller arm with a tie at day 45.
FIRST = [
    (30, True),
    (60, True),
    (60, True),
    (90, False),
    (120, True),
    (120, False),
    (150, False),
    (200, True),
    (240, False),
    (300, False),
]
SECOND = [(45, True), (45, False), (100, False), (180, True), (400, False)]


@pytest.fixture
def curves() -> dict[str, SurvivalCurve]:
    """Two arms' curves, in drawing order."""
    return {"NIM": kaplan_meier(FIRST), "Comparator": kaplan_meier(SECOND)}


@pytest.fixture
def chart(curves: dict[str, SurvivalCurve]) -> SurvivalChart:
    """The two arms laid out on one chart."""
    return layout_survival_chart(curves, title="Time to permanence at Glasgow")


def _parse(chart: SurvivalChart) -> ET.Element:
    return ET.fromstring(render_svg(chart))


def _vertices(d: str) -> list[tuple[float, float]]:
    """The corners of a path made of M, H, V and L commands (marks' several M's included)."""
    tokens = d.split()
    points: list[tuple[float, float]] = []
    x = y = 0.0
    i = 0
    while i < len(tokens):
        command = tokens[i]
        if command in ("M", "L"):
            x, y = float(tokens[i + 1]), float(tokens[i + 2])
            i += 3
        elif command == "H":
            x = float(tokens[i + 1])
            i += 2
        elif command == "V":
            y = float(tokens[i + 1])
            i += 2
        elif command == "Z":
            i += 1
            continue
        else:
            raise AssertionError(f"unexpected path command {command!r} in {d!r}")
        points.append((x, y))
    return points


def _x(chart: SurvivalChart, day: float) -> float:
    """The x of ``day``, worked independently of the layout's own helper."""
    return chart.plot_left + (chart.plot_right - chart.plot_left) * day / chart.days


def _y(chart: SurvivalChart, proportion: float) -> float:
    return chart.bottom - (chart.bottom - chart.top) * proportion


def test_svg_parses_with_one_curve_and_one_band_per_arm(chart: SurvivalChart) -> None:
    """The SVG is well-formed XML with a step line and a band for each arm, in order."""
    root = _parse(chart)
    assert root.tag == f"{SVG}svg"
    lines = root.findall(f"{SVG}path[@class='km-curve']")
    bands = root.findall(f"{SVG}path[@class='km-band']")
    assert [p.get("data-arm") for p in lines] == ["NIM", "Comparator"]
    assert [p.get("data-arm") for p in bands] == ["NIM", "Comparator"]
    assert [p.get("d") for p in lines] == [c.d for c in chart.curves]
    assert lines[0].get("stroke") != lines[1].get("stroke")


def test_title_and_description(chart: SurvivalChart) -> None:
    """The chart names itself in <title> and describes the curves and censoring in <desc>."""
    root = _parse(chart)
    assert root.get("role") == "img"
    assert root.findtext(f"{SVG}title") == "Time to permanence at Glasgow"
    description = root.findtext(f"{SVG}desc") or ""
    assert "Kaplan-Meier" in description
    assert "censored" in description
    assert "95% confidence" in description
    assert "NIM: 10 children, 5 with permanence, 5 censored; median 6.6 months" in description


def _risers(d: str) -> list[tuple[float, float, float]]:
    """The vertical segments of a step line, as (x, y before, y after)."""
    return [(a[0], a[1], b[1]) for a, b in itertools.pairwise(_vertices(d)) if a[0] == b[0]]


def test_step_rises_to_the_share_with_permanence_at_each_event(
    chart: SurvivalChart, curves: dict[str, SurvivalCurve]
) -> None:
    """At each event day the line climbs vertically to 1 - S there, and is level in between."""
    for layout, curve in zip(chart.curves, curves.values(), strict=True):
        corners = _vertices(layout.d)
        assert corners[0] == pytest.approx((chart.plot_left, _y(chart, 0.0)), abs=0.01)
        risers = _risers(layout.d)
        assert len(risers) == len(curve.event_times)
        for (x, before, after), day in zip(risers, curve.event_times, strict=True):
            assert after < before  # rising
            assert x == pytest.approx(_x(chart, day), abs=0.01)
            assert after == pytest.approx(_y(chart, curve.cumulative_incidence_at(day)), abs=0.01)
        # Level after the last event, to the last observed day.
        assert corners[-1] == pytest.approx(
            (_x(chart, curve.times[-1]), _y(chart, 1 - curve.survival[-1])), abs=0.01
        )
    # The hand-worked values: 1 - S is 1/10, 3/10, 5/12 and 11/18 after days 30, 60, 120, 200.
    heights = [after for _, _, after in _risers(chart.curves[0].d)]
    assert heights == pytest.approx(
        [_y(chart, p) for p in (1 / 10, 3 / 10, 5 / 12, 11 / 18)], abs=0.01
    )


def test_band_spans_the_interval(chart: SurvivalChart, curves: dict[str, SurvivalCurve]) -> None:
    """The band's edges sit at 1 - upper and 1 - lower of S on each step."""
    layout, curve = chart.curves[0], curves["NIM"]
    assert layout.band is not None
    ys = {round(y, 2) for _, y in _vertices(layout.band.d)}
    for i, day in enumerate(curve.times):
        if curve.events[i]:
            assert round(_y(chart, curve.cumulative_incidence_lower[i]), 2) in ys, day
            assert round(_y(chart, curve.cumulative_incidence_upper[i]), 2) in ys, day
    assert layout.band.d.startswith("M ")
    assert layout.band.d.endswith(" Z")


def test_censor_marks_at_censored_days(
    chart: SurvivalChart, curves: dict[str, SurvivalCurve]
) -> None:
    """A "+" sits on the line at every day with a censoring, and nowhere else."""
    root = _parse(chart)
    for layout, (label, curve) in zip(chart.curves, curves.items(), strict=True):
        marks = root.findall(f"{SVG}path[@class='km-censor'][@data-arm='{label}']")
        assert len(marks) == len(curve.censored_times)
        for mark, day in zip(marks, curve.censored_times, strict=True):
            corners = _vertices(mark.get("d") or "")
            centre_x = (corners[0][0] + corners[1][0]) / 2
            centre_y = corners[0][1]
            assert centre_x == pytest.approx(_x(chart, day), abs=0.01)
            assert centre_y == pytest.approx(
                _y(chart, curve.cumulative_incidence_at(day)), abs=0.01
            )
        assert [m.day for m in layout.marks] == list(curve.censored_times)
    # The tie on day 45 of the second arm: the mark sits after that day's step (events first).
    tie = chart.curves[1].marks[0]
    assert (tie.day, tie.count) == (45, 1)
    assert tie.y == pytest.approx(_y(chart, 0.2), abs=0.01)


def test_month_ticks(chart: SurvivalChart) -> None:
    """The axis runs in whole months to the last observation (day 400, so 14 months)."""
    assert chart.months == 14
    assert chart.days == pytest.approx(14 * DAYS_PER_MONTH)
    assert [t.label for t in chart.month_ticks] == [str(m) for m in range(0, 15, 2)]
    for tick in chart.month_ticks:
        assert tick.at == pytest.approx(_x(chart, int(tick.label) * DAYS_PER_MONTH), abs=0.01)
    assert chart.month_ticks[0].at == chart.plot_left
    assert chart.month_ticks[-1].at == chart.plot_right
    assert [t.label for t in chart.percent_ticks] == ["0%", "25%", "50%", "75%", "100%"]
    assert chart.percent_ticks[0].at == chart.bottom
    assert chart.percent_ticks[-1].at == chart.top
    texts = [t.text for t in _parse(chart).iter(f"{SVG}text")]
    assert "12" in texts
    assert "100%" in texts


def test_fixed_months_cut_longer_curves(curves: dict[str, SurvivalCurve]) -> None:
    """A fixed 6-month axis ends every line at its edge and drops marks beyond it."""
    chart = layout_survival_chart(curves, title="t", months=6)
    assert [t.label for t in chart.month_ticks] == ["0", "1", "2", "3", "4", "5", "6"]
    for layout in chart.curves:
        assert max(x for x, _ in _vertices(layout.d)) == pytest.approx(chart.plot_right)
        assert all(m.day <= chart.days for m in layout.marks)
    assert "after month 6 are not shown" in chart.description


def test_legend_gives_children_and_events(chart: SurvivalChart) -> None:
    """Each curve's legend entry counts its children, events and censorings, and its median."""
    texts = [c.legend.text for c in chart.curves]
    assert texts == [
        "NIM: 10 children, 5 with permanence, 5 censored; median 6.6 months",
        "Comparator: 5 children, 2 with permanence, 3 censored; median 5.9 months",
    ]
    assert [(c.children, c.events) for c in chart.curves] == [(10, 5), (5, 2)]
    legends = _parse(chart).findall(f"{SVG}g[@class='km-legend']")
    assert [g.findtext(f"{SVG}text") for g in legends] == texts


def test_median_not_reached_is_said() -> None:
    """A curve that never reaches half says so in its legend."""
    chart = layout_survival_chart(
        {"NIM": kaplan_meier([(10, True), (20, False), (30, False)])}, title="t"
    )
    assert chart.curves[0].legend.text.endswith("median not reached")


def test_arm_titles_are_escaped() -> None:
    """Arm labels and chart titles with <&> reach the SVG escaped, and parse back intact."""
    label = 'Arm <b>&"x"</b>'
    chart = layout_survival_chart({label: kaplan_meier(FIRST)}, title="Site <&> one")
    svg = render_svg(chart)
    assert "<b>" not in svg
    root = ET.fromstring(svg)
    assert root.findtext(f"{SVG}title") == "Site <&> one"
    assert root.find(f"{SVG}path[@class='km-curve']").get("data-arm") == label  # type: ignore[union-attr]
    assert (root.findtext(f"{SVG}g/{SVG}text") or "").startswith(label + ":")


def test_empty_curve_draws_no_line() -> None:
    """An arm with no children gets a legend entry saying so, but no line, band or marks."""
    chart = layout_survival_chart(
        {"NIM": kaplan_meier([]), "Comparator": kaplan_meier([(20, False)])}, title="t"
    )
    empty = chart.curves[0]
    assert (empty.d, empty.band, empty.marks) == ("", None, ())
    assert empty.legend.text == "NIM: no children"
    root = _parse(chart)
    assert [p.get("data-arm") for p in root.findall(f"{SVG}path[@class='km-curve']")] == [
        "Comparator"
    ]
    assert len(root.findall(f"{SVG}path[@class='km-band']")) == 1


def test_no_curves_at_all() -> None:
    """A chart without data still has its axes: a year of months and the percent scale."""
    chart = layout_survival_chart({}, title="t")
    assert chart.curves == ()
    assert chart.months == 12
    root = _parse(chart)
    assert root.findall(f"{SVG}path[@class='km-curve']") == []
    assert "no arms to show" in (root.findtext(f"{SVG}desc") or "")


def test_mixed_levels_are_refused() -> None:
    """Curves drawn together must share a confidence level (the description states one)."""
    with pytest.raises(InvalidInput, match="one confidence level"):
        layout_survival_chart(
            {"a": kaplan_meier(FIRST), "b": kaplan_meier(FIRST, level=0.9)}, title="t"
        )


@pytest.mark.parametrize("months", [0, -3, True, 2.5])
def test_bad_months_are_refused(months: int) -> None:
    """A fixed axis must be a whole number of months, at least one."""
    with pytest.raises(InvalidInput) as caught:
        layout_survival_chart({"a": kaplan_meier(FIRST)}, title="t", months=months)
    assert caught.value.field == "months"
