"""Shared pieces of the benchmarks: timing statistics, the injected clock, the walk, databases.

Everything a benchmark in ``run.py`` needs but that is not itself a measurement lives here: the
result record and its statistics, a clock the engine reads instead of the system's, the actors
and facts that walk a case from referral to a court decision, throwaway SQLite files and
PostgreSQL databases, the naive baselines (a ``transitions.Machine`` per case, a day-by-day
working-day loop, raw DBAPI transitions) and the peak-memory probe. Nothing here
asserts on time: the numbers are reported, never judged.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from transitions import EventData, Machine

import nim_workflow as nw

SEED = 20260105
#: The injected clock starts here: a Monday morning in January, clear of bank holidays.
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
T = TypeVar("T")
PATHWAY_ID = "nim-uk-england"
SITE = "london"

SOCIAL_WORKER = nw.Actor("bench-sw", roles={"social_worker"})
TEAM_MANAGER = nw.Actor("bench-tm", roles={"team_manager"})
CLINICIAN = nw.Actor("bench-cl", roles={"clinician"})
COURT_OFFICER = nw.Actor("bench-co", roles={"court_officer"})

#: Where each step of the walk leads (checked against the pathway by the write benchmark).
WALK_STAGES: tuple[str, ...] = ("referral", "assessment", "treatment", "recommendation", "court")
WALK_DESTS: tuple[str, ...] = ("assessment", "treatment", "recommendation", "court", "closed")

#: The treatment path from referral to a court decision: (trigger, actor, facts given with it).
WALK: tuple[tuple[str, nw.Actor, Mapping[str, Any]], ...] = (
    ("accept_referral", TEAM_MANAGER, {"consent_recorded": True}),
    ("offer_treatment", TEAM_MANAGER, {"assessment_report_filed": True}),
    ("complete_treatment", CLINICIAN, {"treatment_review_filed": True}),
    (
        "submit_recommendation",
        TEAM_MANAGER,
        {"final_report_filed": True, "recommendation": "return_home"},
    ),
    ("record_decision", COURT_OFFICER, {"decision": "return_home"}),
)


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """One measured row: the median over repeats, its spread, and its ratio to a baseline."""

    group: str
    name: str
    median: float
    low: float
    high: float
    unit: str
    repeats: int
    baseline: str | None = None
    ratio: float | None = None
    note: str = ""


def result(
    group: str,
    name: str,
    samples: Sequence[float],
    unit: str,
    *,
    baseline: Result | None = None,
    note: str = "",
) -> Result:
    """A row from per-repeat samples; ``ratio`` is this median over the baseline's median."""
    med = statistics.median(samples)
    return Result(
        group=group,
        name=name,
        median=med,
        low=min(samples),
        high=max(samples),
        unit=unit,
        repeats=len(samples),
        baseline=None if baseline is None else baseline.name,
        ratio=None if baseline is None else med / baseline.median,
        note=note,
    )


def baseline_row(
    group: str, name: str, samples: Sequence[float], unit: str, note: str = ""
) -> Result:
    """A baseline row: its ratio to itself is 1 by definition."""
    row = result(group, name, samples, unit, note=note)
    return Result(**{**_fields(row), "baseline": name, "ratio": 1.0})


def _fields(row: Result) -> dict[str, Any]:
    return {name: getattr(row, name) for name in Result.__slots__}


def timed(action: Callable[[], object]) -> float:
    """Seconds ``action`` took on the monotonic high-resolution clock."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def timed_call(function: Callable[..., T], *args: Any) -> tuple[float, T]:
    """Seconds ``function(*args)`` took, and what it returned."""
    start = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - start, value


# -- the injected clock ----------------------------------------------------------------------------


class StepClock:
    """A clock that stands still until told to move; the engine reads it instead of the system's."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        """Move the clock on by ``delta`` and return the new instant."""
        self.now += delta
        return self.now


# -- databases -------------------------------------------------------------------------------------


def statement_counter(engine: sa.Engine) -> Callable[[], int]:
    """Count SQL statements sent through ``engine`` (BEGIN aside); the function reads the count."""
    count = [0]

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            count[0] += 1

    return lambda: count[0]


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A brand-new empty PostgreSQL database on the server of ``server_url``, dropped afterwards."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"nimwf_bench_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def sqlite_pragmas(engine: sa.Engine) -> None:
    """The pragmas the library sets on its own SQLite connections, for a baseline engine."""

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


# -- baseline tables: the minimum a transition could cost ------------------------------------------

