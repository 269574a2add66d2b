"""Databases at scale for the read benchmarks: seed a few cases through the engine, then copy them.

Opening 100,000 cases through the engine would take longer than the whole benchmark run may, so
the read benchmarks seed a thousand cases through ``Engine.open_case`` and ``Engine.fire`` at
varied stages and dates (:func:`seed_open_cases`), then multiply them in SQL
(:func:`multiply`): every table with a ``reference`` column except the audit tables is copied
with ``INSERT ... SELECT``, each copy with a new reference (the original plus ``-k``), its own
site, and its row ids offset by ``k`` times a per-table offset, so an alarm of a copied deadline
points at the copied deadline. The audit log is not copied: the reads measured here never read
it (a deep ``verify_audit`` over such a database would rightly report the copies).

Which tables and columns are copied is read from the database, not from the library's schema
module, so a migration that adds a column or a table keyed by case reference is copied too.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _cases as bc
import sqlalchemy as sa

import nim_workflow as nw

#: References of the seeded (and copied) open cases start with this.
OPEN_PREFIX = "R-"
#: The sites the copies are spread over; the originals are all at the first.
SITES: tuple[str, ...] = (
    "london",
    "leeds",
    "bristol",
    "manchester",
    "birmingham",
    "sheffield",
    "newcastle",
    "norwich",
    "plymouth",
    "york",
)


def bench_sites() -> list[nw.Site]:
    """The bundled sites, and the English sites the copies are spread over (all on NIM England).

    The engine refuses a site it was not told of: an engine reading the copies declares them.
    """
    bundled = nw.bundled_sites()
    extra = [
        nw.Site(
            id=site,
            title=site.title(),
            timezone="Europe/London",
            calendar="england-and-wales",
            pathways=["nim-uk-england"],
        )
        for site in SITES
        if site not in bundled
    ]
    return [*bundled.values(), *extra]


#: How long the seeded cases are opened over, and the gaps (days) between one step and the next.
SEED_SPAN = dt.timedelta(days=180)
STEP_GAPS: tuple[tuple[int, int], ...] = ((3, 14), (30, 90), (60, 150), (10, 30))


@dataclass(frozen=True, slots=True)
class Seeded:
    """What :func:`seed_open_cases` left: how many cases, and the clock's instant at the end."""

    cases: int
    events: int
    end: dt.datetime


def seed_open_cases(
    engine: nw.Engine,
    clock: bc.StepClock,
    count: int,
    rng: random.Random,
    *,
    prefix: str = OPEN_PREFIX,
) -> Seeded:
    """Open ``count`` cases over :data:`SEED_SPAN` from the clock's instant, at varied stages.

    Each case is opened at a random instant of the span, some with the date facts that start
    the statutory clocks (proceedings issued, entered care), and advanced along the walk by 0 to
    4 steps after random gaps; steps that would fall after the span are not taken, so the
    newest cases are still at referral. Every case stays open. The clock ends at the span's end.
    """
    start = clock.now
    end = start + SEED_SPAN
    plan: list[tuple[dt.datetime, int, int]] = []  # (when, case number, step; -1 opens)
    facts_of: dict[int, dict[str, Any]] = {}
    for i in range(count):
        opened = start + dt.timedelta(seconds=rng.randrange(int(SEED_SPAN.total_seconds())))
        plan.append((opened, i, -1))
        facts: dict[str, Any] = {}
        if rng.random() < 0.4:
            facts["proceedings_issued_on"] = (opened - dt.timedelta(days=rng.randrange(60))).date()
        if rng.random() < 0.3:
            facts["entered_care_on"] = (opened - dt.timedelta(days=rng.randrange(90))).date()
        facts_of[i] = facts
        when = opened
        for step in range(rng.randrange(5)):
            low, high = STEP_GAPS[step]
            when += dt.timedelta(days=rng.randint(low, high), minutes=rng.randrange(600))
            if when >= end:
                break
            plan.append((when, i, step))
    plan.sort()
    events = 0
    for when, i, step in plan:
        clock.now = max(clock.now, when)
        reference = f"{prefix}{i:05d}"
        if step < 0:
            engine.open_case(
                reference,
                pathway=bc.PATHWAY_ID,
                site=SITES[0],
                actor=bc.SOCIAL_WORKER,
                facts=facts_of[i],
            )
        else:
            trigger, actor, given = bc.WALK[step]
            engine.fire(reference, trigger, actor, facts=given)
        events += 1
    clock.now = max(clock.now, end)
    return Seeded(cases=count, events=events, end=clock.now)


def _case_tables(conn: sa.Connection) -> list[sa.Table]:
    """The tables keyed by case reference (audit tables aside), parents before children."""
    metadata = sa.MetaData()
    metadata.reflect(conn)
    return [
        table
        for table in metadata.sorted_tables
        if "reference" in table.c and "audit" not in table.name and table.name.startswith("nimwf_")
    ]


def _id_offset(conn: sa.Connection, table: sa.Table) -> int:
    """A power of ten above every id in ``table``, so ``id + k * offset`` never collides."""
    top = conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
    offset = 10
    while offset <= top:
        offset *= 10
    return offset


