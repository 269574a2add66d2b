"""Reads at scale: the report's bulk reads, the listing indexes, and the bounded calendar cache.

The coordinator's summary reads each site's cases, stays, deadlines and pauses with one statement
per table. Here it is checked, on SQLite and PostgreSQL, against a reference that builds the same
summary the way it used to be built: through the public per-case reads (``history``,
``deadlines``, ``pauses``, ``overdue``, ``due``). The cohort is the demo's (three sites, three
pathways, pauses, extensions, breaches, withdrawals), run on the version 1 pathways with England's
running cases then upgraded, so a site mixes pathway versions, and copied once under new
references, so every instant and due date is shared by two cases and the orderings' tie-breaks
count.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner
from test_migrations import schema_diff

import nim_workflow as nw
from nim_workflow._cache import CALENDARS_KEPT, BoundedCache
from nim_workflow._calendar import WorkingCalendar
from nim_workflow._cli import main
from nim_workflow._demo import DEMO_END, run_demo
from nim_workflow._report import (
    CaseTimeline,
    DeadlineItem,
    DeadlineMark,
    OnTimeRate,
    OpenCase,
    SiteSummary,
    StageDurations,
    StageGroup,
    StageSpan,
    Summary,
    format_summary,
    percentile,
    summarize,
)
from nim_workflow._report._summary import (
    DUE_SOON_DAYS,
    MarkStatus,
    _final_stages,
    _ordered,
    _RateCount,
    _rule_order,
    _stage_order,
)
from nim_workflow._store import _migrate, _reads
from nim_workflow._store._schema import UTCDateTime

ARCHIVE = Path(__file__).resolve().parents[1] / "pathways" / "archive"
COORDINATOR = nw.Actor("pc-1", roles={"coordinator"})
SITES = ("glasgow", "jefferson-parish", "london")
#: A declared site the cohort has no case at.
EMPTY_SITE = nw.Site(
    id="croydon",
    title="Croydon",
    timezone="Europe/London",
    calendar="england-and-wales",
    pathways={"nim-uk-england"},
)


# -- the cohort -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cohort:
    """The seeded database and the instant the demo stopped at."""

    backend: str
    url: str
    as_of: dt.datetime

    def engine(self) -> nw.Engine:
        """An engine on the cohort whose clock stands at ``as_of``, with one more site, empty."""
        return nw.Engine(
            self.url, clock=lambda: self.as_of, sites=[*nw.bundled_sites().values(), EMPTY_SITE]
        )


def _copy_cases(bind: sa.Engine, suffix: str) -> None:
    """Every case again under ``reference || suffix``: its row, stays, deadlines and pauses."""
    columns = {
        "nimwf_cases": None,
        "nimwf_stage_intervals": "id",
        "nimwf_deadlines": "id",
        "nimwf_pauses": "id",
    }
    with bind.begin() as conn:
        for table, skip in columns.items():
            names = [c["name"] for c in sa.inspect(conn).get_columns(table) if c["name"] != skip]
            picked = ", ".join(
                f"reference || '{suffix}'" if name == "reference" else name for name in names
            )
            order = "reference" if skip is None else "id"
            conn.execute(
                sa.text(
                    f"INSERT INTO {table} ({', '.join(names)}) SELECT {picked} FROM {table} "
                    f"ORDER BY {order}"
                )
            )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def cohort(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cohort]:
    """The demo cohort on version 1, England upgraded, copied once; one database per backend."""
    dropped: Callable[[], None] = lambda: None  # noqa: E731
    if request.param == "postgres":
        pg_url = request.getfixturevalue("pg_url")
        admin: sa.Engine = request.getfixturevalue("_pg_admin_engine")
        name = f"nimwf_t_{secrets.token_hex(8)}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.make_url(pg_url).set(database=name).render_as_string(hide_password=False)

        def dropped() -> None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('reads') / 'cohort.db'}"
    try:
        result = run_demo(url, html=None, end=DEMO_END, pathways=sorted(ARCHIVE.glob("*.v1.yaml")))
        with nw.Engine(url, clock=lambda: result.as_of) as engine:
            engine.upgrade_cases("nim-uk-england", actor=COORDINATOR, reason="clocks corrected")
            _copy_cases(engine.sqlalchemy_engine, "-C")
        if request.param == "postgres":
            # Statistics now, rather than whenever autovacuum comes by, for steady plans.
            analyzer = sa.create_engine(url, isolation_level="AUTOCOMMIT")
            try:
                with analyzer.connect() as conn:
                    conn.exec_driver_sql("ANALYZE")
            finally:
                analyzer.dispose()
        yield Cohort(request.param, url, result.as_of)
    finally:
        dropped()


@pytest.fixture(scope="module")
def engine(cohort: Cohort) -> Iterator[nw.Engine]:
    """An engine on the cohort (read only: the cohort is shared by the module's tests)."""
    with cohort.engine() as built:
        yield built


# -- the reference: the summary as the per-case reads build it ------------------------------------


def _reference_mark(deadline: nw.Deadline, at: dt.datetime) -> DeadlineMark | None:
    status: MarkStatus
    if deadline.status in ("met", "missed"):
        status = "met" if deadline.status == "met" else "missed"
    elif deadline.status == "cancelled":
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


def _reference_site(
    engine: nw.Engine, site: str, cases: Sequence[nw.Case], at: dt.datetime
) -> SiteSummary:
    """One site's summary from ``history``, ``deadlines`` and ``pauses`` per case."""
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
            if interval.left_at is None or interval.left_by == "withdraw":
                continue
            days = (cal.local_date(interval.left_at) - cal.local_date(interval.entered_at)).days
            durations.setdefault(interval.stage, []).append((days, interval.working_days))
        if case.is_open:
            entered_on = cal.local_date(case.stage_entered_at)
            open_cases.append(
                OpenCase(
                    reference=case.reference,
                    pathway_id=case.pathway_id,
                    stage=case.stage,
                    stage_entered_at=case.stage_entered_at,
                    entered_on=entered_on,
                    days_in_stage=max(0, (cal.local_date(at) - entered_on).days),
                    working_days_in_stage=history[-1].working_days if history else 0,
                    paused=case.paused,
                    worker=case.worker,
                )
            )
        marks = []
        for deadline in engine.deadlines(case.reference):
            count = rates.setdefault(deadline.name, _RateCount(kind=deadline.kind))
            mark = _reference_mark(deadline, at)
            if mark is not None:
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
    groups = [
        StageGroup(
            stage=stage,
            title=titles.get(stage, stage),
            cases=tuple(
                sorted(
                    (c for c in open_cases if c.stage == stage),
                    key=lambda c: (-c.days_in_stage, c.reference),
                )
            ),
        )
        for stage in _ordered(order, {c.stage for c in open_cases})
    ]
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
    on_time = tuple(
        OnTimeRate(
            rule=name,
            kind=rates[name].kind,
            met=rates[name].met,
            missed=rates[name].missed,
            open=rates[name].open,
            open_overdue=rates[name].overdue,
        )
        for name in _ordered(_rule_order(engine, pathway_ids), set(rates))
    )

    def item(deadline: nw.Deadline, days: int) -> DeadlineItem:
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


def reference_summary(engine: nw.Engine, *, site: str | None, at: dt.datetime) -> Summary:
    """The summary as it was built before the bulk reads: one read per case and table."""
    at = at.astimezone(dt.UTC)
    every_case = engine.cases(site=site, open_only=False)
    sites = [site] if site is not None else sorted({case.site for case in every_case})
    summaries = tuple(
        _reference_site(engine, name, [c for c in every_case if c.site == name], at)
        for name in sites
    )
    pathway_ids = tuple(sorted({pid for s in summaries for pid in s.pathway_ids}))
    return Summary(at=at, sites=summaries, pathway_ids=pathway_ids)


def assert_same_summary(got: Summary, expected: Summary) -> None:
    """Equal field by field (percentiles of no values are NaN, which == would call unequal)."""
    assert got.at == expected.at
    assert got.pathway_ids == expected.pathway_ids
    assert [s.site for s in got.sites] == [s.site for s in expected.sites]
    for mine, theirs in zip(got.sites, expected.sites, strict=True):
        for name in SiteSummary.__dataclass_fields__:
            if name == "stage_durations":
                assert repr(mine.stage_durations) == repr(theirs.stage_durations)
            else:
                assert getattr(mine, name) == getattr(theirs, name), (mine.site, name)
    assert format_summary(got) == format_summary(expected)
    # Down to each datetime's tzinfo, which == does not compare.
    assert repr(got) == repr(expected)


# -- the summary ----------------------------------------------------------------------------------


def test_the_cohort_mixes_versions_and_shares_instants(engine: nw.Engine) -> None:
    """The cohort is what the comparisons need: versions mixed at a site, ties everywhere."""
    every = engine.cases(open_only=False)
    assert {c.site for c in every} == set(SITES)
    assert len(every) == 168  # the demo's 84 cases (trial families at the UK sites), copied
    london = [c for c in every if c.site == "london"]
    assert {c.pathway_version for c in london} == {1, 4}
    assert any(c.paused for c in every)
    assert any(not c.is_open for c in every)
    copies = Counter(c.opened_at for c in every)
    assert all(n % 2 == 0 for n in copies.values())


@pytest.mark.parametrize("days_before", [0, 40, 400])
def test_the_bulk_summary_equals_the_per_case_summary(
    engine: nw.Engine, cohort: Cohort, days_before: int
) -> None:
    """Every site, at the end of the demo and before it (stays then count up to that instant)."""
    at = cohort.as_of - dt.timedelta(days=days_before)
    assert_same_summary(summarize(engine, at=at), reference_summary(engine, site=None, at=at))


@pytest.mark.parametrize("site", [*SITES, EMPTY_SITE.id])
def test_the_bulk_summary_of_one_site_equals_the_per_case_summary(
    engine: nw.Engine, cohort: Cohort, site: str
) -> None:
    """Each site alone, and a declared site with no cases."""
    at = cohort.as_of.astimezone(dt.timezone(dt.timedelta(hours=-6)))
    assert_same_summary(
        summarize(engine, site=site, at=at), reference_summary(engine, site=site, at=at)
    )


def test_the_summary_of_an_undeclared_site_is_refused(engine: nw.Engine, cohort: Cohort) -> None:
    """A site nobody declared is refused with the nearest one, not summarised as empty."""
    with pytest.raises(nw.UnknownSite, match="did you mean 'london'"):
        summarize(engine, site="londn", at=cohort.as_of)


def test_the_summary_reads_each_table_once(engine: nw.Engine, cohort: Cohort) -> None:
    """No statement per case: cases, stays, pauses, deadlines and open deadlines, once each."""
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    bind = engine.sqlalchemy_engine
    sa.event.listen(bind, "before_cursor_execute", count)
    try:
        summary = summarize(engine, at=cohort.as_of)
        every = len(statements)
        statements.clear()
        summarize(engine, site="london", at=cohort.as_of)
        one = len(statements)
    finally:
        sa.event.remove(bind, "before_cursor_execute", count)
    assert sum(s.opened for s in summary.sites) == 168
    # Five reads, one per table (and on PostgreSQL the transaction's time zone set first),
    # for one site or all of them: 160 cases or 160,000.
    assert one == every == (5 if cohort.backend == "sqlite" else 6)


def test_the_summary_validates_the_site_as_before(engine: nw.Engine, cohort: Cohort) -> None:
    """A site that is not text is refused, as ``cases(site=...)`` refused it."""
    with pytest.raises(nw.InvalidInput):
        summarize(engine, site=42, at=cohort.as_of)  # type: ignore[arg-type]


# -- the listings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("latest", [False, True])
@pytest.mark.parametrize("open_only", [True, False])
@pytest.mark.parametrize(("site", "stage"), [(None, None), ("london", None), ("glasgow", "court")])
def test_bulk_history_equals_history_per_case(
    engine: nw.Engine,
    cohort: Cohort,
    site: str | None,
    stage: str | None,
    open_only: bool,
    latest: bool,
) -> None:
    """``_bulk_history`` is ``history(reference, at)`` of each case ``cases`` lists."""
    at = cohort.as_of - dt.timedelta(days=3)
    got = engine._bulk_history(at, site=site, stage=stage, open_only=open_only, latest=latest)
    listed = engine.cases(site=site, stage=stage, open_only=open_only)
    assert listed
    expected = {c.reference: engine.history(c.reference, at=at) for c in listed}
    if latest:
        expected = {ref: stays[-1:] for ref, stays in expected.items()}
    assert got == expected


@pytest.mark.parametrize("site", [None, "london"])
def test_due_and_overdue_are_the_open_deadlines_in_order(
    engine: nw.Engine, cohort: Cohort, site: str | None
) -> None:
    """``due`` and ``overdue`` list each case's open deadlines, soonest then reference first."""
    at = cohort.as_of - dt.timedelta(days=30)
    before = at + dt.timedelta(days=60)
    every: list[tuple[dt.datetime, str, int, nw.Deadline]] = []
    for case in engine.cases(site=site, open_only=False):
        for index, deadline in enumerate(engine.deadlines(case.reference)):
            if deadline.status == "open":
                every.append((deadline.due_at, deadline.reference, index, deadline))
    every.sort(key=lambda entry: entry[:3])
    due = engine.due(before, site=site)
    assert due == [d for when, _, _, d in every if when < before]
    assert engine.overdue(at, site=site) == [d for when, _, _, d in every if when <= at]
    assert len(due) > len(engine.overdue(at, site=site)) > 0


def test_cases_listing_keeps_its_order_and_filters(engine: nw.Engine) -> None:
    """Oldest opened first, then by reference; filters as before."""
    every = engine.cases(open_only=False)
    assert [c.reference for c in every] == [
        c.reference for c in sorted(every, key=lambda c: (c.opened_at, c.reference))
    ]
    for site in SITES:
        for open_only in (True, False):
            assert engine.cases(site=site, open_only=open_only) == [
                c for c in every if c.site == site and (c.is_open or not open_only)
            ]
    assert engine.cases(site="london", stage="treatment") == [
        c for c in every if c.site == "london" and c.stage == "treatment" and c.is_open
    ]


def test_cli_cases_reads_the_current_stays_in_bulk(
    engine: nw.Engine, cohort: Cohort, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line's ``cases`` gives each open case's working days without a read per case."""
    at = cohort.as_of.replace(microsecond=0)
    expected = {
        c.reference: engine.history(c.reference, at=at)[-1].working_days for c in engine.cases()
    }
    calls: list[str] = []
    original = nw.Engine.history

    def counted(self: nw.Engine, reference: str, at: dt.datetime | None = None) -> Any:
        calls.append(reference)
        return original(self, reference, at)

    monkeypatch.setattr(nw.Engine, "history", counted)
    result = CliRunner().invoke(
        main,
        ["--db", cohort.url, "cases", "--all", "--json", "--at", at.isoformat()],
        env={"NIM_WORKFLOW_DB": None, "NIM_WORKFLOW_ACTOR": None},
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert calls == []
    assert {
        r["reference"]: r["working_days_in_stage"]
        for r in records
        if r["days_in_stage"] is not None
    } == expected
    assert all(r["working_days_in_stage"] is None for r in records if r["days_in_stage"] is None)


# -- the indexes ----------------------------------------------------------------------------------


def _captured(engine: nw.Engine, call: Callable[[], object], table: str) -> tuple[str, Any]:
    """The statement ``call`` ran on ``table`` (not a look-up on the side), with its parameters."""
    seen: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        seen.append((statement, parameters))

    bind = engine.sqlalchemy_engine
    sa.event.listen(bind, "before_cursor_execute", keep)
    try:
        call()
    finally:
        sa.event.remove(bind, "before_cursor_execute", keep)
    (found,) = [entry for entry in seen if f"FROM {table}" in entry[0]]
    return found


def _plan(engine: nw.Engine, statement: str, parameters: Any) -> str:
    with engine.sqlalchemy_engine.connect() as conn:
        if engine.sqlalchemy_engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            return "\n".join(row[3] for row in rows)
        # The planner may rightly prefer a scan of a table this small: ask whether the index
        # can serve the query at all (a partial index only can if the query implies its
        # predicate).
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters)
        return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize(
    ("listing", "index"),
    [
        ("due", "ix_nimwf_deadlines_open_due_at"),
        ("overdue", "ix_nimwf_deadlines_open_due_at"),
        ("due at a site", "ix_nimwf_deadlines_open_site_due_at"),
        ("overdue at a site", "ix_nimwf_deadlines_open_site_due_at"),
    ],
)
def test_due_and_overdue_are_read_from_the_partial_indexes(
    engine: nw.Engine, cohort: Cohort, listing: str, index: str
) -> None:
    """On SQLite the plan walks the open deadlines' index in listing order: no scan, no sort.

    On PostgreSQL, with sequential scans ruled out, the plan reads a partial index.
    """
    calls: dict[str, Callable[[], object]] = {
        "due": lambda: engine.due(cohort.as_of),
        "overdue": lambda: engine.overdue(cohort.as_of),
        "due at a site": lambda: engine.due(cohort.as_of, site="london"),
        "overdue at a site": lambda: engine.overdue(cohort.as_of, site="london"),
    }
    plan = _plan(engine, *_captured(engine, calls[listing], "nimwf_deadlines"))
    if cohort.backend == "sqlite":
        assert index in plan, plan
        assert "TEMP B-TREE" not in plan, plan
        assert "SCAN nimwf_deadlines" not in plan, plan
    else:
        # Either partial index will do (a b-tree also serves a condition on a later column):
        # what matters is that the query's literal lets the planner use them at all.
        assert "ix_nimwf_deadlines_open_" in plan, plan


def test_a_sites_open_cases_are_read_from_the_site_index(engine: nw.Engine, cohort: Cohort) -> None:
    """``cases(site)`` walks (site, closed_at, opened_at, reference), with no sort, on SQLite.

    PostgreSQL's choice among the case indexes that lead with ``site`` rests on its statistics,
    which a table of 160 rows does not make worth pinning: there the check is that an index on
    the site serves the query rather than a scan of every case.
    """
    plan = _plan(engine, *_captured(engine, lambda: engine.cases(site="london"), "nimwf_cases"))
    if cohort.backend == "sqlite":
        assert "ix_nimwf_cases_site_closed_at" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "ix_nimwf_cases_site_" in plan, plan
        assert "Seq Scan on nimwf_cases" not in plan, plan


def _index_definitions(bind: sa.Engine) -> dict[str, str]:
    with bind.connect() as conn:
        if bind.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        else:
            rows = conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes")
        return {name: sql for name, sql in rows if name.startswith("ix_nimwf_")}


def test_the_partial_indexes_hold_open_deadlines_only(db_url: str) -> None:
    """Their predicate is the models' (autogenerate compares columns, not predicates)."""
    with nw.Engine(db_url) as engine:
        engine.migrate()
    bind = sa.create_engine(db_url)
    try:
        found = _index_definitions(bind)
    finally:
        bind.dispose()
    for name in ("ix_nimwf_deadlines_open_due_at", "ix_nimwf_deadlines_open_site_due_at"):
        where = found[name].split(" WHERE ", 1)[1]
        assert where.replace("(", "").replace(")", "").replace("::text", "") == "status = 'open'"
    assert "ix_nimwf_deadlines_status_due_at" not in found
    assert " WHERE " not in found["ix_nimwf_cases_site_closed_at"]


def test_migration_0005_down_and_up_again(db_url: str) -> None:
    """Down to 0004 brings back the old index; up again leaves the models' schema exactly."""
    engine = nw.Engine(db_url)
    engine.migrate()
    engine.close()
    bind = sa.create_engine(db_url)
    try:
        with bind.begin() as conn:
            command.downgrade(_migrate.alembic_config(conn), "0004")
        before = _index_definitions(bind)
        assert "ix_nimwf_deadlines_status_due_at" in before
        assert not {n for n in before if "open" in n or n.endswith("site_closed_at")}
        with bind.begin() as conn:
            _migrate.upgrade(conn)
            assert _migrate.current_revision(conn) == _migrate.head_revision() == "0007"
        assert schema_diff(bind) == []
        after = _index_definitions(bind)
        assert "ix_nimwf_deadlines_status_due_at" not in after
        assert {"ix_nimwf_deadlines_open_due_at", "ix_nimwf_cases_site_closed_at"} <= set(after)
    finally:
        bind.dispose()


# -- the pieces -----------------------------------------------------------------------------------


def test_working_day_counter_counts_as_the_calendar_does() -> None:
    """Ranks from an anchor give ``count_working_days`` for any pair, before the anchor too."""
    cal = WorkingCalendar("england-and-wales", "Europe/London", {dt.date(2026, 3, 2): "flood"})
    counter = _reads.WorkingDayCounter(cal)
    rng = random.Random(5)
    first = dt.date(2024, 1, 1)
    for _ in range(2000):
        start = first + dt.timedelta(days=rng.randrange(1500))
        end = start + dt.timedelta(days=rng.randrange(-30, 400))
        assert counter(start, end) == cal.count_working_days(start, end), (start, end)


@pytest.mark.parametrize(
    "stored",
    [
        "2026-03-29 00:59:59.999999",
        "2026-03-29 01:00:00.000000",
        "2026-10-25 12:30:00",
        "2026-10-25",
        "2026-10-25T12:30:00.250000",
    ],
)
def test_sqlite_instants_read_fast_are_the_same_instants(stored: str) -> None:
    """The bulk reads' parser gives what UTCDateTime gives, tzinfo object included."""
    bind = sa.create_engine("sqlite://")
    text = sa.literal_column(f"'{stored}'")
    with bind.connect() as conn:
        usual, fast, nothing = conn.execute(
            sa.select(
                sa.type_coerce(text, UTCDateTime()),
                sa.type_coerce(text, _reads._FastUTCDateTime()),
                sa.type_coerce(sa.null(), _reads._FastUTCDateTime()),
            )
        ).one()
    bind.dispose()
    assert fast == usual
    assert fast.tzinfo is usual.tzinfo is dt.UTC
    assert nothing is None


def test_postgresql_instants_read_fast_are_the_same_instants(fresh_pg_url: str) -> None:
    """On PostgreSQL too, in a session whose time zone is not UTC."""
    bind = sa.create_engine(fresh_pg_url)
    stored = sa.literal_column("CAST('2026-03-29 00:59:59.999999+00' AS timestamptz)")
    try:
        with bind.connect() as conn:
            conn.exec_driver_sql("SET TIME ZONE 'America/Chicago'")
            usual, fast, nothing = conn.execute(
                sa.select(
                    sa.type_coerce(stored, UTCDateTime()),
                    sa.type_coerce(stored, _reads._FastUTCDateTime()),
                    sa.type_coerce(sa.null(), _reads._FastUTCDateTime()),
                )
            ).one()
            conn.rollback()
    finally:
        bind.dispose()
    assert fast == usual == dt.datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=dt.UTC)
    assert fast.tzinfo is usual.tzinfo is dt.UTC
    assert nothing is None


def test_the_engine_keeps_a_bounded_number_of_site_calendars() -> None:
    """Calendars for ever more sites: the newest are kept, the oldest rebuilt when asked again."""
    many = CALENDARS_KEPT + 40
    sites = [
        nw.Site(
            id=f"site-{n}",
            title=f"Site {n}",
            timezone="Europe/London",
            calendar="england-and-wales",
            pathways={"nim-uk-england"},
            closures=[dt.date(2026, 1, 2 + n % 20)],
        )
        for n in range(many)
    ]
    with nw.Engine("sqlite://", sites=sites) as engine:
        first = engine.calendar("site-0", "nim-uk-england")
        for n in range(many):
            engine.calendar(f"site-{n}", "nim-uk-england")
        assert len(engine._calendars) == CALENDARS_KEPT
        newest = engine.calendar(f"site-{many - 1}", "nim-uk-england")
        assert engine.calendar(f"site-{many - 1}", "nim-uk-england") is newest
        again = engine.calendar("site-0", "nim-uk-england")
        assert again is not first
        assert again == first
        assert dt.date(2026, 1, 2) in again.closures


def test_bounded_cache_forgets_the_least_recently_used() -> None:
    """Reading an entry keeps it; the one untouched longest goes; a racing put keeps the first."""
    cache: BoundedCache[str, int] = BoundedCache(2)
    assert cache.put("a", 1) == 1
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c"), len(cache)) == (1, 3, 2)
    assert cache.put("a", 10) == 1
    with pytest.raises(ValueError, match="maxsize"):
        BoundedCache(0)


def test_bounded_cache_under_threads() -> None:
    """Many threads getting and putting never see an error or an overfull cache."""
    cache: BoundedCache[int, int] = BoundedCache(16)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(5000):
                key = rng.randrange(64)
                if cache.get(key) is None:
                    assert cache.put(key, key) == key
                assert len(cache) <= 16
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
