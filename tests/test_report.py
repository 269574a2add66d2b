"""Tests of nim_workflow._report: the summary, its plain text and the static HTML report.

The cohort is built by hand with an injected clock and explicit instants, so every number the
report shows (durations, percentiles, on-time rates, overdue and due-soon lists) is checked
against one worked out on paper below.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest

import nim_workflow as nw
from nim_workflow._report import (
    CaseTimeline,
    SiteSummary,
    StageSpan,
    Summary,
    _html,
    _tables,
    build_report,
    format_summary,
    percentile,
    site_months,
    summarize,
)
from nim_workflow._report._tables import Cell, Column, Row, Table, csv_field, rule_label

UTC = dt.UTC
AT = dt.datetime(2025, 4, 7, 12, 0, tzinfo=UTC)  # a Monday; BST, so 13:00 in London

SW = nw.Actor("sw-1", roles={"social_worker"})
TM = nw.Actor("tm-1", roles={"team_manager"})
CL = nw.Actor("cl-1", roles={"clinician"})


def at(month: int, day: int, hour: int = 10) -> dt.datetime:
    """An instant in 2025, UTC."""
    return dt.datetime(2025, month, day, hour, 0, tzinfo=UTC)


def open_and_accept(
    engine: nw.Engine, reference: str, accepted: dt.datetime, **facts: object
) -> None:
    """Open a London case on Monday 6 January 2025 and accept the referral at ``accepted``."""
    engine.open_case(
        reference, pathway="nim-uk-england", site="london", actor=SW, at=at(1, 6), facts=facts
    )
    engine.record(reference, {"consent_recorded": True}, actor=SW, at=at(1, 6, 11))
    engine.fire(reference, "accept_referral", actor=TM, at=accepted)


@pytest.fixture
def engine(db_url: str) -> Iterator[nw.Engine]:
    """The hand-built cohort (worked out in the comments), on a clock stopped at AT."""
    with nw.Engine(db_url, clock=lambda: AT) as built:
        built.migrate()
        # A: referral 2 days (2 wd); first LAC review held in time (due 30 Jan), the next due
        # 28 Apr; assessment 8 Jan -> 26 Mar = 77 days, 55 wd, met (due 2 Apr); in treatment.
        open_and_accept(built, "LDN-T-0001", at(1, 8), entered_care_on=dt.date(2025, 1, 2))
        built.record("LDN-T-0001", {"lac_review_held_on": dt.date(2025, 1, 28)}, CL, at(1, 28))
        built.record("LDN-T-0001", {"assessment_report_filed": True}, actor=CL, at=at(3, 25))
        built.fire("LDN-T-0001", "offer_treatment", actor=TM, at=at(3, 26))
        # B: referral 4 days (4 wd); assessment due 4 Apr: overdue by 3 days; LAC review due
        # 30 Jan never held: overdue by 67 days.
        open_and_accept(built, "LDN-T-0002", at(1, 10), entered_care_on=dt.date(2025, 1, 2))
        # C: referral 10 days (8 wd), met (due 20 Jan); assessment due 10 Apr: due in 3 days.
        open_and_accept(built, "LDN-T-0003", at(1, 16))
        # D: referral 21 days (15 wd), missed; assessment due 21 Apr, which ends after AT + 14
        # days, so not "due soon"; LAC review held late (missed), the next due 10 May;
        # care proceedings due 4 Jul.
        open_and_accept(
            built,
            "LDN-T-0004",
            at(1, 27),
            entered_care_on=dt.date(2025, 1, 2),
            proceedings_issued_on=dt.date(2025, 1, 3),
        )
        built.record("LDN-T-0004", {"lac_review_held_on": dt.date(2025, 2, 10)}, SW, at(2, 10))
        # E: withdrawn from referral after 2 days: its stay and its cancelled deadline count
        # for nothing.
        built.open_case("LDN-T-0005", "nim-uk-england", "london", actor=SW, at=at(1, 6))
        built.fire("LDN-T-0005", "withdraw", actor=TM, reason="consent withdrawn", at=at(1, 8))
        # Glasgow: one referral, opened 3 Mar, decision due 17 Mar: overdue by 21 days.
        built.open_case("GLA-T-0001", "nim-uk-scotland", "glasgow", actor=SW, at=at(3, 3))
        yield built


@pytest.fixture
def summary(engine: nw.Engine) -> Summary:
    """The cohort summarised at AT."""
    return summarize(engine, at=AT)


# -- a tiny DOM, enough to read the report back ---------------------------------------------------

_VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "source", "wbr", "col"})


class Node:
    """An element of the parsed page."""

    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> set[str]:
        """The element's classes."""
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        """All text inside, whitespace collapsed."""
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join(" ".join(parts).split())

    def walk(self) -> Iterator[Node]:
        """This element and every element inside it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def by_id(self, element_id: str) -> Node:
        """The element with this id."""
        found = [n for n in self.walk() if n.attrs.get("id") == element_id]
        assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
        return found[0]

    def by_class(self, name: str, tag: str | None = None) -> list[Node]:
        """Elements inside with this class (and tag)."""
        return [n for n in self.walk() if name in n.classes and (tag is None or n.tag == tag)]

    def row(self, **data: str) -> Node:
        """The one table row whose data-* attributes match."""
        found = [
            n
            for n in self.walk()
            if n.tag == "tr" and all(n.attrs.get(f"data-{k}") == v for k, v in data.items())
        ]
        assert len(found) == 1, f"{len(found)} rows with {data}"
        return found[0]

    def cells(self) -> list[str]:
        """The text of each cell of a row."""
        return [n.text() for n in self.walk() if n.tag in ("td", "th") and n is not self]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in _VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse(html: str) -> Node:
    """Parse the report into a tiny DOM."""
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


@pytest.fixture
def page(engine: nw.Engine) -> Node:
    """The report of the cohort at AT, parsed."""
    return parse(build_report(engine, at=AT))


# -- percentile -----------------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    """The quantile is read at position (n - 1) * q, interpolating linearly."""
    assert percentile([2, 4, 10, 21], 0.5) == 7.0
    assert percentile([2, 4, 10, 21], 0.9) == pytest.approx(17.7)
    assert percentile([5], 0.9) == 5.0
    assert percentile([1, 2, 3], 0.5) == 2.0
    assert math.isnan(percentile([], 0.5))


# -- the summary ----------------------------------------------------------------------------------


def test_summary_has_every_site_in_order(summary: Summary) -> None:
    """Every site with cases is summarised, alphabetically, with its pathway."""
    assert [s.site for s in summary.sites] == ["glasgow", "london"]
    assert summary.sites[1].pathway_ids == ("nim-uk-england",)
    assert summary.pathway_ids == ("nim-uk-england", "nim-uk-scotland")
    assert summary.at == AT


def test_summary_counts_opened_closed_and_outcomes(summary: Summary) -> None:
    """Opened, open, closed and outcome counts come from the cases."""
    london = summary.sites[1]
    assert (london.opened, london.open, london.closed) == (5, 4, 1)
    assert london.outcomes == (("withdrawn", 1),)


def test_summary_open_cases_by_stage_with_days(summary: Summary) -> None:
    """Open cases are grouped by stage in pathway order, with calendar and working days."""
    london = summary.sites[1]
    groups = {g.stage: g for g in london.open_by_stage}
    assert [g.stage for g in london.open_by_stage] == ["assessment", "treatment"]
    assessment = [(c.reference, c.days_in_stage) for c in groups["assessment"].cases]
    assert assessment == [("LDN-T-0002", 87), ("LDN-T-0003", 81), ("LDN-T-0004", 70)]
    # Fri 10 Jan to Mon 7 Apr 2025: 12 whole weeks and a Monday, no bank holiday between.
    assert groups["assessment"].cases[0].working_days_in_stage == 61
    treated = groups["treatment"].cases[0]
    assert (treated.reference, treated.days_in_stage, treated.working_days_in_stage) == (
        "LDN-T-0001",
        12,
        8,
    )


def test_summary_stage_durations_median_and_p90(summary: Summary) -> None:
    """Completed stays give the medians and 90th percentiles worked out by hand."""
    durations = {d.stage: d for d in summary.sites[1].stage_durations}
    referral = durations["referral"]
    # Days [2, 4, 10, 21], working days [2, 4, 8, 15]; the withdrawn stay is left out.
    assert referral.count == 4
    assert referral.median_days == 7.0
    assert referral.p90_days == pytest.approx(17.7)
    assert referral.median_working_days == 6.0
    assert referral.p90_working_days == pytest.approx(12.9)
    assessment = durations["assessment"]
    assert (assessment.count, assessment.median_days, assessment.p90_days) == (1, 77.0, 77.0)
    assert (assessment.median_working_days, assessment.p90_working_days) == (55.0, 55.0)
    assert "treatment" not in durations


def test_summary_on_time_rates(summary: Summary) -> None:
    """met / (met + missed) per rule; cancelled deadlines count for nothing."""
    rates = {r.rule: r for r in summary.sites[1].on_time}
    referral = rates["referral_decision"]
    assert (referral.met, referral.missed, referral.rate) == (3, 1, 0.75)
    lac = rates["lac_review"]
    assert (lac.met, lac.missed, lac.open, lac.open_overdue, lac.rate) == (1, 1, 3, 1, 0.5)
    assessment = rates["assessment"]
    assert (assessment.met, assessment.missed, assessment.open) == (1, 0, 3)
    assert assessment.open_overdue == 1
    assert assessment.rate == 1.0
    assert rates["care_proceedings"].rate is None
    assert rates["care_proceedings"].open == 1


def test_summary_overdue_and_due_soon(summary: Summary) -> None:
    """Overdue lists exactly the open deadlines past due; due soon the next 14 days."""
    glasgow, london = summary.sites
    overdue = [(i.reference, i.name, i.due_on, i.days) for i in london.overdue]
    assert overdue == [
        ("LDN-T-0002", "lac_review", dt.date(2025, 1, 30), 67),
        ("LDN-T-0002", "assessment", dt.date(2025, 4, 4), 3),
    ]
    due_soon = [(i.reference, i.name, i.due_on, i.days) for i in london.due_soon]
    assert due_soon == [("LDN-T-0003", "assessment", dt.date(2025, 4, 10), 3)]
    assert [(i.reference, i.name, i.days) for i in glasgow.overdue] == [
        ("GLA-T-0001", "referral_decision", 21)
    ]
    assert glasgow.due_soon == ()


def test_summary_of_one_site(engine: nw.Engine) -> None:
    """site= limits the summary to that site."""
    only = summarize(engine, site="glasgow", at=AT)
    assert [s.site for s in only.sites] == ["glasgow"]
    assert only.pathway_ids == ("nim-uk-scotland",)


def test_summary_needs_an_aware_instant(engine: nw.Engine) -> None:
    """A naive at is refused."""
    with pytest.raises(nw.InvalidInput):
        summarize(engine, at=dt.datetime(2025, 4, 7, 12, 0))


def test_format_summary_is_a_readable_table(summary: Summary) -> None:
    """The plain text names each site and shows the rates, lists and durations."""
    text = format_summary(summary)
    assert text.startswith("Coordinator's summary as of 2025-04-07 12:00 UTC")
    assert "== london (nim-uk-england) ==" in text
    assert "Cases: 5 opened, 4 open, 1 closed (withdrawn 1)" in text
    london = text.split("== london")[1]
    referral_line = next(line for line in london.splitlines() if "referral_decision" in line)
    assert referral_line.split()[:4] == ["referral_decision", "3", "1", "75%"]
    assert "17.7" in text
    assert "12.9" in text
    assert "LDN-T-0002" in text
    assert "GLA-T-0001" in text


# -- the HTML -------------------------------------------------------------------------------------


def test_report_has_a_section_per_site(page: Node) -> None:
    """Every site gets its own section, with the as-of date in the header."""
    sections = [n.attrs["id"] for n in page.by_class("site", tag="section")]
    assert sections == ["site-glasgow", "site-london"]
    assert "2025-04-07" in page.by_class("meta", tag="p")[0].text()


def test_report_overdue_rows_are_exactly_the_overdue_deadlines(page: Node) -> None:
    """The overdue table of each site has one row per overdue deadline and no more."""
    london = page.by_id("overdue-london").by_class("overdue-row", tag="tr")
    assert [(r.attrs["data-reference"], r.attrs["data-deadline"]) for r in london] == [
        ("LDN-T-0002", "lac_review"),
        ("LDN-T-0002", "assessment"),
    ]
    assert london[0].cells() == [
        "LDN-T-0002",
        "LAC review",
        "Statutory clock",
        "2025-01-30",
        "67",
    ]
    glasgow = page.by_id("overdue-glasgow").by_class("overdue-row", tag="tr")
    assert [r.attrs["data-deadline"] for r in glasgow] == ["referral_decision"]
    assert len(page.by_class("overdue-row", tag="tr")) == 3


def test_report_due_soon_rows(page: Node) -> None:
    """The due-soon table lists what falls due in the next 14 days."""
    london = page.by_id("due-soon-london").by_class("due-soon-row", tag="tr")
    assert [r.cells() for r in london] == [
        ["LDN-T-0003", "Assessment", "Assessment", "2025-04-10", "3"]
    ]
    assert page.by_id("due-soon-glasgow").by_class("due-soon-row") == []


def test_report_on_time_rates(page: Node) -> None:
    """The on-time table shows met, missed and the rate per deadline rule."""
    london = page.by_id("site-london")
    assert london.row(rule="referral_decision").cells()[:5] == [
        "Referral decision",
        "stage",
        "3",
        "1",
        "75%",
    ]
    assert london.row(rule="lac_review").cells()[1:5] == ["statutory", "1", "1", "50%"]
    assert london.row(rule="care_proceedings").cells()[2:5] == ["0", "0", "-"]


def test_report_stage_durations(page: Node) -> None:
    """The durations table shows median and p90, in days and working days."""
    table = page.by_id("site-london").by_class("stage-durations", tag="table")[0]
    assert table.row(stage="referral").cells() == ["Referral", "4", "7", "17.7", "6", "12.9"]
    assert table.row(stage="assessment").cells() == ["Assessment", "1", "77", "77", "55", "55"]


def test_report_timeline_has_a_bar_row_per_case(page: Node) -> None:
    """The timeline SVG has a labelled row with bars for every case, and marks the breaches."""
    timeline = page.by_id("timeline-london")
    assert timeline.tag == "svg"
    rows = timeline.by_class("case-row", tag="g")
    references = [r.attrs["data-reference"] for r in rows]
    assert sorted(references) == [f"LDN-T-000{n}" for n in range(1, 6)]
    for row in rows:
        assert row.by_class("bar", tag="rect"), row.attrs["data-reference"]
        label = row.by_class("label", tag="text")[0].text()
        assert label == row.attrs["data-reference"]
    breaches = timeline.by_class("breach")
    assert {b.attrs["data-deadline"] for b in breaches} == {
        "referral_decision",
        "lac_review",
        "assessment",
    }
    assert all(b.by_class("breach-x") for b in breaches)
    # Every bar and marker explains itself in a tooltip.
    for element in [*timeline.by_class("bar"), *timeline.by_class("marker")]:
        assert any(child.tag == "title" for child in element.walk())


def test_summary_marks_say_what_the_engines_deadlines_say(
    engine: nw.Engine, summary: Summary
) -> None:
    """Each timeline mark's status is Deadline.state read at the same instant (no cancelled)."""
    marks = {
        (t.reference, m.name, m.occurrence): m.status
        for s in summary.sites
        for t in s.timelines
        for m in t.deadlines
    }
    states = {
        (d.reference, d.name, d.occurrence): d.state
        for case in engine.cases(open_only=False)
        for d in engine.deadlines(case.reference, at=AT)
        if d.status != "cancelled"
    }
    assert marks == states
    assert marks[("LDN-T-0002", "assessment", 1)] == "overdue"
    listed = {(d.reference, d.name) for d in engine.overdue(at=AT)}
    assert listed == {(ref, name) for (ref, name, _), state in marks.items() if state == "overdue"}


