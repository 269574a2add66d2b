"""Tests of nim_workflow._report: the summary, its plain text and the static HTML report.

The cohort is built by hand with an injected clock and explicit instants, so every number the
report shows (durations, percentiles, on-time rates, overdue and due-soon lists) is checked
against one worked out on paper below.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest

import nim_workflow as nw
from nim_workflow._report import (
    Summary,
    build_report,
    format_summary,
    percentile,
    summarize,
)

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
    assert london[0].cells() == ["LDN-T-0002", "lac_review", "statutory", "2025-01-30", "67"]
    glasgow = page.by_id("overdue-glasgow").by_class("overdue-row", tag="tr")
    assert [r.attrs["data-deadline"] for r in glasgow] == ["referral_decision"]
    assert len(page.by_class("overdue-row", tag="tr")) == 3


def test_report_due_soon_rows(page: Node) -> None:
    """The due-soon table lists what falls due in the next 14 days."""
    london = page.by_id("due-soon-london").by_class("due-soon-row", tag="tr")
    assert [r.cells() for r in london] == [
        ["LDN-T-0003", "assessment", "assessment", "2025-04-10", "3"]
    ]
    assert page.by_id("due-soon-glasgow").by_class("due-soon-row") == []


def test_report_on_time_rates(page: Node) -> None:
    """The on-time table shows met, missed and the rate per deadline rule."""
    london = page.by_id("site-london")
    assert london.row(rule="referral_decision").cells()[1:4] == ["3", "1", "75%"]
    assert london.row(rule="lac_review").cells()[1:4] == ["1", "1", "50%"]
    assert london.row(rule="care_proceedings").cells()[1:4] == ["0", "0", "-"]


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
    assert references == [f"LDN-T-000{n}" for n in range(1, 6)]
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
    """The page is self-contained: no URL, no script, no external stylesheet or font."""
    html = build_report(engine, at=AT)
    lowered = html.lower()
    assert "http://" not in lowered
    assert "https://" not in lowered
    assert "<script" not in lowered
    assert "<link" not in lowered
    assert "@import" not in lowered
    assert "src=" not in lowered


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
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
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
