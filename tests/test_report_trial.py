"""The report's trial section: enrolment, visits, delivery, moves and time to permanence per arm.

A small trial at Glasgow is built through the public engine API, with every number worked out
by hand below; the report's HTML is then read back table by table. The Kaplan-Meier figures
are also checked against :func:`~nim_workflow._survival.kaplan_meier` (itself checked against
lifelines in test_survival.py).

The trial, as of NOW (2026-06-01, Glasgow's date):

====== ========== ===== =========== ============ ========== ================ =========
family arm        child entered     permanence   closed     intervention     placements
====== ========== ===== =========== ============ ========== ================ =========
FAM-1  nim        GLA-1 2025-01-01  2025-07-01   -          received         3 (2 moves)
FAM-1  nim        GLA-2 2025-02-01  -            -          partly           1
FAM-3  nim        GLA-5 2025-03-01  2026-03-01   -          -                0
FAM-2  comparator GLA-3 2025-01-15  2025-04-15   -          not_received     4 (3 moves)
FAM-2  comparator GLA-4 -           -            -          received         2 (1 move)
FAM-5  comparator GLA-7 2025-01-10  -            2025-12-01 -                0
FAM-4  -          GLA-6 (not allocated: consented)
====== ========== ===== =========== ============ ========== ================ =========

FAM-5 withdrew consent. Time to permanence, nim: (181 days, event), (485, censored at NOW),
(365, event): S = 2/3 after day 181, 1/3 after day 365, median 365 days. Comparator: (90,
event), (325, censored at the case's close), GLA-4 left out: S = 1/2 after day 90, median 90.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import Any

import pytest
import sqlalchemy as sa

import nim_workflow as nw
from nim_workflow._report import build_report
from nim_workflow._report._survival_chart import DAYS_PER_MONTH
from nim_workflow._report._trial import read_trials, trial_view
from nim_workflow._survival import kaplan_meier

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
SW = nw.Actor("sw", roles={"social_worker"})
TM = nw.Actor("tm", roles={"team_manager"})
CO = nw.Actor("co", roles={"coordinator"})
RS = nw.Actor("rs", roles={"researcher"})


def _at(year: int, month: int, day: int) -> dt.datetime:
    return dt.datetime(year, month, day, 10, 0, tzinfo=dt.UTC)


def _d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


class _Tables(HTMLParser):
    """Every ``table.data`` of a page: its rows of cell texts, by table id; and the SVG paths."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.heads: dict[str, list[str]] = {}
        self.sections: list[str] = []
        self.curves: list[str] = []
        self.bands: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._head = False
        self._tag: str | None = None

    def handle_starttag(self, tag: str, attrs: Sequence[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "section" and "trial" in classes:
            self.sections.append(a["id"])
        if tag == "path" and "km-curve" in classes:
            self.curves.append(a["data-arm"])
        if tag == "path" and "km-band" in classes:
            self.bands.append(a["data-arm"])
        if tag == "table" and "data" in classes:
            self._table = a["id"]
            self.tables[self._table] = []
            self.heads[self._table] = []
        elif self._table is not None:
            if tag == "thead":
                self._head = True
            elif tag == "tr" and not self._head:
                self._row = []
                self.tables[self._table].append(self._row)
            elif tag in ("td", "th"):
                self._cell = []
                self._tag = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "thead":
            self._head = False
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            text = " ".join("".join(self._cell).split())
            if self._head:
                self.heads[self._table].append(text)
            elif self._row is not None:
                self._row.append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(page: str) -> _Tables:
    parser = _Tables()
    parser.feed(page)
    parser.close()
    return parser


def _by_first(rows: list[list[str]]) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in rows}


@pytest.fixture(scope="module")
def engine() -> Any:
    with nw.Engine("sqlite://", clock=lambda: NOW) as built:
        built.migrate()
        _build_trial(built)
        yield built


def _build_trial(engine: nw.Engine) -> None:
    engine.open_family(
        "FAM-1",
        site="glasgow",
        actor=SW,
        children=["GLA-1", "GLA-2"],
        facts={
            "GLA-1": {"entered_care_on": _d("2025-01-01")},
            "GLA-2": {"entered_care_on": _d("2025-02-01")},
        },
        at=_at(2025, 2, 20),
    )
    engine.open_family(
        "FAM-2",
        site="glasgow",
        actor=SW,
        children=["GLA-3", "GLA-4"],
        facts={"GLA-3": {"entered_care_on": _d("2025-01-15")}, "GLA-4": {}},
        at=_at(2025, 2, 21),
    )
    engine.open_family(
        "FAM-3",
        site="glasgow",
        actor=SW,
        children=["GLA-5"],
        facts={"GLA-5": {"entered_care_on": _d("2025-03-01")}},
        at=_at(2025, 3, 1),
    )
    engine.open_family("FAM-4", site="glasgow", actor=SW, children=["GLA-6"], at=_at(2025, 3, 1))
    engine.open_family(
        "FAM-5",
        site="glasgow",
        actor=SW,
        children=["GLA-7"],
        facts={"GLA-7": {"entered_care_on": _d("2025-01-10")}},
        at=_at(2025, 3, 1),
    )
    engine.allocate("FAM-1", "nim", "BEST-1", actor=CO, at=_at(2025, 3, 2))
    engine.allocate("FAM-2", "comparator", "BEST-2", actor=CO, at=_at(2025, 3, 3))
    engine.allocate("FAM-3", "nim", "BEST-3", actor=CO, at=_at(2025, 3, 5))
    engine.allocate("FAM-5", "comparator", "BEST-5", actor=CO, at=_at(2025, 3, 4))
    engine.set_trial_status("FAM-4", "consented", actor=CO, at=_at(2025, 3, 6))
    # Placements: GLA-1 three (2 moves), GLA-2 one, GLA-3 four (3 moves), GLA-4 two (1 move).
    for ref, days in {
        "GLA-1": ["2025-03-06", "2025-03-10", "2025-05-01"],
        "GLA-2": ["2025-03-06"],
        "GLA-3": ["2025-03-06", "2025-03-20", "2025-04-02", "2025-04-10"],
        "GLA-4": ["2025-03-06", "2025-04-20"],
    }.items():
        for day in days:
            engine.record(ref, {"placed_on": _d(day)}, actor=SW, at=_at(*map(int, day.split("-"))))
    engine.record_visit("FAM-1", "baseline", held_on=_d("2025-03-20"), actor=RS, child="GLA-1",
                        at=_at(2025, 3, 20))  # fmt: skip
    engine.record_visit("FAM-2", "baseline", held_on=_d("2025-04-01"), actor=RS, child="GLA-3",
                        at=_at(2025, 4, 1))  # fmt: skip
    engine.set_trial_status(
        "FAM-5", "withdrawn_consent", actor=CO, at=_at(2025, 4, 1), reason="family asked"
    )
    engine.record_visit("FAM-1", "baseline", held_on=_d("2025-06-01"), actor=RS, child="GLA-2",
                        at=_at(2025, 6, 1))  # fmt: skip
    engine.record(
        "GLA-1",
        {"permanence_achieved_on": _d("2025-07-01"), "intervention_received": "received"},
        actor=SW,
        at=_at(2025, 7, 1),
    )
    engine.record("GLA-3", {"permanence_achieved_on": _d("2025-04-15")}, actor=SW,
                  at=_at(2025, 7, 2))  # fmt: skip
    engine.record("GLA-3", {"intervention_received": "not_received"}, actor=SW, at=_at(2025, 7, 3))
    engine.record("GLA-4", {"intervention_received": "received"}, actor=SW, at=_at(2025, 7, 3))
    engine.record("GLA-2", {"intervention_received": "partly"}, actor=SW, at=_at(2025, 7, 3))
    engine.fire("GLA-7", "withdraw", actor=TM, reason="moved away", at=_at(2025, 12, 1))
    engine.record("GLA-5", {"permanence_achieved_on": _d("2026-03-01")}, actor=SW,
                  at=_at(2026, 3, 2))  # fmt: skip


@pytest.fixture(scope="module")
def page(engine: nw.Engine) -> _Tables:
    return _parse(build_report(engine))


def test_the_trial_section_is_drawn_for_glasgow_only(engine: nw.Engine, page: _Tables) -> None:
    assert page.sections == ["trial-best-glasgow"]
    html = build_report(engine)
    assert 'id="site-glasgow"' in html
    assert "Trial: Best Services Trial (BeST?)" in html


def test_enrolment_and_allocation_per_arm(page: _Tables) -> None:
    table = page.tables["trial-best-enrolment-glasgow"]
    assert page.heads["trial-best-enrolment-glasgow"] == [
        "Measure",
        "New Orleans Intervention Model",
        "Services as usual",
        "Not allocated yet",
        "All",
    ]
    rows = _by_first(table)
    assert rows["Families"] == ["2", "2", "1", "5"]
    assert rows["Children"] == ["3", "3", "1", "7"]
    assert rows["Families enrolled"] == ["0", "0", "0", "0"]
    assert rows["Families consented"] == ["0", "0", "1", "1"]
    assert rows["Families randomised"] == ["2", "1", "0", "3"]
    assert rows["Families withdrawn consent"] == ["0", "1", "0", "1"]
    assert rows["Families lost to follow up"] == ["0", "0", "0", "0"]
    assert rows["Families completed"] == ["0", "0", "0", "0"]


def test_research_visits_per_visit_and_arm(engine: nw.Engine, page: _Tables) -> None:
    rows = {(r[0], r[1]): r[2:] for r in page.tables["trial-best-visits-glasgow"]}
    nim, sau = "New Orleans Intervention Model", "Services as usual"
    baseline = "Baseline visit (visit 3)"
    month_15 = "15-month follow-up (visit 4)"
    month_30 = "2.5-year follow-up, primary outcome (visit 5)"
    #                                  in window, late, missed, pending, stopped, visits
    assert rows[(baseline, nim)] == ["1", "1", "1", "0", "0", "3"]
    assert rows[(baseline, sau)] == ["1", "0", "0", "0", "1", "2"]
    assert rows[(month_15, nim)] == ["0", "0", "1", "2", "0", "3"]
    assert rows[(month_15, sau)] == ["0", "0", "1", "0", "1", "2"]
    assert rows[(month_30, nim)] == ["0", "0", "0", "2", "0", "2"]
    assert rows[(month_30, sau)] == ["0", "0", "0", "1", "1", "2"]
    assert len(rows) == 6
    # The same as the engine's own visit reads, family by family.
    counted: dict[tuple[str, str], dict[str, int]] = {}
    for family in engine.families(site="glasgow"):
        if family.arm is None:
            continue
        for visit in engine.visits(family.reference, at=NOW):
            key = "stopped" if visit.stopped else visit.status
            tally = counted.setdefault((visit.name, family.arm), {})
            tally[key] = tally.get(key, 0) + 1
    assert counted[("baseline", "nim")] == {"in_window": 1, "late": 1, "missed": 1}
    assert counted[("month_15", "nim")] == {"missed": 1, "pending": 2}
    assert counted[("month_30", "comparator")] == {"pending": 1, "stopped": 1}


def test_delivery_per_arm(page: _Tables) -> None:
    rows = _by_first(page.tables["trial-best-delivery-glasgow"])
    assert rows["Received"] == ["1 (33%)", "1 (33%)"]
    assert rows["Partly received"] == ["1 (33%)", "0 (0%)"]
    assert rows["Not received"] == ["0 (0%)", "1 (33%)"]
    assert rows["Not recorded"] == ["1 (33%)", "1 (33%)"]
    assert rows["Children"] == ["3", "3"]


def test_placement_moves_per_child(page: _Tables) -> None:
    rows = _by_first(page.tables["trial-best-moves-glasgow"])
    assert rows["Children"] == ["3", "3"]
    assert rows["Mean moves per child"] == ["0.67", "1.33"]  # 2 / 3 and 4 / 3
    assert rows["0 moves"] == ["2 (67%)", "1 (33%)"]
    assert rows["1 move"] == ["0 (0%)", "1 (33%)"]
    assert rows["2 moves"] == ["1 (33%)", "0 (0%)"]
    assert rows["3 or more moves"] == ["0 (0%)", "1 (33%)"]
    assert rows["No placement recorded"] == ["1", "1"]


def test_time_to_permanence_per_arm(page: _Tables) -> None:
    rows = _by_first(page.tables["trial-best-permanence-glasgow"])
    #                       children, events, censored, left out, median days, median months
    assert rows["New Orleans Intervention Model"] == ["3", "2", "1", "0", "365", "12.0"]
    assert rows["Services as usual"] == ["2", "1", "1", "1", "90", "3.0"]
    # Number at risk at the start of months 0, 6 (day 182.6) and 12 (day 365.25).
    at_risk = {int(r[0]): r[1:] for r in page.tables["trial-best-at-risk-glasgow"]}
    #                   nim at risk, sau at risk, nim permanence, sau permanence
    assert at_risk[0] == ["3", "2", "0", "0"]
    assert at_risk[6] == ["2", "1", "1", "1"]
    assert at_risk[12] == ["1", "0", "2", "1"]
    # One curve and one band per arm, drawn inline.
    assert page.curves == ["New Orleans Intervention Model", "Services as usual"]
    assert page.bands == page.curves


def test_the_curves_are_the_estimator_on_the_hand_worked_observations(engine: nw.Engine) -> None:
    (data,) = read_trials(engine, at=NOW)["glasgow"]
    curves = data.curves()
    nim = kaplan_meier([(181, True), (485, False), (365, True)])
    sau = kaplan_meier([(90, True), (325, False)])
    assert curves["nim"] == nim
    assert curves["comparator"] == sau
    assert nim.survival_at(181) == pytest.approx(2 / 3)
    assert nim.survival_at(365) == pytest.approx(1 / 3)
    assert (nim.median, sau.median) == (365, 90)
    assert sau.survival_at(400) == pytest.approx(0.5)
    assert data.left_out() == {"no entered_care_on": 1}
    view = trial_view(data)
    assert view.notes == ("1 child is left out of the time to permanence (1 no entered_care_on).",)
    assert view.chart is not None
    assert view.chart.days >= 485
    assert view.chart.months > 485 / DAYS_PER_MONTH


def test_the_tables_download_as_csv_with_raw_values(engine: nw.Engine) -> None:
    (data,) = read_trials(engine, at=NOW)["glasgow"]
    tables = {t.id: t for t in trial_view(data).tables}
    csv = tables["trial-best-permanence-glasgow"].to_csv().split("\r\n")
    assert csv[0] == (
        "arm,arm_title,children,permanence,censored,left_out,median_days,median_months"
    )
    assert csv[1] == "nim,New Orleans Intervention Model,3,2,1,0,365,12.0"
    assert tables["trial-best-enrolment-glasgow"].file_name == "glasgow-best-enrolment.csv"


def test_a_site_with_families_none_allocated_shows_enrolment_only() -> None:
    with nw.Engine("sqlite://", clock=lambda: NOW) as engine:
        engine.migrate()
        engine.open_family(
            "FAM-9",
            site="london",
            actor=SW,
            children=["LON-1", "LON-2"],
            facts={"LON-1": {"entered_care_on": _d("2026-01-01")}, "LON-2": {}},
            at=_at(2026, 5, 1),
        )
        html = build_report(engine)
    page = _parse(html)
    assert page.sections == ["trial-best-london"]
    assert set(page.tables) >= {"trial-best-enrolment-london"}
    assert not any(t.startswith("trial-best-visits") for t in page.tables)
    rows = _by_first(page.tables["trial-best-enrolment-london"])
    assert rows["Families"] == ["0", "0", "1", "1"]
    assert rows["Children"] == ["0", "0", "2", "2"]
    assert rows["Families enrolled"] == ["0", "0", "1", "1"]
    assert "No family allocated yet: 1 family enrolled." in html
    assert "km-chart" not in html
    assert 'id="site-london"' in html  # the site has no case yet, but its families show


def test_a_site_without_families_shows_nothing_new() -> None:
    with nw.Engine("sqlite://", clock=lambda: NOW) as engine:
        engine.migrate()
        engine.open_case("LA-1", "nim-us-louisiana", site="jefferson-parish", actor=nw.Actor(
            "la", roles={"social_worker"}), at=_at(2026, 5, 1))  # fmt: skip
        alone = build_report(engine)
        engine.open_family("FAM-1", site="glasgow", actor=SW, children=["GLA-1"],
                           at=_at(2026, 5, 2))  # fmt: skip
        both = build_report(engine)
    assert 'class="trial"' not in alone
    assert "trial-best" not in alone
    page = _parse(both)
    assert page.sections == ["trial-best-glasgow"]
    assert both.index('id="site-glasgow"') < both.index('id="site-jefferson-parish"')
    louisiana = both[both.index('id="site-jefferson-parish"') : both.index('id="pathways"')]
    assert 'id="timeline-jefferson-parish"' in louisiana
    assert "trial" not in louisiana.lower()


def test_text_reaching_the_section_is_escaped() -> None:
    from nim_workflow._report._trial import TrialData

    data = TrialData(
        site="glasgow",
        trial="best",
        title="<b>x</b>",
        today=NOW.date(),
        arms=(("nim", '<script>alert("a")</script>'), ("comparator", "SAU & co")),
        statuses=("enrolled", "randomised"),
        families=(),
        children=(),
        visits=(),
    )
    view = trial_view(data)
    assert "<script>" not in str(view.svg)
    from nim_workflow._report._html import render_report
    from nim_workflow._report._summary import Summary

    summary = Summary(at=NOW, sites=(), pathway_ids=())
    assert "<b>x</b>" not in render_report(summary, [], {"glasgow": (data,)})


def test_the_trial_read_is_one_read_per_report_not_per_family(engine: nw.Engine) -> None:
    """The report's statements do not grow with the families: the trial read is a bulk read."""

    def statements(built: nw.Engine) -> int:
        seen: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            seen.append(statement)

        bind = built.sqlalchemy_engine
        sa.event.listen(bind, "before_cursor_execute", count)
        try:
            build_report(built, site="glasgow")
        finally:
            sa.event.remove(bind, "before_cursor_execute", count)
        return len(seen)

    with nw.Engine("sqlite://", clock=lambda: NOW) as small:
        small.migrate()
        small.open_family(
            "FAM-1",
            site="glasgow",
            actor=SW,
            children=["GLA-1"],
            facts={"GLA-1": {"entered_care_on": _d("2025-01-01")}},
            at=_at(2025, 2, 20),
        )
        small.allocate("FAM-1", "nim", "BEST-1", actor=CO, at=_at(2025, 3, 2))
        few = statements(small)
    assert statements(engine) == few


def test_the_summary_carries_the_trials_only_when_asked(engine: nw.Engine) -> None:
    """``summarize`` reads the trials with ``trials=True``; by default its reads are as before."""
    from nim_workflow._report import summarize
    from nim_workflow._report._html import site_views

    plain = summarize(engine, at=NOW)
    assert dict(plain.trials) == {}
    assert all(view.trials == () for view in site_views(plain, []))
    full = summarize(engine, at=NOW, trials=True)
    assert full.trials["glasgow"] == read_trials(engine, at=NOW)["glasgow"]
    pathways = [engine.pathway(pid) for pid in full.pathway_ids]
    (view,) = [v for v in site_views(full, pathways) if v.site.site == "glasgow"]
    assert [t.data.trial for t in view.trials] == ["best"]
    # Every table of the section is the view's, each drawn once on the page.
    trial_ids = [t.id for t in view.trials[0].tables]
    assert [t.id for t in view.tables][-len(trial_ids) :] == trial_ids
    assert all(t.id not in trial_ids for t in view.case_tables)
    html = build_report(engine)
    for table in view.tables:
        assert html.count(f'<table id="{table.id}"') == 1, table.id