def test_report_calls_a_deadline_past_due_overdue(engine: nw.Engine, page: Node) -> None:
    """Marker tooltips, the legend and the on-time table use the word overdue."""
    marker = next(
        m
        for m in page.by_id("timeline-london").by_class("marker")
        if (m.attrs["data-reference"], m.attrs["data-deadline"]) == ("LDN-T-0002", "assessment")
    )
    assert "marker-overdue" in marker.classes
    title = next(n for n in marker.walk() if n.tag == "title").text()
    assert title.endswith("due 2025-04-04: BREACH: overdue")
    html = build_report(engine, at=AT)
    assert "past due" not in html
    assert "breach: deadline overdue" in html
    header = page.by_id("site-london").by_class("on-time", tag="table")[0].by_class("num")
    assert [h.text() for h in header if h.tag == "th"][-2:] == ["Unsettled", "Overdue"]
    text = format_summary(summarize(engine, at=AT))
    rates_header = next(line for line in text.splitlines() if line.split()[:1] == ["deadline"])
    assert rates_header.split()[-2:] == ["unsettled", "overdue"]


def test_report_draws_each_pathway_in_use(page: Node) -> None:
    """Each pathway in use gets a drawn diagram and its mermaid source."""
    diagrams = page.by_class("diagram", tag="svg")
    assert len(diagrams) == 2
    for diagram in diagrams:
        stages = {b.attrs["data-stage"] for b in diagram.by_class("box", tag="g")}
        assert stages == {s.id for s in nw.bundled_pathways()["nim-uk-england"].stages}
    sources = [n.text() for n in page.walk() if n.tag == "details"]
    assert len(sources) == 2
    assert all("stateDiagram-v2" in s for s in sources)