baseline_metadata = sa.MetaData()
baseline_cases = sa.Table(
    "bench_baseline_cases",
    baseline_metadata,
    sa.Column("reference", sa.String(100), primary_key=True),
    sa.Column("stage", sa.String(100), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("facts", sa.JSON, nullable=False),
)
baseline_events = sa.Table(
    "bench_baseline_events",
    baseline_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("reference", sa.String(100), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("trigger", sa.String(100), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
)


def baseline_transition(
    engine: sa.Engine, reference: str, trigger: str, dest: str, at: dt.datetime
) -> None:
    """One bare transaction: read (and lock) a row, UPDATE it, INSERT one event row, COMMIT."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
        query = sa.select(baseline_cases).where(baseline_cases.c.reference == reference)
        if engine.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).one()
        conn.execute(
            baseline_cases.update()
            .where(
                baseline_cases.c.reference == reference,
                baseline_cases.c.version == row.version,
            )
            .values(stage=dest, version=row.version + 1)
        )
        conn.execute(
            baseline_events.insert().values(
                reference=reference, at=at, trigger=trigger, detail={"from": row.stage}
            )
        )
        conn.commit()


# -- raw DBAPI baselines: the minimum statements of a transition, without SQLAlchemy ------------


class RawSqlite:
    """The stdlib ``sqlite3`` module on a file in WAL mode with ``synchronous=FULL``.

    A transition is BEGIN IMMEDIATE, SELECT the case row, UPDATE it (stage, version, facts),
    INSERT one event row, COMMIT: three statements between BEGIN and COMMIT.
    """

    statements = 3

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS raw_cases (reference TEXT PRIMARY KEY, "
            "stage TEXT NOT NULL, version INTEGER NOT NULL, facts TEXT NOT NULL, "
            "updated_at TEXT NOT NULL)"
        )
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS raw_events (id INTEGER PRIMARY KEY, reference TEXT NOT "
            "NULL, at TEXT NOT NULL, trigger TEXT NOT NULL, from_stage TEXT NOT NULL, "
            "to_stage TEXT NOT NULL, detail TEXT NOT NULL)"
        )

    def settings(self) -> str:
        """The journal mode and synchronous level the connection runs with."""
        mode = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = self.conn.execute("PRAGMA synchronous").fetchone()[0]
        return f"journal_mode={mode}, synchronous={SQLITE_SYNC.get(sync, sync)}"

    def seed(self, references: Sequence[str], stage: str, at: dt.datetime) -> None:
        """One row per case at ``stage``, in one transaction."""
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            "INSERT INTO raw_cases VALUES (?, ?, 1, '{}', ?)",
            [(ref, stage, at.isoformat()) for ref in references],
        )
        self.conn.execute("COMMIT")

    def transition(
        self, reference: str, trigger: str, dest: str, facts: Mapping[str, Any], at: dt.datetime
    ) -> None:
        """One transition in its own transaction."""
        conn = self.conn
        when = at.isoformat()
        conn.execute("BEGIN IMMEDIATE")
        try:
            stage, version, stored = conn.execute(
                "SELECT stage, version, facts FROM raw_cases WHERE reference = ?", (reference,)
            ).fetchone()
            merged = json.dumps({**json.loads(stored), **facts}, sort_keys=True)
            conn.execute(
                "UPDATE raw_cases SET stage = ?, version = ?, facts = ?, updated_at = ? "
                "WHERE reference = ? AND version = ?",
                (dest, version + 1, merged, when, reference, version),
            )
            conn.execute(
                "INSERT INTO raw_events (reference, at, trigger, from_stage, to_stage, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (reference, when, trigger, stage, dest, json.dumps(dict(facts), sort_keys=True)),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class RawPostgres:
    """``psycopg`` on the same server and database: the same three statements, then COMMIT.

    The SELECT locks the row (``FOR UPDATE``) as a writer that reads before it updates must.
    """

    statements = 3

    def __init__(self, url: str) -> None:
        import psycopg

        conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(False)
        self.conn = psycopg.connect(conninfo)
        with self.conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS raw_cases (reference text PRIMARY KEY, stage text NOT "
                "NULL, version integer NOT NULL, facts jsonb NOT NULL, "
                "updated_at timestamptz NOT NULL)"
            )
            cur.execute(
                "CREATE TABLE IF NOT EXISTS raw_events (id bigserial PRIMARY KEY, reference text "
                "NOT NULL, at timestamptz NOT NULL, trigger text NOT NULL, from_stage text NOT "
                "NULL, to_stage text NOT NULL, detail jsonb NOT NULL)"
            )
        self.conn.commit()

    def seed(self, references: Sequence[str], stage: str, at: dt.datetime) -> None:
        """One row per case at ``stage``, in one transaction."""
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO raw_cases VALUES (%s, %s, 1, '{}', %s)",
                [(ref, stage, at) for ref in references],
            )
        self.conn.commit()

    def transition(
        self, reference: str, trigger: str, dest: str, facts: Mapping[str, Any], at: dt.datetime
    ) -> None:
        """One transition in its own transaction."""
        conn = self.conn
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT stage, version, facts FROM raw_cases WHERE reference = %s FOR UPDATE",
                    (reference,),
                )
                row = cur.fetchone()
                assert row is not None
                stage, version, stored = row
                cur.execute(
                    "UPDATE raw_cases SET stage = %s, version = %s, facts = %s::jsonb, "
                    "updated_at = %s WHERE reference = %s AND version = %s",
                    (
                        dest,
                        version + 1,
                        json.dumps({**stored, **facts}),
                        at,
                        reference,
                        version,
                    ),
                )
                cur.execute(
                    "INSERT INTO raw_events (reference, at, trigger, from_stage, to_stage, detail) "
                    "VALUES (%s, %s, %s, %s, %s, %s::jsonb)",
                    (reference, at, trigger, stage, dest, json.dumps(dict(facts))),
                )
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    def close(self) -> None:
        self.conn.close()


SQLITE_SYNC = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


# -- memory ---------------------------------------------------------------------------------------


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB (``VmHWM``; ``ru_maxrss`` without /proc).

    ``VmHWM`` belongs to the process's own address space, so a freshly spawned interpreter does
    not inherit the parent's high-water mark (``ru_maxrss`` can, across fork and exec).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# -- the naive machine: a new transitions.Machine for every command --------------------------------


class NaiveCase:
    """A case as the naive approach models it: its own machine, built for each command."""

    state: str

    def __init__(self, facts: Mapping[str, object], roles: frozenset[str]) -> None:
        self.facts = facts
        self.roles = roles


def naive_fire(pathway: nw.Pathway, stage: str, trigger: str, case: NaiveCase) -> str:
    """Build a ``Machine`` around ``case`` at ``stage``, fire ``trigger``, return the new stage.

    The machine checks the same things the shared one does (role and required facts), through a
    condition on every transition, so the two do equal work apart from the construction.
    """
    bool_facts = {f.name for f in pathway.facts.values() if f.type == "bool"}

    def allowed(event: EventData) -> bool:
        model = event.model
        declared = pathway.transition(event.event.name, event.transition.source)
        if declared is None or not model.roles & declared.roles:
            return False
        for name in declared.requires:
            value = model.facts.get(name)
            if (value is not True) if name in bool_facts else value is None:
                return False
        return True

    machine = Machine(
        model=case,
        states=[s.id for s in pathway.stages],
        initial=stage,
        auto_transitions=False,
        send_event=True,
        ignore_invalid_triggers=False,
    )
    for transition in pathway.transitions:
        for source in transition.sources:
            machine.add_transition(
                transition.trigger, source=source, dest=transition.dest, conditions=[allowed]
            )
    case.trigger(trigger)  # type: ignore[attr-defined]
    return case.state


def shared_machine(pathway: nw.Pathway) -> Machine:
    """A bare shared ``Machine`` (no model) of ``pathway``, as the trap and raw variants use it."""
    machine = Machine(
        model=None,
        states=[s.id for s in pathway.stages],
        initial=pathway.initial_stage,
        auto_transitions=False,
        send_event=True,
        ignore_invalid_triggers=False,
    )
    for transition in pathway.transitions:
        for source in transition.sources:
            machine.add_transition(transition.trigger, source=source, dest=transition.dest)
    return machine


# -- the naive calendar: a day-by-day loop over the holidays package -------------------------------


def naive_add_working_days(holidays: Any, start: dt.date, n: int) -> dt.date:
    """The ``n``-th working day after ``start``, stepping one date at a time."""
    day = start
    while n:
        day += dt.timedelta(days=1)
        if day.weekday() < 5 and day not in holidays:
            n -= 1
    return day


def naive_count_working_days(holidays: Any, start: dt.date, end: dt.date) -> int:
    """Working days ``d`` with ``start < d <= end``, looking at every date in between."""
    count = 0
    day = start
    while day < end:
        day += dt.timedelta(days=1)
        if day.weekday() < 5 and day not in holidays:
            count += 1
    return count


# -- the bare alarm claim: the minimum the deadline processor could cost ---------------------------

baseline_alarms = sa.Table(
    "bench_baseline_alarms",
    baseline_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("reference", sa.String(100), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_bench_baseline_alarms_status_due_at", "status", "due_at"),
)


def baseline_process(engine: sa.Engine, at: dt.datetime, batch: int) -> int:
    """Claim due alarms ``batch`` at a time: per alarm one UPDATE and one event INSERT, then COMMIT.

    Returns how many alarms it fired. PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` as the
    engine does; SQLite takes the write lock up front.
    """
    fired = 0
    while True:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.begin()
            query = (
                sa.select(baseline_alarms.c.id, baseline_alarms.c.reference)
                .where(baseline_alarms.c.status == "pending", baseline_alarms.c.due_at <= at)
                .order_by(baseline_alarms.c.due_at, baseline_alarms.c.id)
                .limit(batch)
            )
            if engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            for row in rows:
                conn.execute(
                    baseline_alarms.update()
                    .where(baseline_alarms.c.id == row.id, baseline_alarms.c.status == "pending")
                    .values(status="fired", fired_at=at)
                )
                conn.execute(
                    baseline_events.insert().values(
                        reference=row.reference, at=at, trigger="alarm", detail={"id": row.id}
                    )
                )
            conn.commit()
        fired += len(rows)
        if len(rows) < batch:
            return fired