def multiply(
    engine: sa.Engine,
    copies: int,
    *,
    prefix: str = OPEN_PREFIX,
    sites: Sequence[str] = SITES,
) -> dict[str, int]:
    """Make ``copies - 1`` copies of every case whose reference starts with ``prefix``.

    Copy ``k`` (1 to ``copies - 1``) of case ``R-00012`` is ``R-00012-k`` at ``sites[k % len]``,
    with every row keyed by the case copied and its ids offset by ``k`` times a per-table power
    of ten (references to a copied table's id offset alike). Returns the rows per table after.
    On PostgreSQL the id sequences are moved past the copies and the tables analysed.
    """
    with engine.begin() as conn:
        tables = _case_tables(conn)
        names = {t.name for t in tables}
        offsets = {t.name: _id_offset(conn, t) for t in tables if "id" in t.c}
        quote = conn.dialect.identifier_preparer.quote
        conn.exec_driver_sql("CREATE TABLE bench_copies (k INTEGER PRIMARY KEY)")
        conn.execute(
            sa.text("INSERT INTO bench_copies (k) VALUES (:k)"),
            [{"k": k} for k in range(1, copies)],
        )
        whens = " ".join(f"WHEN {i} THEN '{site}'" for i, site in enumerate(sites))
        site_case = f"CASE MOD(n.k, {len(sites)}) {whens} END"
        if engine.dialect.name == "sqlite":
            site_case = f"CASE n.k % {len(sites)} {whens} END"
        for table in tables:
            # Columns that hold another copied table's id move with that table's offset.
            id_refs = {
                fk.parent.name: fk.column.table.name
                for fk in table.foreign_keys
                if fk.column.table.name in names and fk.column.name == "id"
            }
            columns, values = [], []
            for column in table.c:
                name = column.name
                src = f"src.{quote(name)}"
                if name == "reference":
                    expr = f"{src} || '-' || CAST(n.k AS TEXT)"
                elif name == "id" and table.name in offsets:
                    expr = f"{src} + n.k * {offsets[table.name]}"
                elif name in id_refs:
                    expr = f"{src} + n.k * {offsets[id_refs[name]]}"
                elif name == "site":
                    expr = site_case
                else:
                    expr = src
                columns.append(quote(name))
                values.append(expr)
            conn.execute(
                sa.text(
                    f"INSERT INTO {quote(table.name)} ({', '.join(columns)}) "
                    f"SELECT {', '.join(values)} FROM {quote(table.name)} AS src "
                    "CROSS JOIN bench_copies AS n WHERE src.reference LIKE :pattern"
                ),
                {"pattern": f"{prefix}%"},
            )
        conn.exec_driver_sql("DROP TABLE bench_copies")
        counts = {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in tables
        }
        if engine.dialect.name == "postgresql":
            for table in tables:
                if "id" in table.c:
                    conn.execute(
                        sa.text(
                            "SELECT setval(pg_get_serial_sequence(:t, 'id'), "
                            f"(SELECT max(id) FROM {quote(table.name)}))"
                        ),
                        {"t": table.name},
                    )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return counts


def copy_cases(source: sa.Engine, target: sa.Engine, *, prefix: str = OPEN_PREFIX) -> int:
    """Copy the rows of every case whose reference starts with ``prefix`` to another database.

    The target must be migrated already (the engine registers the pathways). Both sides are
    reflected, so the columns are whatever the migrations made; instants go across as UTC.
    Returns how many cases were copied.
    """
    with source.connect() as src, target.begin() as dst:
        if target.dialect.name == "postgresql":
            dst.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        dst_tables = {t.name: t for t in _case_tables(dst)}
        copied = 0
        for table in _case_tables(src):
            into = dst_tables[table.name]
            shared = [c.name for c in table.c if c.name in into.c]
            rows = src.execute(
                sa.select(*(table.c[name] for name in shared)).where(
                    table.c.reference.like(f"{prefix}%")
                )
            ).all()
            if rows:
                dst.execute(into.insert(), [dict(zip(shared, row, strict=True)) for row in rows])
            if table.name == "nimwf_cases":
                copied = len(rows)
        if target.dialect.name == "postgresql":
            quote = dst.dialect.identifier_preparer.quote
            for into in dst_tables.values():
                if "id" in into.c:
                    dst.execute(
                        sa.text(
                            "SELECT setval(pg_get_serial_sequence(:t, 'id'), "
                            f"(SELECT coalesce(max(id), 1) FROM {quote(into.name)}))"
                        ),
                        {"t": into.name},
                    )
    return copied


@dataclass(frozen=True, slots=True)
class Slice:
    """A cut-off instant for ``due`` or ``overdue``, as the engine takes it and as stored."""

    instant: dt.datetime
    stored: Any


def open_deadline_at_rank(engine: sa.Engine, rank: int) -> Slice:
    """The due instant of the ``rank``-th soonest open deadline, for a cut-off near that rank."""
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(
            "SELECT due_at FROM nimwf_deadlines WHERE status = 'open' "
            f"ORDER BY due_at LIMIT 1 OFFSET {int(rank)}"
        ).scalar_one()
    if isinstance(raw, str):  # SQLite keeps naive UTC text
        instant = dt.datetime.fromisoformat(raw).replace(tzinfo=dt.UTC)
    else:
        instant = raw.astimezone(dt.UTC)
    return Slice(instant=instant, stored=raw)