def test_report_loads_nothing_from_the_network(engine: nw.Engine) -> None:
    """The page is self-contained: no URL, one inline script, no external stylesheet or font."""
    html = build_report(engine, at=AT)
    lowered = html.lower()
    assert "http://" not in lowered
    assert "https://" not in lowered
    assert "//" not in re.sub(r"(?m)^\s*//.*$", "", lowered.split("<script>")[1])
    assert lowered.count("<script") == 1
    assert "<script>" in lowered  # inline: no src, no type other than JavaScript
    assert "<link" not in lowered
    assert "@import" not in lowered
    assert "src=" not in lowered
    assert not re.search(r"url\((?!#)", lowered.split("<script>")[0])  # only url(#pattern)
    script = lowered.split("<script>")[1].split("</script>")[0]
    for reach in ("fetch(", "xmlhttprequest", "websocket", "sendbeacon", "import(", "eval("):
        assert reach not in script, reach


def test_report_holds_no_free_text_from_the_cases(engine: nw.Engine) -> None:
    """Reasons given for actions (free text) never reach the report."""
    html = build_report(engine, at=AT)
    assert "consent withdrawn" not in html


def test_report_escapes_a_hostile_site_name(sqlite_url: str) -> None:
    """A site name with markup in it is escaped everywhere it appears."""
    hostile = '<script>alert("x")</script>'
    declared = nw.Site(
        id=hostile,
        title="A hostile name, declared",
        timezone="Europe/London",
        calendar="england-and-wales",
        pathways={"nim-uk-england"},
    )
    with nw.Engine(sqlite_url, clock=lambda: AT, sites=[declared]) as engine:
        engine.migrate()
        engine.open_case("LDN-X-0001", "nim-uk-england", hostile, actor=SW, at=at(3, 3))
        html = build_report(engine, at=AT)
    assert html.lower().count("<script") == 1  # the page's own, at the end
    assert "alert(" not in html.split("<script>")[1]
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    # The CSV file names keep only safe characters of the site's name.
    files = {n.attrs["data-file"] for n in parse(html).walk() if n.tag == "table"}
    assert "script-alert-x-script-overdue.csv" in files
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+\.csv", f) for f in files)
    page = parse(html)
    assert [n.attrs["id"] for n in page.by_class("site", tag="section")] == [f"site-{hostile}"]


