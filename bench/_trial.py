"""The trial's benchmark fixtures: families built through the engine, and their no-family twins.

:func:`build_trial_site` opens families at one site through the engine's own calls, in the
order of their instants (each family opened with its children's entry-to-care dates, allocated
one to one between the arms, its referral accepted as one family action, a baseline visit
recorded, placements and outcomes recorded on some children). :func:`strip_families` turns a
copy of that database into the baseline: the same cases, the trial's tables emptied.
:func:`copy_database` copies every row of a SQLite database onto a migrated PostgreSQL one (the
same rows, so both back ends report the same trial). Nothing here measures.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import _cases as bc
import sqlalchemy as sa

import nim_workflow as nw

SITE = "london"
TRIAL = "best"
ARMS = ("nim", "comparator")
#: The arm's pathway at London (the plain cases of the baselines run on the first).
NIM_PATHWAY = "nim-uk-england"
COORDINATOR = nw.Actor("bench-co", roles={"coordinator"})
RESEARCHER = nw.Actor("bench-rs", roles={"researcher"})
ACCEPT = ("accept_referral", {"consent_recorded": True})
#: Children per family (BeST? has about 1.3): one, two or three, with these weights.
CHILDREN_WEIGHTS = ((1, 0.75), (2, 0.20), (3, 0.05))
#: The span the families are opened over.
SPAN = dt.timedelta(days=240)
#: The trial's tables, children before parents (the order they are emptied in).
FAMILY_TABLES = ("nimwf_visit_alarms", "nimwf_visits", "nimwf_family_children", "nimwf_families")


@dataclass(frozen=True, slots=True)
class TrialSite:
    """What :func:`build_trial_site` made, and the instant it ended at."""

    families: int
    children: int
    calls: int
    end: dt.datetime


def _children(rng: random.Random) -> int:
    pick, total = rng.random(), 0.0
    for count, weight in CHILDREN_WEIGHTS:
        total += weight
        if pick < total:
            return count
    return CHILDREN_WEIGHTS[-1][0]


def build_trial_site(
    engine: nw.Engine, clock: bc.StepClock, count: int, rng: random.Random
) -> TrialSite:
    """Open ``count`` families at :data:`SITE` through the engine over :data:`SPAN`.

    Each family is opened (its children's ``entered_care_on`` up to 40 days before), allocated
    1 to 10 days later to a random arm (which opens the children's cases and plans their
    visits); 85% have their referral accepted as one ``fire_family``; 60% hold the baseline
    visit for all children at once; half the children have a placement recorded and a
    quarter their outcome facts (permanence date, intervention received). Steps that would
    fall after the span are not taken. The calls are made in the order of their instants.
    """
    start = clock.now
    end = start + SPAN
    plan: list[tuple[dt.datetime, int, int, Callable[[], object]]] = []
    children_total = 0
    for i in range(count):
        family = f"FAM-{i:05d}"
        kids = [f"{family}-C{j}" for j in range(_children(rng))]
        children_total += len(kids)
        opened = start + dt.timedelta(seconds=rng.randrange(int(SPAN.total_seconds())))
        entered = {kid: opened.date() - dt.timedelta(days=rng.randrange(0, 40)) for kid in kids}
        steps: list[tuple[dt.datetime, Callable[[], object]]] = [
            (
                opened,
                partial(
                    engine.open_family,
                    family,
                    site=SITE,
                    actor=bc.SOCIAL_WORKER,
                    children=kids,
                    facts={kid: {"entered_care_on": day} for kid, day in entered.items()},
                ),
            )
        ]
        allocated = opened + dt.timedelta(days=rng.randint(1, 10), minutes=rng.randrange(600))
        arm = rng.choice(ARMS)
        steps.append(
            (allocated, partial(engine.allocate, family, arm, f"BEST-{i:05d}", COORDINATOR))
        )
        if rng.random() < 0.85:
            accepted = allocated + dt.timedelta(days=rng.randint(2, 15), minutes=rng.randrange(600))
            steps.append(
                (
                    accepted,
                    partial(
                        engine.fire_family, family, ACCEPT[0], bc.TEAM_MANAGER, facts=ACCEPT[1]
                    ),
                )
            )
        if rng.random() < 0.6:
            # Every child's window is open by then (4 weeks after the latest entry to care).
            held = max(entered.values()) + dt.timedelta(days=28 + rng.randrange(0, 70))
            recorded = max(
                dt.datetime.combine(held, dt.time(16, 0), tzinfo=dt.UTC),
                allocated + dt.timedelta(hours=1),
            )
            steps.append(
                (
                    recorded,
                    partial(
                        engine.record_visit, family, "baseline", held_on=held, actor=RESEARCHER
                    ),
                )
            )
        for kid in kids:
            if rng.random() < 0.5:
                when = allocated + dt.timedelta(days=rng.randint(3, 60), minutes=rng.randrange(600))
                placed = {"placed_on": when.date()}
                steps.append((when, partial(engine.record, kid, placed, actor=bc.SOCIAL_WORKER)))
            if rng.random() < 0.25:
                when = allocated + dt.timedelta(
                    days=rng.randint(60, 200), minutes=rng.randrange(600)
                )
                outcome = {
                    "permanence_achieved_on": when.date(),
                    "intervention_received": rng.choice(["received", "partly", "not_received"]),
                }
                steps.append((when, partial(engine.record, kid, outcome, actor=bc.SOCIAL_WORKER)))
        plan += [(when, i, n, action) for n, (when, action) in enumerate(steps) if when < end]
    plan.sort(key=lambda step: step[:3])
    for when, _i, _n, action in plan:
        clock.now = max(clock.now, when)
        action()
    clock.now = max(clock.now, end)
    return TrialSite(
        families=count,
        children=children_total,
        calls=len(plan),
        end=clock.now,
    )


def strip_families(engine: sa.Engine) -> None:
    """Empty the trial's tables: the same cases, no families, visits or reminders."""
    with engine.begin() as conn:
        for name in FAMILY_TABLES:
            conn.exec_driver_sql(f"DELETE FROM {name}")
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM")


def checkpoint(engine: sa.Engine) -> None:
    """Fold SQLite's write-ahead log into the file, so a copy of the file is the database."""
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def copy_database(source: sa.Engine, target: sa.Engine) -> dict[str, int]:
    """Copy every ``nimwf_`` row of ``source`` (SQLite) onto ``target`` (migrated PostgreSQL).

    The target's own rows (the pathways ``migrate`` registered, and their audit entries) are
    removed first, so the target holds exactly the source's rows; instants go across as UTC,
    the id sequences are moved past the copies and the tables analysed. Rows per table.
    """
    src_meta, dst_meta = sa.MetaData(), sa.MetaData()
    src_meta.reflect(source)
    dst_meta.reflect(target)
    names = [
        t.name
        for t in src_meta.sorted_tables
        if t.name.startswith("nimwf_") and "alembic" not in t.name
    ]
    counts: dict[str, int] = {}
    with source.connect() as src, target.begin() as dst:
        dst.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        quote = dst.dialect.identifier_preparer.quote
        dst.exec_driver_sql(
            "TRUNCATE " + ", ".join(quote(name) for name in names) + " RESTART IDENTITY CASCADE"
        )
        for name in names:
            table, into = src_meta.tables[name], dst_meta.tables[name]
            shared = [c.name for c in table.c if c.name in into.c]
            rows: Sequence[Any] = src.execute(sa.select(*(table.c[c] for c in shared))).all()
            if rows:
                for start in range(0, len(rows), 5000):
                    dst.execute(
                        into.insert(),
                        [dict(zip(shared, row, strict=True)) for row in rows[start : start + 5000]],
                    )
            counts[name] = len(rows)
            if "id" in into.c and rows:
                dst.execute(
                    sa.text(
                        "SELECT setval(pg_get_serial_sequence(:t, 'id'), "
                        f"(SELECT max(id) FROM {quote(name)}))"
                    ),
                    {"t": name},
                )
    with target.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    return counts