def test_report_of_one_site_and_of_nothing(engine: nw.Engine, sqlite_url: str) -> None:
    """site= reports one site; an empty database gives a valid page saying so."""
    page = parse(build_report(engine, site="london", at=AT))
    assert [n.attrs["id"] for n in page.by_class("site", tag="section")] == ["site-london"]
    empty_url = sqlite_url.replace("nimwf.db", "empty.db")
    with nw.Engine(empty_url) as empty:
        empty.migrate()
        html = build_report(empty)
    assert "No cases to report." in html


def test_report_needs_an_aware_instant(engine: nw.Engine) -> None:
    """A naive at is refused."""
    with pytest.raises(nw.InvalidInput):
        build_report(engine, at=dt.datetime(2025, 4, 7))


# -- trends by month ------------------------------------------------------------------------------

LONDON = zoneinfo.ZoneInfo("Europe/London")
ZONES = {"nim-uk-england": LONDON, "nim-uk-scotland": LONDON}
STAGES = ["referral", "assessment", "treatment", "recommendation", "court"]


def test_trends_by_month_worked_by_hand(summary: Summary) -> None:
    """Referrals by month opened, on-time by month settled, from the first case's month on.

    London: all five cases opened in January. Settled in January: the referral decisions of A,
    B, C (met) and D (missed, 27 Jan), A's LAC review (met, 28 Jan); in February D's late LAC
    review (missed, 10 Feb); in March A's assessment (met, 26 Mar); nothing in April. E's
    referral deadline was cancelled (withdrawn): it counts nowhere.
    """
    glasgow, london = (site_months(s, ZONES, STAGES, AT) for s in summary.sites)
    rows = [(t.month, t.opened, t.met, t.missed, t.rate) for t in london.trends]
    assert rows == [
        (dt.date(2025, 1, 1), 5, 4, 1, 0.8),
        (dt.date(2025, 2, 1), 0, 0, 1, 0.0),
        (dt.date(2025, 3, 1), 0, 1, 0, 1.0),
        (dt.date(2025, 4, 1), 0, 0, 0, None),
    ]
    # The month totals are the rule table's totals: the same deadlines, by the same definition.
    rates = summary.sites[1].on_time
    assert sum(t.met for t in london.trends) == sum(r.met for r in rates)
    assert sum(t.missed for t in london.trends) == sum(r.missed for r in rates)
    assert [(t.month, t.opened) for t in glasgow.trends] == [
        (dt.date(2025, 3, 1), 1),
        (dt.date(2025, 4, 1), 0),
    ]


def test_stages_by_month_worked_by_hand(summary: Summary) -> None:
    """Cases in each stage at each local month end, and at AT for the month it falls in."""
    london = site_months(summary.sites[1], ZONES, STAGES, AT)
    counts = [(m.month.month, dict(m.counts), m.total) for m in london.stages]
    # End of January: A to D in assessment (E withdrawn); end of March (00:00 BST on 1 April,
    # 23:00 UTC on 31 March): A in treatment since 26 March. Every stage listed, zeros too.
    assert [
        (month, c["referral"], c["assessment"], c["treatment"], t) for month, c, t in counts
    ] == [
        (1, 0, 4, 0, 4),
        (2, 0, 4, 0, 4),
        (3, 0, 3, 1, 4),
        (4, 0, 3, 1, 4),
    ]
    assert all(list(c) == STAGES for _, c, _ in counts)
    glasgow = site_months(summary.sites[0], ZONES, STAGES, AT)
    assert [dict(m.counts)["referral"] for m in glasgow.stages] == [1, 1]


def test_month_ends_are_local_midnight() -> None:
    """A case opened at 23:30 UTC on 31 May is a June referral in London (BST)."""
    timeline = _open_case_timeline(opened_at=dt.datetime(2025, 5, 31, 23, 30, tzinfo=UTC))
    site = _site_of(timeline)
    months = site_months(site, ZONES, STAGES, dt.datetime(2025, 6, 10, tzinfo=UTC))
    assert [(t.month, t.opened) for t in months.trends] == [(dt.date(2025, 6, 1), 1)]
    as_utc = site_months(site, {}, STAGES, dt.datetime(2025, 6, 10, tzinfo=UTC))
    assert [(t.month, t.opened) for t in as_utc.trends] == [
        (dt.date(2025, 5, 1), 1),
        (dt.date(2025, 6, 1), 0),
    ]


def _open_case_timeline(*, opened_at: dt.datetime) -> CaseTimeline:
    """A one-stay open case at referral, opened at ``opened_at``."""
    return CaseTimeline(
        reference="LDN-M-0001",
        pathway_id="nim-uk-england",
        opened_at=opened_at,
        closed_at=None,
        outcome=None,
        stage="referral",
        spans=(StageSpan(stage="referral", entered_at=opened_at, left_at=None),),
        deadlines=(),
        pauses=(),
    )


def _site_of(*timelines: CaseTimeline) -> SiteSummary:
    """A London summary holding only ``timelines``."""
    return SiteSummary(
        site="london",
        pathway_ids=("nim-uk-england",),
        opened=len(timelines),
        closed=0,
        outcomes=(),
        open_by_stage=(),
        stage_durations=(),
        on_time=(),
        overdue=(),
        due_soon=(),
        timelines=timelines,
    )


def test_report_shows_the_trends_table_and_chart(page: Node) -> None:
    """The trends table has a row per month with raw values; the chart a bar per month."""
    table = page.by_id("trends-london")
    rows = [n for n in table.walk() if n.tag == "tr" and "data-month" in n.attrs]
    assert [r.cells() for r in rows] == [
        ["Jan 2025", "5", "4", "1", "80%"],
        ["Feb 2025", "0", "0", "1", "0%"],
        ["Mar 2025", "0", "1", "0", "100%"],
        ["Apr 2025", "0", "0", "0", "-"],
    ]
    month = next(n for n in rows[0].walk() if n.tag == "td")
    assert month.attrs["data-value"] == "2025-01"
    rate = [n for n in rows[0].walk() if n.tag == "td"][-1]
    assert rate.attrs["data-value"] == "0.8"
    chart = page.by_id("trends-chart-london")
    assert chart.attrs["role"] == "img"
    assert next(n.text() for n in chart.walk() if n.tag == "title").startswith(
        "Referrals and on-time rate by month at london"
    )
    bars = chart.by_class("referrals", tag="rect")
    assert len(bars) == 4
    assert len(chart.by_class("rate-point", tag="circle")) == 3  # April has no rate
    stages = page.by_id("stages-chart-london")
    assert {b.attrs["data-stage"] for b in stages.by_class("bar")} == {"assessment", "treatment"}
    by_month = page.by_id("stages-by-month-london")
    headers = [n.attrs["data-key"] for n in by_month.walk() if n.tag == "th"]
    assert headers == ["month", *STAGES, "open"]
    assert by_month.row(month="2025-03").cells() == ["Mar 2025", "0", "3", "1", "0", "0", "4"]


# -- labels ---------------------------------------------------------------------------------------


def test_rule_labels_read_as_words() -> None:
    """Rule names become labels: words, acronyms in capitals, the first word capitalised."""
    assert rule_label("lac_review") == "LAC review"
    assert rule_label("referral_decision") == "Referral decision"
    assert rule_label("icso_limit") == "ICSO limit"
    assert rule_label("interim_cso") == "Interim CSO"
    assert rule_label("asfa_15_of_22") == "ASFA 15 of 22"
    assert rule_label("") == ""


def test_report_shows_titles_and_keeps_identifiers(page: Node) -> None:
    """Stages and rules show their titles; the identifiers stay in data values and tooltips."""
    overdue = page.by_id("overdue-london").by_class("overdue-row", tag="tr")[0]
    cells = [n for n in overdue.walk() if n.tag == "td"]
    assert (cells[1].text(), cells[1].attrs["data-value"]) == ("LAC review", "lac_review")
    assert (cells[2].text(), cells[2].attrs["data-value"]) == ("Statutory clock", "")
    open_case = page.by_id("open-cases-london").row(reference="LDN-T-0001")
    stage = [n for n in open_case.walk() if n.tag == "td"][1]
    assert (stage.text(), stage.attrs["data-value"]) == ("Treatment", "treatment")
    # A repeated, extended deadline: its label and tooltip name the occurrence; the tag is not
    # part of the label the CSV exports.
    cell = _tables._rule_cell(_tables.Labels(stages={}), "lac_review", 2, 1)
    column = Column(key="deadline", label="Deadline", titled=True)
    assert dict(cell.attributes(column)) == {
        "data-value": "lac_review",
        "data-label": "LAC review #2",
        "title": "lac_review #2",
    }
    assert cell.tags == (("extended 1\u00d7", ""),)
    # A stage column's heading names the stage's identifier in its tooltip.
    by_month = page.by_id("stages-by-month-london")
    headings = {n.attrs["data-key"]: n for n in by_month.walk() if n.tag == "th"}
    assert headings["recommendation"].text() == "Final report and recommendation"
    assert headings["recommendation"].attrs["title"] == "recommendation"
    rule = [n for n in page.by_id("on-time-london").row(rule="lac_review").walk() if n.tag == "td"]
    assert rule[0].text() == "LAC review"
    bar_titles = [
        n.text()
        for bar in page.by_id("timeline-london").by_class("bar")
        for n in bar.walk()
        if n.tag == "title"
    ]
    assert any(
        t.startswith("LDN-T-0001: Treatment (treatment) from 2025-03-26") for t in bar_titles
    )
    marker_titles = [
        n.text()
        for m in page.by_id("timeline-london").by_class("marker")
        for n in m.walk()
        if n.tag == "title"
    ]
    assert any("LAC review (lac_review) (statutory clock)" in t for t in marker_titles)


# -- the tables -----------------------------------------------------------------------------------


def test_every_table_sorts_filters_and_exports(page: Node) -> None:
    """Every data table has sort buttons saying their kind, the tools, and a cell per column."""
    tables = [n for n in page.walk() if n.tag == "table"]
    assert len(tables) == 2 * len(_html.SITE_TABLES)
    for table in tables:
        assert "data" in table.classes
        assert table.attrs["data-file"].endswith(".csv")
        headers = [n for n in table.walk() if n.tag == "th"]
        assert headers
        for th in headers:
            assert th.attrs["data-sort"] in ("text", "number", "date")
            assert [n.tag for n in th.walk()][1] == "button"
        block = table.parent
        while block is not None and "table-block" not in block.classes:
            block = block.parent
        assert block is not None
        tools = block.by_class("table-tools")[0]
        assert "hidden" in tools.attrs  # shown by the script; without it the table is all
        assert tools.by_class("table-filter", tag="input")
        assert tools.by_class("table-csv", tag="button")
        for row in (n for n in table.walk() if n.tag == "tr" and "empty" not in n.classes):
            cells = [n for n in row.walk() if n.tag == "td"]
            if not cells:
                continue
            assert len(cells) == len(headers)
            for th, td in zip(headers, cells, strict=True):
                raw = td.attrs.get("data-value", td.text())
                if th.attrs["data-sort"] == "number" and raw != "":
                    float(raw)
                if th.attrs["data-sort"] == "date":
                    assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", raw), raw


def test_csv_field_defuses_formulas_and_quotes() -> None:
    """Formula-like starts get a quote (numbers do not); commas, quotes and breaks are quoted."""
    assert csv_field("=1+2") == "'=1+2"
    assert csv_field("+44") == "'+44"
    assert csv_field("@SUM(A1)") == "'@SUM(A1)"
    assert csv_field("-x") == "'-x"
    assert csv_field("-3") == "-3"
    assert csv_field("-0.5") == "-0.5"
    assert csv_field("\tx") == "'\tx"
    assert csv_field("plain") == "plain"
    assert csv_field('a,"b"') == '"a,""b"""'
    assert csv_field("=a,b") == '"\'=a,b"'
    assert csv_field("two\nlines") == '"two\nlines"'
    assert csv_field("") == ""


def test_table_csv_has_every_row_raw_values_and_titles() -> None:
    """A titled column exports the identifier and its title; all rows; CRLF line ends."""
    table = Table(
        id="t",
        name="overdue",
        site="london",
        heading="Overdue",
        columns=(
            Column(key="reference", label="Reference"),
            Column(key="deadline", label="Deadline", titled=True),
            Column(key="days", label="Days", sort="number"),
        ),
        rows=(
            Row(
                cells=(
                    Cell(text="LDN-1"),
                    Cell(text="LAC review", value="lac_review", tags=(("extended 2x", ""),)),
                    Cell(text="67"),
                )
            ),
            Row(cells=(Cell(text="=HYPERLINK()"), Cell(text="A, B", value="a_b"), Cell(text="-3"))),
        ),
    )
    assert table.to_csv() == (
        "reference,deadline,deadline_title,days\r\n"
        "LDN-1,lac_review,LAC review,67\r\n"
        '\'=HYPERLINK(),a_b,"A, B",-3\r\n'
    )
    assert table.file_name == "london-overdue.csv"
    assert Table(**{**_fields(table), "site": "../<x> y"}).file_name == "x-y-overdue.csv"


def test_table_rows_are_escaped() -> None:
    """Markup in a value, a data attribute or a tag reaches the page escaped."""
    table = Table(
        id="t",
        name="x",
        site="s",
        heading="X",
        columns=(Column(key="a", label="A", titled=True),),
        rows=(
            Row(
                cells=(Cell(text="<b>", value='"><i>', tags=(("<u>", "x"),)),),
                data=(("reference", "<s>"),),
            ),
        ),
    )
    html = str(table.body_html())
    assert "<b>" not in html
    assert "<i>" not in html
    assert "<u>" not in html
    assert "<s>" not in html
    assert 'data-value="&#34;&gt;&lt;i&gt;"' in html
    assert "&lt;b&gt;" in html
    empty = Table(**{**_fields(table), "rows": (), "empty": "<none>"})
    assert str(empty.body_html()) == '<tr class="empty"><td colspan="1">&lt;none&gt;</td></tr>'


def _fields(table: Table) -> dict[str, object]:
    return {name: getattr(table, name) for name in Table.__dataclass_fields__}


def test_page_csv_of_a_table_is_the_models(engine: nw.Engine, summary: Summary) -> None:
    """What the page's cells carry reads back as the model's CSV (raw values, then titles)."""
    views = _html.site_views(summary, [engine.pathway(p) for p in summary.pathway_ids])
    overdue = next(t for t in views[1].tables if t.name == "overdue")
    assert overdue.to_csv().splitlines() == [
        "reference,deadline,deadline_title,stage,stage_title,due_on,days",
        "LDN-T-0002,lac_review,LAC review,,Statutory clock,2025-01-30,67",
        "LDN-T-0002,assessment,Assessment,assessment,Assessment,2025-04-04,3",
    ]


# -- the timeline at scale ------------------------------------------------------------------------


def test_timeline_puts_the_cases_most_in_need_of_attention_first(summary: Summary) -> None:
    """Overdue first, then the open case due soonest, then the rest, closed cases last."""
    order = [t.reference for t in _html.attention_order(summary.sites[1].timelines)]
    # B is overdue; C's assessment is due 10 Apr, D's 21 Apr; A's next LAC review 28 Apr
    # (or its treatment deadline, later); E is closed.
    assert order[:3] == ["LDN-T-0002", "LDN-T-0003", "LDN-T-0004"]
    assert order[-1] == "LDN-T-0005"
    assert sorted(order) == [f"LDN-T-000{n}" for n in range(1, 6)]


def test_timeline_draws_at_most_its_limit_and_says_how_many_it_leaves_out(
    engine: nw.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the limit the timeline draws the first cases by attention and notes the rest."""
    monkeypatch.setattr(_html, "TIMELINE_ROWS", 2)
    page = parse(build_report(engine, at=AT))
    timeline = page.by_id("timeline-london")
    rows = timeline.by_class("case-row", tag="g")
    assert [r.attrs["data-reference"] for r in rows] == ["LDN-T-0002", "LDN-T-0003"]
    title = next(n for n in timeline.walk() if n.tag == "title").text()
    assert title.startswith("Timeline of 2 of 5 cases at london")
    note = page.by_id("site-london").by_class("timeline-note")[0].text()
    assert note.startswith("Showing 2 of 5 cases, those most in need of attention")
    assert "3 cases are not drawn here" in note
    # The tables and the month chart still count every case.
    assert len(page.by_id("open-cases-london").by_class("open-case", tag="tr")) == 4
    glasgow = page.by_id("site-glasgow").by_class("timeline-note")[0].text()
    assert glasgow.startswith("Every case (1)")


# -- caseloads ------------------------------------------------------------------------------------


def test_caseload_table_counts_each_worker_s_open_cases_worked_by_hand(engine: nw.Engine) -> None:
    """sw-1 holds A (treatment) and B (assessment, 2 deadlines overdue); C and D are unassigned.

    The overdue column counts B's overdue LAC review and assessment, as the Overdue table lists
    them; E is closed and in nobody's caseload.
    """
    admin = nw.Actor("admin-1", roles={"administrator"})
    engine.add_staff("admin-1", roles={"administrator"}, sites={"*"}, actor=admin)
    engine.add_staff("sw-1", roles={"social_worker"}, sites={"london"}, actor=admin)
    engine.assign("LDN-T-0001", worker="sw-1", actor=TM)
    engine.assign("LDN-T-0002", worker="sw-1", actor=TM)
    summary = summarize(engine, at=AT)
    views = _html.site_views(summary, [engine.pathway(p) for p in summary.pathway_ids])
    caseload = next(t for t in views[1].tables if t.name == "caseload")
    assert caseload.to_csv().splitlines() == [
        "worker,open,paused,overdue,in_assessment,in_treatment",
        "sw-1,2,0,2,1,1",
        ",2,0,0,2,0",
    ]
    assert [c.label for c in caseload.columns][-2:] == ["Assessment", "Treatment"]
    assert caseload.rows[-1].cells[0].text == "(unassigned)"
    assert 'id="caseload-london"' in build_report(engine, at=AT)
