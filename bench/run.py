"""Benchmarks of nim_workflow, run on demand; results go to stdout and to docs/benchmarks.md.

    python bench/run.py [--quick] [--pg-url URL] [--out docs/benchmarks.md] [--only report|trial]
    tools/with-postgres.sh .venv/bin/python bench/run.py      # with a throwaway PostgreSQL
    make bench                                                 # the same, refreshing the page

Each figure is the median over interleaved repeats together with its ratio to a baseline measured
in the same run (ratio = median / baseline median). The groups:

1. ``machine``: deciding and firing a trigger through the shared ``PathwayMachine`` against building
   a ``transitions.Machine`` per case, and keeping every case registered with ``add_model``.
2. ``write``: 1,000 cases on the England pathway walked round-robin, one ``Engine.fire`` per
   transaction, against raw ``sqlite3`` (WAL, synchronous=FULL) and raw ``psycopg`` doing the
   minimum statements of a transition: transitions/s, CPU ms and SQL statements per transition.
3. ``workers``: 4 processes firing on distinct cases against 1 (PostgreSQL).
4. ``process_due``: due alarms fired by one call against a bare batched claim; on PostgreSQL
   also 2 and 4 worker processes against 1.
5. ``reads``: ``due``/``overdue`` (and with ``site=``) over 100,000 open cases against the raw
   SQL a covering index answers.
6. ``report``: the HTML report over the 100,000-case database against a raw count by site/stage;
   and the report of one 10,000-case site against that of a 1,000-case site (``--only report``
   runs this part alone and rewrites only its section of the page).
7. ``memory``: peak RSS of a process doing 100,000 operations against one opening and advancing
   1,000 cases, each in a fresh interpreter.
8. ``verify``: ``verify_audit`` (shallow and deep) in events/s against reading the rows and
   hashing each entry's canonical bytes.
9. ``calendar``: ``WorkingCalendar.add`` (20 working days) and ``count_working_days`` over a year
   against a day-by-day loop over the ``holidays`` package.
10. ``trial``: the trial's families: ``fire_family`` on 2 and 3 children against as many plain
    ``fire`` calls, ``allocate`` against opening the children's cases with ``open_case``, and
    the one-site report and the csv export of a site of 2,000 families against the same cases
    with the trial's tables emptied (``--only trial`` runs this group alone and rewrites only
    its section of the page).

The engine reads an injected clock and every random choice comes from a seeded generator, so two
runs do the same work. Nothing here is part of the test suite, and nothing asserts on time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import random
import shlex
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path

import _cases as bc
import _profile
import _scale
import _trial
import _workers
import holidays
import sqlalchemy as sa

import nim_workflow as nw
from nim_workflow._machine import PathwayMachine
from nim_workflow._report._html import TIMELINE_ROWS
from nim_workflow._store import _schema as schema

PG_URL_VARIABLE = "NIM_WORKFLOW_TEST_PG_URL"
#: The engine claims alarms 500 at a time; the bare baseline claims in batches of the same size.
ALARM_BATCH = 500
ROOT = Path(__file__).resolve().parent.parent
#: In the memory run, one case in this many is also taken a step along the walk by fire().
MEMORY_FIRE_EVERY = 500
#: Seconds the report group may spend on reports of every case (estimated from one site's): when
#: not even one fits, the report is measured on that one site's cases instead.
REPORT_BUDGET = 75.0
#: What the report of one 10,000-case site may take (seconds) and weigh (bytes of HTML).
SITE_REPORT_SECONDS = 10.0
SITE_REPORT_BYTES = 5_000_000
#: The heading of the page's section on the one-site report (``--only report`` rewrites it).
SITE_REPORT_HEADING = "## Report: one site of many cases"
#: The heading of the page's section on the trial's families (``--only trial`` rewrites it).
TRIAL_HEADING = "## Trial: families, allocation, report and export"
#: The pseudonym key of the export benchmark (any 16 bytes or more).
TRIAL_EXPORT_KEY = b"nimwf-bench-pseudonym-key"


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each benchmark does; ``--quick`` shrinks everything."""

    repeats: int
    machine_cases: int
    machine_trap_cases: int
    #: The write workload: cases walked round-robin, and how many at a time alternate with raw.
    write_cases: int
    write_chunk: int
    #: Cases each side of the 4-against-1 fire comparison walks (PostgreSQL).
    worker_cases: int
    alarms: int
    #: Cases seeded through the engine for the reads, and copies made of each in SQL.
    seed_cases: int
    copies: int
    #: Open deadlines the due and overdue cut-offs are chosen to return (about).
    due_rows: int
    overdue_rows: int
    #: Extra cases opened (and their alarms processed) to grow the audit log for verify_audit.
    verify_cases: int
    memory_operations: int
    report_repeats: int
    #: The one-site report: cases seeded at the baseline site, copies making the large one.
    site_report_cases: int
    site_report_copies: int
    site_report_repeats: int
    calendar_starts: int
    calendar_year_starts: int
    #: The trial: families (and plain cases) per repeat of the family actions, and the families
    #: of the site whose report and export are measured.
    trial_batch: int
    trial_families: int


FULL = Sizes(
    repeats=5,
    machine_cases=1000,
    machine_trap_cases=10000,
    write_cases=1000,
    write_chunk=100,
    worker_cases=200,
    alarms=1000,
    seed_cases=1000,
    copies=100,
    due_rows=2000,
    overdue_rows=1000,
    verify_cases=800,
    memory_operations=100_000,
    report_repeats=3,
    site_report_cases=1000,
    site_report_copies=10,
    site_report_repeats=5,
    calendar_starts=1000,
    calendar_year_starts=200,
    trial_batch=40,
    trial_families=2000,
)
QUICK = Sizes(
    repeats=3,
    machine_cases=1000,
    machine_trap_cases=3000,
    write_cases=100,
    write_chunk=25,
    worker_cases=40,
    alarms=300,
    seed_cases=150,
    copies=10,
    due_rows=300,
    overdue_rows=150,
    verify_cases=60,
    memory_operations=4000,
    report_repeats=2,
    site_report_cases=200,
    site_report_copies=10,
    site_report_repeats=3,
    calendar_starts=300,
    calendar_year_starts=50,
    trial_batch=15,
    trial_families=300,
)


@dataclass(frozen=True, slots=True)
class Target:
    """A target from the performance issue, the figure measured against it, and the verdict."""

    target: str
    measured: str
    met: bool | None


@dataclass
class Report:
    """Everything measured in one run, and what the run found along the way."""

    rows: list[bc.Result] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, row: bc.Result) -> bc.Result:
        self.rows.append(row)
        ratio = "" if row.ratio is None else f"{row.ratio:8.3f}x"
        print(f"  {row.group:<12} {row.name:<72} {row.median:10.3f} {row.unit:<14}{ratio}")
        return row

    def find(self, name: str) -> bc.Result | None:
        return next((row for row in self.rows if row.name == name), None)

    def key(self, key: str) -> bc.Result | None:
        """The row filed under ``key`` (see :meth:`keep`)."""
        name = self.notes.get(key)
        return None if name is None else self.find(name)

    def keep(self, key: str, row: bc.Result) -> bc.Result:
        """Add ``row`` and file it under ``key`` for the reading and the targets."""
        self.notes[key] = row.name
        return self.add(row)

    @contextmanager
    def timing(self, name: str) -> Iterator[None]:
        """Record how long a group took, for the page (where the run's minutes went)."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - start


def bench_engine(*args: object, **kwargs: object) -> nw.Engine:
    """An engine that also declares the sites the scale copies use (``_scale.bench_sites``)."""
    return nw.Engine(*args, sites=_scale.bench_sites(), **kwargs)  # type: ignore[arg-type]


def cpus() -> int:
    """The CPUs this process may run on (what ``nproc`` prints)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# -- 1. the shared machine -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """One command on one case: fire ``trigger`` from ``stage`` with enough facts and role."""

    stage: str
    trigger: str
    dest: str
    roles: frozenset[str]
    facts: dict[str, object]
    reason: str | None


def machine_commands(pathway: nw.Pathway, count: int, rng: random.Random) -> list[Command]:
    """``count`` valid commands on cases at random open stages, each meeting its requirements."""
    open_stages = [s.id for s in pathway.stages if not s.final]
    commands = []
    for _ in range(count):
        stage = rng.choice(open_stages)
        transition = rng.choice(pathway.transitions_from(stage))
        facts: dict[str, object] = {}
        for name in (*transition.requires, transition.outcome_fact):
            if name is None:
                continue
            spec = pathway.facts[name]
            facts[name] = {"bool": True, "date": bc.T0.date()}.get(spec.type) or spec.values[0]
        commands.append(
            Command(
                stage=stage,
                trigger=transition.trigger,
                dest=transition.dest,
                roles=frozenset({rng.choice(sorted(transition.roles))}),
                facts=facts,
                reason="benchmark" if transition.reason_required else None,
            )
        )
    return commands


def bench_machine(report: Report, sizes: Sizes) -> None:
    """Shared machine (bind per command) against a machine per case and against the trap."""
    print("machine: deciding and firing one trigger per case")
    pathway = nw.bundled_pathways()[bc.PATHWAY_ID]
    rng = random.Random(bc.SEED)
    commands = machine_commands(pathway, sizes.machine_cases, rng)
    trap_commands = machine_commands(pathway, sizes.machine_trap_cases, rng)
    shared = PathwayMachine.for_pathway(pathway)

    def naive() -> None:
        for c in commands:
            dest = bc.naive_fire(pathway, c.stage, c.trigger, bc.NaiveCase(c.facts, c.roles))
            assert dest == c.dest

    def engine_path() -> None:
        # What Engine.fire does: look the machine up, decide (for the refusal), then fire.
        for i, c in enumerate(commands):
            machine = PathwayMachine.for_pathway(pathway)
            decision = machine.decide(c.stage, c.trigger, roles=c.roles, facts=c.facts)
            assert decision.allowed or c.reason is not None
            dest = machine.fire(
                c.stage,
                c.trigger,
                roles=c.roles,
                facts=c.facts,
                reason=c.reason,
                reference=f"B{i}",
                actor_id="bench",
            )
            assert dest == c.dest

    def bind_per_command(cmds: Sequence[Command]) -> Callable[[], None]:
        machine = bc.shared_machine(pathway)

        def run() -> None:
            for c in cmds:
                case = bc.NaiveCase(c.facts, c.roles)
                machine.add_model(case, initial=c.stage)
                try:
                    case.trigger(c.trigger)  # type: ignore[attr-defined]
                finally:
                    machine.remove_model(case)
                assert case.state == c.dest

        return run

    def keep_registered(cmds: Sequence[Command]) -> Callable[[], None]:
        def run() -> None:
            machine = bc.shared_machine(pathway)
            models = [bc.NaiveCase(c.facts, c.roles) for c in cmds]
            for case, c in zip(models, cmds, strict=True):
                machine.add_model(case, initial=c.stage)
            for case, c in zip(models, cmds, strict=True):
                case.trigger(c.trigger)  # type: ignore[attr-defined]
                assert case.state == c.dest

        return run

    def without_gc(action: Callable[[], None]) -> Callable[[], None]:
        # Separates the list-membership part of the trap from the collector's part.
        def run() -> None:
            gc.disable()
            try:
                action()
            finally:
                gc.enable()

        return run

    n, big = len(commands), len(trap_commands)
    variants: list[tuple[str, Callable[[], None], int]] = [
        (f"naive: new transitions.Machine per command ({n} cases)", naive, n),
        (f"PathwayMachine.for_pathway: decide + fire, bind/unbind ({n})", engine_path, n),
        (
            f"shared bare Machine: add_model/trigger/remove_model ({n})",
            bind_per_command(commands),
            n,
        ),
        (
            f"shared bare Machine: all {n} kept registered (add_model trap)",
            keep_registered(commands),
            n,
        ),
        (
            f"shared bare Machine: add_model/trigger/remove_model ({big})",
            bind_per_command(trap_commands),
            big,
        ),
        (
            f"shared bare Machine: all {big} kept registered (add_model trap)",
            keep_registered(trap_commands),
            big,
        ),
        (
            f"shared bare Machine: all {big} kept registered, gc disabled",
            without_gc(keep_registered(trap_commands)),
            big,
        ),
    ]
    shared.decide(commands[0].stage, commands[0].trigger, roles=frozenset(), facts={})
    samples: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for _ in range(sizes.repeats):
        for name, action, count in variants:
            gc.collect()  # garbage left by the variant before must not be collected in this one
            samples[name].append(bc.timed(action) / count * 1e6)
    base = report.add(
        bc.baseline_row("machine", variants[0][0], samples[variants[0][0]], "us/command")
    )
    for name, _, _ in variants[1:]:
        report.add(bc.result("machine", name, samples[name], "us/command", baseline=base))


# -- 2. the write workload -------------------------------------------------------------------------


def bench_write(
    report: Report, sizes: Sizes, url: str, raw_target: str, label: str
) -> _workers.WriteRun:
    """Transitions/s, client CPU and statements per ``Engine.fire``, against a raw DBAPI loop.

    Runs in a fresh process (:func:`_workers.write_workload`), whose peak RSS is the memory
    group's baseline.
    """
    print(f"write: {sizes.write_cases} cases walked round-robin on {label} (in a fresh process)")
    run: _workers.WriteRun = _workers.in_fresh_process(
        _workers.write_workload_process, url, raw_target, sizes.write_cases, sizes.write_chunk
    )
    n = run.cases
    raw = "raw sqlite3" if label == "SQLite" else "raw psycopg"
    base = report.keep(
        f"write raw {label}",
        bc.baseline_row(
            "write",
            f"{label}: {raw}, SELECT+UPDATE+INSERT then COMMIT, {n} cases round-robin",
            run.raw_tps,
            "transitions/s",
            note=f"one sample per pass of the walk ({len(run.raw_tps)} passes)",
        ),
    )
    report.keep(
        f"write engine {label}",
        bc.result(
            "write",
            f"{label}: Engine.fire, {n} cases round-robin ({run.transitions} transitions)",
            run.engine_tps,
            "transitions/s",
            baseline=base,
            note=(
                f"ratio = throughput multiple; opening the {n} cases first took "
                f"{run.open_seconds / n * 1e3:.1f} ms per open_case"
            ),
        ),
    )
    cpu_base = report.keep(
        f"write raw cpu {label}",
        bc.baseline_row(
            "write", f"{label}: {raw}, client CPU per transition", run.raw_cpu_ms, "CPU ms"
        ),
    )
    report.keep(
        f"write engine cpu {label}",
        bc.result(
            "write",
            f"{label}: Engine.fire, client CPU per transition",
            run.engine_cpu_ms,
            "CPU ms",
            baseline=cpu_base,
            note="time.process_time of the client process",
        ),
    )
    statements_base = report.keep(
        f"write raw statements {label}",
        bc.baseline_row(
            "write",
            f"{label}: {raw}, SQL statements per transition",
            [float(run.raw_statements)],
            "statements",
            note="BEGIN and COMMIT aside",
        ),
    )
    report.keep(
        f"write engine statements {label}",
        bc.result(
            "write",
            f"{label}: Engine.fire, SQL statements per transition",
            [run.engine_statements],
            "statements",
            baseline=statements_base,
            note=(
                "mean over the workload; a before_cursor_execute listener, an executemany "
                "counts once; BEGIN and COMMIT aside"
                + ("; pool_pre_ping's ping is not seen" if label == "PostgreSQL" else "")
            ),
        ),
    )
    if run.durability:
        report.facts[f"durability {label}"] = run.durability
    return run


def bench_write_profile(report: Report, sizes: Sizes) -> None:
    """Where Engine.fire's client CPU goes on SQLite, part by part (:mod:`_profile`)."""
    cases = max(sizes.write_cases // 4, 25)
    print(f"write profile: {cases} cases walked, Engine.fire's parts timed")
    samples: dict[str, list[float]] = {}
    totals: list[float] = []
    transitions = 0
    for _ in range(max(sizes.repeats - 2, 1)):
        parts, total, transitions = _profile.fire_profile(cases)
        totals.append(total)
        for label, value in parts.items():
            samples.setdefault(label, []).append(value)
    whole = report.keep(
        "profile total",
        bc.baseline_row(
            "write profile",
            f"SQLite: Engine.fire under the part counters, whole ({transitions} transitions)",
            totals,
            "CPU ms",
            note="the counters add a little; read the parts as shares",
        ),
    )
    for label, values in samples.items():
        report.keep(
            f"profile {label}",
            bc.result(
                "write profile",
                f"SQLite: Engine.fire part: {label}",
                values,
                "CPU ms",
                baseline=whole,
                note="ratio = share of the whole",
            ),
        )


# -- 3. several processes firing at once -----------------------------------------------------------


def bench_fire_workers(
    report: Report, sizes: Sizes, url: str, label: str, pool: _workers.WorkerPool
) -> None:
    """4 processes firing on distinct cases against 1 doing the same amount of work.

    Two sets of ``worker_cases`` cases are opened; each pass of the walk takes one set a step on
    with 1 process and the other with 4 (taking turns at going first), timed from the barrier
    that releases the workers to the last one's finish. Every pass is one sample.
    """
    n = sizes.worker_cases
    print(f"workers: 4 processes firing on distinct cases against 1 on {label} ({n} cases each)")
    clock = bc.StepClock(bc.T0 + dt.timedelta(days=30))
    sets = {w: [f"P{w}-{i:05d}" for i in range(n)] for w in (1, 4)}
    with bench_engine(url, clock=clock) as engine:
        for refs in sets.values():
            for ref in refs:
                clock.advance(dt.timedelta(seconds=1))
                engine.open_case(ref, pathway=bc.PATHWAY_ID, site=bc.SITE, actor=bc.SOCIAL_WORKER)
    samples: dict[int, list[float]] = {1: [], 4: []}
    for step in range(len(bc.WALK)):
        for workers in (1, 4) if step % 2 == 0 else (4, 1):
            clock.advance(dt.timedelta(hours=1))
            done = pool.fire(url, workers, sets[workers], step, clock.now)
            if sum(done.done) != n:
                report.findings.append(
                    f"{label}: {workers} process(es) fired {sum(done.done)} of {n} transitions"
                )
            samples[workers].append(sum(done.done) / done.seconds)
    base = report.keep(
        f"workers fire 1 {label}",
        bc.baseline_row(
            "workers",
            f"{label}: 1 process firing on {n} cases, one walk step each",
            samples[1],
            "transitions/s",
            note="wall time from the barrier to the last finish; one sample per walk step",
        ),
    )
    report.keep(
        f"workers fire 4 {label}",
        bc.result(
            "workers",
            f"{label}: 4 processes firing on {n} distinct cases (a quarter each)",
            samples[4],
            "transitions/s",
            baseline=base,
            note=f"ratio = throughput multiple on {cpus()} CPUs (nproc), shared with the server",
        ),
    )


# -- 4. process_due --------------------------------------------------------------------------------


class AlarmFixture:
    """A database holding N due alarms, and a way to set them all pending again between repeats."""

    def __init__(self, url: str, alarms: int) -> None:
        self.url = url
        self.clock = bc.StepClock()
        self.engine = bench_engine(url, clock=self.clock)
        self.engine.migrate()
        # A case in referral raises three alarms: a reminder, a breach and an escalation. Caught
        # up after the due date the reminder would lapse rather than fire, so the fixture keeps
        # only the breach and the escalation: two alarms a case, every one of which fires.
        for i in range(math.ceil(alarms / 2)):
            self.clock.advance(dt.timedelta(seconds=1))
            self.engine.open_case(
                f"A-{i:05d}", pathway=bc.PATHWAY_ID, site=bc.SITE, actor=bc.SOCIAL_WORKER
            )
        self.due_at = bc.T0 + dt.timedelta(days=60)
        self.clock.now = self.due_at
        sql = self.engine.sqlalchemy_engine
        with sql.begin() as conn:
            conn.execute(sa.text("DELETE FROM nimwf_alarms WHERE kind = 'reminder'"))
        with sql.connect() as conn:
            self.pending = conn.execute(
                sa.text("SELECT count(*) FROM nimwf_alarms WHERE status = 'pending'")
            ).scalar_one()
            # Where setup leaves the audit log: its newest entry, every chain's head, the log head.
            self.last_entry = conn.execute(
                sa.text("SELECT max(id) FROM nimwf_audit_events")
            ).scalar_one()
            self.chains = [dict(r._mapping) for r in conn.execute(sa.select(schema.audit_chains))]
            self.log_row = dict(conn.execute(sa.select(schema.audit_log)).one()._mapping)
        self.bare = sa.create_engine(url)
        if self.bare.dialect.name == "sqlite":
            bc.sqlite_pragmas(self.bare)
        bc.baseline_metadata.create_all(self.bare)
        with self.bare.begin() as conn:
            conn.execute(
                bc.baseline_alarms.insert(),
                [
                    {"reference": f"A-{i // 2:05d}", "due_at": bc.T0, "status": "pending"}
                    for i in range(self.pending)
                ],
            )

    def reset(self) -> None:
        """Make every alarm pending again and cut the audit log back to where setup left it.

        The chains' heads and the log head go back with it, so the log stays whole and each
        repeat starts from the same rows.
        """
        with self.engine.sqlalchemy_engine.begin() as conn:
            conn.execute(sa.text("UPDATE nimwf_alarms SET status = 'pending', fired_at = NULL"))
            conn.execute(
                sa.text("DELETE FROM nimwf_audit_events WHERE id > :id"), {"id": self.last_entry}
            )
            conn.execute(schema.audit_chains.delete())
            conn.execute(schema.audit_chains.insert(), self.chains)
            conn.execute(schema.audit_log.delete())
            conn.execute(schema.audit_log.insert(), [self.log_row])
        with self.bare.begin() as conn:
            conn.execute(bc.baseline_alarms.update().values(status="pending", fired_at=None))
            conn.execute(bc.baseline_events.delete())
        if self.bare.dialect.name == "postgresql":
            # Dead rows from the last repeat would otherwise make each repeat slower than the one
            # before it.
            with self.bare.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table in (
                    "nimwf_alarms",
                    "nimwf_audit_events",
                    "nimwf_audit_chains",
                    "bench_baseline_alarms",
                    "bench_baseline_events",
                ):
                    conn.execute(sa.text(f"VACUUM ANALYZE {table}"))

    def pending_by_kind(self) -> dict[str, int]:
        """How many alarms of each kind are still pending."""
        with self.engine.sqlalchemy_engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT kind, count(*) FROM nimwf_alarms WHERE status = 'pending' "
                    "GROUP BY kind ORDER BY kind"
                )
            ).all()
        return dict(rows)

    def close(self) -> None:
        self.engine.close()
        self.bare.dispose()


def bench_process_due(
    report: Report,
    sizes: Sizes,
    url: str,
    label: str,
    *,
    pool: _workers.WorkerPool | None = None,
) -> None:
    """ms per alarm for one ``process_due`` call over N due alarms; 2 and 4 workers against 1."""
    print(f"process_due: due alarms on {label}")
    fixture = AlarmFixture(url, sizes.alarms)
    n = fixture.pending
    counts = (1, 2, 4) if pool is not None else ()
    samples: dict[str, list[float]] = {"engine": [], "bare": [], **{f"w{c}": [] for c in counts}}
    try:
        for repeat in range(sizes.repeats):
            fixture.reset()
            seconds, fired = bc.timed_call(fixture.engine.process_due, fixture.due_at)
            if len(fired) != n:
                report.findings.append(
                    f"{label}: one process_due call fired {len(fired)} of {n} due alarms "
                    f"(still pending afterwards: {fixture.pending_by_kind()})"
                )
            samples["engine"].append(seconds / max(len(fired), 1) * 1e3)
            seconds, claimed = bc.timed_call(
                bc.baseline_process, fixture.bare, fixture.due_at, ALARM_BATCH
            )
            assert claimed == n, (claimed, n)
            samples["bare"].append(seconds / n * 1e3)
            if pool is None:
                continue
            # Rotate the order of the worker counts, so none always runs first.
            for count in counts[repeat % 3 :] + counts[: repeat % 3]:
                fixture.reset()
                done = pool.process_due(url, count, fixture.due_at)
                total = sum(done.done)
                if total != n:
                    report.findings.append(
                        f"{label}: {count} worker process(es) fired {total} of {n} due "
                        f"alarms (per worker: {done.done}; still pending afterwards: "
                        f"{fixture.pending_by_kind()})"
                    )
                samples[f"w{count}"].append(total / done.seconds)
    finally:
        fixture.close()
        if pool is not None:
            pool.forget(url)
    base = report.keep(
        f"due bare {label}",
        bc.baseline_row(
            "process_due",
            f"{label}: bare claim, UPDATE+INSERT per alarm, {ALARM_BATCH} per txn",
            samples["bare"],
            "ms/alarm",
        ),
    )
    report.keep(
        f"due engine {label}",
        bc.result(
            "process_due",
            f"{label}: process_due, {n} due alarms in one call",
            samples["engine"],
            "ms/alarm",
            baseline=base,
        ),
    )
    if pool is None:
        return
    one = report.keep(
        f"due w1 {label}",
        bc.baseline_row(
            "process_due",
            f"{label}: 1 worker process, {n} alarms",
            samples["w1"],
            "alarms/s",
            note="wall time from the barrier to the last finish",
        ),
    )
    for count in counts[1:]:
        report.keep(
            f"due w{count} {label}",
            bc.result(
                "process_due",
                f"{label}: {count} worker processes, {n} alarms",
                samples[f"w{count}"],
                "alarms/s",
                baseline=one,
                note=(
                    f"ratio = throughput multiple on {cpus()} CPUs (nproc), shared with the server"
                ),
            ),
        )


# -- 5. reads at scale -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScaleDatabase:
    """A database of many open cases made by :mod:`_scale`, and the instants to read it at."""

    url: str
    open_cases: int
    cases: int
    end: dt.datetime


def build_sqlite_scale(
    report: Report, sizes: Sizes, source_url: str, seed_path: Path, scale_path: Path
) -> ScaleDatabase:
    """Seed open cases through the engine on ``source_url``, keep a copy, multiply another.

    The seeded cases go into the write workload's database (whose audit log the verify group
    then reads); ``seed_path`` keeps them as seeded (the PostgreSQL reads copy them from it) and
    ``scale_path`` becomes the database of ``seed_cases * copies`` open cases.
    """
    print(f"reads: seeding {sizes.seed_cases} open cases, then {sizes.copies} copies of each")
    clock = bc.StepClock(bc.T0 + dt.timedelta(days=7))
    with bench_engine(source_url, clock=clock) as engine:
        start = time.perf_counter()
        seeded = _scale.seed_open_cases(engine, clock, sizes.seed_cases, random.Random(bc.SEED))
        seconds = time.perf_counter() - start
    source = sqlite3.connect(sa.make_url(source_url).database or "")
    try:
        source.execute("VACUUM INTO ?", (str(seed_path),))
    finally:
        source.close()
    shutil.copyfile(seed_path, scale_path)
    url = f"sqlite:///{scale_path}"
    with bench_engine(url, clock=bc.StepClock(seeded.end)) as engine:
        start_copy = time.perf_counter()
        counts = _scale.multiply(engine.sqlalchemy_engine, sizes.copies)
        copy_seconds = time.perf_counter() - start_copy
        with engine.sqlalchemy_engine.connect() as conn:
            cases, open_cases = conn.execute(
                sa.text("SELECT count(*), count(*) - count(closed_at) FROM nimwf_cases")
            ).one()
    report.facts["scale SQLite"] = (
        f"{seeded.cases:,} open cases seeded through the engine ({seeded.events:,} opens and "
        f"transitions in {seconds:.0f} s, opened over {_scale.SEED_SPAN.days} days), then "
        f"copied {sizes.copies - 1} times in SQL in {copy_seconds:.0f} s; the write workload's "
        f"{cases - open_cases:,} closed cases are there too, not copied. Rows: "
        + ", ".join(f"{name} {count:,}" for name, count in counts.items())
    )
    return ScaleDatabase(url=url, open_cases=open_cases, cases=cases, end=seeded.end)


def build_postgres_scale(
    report: Report, sizes: Sizes, seed_path: Path, url: str, end: dt.datetime
) -> ScaleDatabase:
    """The same many open cases on PostgreSQL: copy the seeded rows over, multiply, ANALYZE."""
    print(f"reads: copying the seeded cases to PostgreSQL and making {sizes.copies} of each")
    with bench_engine(url, clock=bc.StepClock(end)) as engine:
        engine.migrate()
        source = sa.create_engine(f"sqlite:///{seed_path}")
        try:
            start = time.perf_counter()
            _scale.copy_cases(source, engine.sqlalchemy_engine)
            counts = _scale.multiply(engine.sqlalchemy_engine, sizes.copies)
            seconds = time.perf_counter() - start
        finally:
            source.dispose()
        with engine.sqlalchemy_engine.connect() as conn:
            cases, open_cases = conn.execute(
                sa.text("SELECT count(*), count(*) - count(closed_at) FROM nimwf_cases")
            ).one()
    report.facts["scale PostgreSQL"] = (
        f"the seeded open cases' rows copied from SQLite, then {sizes.copies - 1} copies made in "
        f"SQL and ANALYZE, in {seconds:.0f} s (no closed cases). Rows: "
        + ", ".join(f"{name} {count:,}" for name, count in counts.items())
    )
    return ScaleDatabase(url=url, open_cases=open_cases, cases=cases, end=end)


def bench_reads(report: Report, sizes: Sizes, scale: ScaleDatabase, label: str) -> None:
    """``due`` and ``overdue`` (all sites and one) against the raw query of a covering index.

    The cut-offs are the due instants of the ``due_rows``-th and ``overdue_rows``-th soonest
    open deadline, so each call returns a slice of that size rather than every open deadline.
    Each call is made once before timing (compiled statements, pathways and calendars cached).
    """
    print(f"reads: due and overdue over {scale.open_cases:,} open cases on {label}")
    engine = bench_engine(scale.url, clock=bc.StepClock(scale.end))
    sql = engine.sqlalchemy_engine
    due_cut = _scale.open_deadline_at_rank(sql, sizes.due_rows)
    over_cut = _scale.open_deadline_at_rank(sql, sizes.overdue_rows)
    site = _scale.SITES[1]
    mark = "?" if sql.dialect.name == "sqlite" else "%s"
    raw = sql.raw_connection()
    cursor = raw.cursor()

    def raw_read(op: str, stored: object, site: str | None) -> int:
        query = (
            "SELECT id, reference, rule, due_at FROM nimwf_deadlines "
            f"WHERE status = 'open' AND due_at {op} {mark}"
        )
        params: list[object] = [stored]
        if site is not None:
            query += f" AND site = {mark}"
            params.append(site)
        cursor.execute(query + " ORDER BY due_at", params)
        return len(cursor.fetchall())

    variants: list[tuple[str, str, str, Callable[[], list[nw.Deadline]], Callable[[], int]]] = [
        (
            "due",
            "engine.due(before=cut-off)",
            "due_at <",
            lambda: engine.due(before=due_cut.instant),
            partial(raw_read, "<", due_cut.stored, None),
        ),
        (
            "overdue",
            "engine.overdue(at=cut-off)",
            "due_at <=",
            lambda: engine.overdue(at=over_cut.instant),
            partial(raw_read, "<=", over_cut.stored, None),
        ),
        (
            "due site",
            f"engine.due(before=cut-off, site={site!r})",
            "due_at < and site =",
            lambda: engine.due(before=due_cut.instant, site=site),
            partial(raw_read, "<", due_cut.stored, site),
        ),
        (
            "overdue site",
            f"engine.overdue(at=cut-off, site={site!r})",
            "due_at <= and site =",
            lambda: engine.overdue(at=over_cut.instant, site=site),
            partial(raw_read, "<=", over_cut.stored, site),
        ),
    ]
    found: dict[str, int] = {}
    for key, _name, _where, call, raw_call in variants:
        found[key] = len(call())
        raw_rows = raw_call()
        if raw_rows != found[key]:
            report.findings.append(
                f"{label}: {key} returned {found[key]} deadlines where the raw query found "
                f"{raw_rows}"
            )
    samples: dict[str, list[float]] = {}
    try:
        for repeat in range(sizes.repeats):
            for key, _name, _where, call, raw_call in variants:
                pair = [(key, call), (f"{key} raw", raw_call)]
                for kind, action in pair if repeat % 2 == 0 else pair[::-1]:
                    samples.setdefault(kind, []).append(bc.timed(action) * 1e3)
    finally:
        cursor.close()
        raw.close()
        engine.close()
    at_text = {
        "due": f"before {due_cut.instant:%Y-%m-%d %H:%M}",
        "overdue": f"at {over_cut.instant:%Y-%m-%d %H:%M}",
    }
    for key, name, where, _call, _raw in variants:
        rows = found[key]
        base = report.keep(
            f"reads raw {key} {label}",
            bc.baseline_row(
                "reads",
                f"{label}: raw SQL, open deadlines with {where} ({rows:,} rows)",
                samples[f"{key} raw"],
                "ms",
                note="SELECT id, reference, rule, due_at ... ORDER BY due_at; DBAPI fetchall",
            ),
        )
        report.keep(
            f"reads {key} {label}",
            bc.result(
                "reads",
                f"{label}: {name}, {scale.open_cases:,} open cases ({rows:,} rows)",
                samples[key],
                "ms",
                baseline=base,
                note=f"cut-off {at_text[key.split()[0]]} UTC",
            ),
        )


# -- 6. the HTML report ----------------------------------------------------------------------------


def bench_report(report: Report, sizes: Sizes, scale: ScaleDatabase, out_dir: Path) -> None:
    """Seconds to build and write the HTML report, against counting open cases in SQL.

    Measured over every case, as many times as one site's report suggests fit
    :data:`REPORT_BUDGET` (at most ``report_repeats``), or, when not even once, over that one
    site's cases (and said so).
    """
    from nim_workflow._report import build_report

    at = scale.end
    engine = bench_engine(scale.url, clock=bc.StepClock(at))
    sql = engine.sqlalchemy_engine
    with sql.connect() as conn:
        per_site: dict[str, int] = dict(
            conn.execute(sa.text("SELECT site, count(*) FROM nimwf_cases GROUP BY site")).all()
        )
    site = _scale.SITES[0]
    mark = "?" if sql.dialect.name == "sqlite" else "%s"
    raw = sql.raw_connection()
    cursor = raw.cursor()
    path = out_dir / "report.html"

    def count_open(site: str | None) -> int:
        query = "SELECT site, stage, count(*) FROM nimwf_cases WHERE closed_at IS NULL"
        params = [] if site is None else [site]
        if site is not None:
            query += f" AND site = {mark}"
        cursor.execute(query + " GROUP BY site, stage", params)
        return len(cursor.fetchall())

    def write(site: str | None) -> int:
        html = build_report(engine, site=site, at=at)
        path.write_text(html, encoding="utf-8")
        return len(html.encode("utf-8"))

    print(f"report: the HTML report over {site}'s {per_site[site]:,} cases first")
    try:
        first, size = bc.timed_call(write, site)
        estimate = first * scale.cases / per_site[site]
        # As many reports of every case as fit the budget, up to the usual number of repeats.
        repeats = min(sizes.report_repeats, int(REPORT_BUDGET // max(estimate, 1e-9)))
        scope: str | None = None if repeats >= 1 else site
        samples: list[float] = []
        base: list[float] = []
        if scope is not None:
            repeats = sizes.report_repeats
            samples.append(first)
            base.append(bc.timed(partial(count_open, scope)))
        else:
            print(f"report: estimated {estimate:.0f} s for all {scale.cases:,} cases: measuring")
        while len(samples) < repeats:
            base.append(bc.timed(partial(count_open, scope)))
            seconds, size = bc.timed_call(write, scope)
            samples.append(seconds)
    finally:
        cursor.close()
        raw.close()
        engine.close()
    cases = scale.cases if scope is None else per_site[site]
    which = f"all {cases:,} cases" if scope is None else f"one site, {site}: {cases:,} cases"
    baseline = report.keep(
        "report raw",
        bc.baseline_row(
            "report",
            f"SQLite: raw SQL, open cases counted by site and stage ({which})",
            base,
            "s",
        ),
    )
    report.keep(
        "report",
        bc.result(
            "report",
            f"SQLite: build_report + write the HTML ({which})",
            samples,
            "s",
            baseline=baseline,
            note=f"{size / 1e6:.1f} MB of HTML; {len(samples)} repeat(s)",
        ),
    )
    report.facts["report scope"] = "all" if scope is None else "site"
    report.facts["report estimate"] = f"{estimate:.0f}"
    report.facts["report cases"] = str(scale.cases)


def bench_site_report(report: Report, sizes: Sizes, folder: Path) -> None:
    """Seconds for ``build_report`` of one 10,000-case site, against one of 1,000 cases.

    The 1,000 cases are seeded through the engine at ``london`` (``_scale.seed_open_cases``:
    varied stages, statutory clocks, all open); a copy of that database has them multiplied in
    SQL, every copy at ``london`` too, into 10,000. Both reports are built once to warm up (the
    pathways and calendars cached), then alternately, ``site_report_repeats`` times each, with
    the HTML's size recorded and the summary (the data behind the page) timed alone as well.
    """
    from nim_workflow._report import build_report, summarize

    small_path, large_path = folder / "site-small.db", folder / "site-large.db"
    cases, copies = sizes.site_report_cases, sizes.site_report_copies
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report.facts["site report machine"] = f"{cpus()} CPUs (nproc), load average {load} at start"
    print(f"report: seeding {cases:,} cases at one site, then {copies} copies of each there")
    clock = bc.StepClock(bc.T0 + dt.timedelta(days=7))
    with bench_engine(f"sqlite:///{small_path}", clock=clock) as engine:
        engine.migrate()
        start = time.perf_counter()
        seeded = _scale.seed_open_cases(engine, clock, cases, random.Random(bc.SEED + 6))
        seed_seconds = time.perf_counter() - start
    shutil.copyfile(small_path, large_path)
    with bench_engine(f"sqlite:///{large_path}", clock=bc.StepClock(seeded.end)) as engine:
        _scale.multiply(engine.sqlalchemy_engine, copies, sites=(_scale.SITES[0],))
    at = seeded.end
    site = _scale.SITES[0]
    small = bench_engine(f"sqlite:///{small_path}", clock=bc.StepClock(at))
    large = bench_engine(f"sqlite:///{large_path}", clock=bc.StepClock(at))
    try:
        counts = []
        for engine in (small, large):
            with engine.sqlalchemy_engine.connect() as conn:
                counts.append(
                    conn.execute(
                        sa.text("SELECT count(*) FROM nimwf_cases WHERE site = :s"), {"s": site}
                    ).scalar_one()
                )
        sizes_of = [len(build_report(e, site=site, at=at).encode("utf-8")) for e in (small, large)]
        base: list[float] = []
        samples: list[float] = []
        summary_samples: list[float] = []
        # The store's one read per table (what summarize starts with), at both sizes.
        horizon = at + dt.timedelta(days=14)
        read_samples: dict[str, list[float]] = {"small": [], "large": []}
        for _ in range(sizes.site_report_repeats):
            gc.collect()
            base.append(bc.timed(partial(build_report, small, site=site, at=at)))
            gc.collect()
            samples.append(bc.timed(partial(build_report, large, site=site, at=at)))
            gc.collect()
            summary_samples.append(bc.timed(partial(summarize, large, site=site, at=at)))
            for name, engine in (("small", small), ("large", large)):
                gc.collect()
                read_samples[name].append(
                    bc.timed(partial(engine._bulk_sites, site, at=at, until=horizon))
                )
    finally:
        small.close()
        large.close()
    baseline = report.keep(
        "site report small",
        bc.baseline_row(
            "report",
            f"SQLite: build_report of one site, {counts[0]:,} cases",
            base,
            "s",
            note=f"{sizes_of[0] / 1e6:.2f} MB of HTML",
        ),
    )
    report.keep(
        "site report large",
        bc.result(
            "report",
            f"SQLite: build_report of one site, {counts[1]:,} cases",
            samples,
            "s",
            baseline=baseline,
            note=(
                f"{sizes_of[1] / 1e6:.2f} MB of HTML; {counts[1] / counts[0]:.0f}x the cases; "
                f"{len(samples)} repeats"
            ),
        ),
    )
    report.keep(
        "site report summary",
        bc.result(
            "report",
            f"SQLite: summarize (the page's data) of that site, {counts[1]:,} cases",
            summary_samples,
            "s",
            baseline=baseline,
        ),
    )
    read_small = report.keep(
        "site report read small",
        bc.baseline_row(
            "report",
            f"SQLite: the store's read behind it (Engine._bulk_sites), {counts[0]:,} cases",
            read_samples["small"],
            "s",
        ),
    )
    report.keep(
        "site report read large",
        bc.result(
            "report",
            f"SQLite: the store's read behind it (Engine._bulk_sites), {counts[1]:,} cases",
            read_samples["large"],
            "s",
            baseline=read_small,
        ),
    )
    report.facts["site report bytes"] = str(sizes_of[1])
    report.facts["site report small bytes"] = str(sizes_of[0])
    report.facts["site report cases"] = f"{counts[0]},{counts[1]}"
    report.facts["scale site report"] = (
        f"{seeded.cases:,} open cases seeded through the engine at `{site}` in "
        f"{seed_seconds:.0f} s ({seeded.events:,} opens and transitions over "
        f"{_scale.SEED_SPAN.days} days), then copied {copies - 1} times in SQL, every copy at "
        f"`{site}`, into {counts[1]:,}; all open (the largest tables a site can have)"
    )


def site_report_section(report: Report) -> list[str]:
    """The page's section on the one-site report: its rows, its target and what they say."""
    large, small = report.key("site report large"), report.key("site report small")
    summary = report.key("site report summary")
    if large is None or small is None:
        return []
    size = int(report.facts.get("site report bytes", "0"))
    small_size = int(report.facts.get("site report small bytes", "0"))
    few, many = (int(n) for n in report.facts.get("site report cases", "0,0").split(","))
    read_small, read_large = (
        report.key("site report read small"),
        report.key("site report read large"),
    )
    rows = [small, large] + [r for r in (summary, read_small, read_large) if r is not None]
    multiple = many / max(few, 1)
    ratio = large.ratio or 0.0
    met = large.median <= SITE_REPORT_SECONDS and size <= SITE_REPORT_BYTES
    lines = [
        SITE_REPORT_HEADING,
        "",
        f"- Date: {report.facts.get('site report date', '?')}; "
        f"{report.facts.get('site report machine', '?')}; "
        f"conditions: {report.facts.get('scale site report', '?')}.",
        f"- Target: the report of a {many:,}-case site built in at most "
        f"{SITE_REPORT_SECONDS:.0f} s and at most {SITE_REPORT_BYTES / 1e6:.0f} MB of HTML: "
        f"{large.median:.2f} s and {size / 1e6:.2f} MB, "
        f"{'met' if met else 'not met'}.",
        "",
        *table(rows),
        "",
        f"The {many:,}-case site's report takes {large.median:.2f} s (median of "
        f"{large.repeats}), {ratio:.1f}x the {small.median:.2f} s of the "
        f"{few:,}-case site's for {multiple:.0f}x the cases"
        + (
            ": about in proportion to the cases (within a quarter of it), not quadratic. "
            if ratio <= multiple * 1.25
            else ", more than in proportion (where the time goes follows). "
        )
        + "Its page is "
        f"{size / 1e6:.2f} MB ({small_size / 1e6:.2f} MB at {few:,} cases): the timeline draws "
        f"at most {TIMELINE_ROWS} cases (those most in need of attention) and the month charts "
        "a bar per month, so what grows with the cases is the tables, which list every open "
        "case and deadline.",
    ]
    if summary is not None and large.median > 0:
        lines[-1] += (
            f" Reading and summarising the cases (`summarize`) is {summary.median:.2f} s of "
            f"it ({summary.median / large.median:.0%}); the rest is laying out and rendering."
        )
    if read_small is not None and read_large is not None and read_large.ratio is not None:
        lines[-1] += (
            f" The store's read behind the summary takes {read_large.median:.2f} s at "
            f"{many:,} cases, {read_large.ratio:.1f}x its {read_small.median * 1e3:.0f} ms at "
            f"{few:,}. The run's Python collects garbage as usual, and its passes over the "
            "larger heap are part of every figure here."
        )
    return [*lines, ""]


def write_site_report_section(path: Path, report: Report) -> None:
    """Put the one-site report's section in the page, replacing the one there (if any)."""
    write_section(path, SITE_REPORT_HEADING, site_report_section(report))


def write_section(path: Path, heading: str, section: Sequence[str]) -> None:
    """Put ``section`` in the page under ``heading``, replacing the one there (if any).

    A section not on the page yet goes before "What the numbers say" (or at the end).
    """
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    if heading in lines:
        start = lines.index(heading)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = section
    else:
        anchor = next(
            (i for i, line in enumerate(lines) if line == "## What the numbers say"), len(lines)
        )
        lines[anchor:anchor] = section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")


# -- 10. the trial's families ----------------------------------------------------------------------

#: The trial group's comparisons, in the order of its table: (key, operation, baseline).
TRIAL_ROWS: tuple[tuple[str, str, str], ...] = (
    (
        "fire2",
        "`fire_family` accept_referral, family of 2 children",
        "2 `fire` calls, one transaction each",
    ),
    (
        "fire3",
        "`fire_family` accept_referral, family of 3 children",
        "3 `fire` calls, one transaction each",
    ),
    (
        "allocate",
        "`allocate`, family of 2 children: opens both cases, plans visits",
        "2 `open_case` calls",
    ),
    (
        "report",
        "`build_report` of the site with its families",
        "`build_report` of the same cases, no families",
    ),
    (
        "export",
        "`export` csv of the database with its families",
        "`export` csv of the same cases, no families",
    ),
)


def _trial_pair(
    report: Report,
    key: str,
    label: str,
    name: str,
    samples: Sequence[float],
    base_name: str,
    base_samples: Sequence[float],
    unit: str,
    note: str = "",
) -> None:
    base = report.keep(
        f"trial {key} base {label}",
        bc.baseline_row("trial", f"{label}: {base_name}", base_samples, unit),
    )
    report.keep(
        f"trial {key} {label}",
        bc.result("trial", f"{label}: {name}", samples, unit, baseline=base, note=note),
    )


def _statements(engine: nw.Engine, action: Callable[[], object]) -> int:
    """SQL statements ``action`` sends through the engine (BEGIN aside; executemany once)."""
    count = [0]

    def listen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            count[0] += 1

    sa.event.listen(engine.sqlalchemy_engine, "before_cursor_execute", listen)
    try:
        action()
    finally:
        sa.event.remove(engine.sqlalchemy_engine, "before_cursor_execute", listen)
    return count[0]


def bench_trial_actions(report: Report, sizes: Sizes, url: str, label: str) -> None:
    """``fire_family`` and ``allocate`` per family against the plain case calls they stand for.

    Every repeat gets fresh families at ``london`` (each child with an entry-to-care date),
    allocated to ``nim`` (so their cases run on nim-uk-england) for the fire, not yet
    allocated for the allocation, and as many plain cases on nim-uk-england with the same
    facts; none of that is timed. Then, in turn: ``trial_batch`` families fired, their plain
    counterparts fired one ``fire`` per transaction, the same with 3 children, families
    allocated, plain cases opened. The figure is ms per family (per 2 or 3 plain calls).
    """
    k = sizes.trial_batch
    print(f"trial: fire_family and allocate on {label}, {k} families per repeat")
    clock = bc.StepClock(bc.T0)
    facts = {"entered_care_on": (bc.T0 - dt.timedelta(days=10)).date()}
    trigger, given = _trial.ACCEPT
    samples: dict[str, list[float]] = {
        name: [] for name in ("fire2", "fire3", "allocate", "base2", "base3", "open")
    }
    with bench_engine(url, clock=clock) as engine:
        engine.migrate()

        def family(name: str, children: int, allocated: bool) -> tuple[str, list[str]]:
            kids = [f"{name}-C{j}" for j in range(children)]
            engine.open_family(name, _trial.SITE, bc.SOCIAL_WORKER, children=kids, facts=facts)
            if allocated:
                engine.allocate(name, "nim", f"A-{name}", _trial.COORDINATOR)
            plain = [f"{name}-P{j}" for j in range(children)]
            return name, plain

        def open_plain(refs: Sequence[str]) -> None:
            for ref in refs:
                engine.open_case(
                    ref, _trial.NIM_PATHWAY, _trial.SITE, bc.SOCIAL_WORKER, facts=facts
                )

        def fire_families(names: Sequence[str]) -> None:
            for name in names:
                engine.fire_family(name, trigger, bc.TEAM_MANAGER, facts=given)

        def fire_plain(groups: Sequence[Sequence[str]]) -> None:
            for refs in groups:
                for ref in refs:
                    engine.fire(ref, trigger, bc.TEAM_MANAGER, facts=given)

        def allocate(names: Sequence[str]) -> None:
            for name in names:
                engine.allocate(name, "nim", f"A-{name}", _trial.COORDINATOR)

        def open_groups(groups: Sequence[Sequence[str]]) -> None:
            for refs in groups:
                open_plain(refs)

        # One untimed round first: statements compiled, pathways and calendars cached.
        warm, warm_plain = family("W-F", 2, True)
        open_plain(warm_plain)
        fire_families([warm])
        fire_plain([warm_plain])
        # One more untimed round with the SQL statements counted (BEGIN aside).
        counted = [family("S-F", 2, True), family("S-A", 2, False)]
        open_plain(counted[0][1])
        statements = {
            "fire2": _statements(engine, partial(fire_families, [counted[0][0]])),
            "base2": _statements(engine, partial(fire_plain, [counted[0][1]])),
            "allocate": _statements(engine, partial(allocate, [counted[1][0]])),
            "open": _statements(engine, partial(open_plain, counted[1][1])),
        }
        for r in range(sizes.repeats):
            clock.advance(dt.timedelta(minutes=1))
            built: dict[str, list[tuple[str, list[str]]]] = {
                "fire2": [family(f"F2-{r}-{i}", 2, True) for i in range(k)],
                "fire3": [family(f"F3-{r}-{i}", 3, True) for i in range(k)],
                "allocate": [family(f"AL-{r}-{i}", 2, False) for i in range(k)],
            }
            for name in ("fire2", "fire3"):
                open_groups([plain for _, plain in built[name]])
            clock.advance(dt.timedelta(minutes=1))
            for name, base in (("fire2", "base2"), ("fire3", "base3")):
                gc.collect()
                names = [f for f, _ in built[name]]
                samples[name].append(bc.timed(partial(fire_families, names)) / k * 1e3)
                gc.collect()
                groups = [plain for _, plain in built[name]]
                samples[base].append(bc.timed(partial(fire_plain, groups)) / k * 1e3)
            gc.collect()
            names = [f for f, _ in built["allocate"]]
            samples["allocate"].append(bc.timed(partial(allocate, names)) / k * 1e3)
            gc.collect()
            groups = [plain for _, plain in built["allocate"]]
            samples["open"].append(bc.timed(partial(open_groups, groups)) / k * 1e3)
    for key, base in (("fire2", "base2"), ("allocate", "open")):
        report.facts[f"trial statements {key} {label}"] = f"{statements[key]},{statements[base]}"
    for key, base in (("fire2", "base2"), ("fire3", "base3"), ("allocate", "open")):
        _, name, base_name = next(row for row in TRIAL_ROWS if row[0] == key)
        counts = ""
        if key in statements:
            counts = f"; {statements[key]} SQL statements against {statements[base]}"
        _trial_pair(
            report,
            key,
            label,
            name,
            samples[key],
            base_name,
            samples[base],
            "ms",
            note=f"per family; {k} families per repeat{counts}",
        )


def _export_once(engine: nw.Engine, folder: Path, at: dt.datetime) -> tuple[float, int]:
    """Seconds for one csv export into a fresh folder, and the bytes it wrote (folder removed)."""
    if folder.exists():
        shutil.rmtree(folder)
    seconds = bc.timed(
        partial(engine.export, folder, format="csv", pseudonym_key=TRIAL_EXPORT_KEY, at=at)
    )
    size = sum(path.stat().st_size for path in folder.iterdir())
    shutil.rmtree(folder)
    return seconds, size


def bench_trial_site(
    report: Report, sizes: Sizes, label: str, urls: tuple[str, str], at: dt.datetime, folder: Path
) -> None:
    """The one-site report and the csv export, with the families against without them.

    Each is made once to warm up, then alternately ``repeats`` times each (baseline first).
    """
    from nim_workflow._report import build_report

    print(f"trial: report and export on {label}, with and without the families")
    with_families = bench_engine(urls[0], clock=bc.StepClock(at))
    without = bench_engine(urls[1], clock=bc.StepClock(at))
    try:
        html = [
            len(build_report(e, site=_trial.SITE, at=at).encode()) for e in (without, with_families)
        ]
        written = [_export_once(e, folder / "export", at)[1] for e in (without, with_families)]
        report_samples: dict[str, list[float]] = {"with": [], "without": []}
        export_samples: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(sizes.repeats):
            for name, engine in (("without", without), ("with", with_families)):
                gc.collect()
                report_samples[name].append(
                    bc.timed(partial(build_report, engine, site=_trial.SITE, at=at))
                )
            for name, engine in (("without", without), ("with", with_families)):
                gc.collect()
                export_samples[name].append(_export_once(engine, folder / "export", at)[0])
    finally:
        with_families.close()
        without.close()
    report.facts[f"trial html {label}"] = f"{html[0]},{html[1]}"
    _trial_pair(
        report,
        "report",
        label,
        TRIAL_ROWS[3][1],
        report_samples["with"],
        TRIAL_ROWS[3][2],
        report_samples["without"],
        "s",
        note=f"{html[1] / 1e6:.2f} MB of HTML against {html[0] / 1e6:.2f} MB",
    )
    _trial_pair(
        report,
        "export",
        label,
        TRIAL_ROWS[4][1],
        export_samples["with"],
        TRIAL_ROWS[4][2],
        export_samples["without"],
        "s",
        note=f"{written[1] / 1e6:.2f} MB written against {written[0] / 1e6:.2f} MB",
    )


def bench_trial(report: Report, sizes: Sizes, folder: Path, pg_url: str | None) -> None:
    """The trial group: family actions, then the report and export of a site of families.

    The site is built once through the engine on SQLite (``_trial.build_trial_site``); its
    baseline is a copy of the file with the trial's tables emptied (the same cases). On
    PostgreSQL both are copied row for row into databases of their own.
    """
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report.facts["trial machine"] = f"{cpus()} CPUs (nproc), load average {load} at start"
    report.facts["trial repeats"] = str(sizes.repeats)
    report.facts["trial batch"] = str(sizes.trial_batch)
    env = environment(pg_url)
    report.facts["trial back ends"] = "; ".join(
        f"{name} {env[name]}" for name in ("SQLite", "PostgreSQL") if pg_url or name == "SQLite"
    )
    bench_trial_actions(report, sizes, f"sqlite:///{folder}/trial-actions.db", "SQLite")
    if pg_url:
        with bc.postgres_database(pg_url) as url:
            bench_trial_actions(report, sizes, url, "PostgreSQL")
    count = sizes.trial_families
    print(f"trial: building a site of {count:,} families through the engine (SQLite)")
    families_path, bare_path = folder / "trial-families.db", folder / "trial-bare.db"
    clock = bc.StepClock(bc.T0 + dt.timedelta(days=7))
    with bench_engine(f"sqlite:///{families_path}", clock=clock) as engine:
        engine.migrate()
        start = time.perf_counter()
        built = _trial.build_trial_site(engine, clock, count, random.Random(bc.SEED + 10))
        build_seconds = time.perf_counter() - start
        _trial.checkpoint(engine.sqlalchemy_engine)
    shutil.copyfile(families_path, bare_path)
    urls = (f"sqlite:///{families_path}", f"sqlite:///{bare_path}")
    with bench_engine(urls[1], clock=bc.StepClock(built.end)) as engine:
        _trial.strip_families(engine.sqlalchemy_engine)
    with (
        bench_engine(urls[0], clock=bc.StepClock(built.end)) as engine,
        engine.sqlalchemy_engine.connect() as conn,
    ):
        counted = {
            name: conn.exec_driver_sql(query).scalar_one()
            for name, query in (
                ("cases", "SELECT count(*) FROM nimwf_cases"),
                ("held", "SELECT count(*) FROM nimwf_visits WHERE held_on IS NOT NULL"),
                ("visits", "SELECT count(*) FROM nimwf_visits"),
                ("audit", "SELECT count(*) FROM nimwf_audit_events"),
            )
        }
    report.facts["trial site"] = (
        f"{built.families:,} families with {built.children:,} children at `{_trial.SITE}` "
        f"({counted['cases']:,} cases, as many in the baseline), built through the engine in "
        f"{build_seconds:.0f} s ({built.calls:,} calls over {_trial.SPAN.days} days: "
        "`open_family`, `allocate` to a random arm, `fire_family` accept_referral for 85%, "
        f"a baseline visit held by 60%; placements recorded on half the children and outcome "
        f"facts on a quarter); {counted['visits']:,} visits planned, {counted['held']:,} held; "
        f"{counted['audit']:,} audit entries. The baseline is a copy of the database with "
        "`nimwf_families`, `nimwf_family_children`, `nimwf_visits` and `nimwf_visit_alarms` "
        "emptied: the same cases and audit log, no trial"
    )
    bench_trial_site(report, sizes, "SQLite", urls, built.end, folder)
    if pg_url:
        with bc.postgres_database(pg_url) as fam_url, bc.postgres_database(pg_url) as bare_url:
            print("trial: copying both databases to PostgreSQL")
            for source, target in ((urls[0], fam_url), (urls[1], bare_url)):
                with bench_engine(target, clock=bc.StepClock(built.end)) as engine:
                    engine.migrate()
                src = sa.create_engine(source)
                dst = sa.create_engine(target)
                try:
                    _trial.copy_database(src, dst)
                finally:
                    src.dispose()
                    dst.dispose()
            bench_trial_site(report, sizes, "PostgreSQL", (fam_url, bare_url), built.end, folder)


def trial_section(report: Report) -> list[str]:
    """The page's section on the trial's families: its table, conditions and reading."""
    labels = [
        label
        for label in ("SQLite", "PostgreSQL")
        if any(report.key(f"trial {key} {label}") for key, _, _ in TRIAL_ROWS)
    ]
    if not labels:
        return []
    lines = [
        TRIAL_HEADING,
        "",
        f"- Date: {report.facts.get('trial date', '?')}; "
        f"{report.facts.get('trial machine', '?')}; back ends: {', '.join(labels)}"
        + ("" if "PostgreSQL" in labels else " (PostgreSQL not measured: no --pg-url)")
        + f"; medians over {report.facts.get('trial repeats', '?')} interleaved repeats.",
        f"- Back ends: {report.facts.get('trial back ends', '?')}. Commits on this PostgreSQL "
        "do not wait for the disk when fsync is off, so a commit `fire_family` saves is worth "
        "less there than on a durable server.",
        f"- Family actions: {report.facts.get('trial batch', '?')} fresh families per repeat at "
        "`london`, each child with an entry-to-care date; fired families were allocated to "
        "`nim` beforehand (children on nim-uk-england) and their baseline is as many plain "
        "cases opened on nim-uk-england with the same facts. Times are per family (for the "
        "baseline, per 2 or 3 plain calls).",
        f"- Report and export: {report.facts.get('trial site', '?')}. `build_report(engine, "
        "site='london', at=)` and `export(dir, format='csv', pseudonym_key=...)` of the whole "
        "database.",
        "",
        "| Back end | Operation | Median | Baseline | Baseline median | Ratio | Min-max | Notes |",
        "|---|---|---:|---|---:|---:|---|---|",
    ]
    for label in labels:
        for key, operation, baseline in TRIAL_ROWS:
            row, base = report.key(f"trial {key} {label}"), report.key(f"trial {key} base {label}")
            if row is None or base is None or row.ratio is None:
                continue
            lines.append(
                f"| {label} | {operation} | {_format_value(row.median)} {row.unit} | {baseline} | "
                f"{_format_value(base.median)} {base.unit} | {row.ratio:.2f}x | "
                f"{_format_value(row.low)}-{_format_value(row.high)} | {row.note} |"
            )
    lines += ["", *_reading_trial(report, labels), ""]
    return lines


def _reading_trial(report: Report, labels: Sequence[str]) -> list[str]:
    """One short paragraph on what the trial's figures say, from this run's rows."""

    def pair(key: str, label: str) -> tuple[bc.Result, bc.Result] | None:
        row, base = report.key(f"trial {key} {label}"), report.key(f"trial {key} base {label}")
        return None if row is None or base is None or row.ratio is None else (row, base)

    said: list[str] = []
    for label in labels:
        fire2, fire3 = pair("fire2", label), pair("fire3", label)
        if fire2 and fire3:
            extra = [(row.median - base.median) for row, base in (fire2, fire3)]
            counts = report.facts.get(f"trial statements fire2 {label}", "")
            statements = ""
            if counts:
                family, plain = counts.split(",")
                statements = f", {family} SQL statements against {plain} for 2 children"
            mean = ((fire2[0].ratio or 0) + (fire3[0].ratio or 0)) / 2
            verdict = (
                "a fixed cost per family that outweighs the commits it saves"
                if mean > 1.15
                else "less than the commits it saves"
                if mean < 0.9
                else "about what the commits it saves are worth"
            )
            said.append(
                f"On {label} one `fire_family` costs {fire2[0].ratio:.2f}x the separate fires "
                f"for 2 children and {fire3[0].ratio:.2f}x for 3 ({extra[0]:+.1f} and "
                f"{extra[1]:+.1f} ms per family{statements}): locking the family, reading its "
                "children's cases, a savepoint around them and the family's own audit entry, "
                f"{verdict}."
            )
        allocate = pair("allocate", label)
        if allocate:
            said.append(
                f"`allocate` takes {allocate[0].ratio:.2f}x its 2 `open_case` calls "
                f"({allocate[0].median - allocate[1].median:+.1f} ms per family for the family "
                "row, the visit windows and reminders it plans and the family's audit entry)."
            )
    for label in labels[:1]:
        shown, export = pair("report", label), pair("export", label)
        if shown:
            families = report.facts.get("trial site", "? families").split(" families")[0]
            html = [int(n) for n in report.facts.get(f"trial html {label}", "1,1").split(",")]
            growth = html[1] / max(html[0], 1) - 1
            said.append(
                f"The trial section makes the one-site report {shown[0].ratio:.2f}x as long on "
                f"{label} ({shown[0].median - shown[1].median:+.2f} s for {families} families) "
                f"while adding {growth:.0%} to its HTML ({shown[0].note}): the cost is the "
                "trial's one bulk "
                "read (families, children, visits, the children's cases again and their "
                "placements from the audit log) and its counting, not the drawing."
            )
        if export:
            said.append(
                f"The export takes {export[0].ratio:.2f}x with the families, writing the "
                f"families, allocations, visits and outcomes files ({export[0].note}): about "
                "in proportion to what it writes."
            )
    return [" ".join(said)] if said else []


def write_trial_section(path: Path, report: Report) -> None:
    """Put the trial's section in the page, replacing the one there (if any)."""
    write_section(path, TRIAL_HEADING, trial_section(report))


# -- 7. memory -------------------------------------------------------------------------------------


def bench_memory(
    report: Report, sizes: Sizes, scale: ScaleDatabase, small: _workers.WriteRun
) -> None:
    """Peak RSS of many operations over many cases against opening and advancing 1,000."""
    n = sizes.memory_operations
    print(f"memory: {n:,} engine calls over the {scale.cases:,}-case database (fresh process)")
    at = scale.end + dt.timedelta(days=1)
    run: _workers.MemoryRun = _workers.in_fresh_process(
        _workers.memory_process, scale.url, n, MEMORY_FIRE_EVERY, at.isoformat()
    )
    base = report.keep(
        "memory small",
        bc.baseline_row(
            "memory",
            f"SQLite: peak RSS, open and advance {small.cases:,} cases "
            f"({small.engine_ops:,} engine calls)",
            [small.peak_rss_kib / 1024],
            "MiB",
            note="the write workload's process (its raw sqlite3 loop included); one run",
        ),
    )
    report.facts["memory fire ms"] = f"{run.fire_seconds / max(run.fires, 1) * 1e3:.1f}"
    report.facts["memory fires"] = str(run.fires)
    visited = (
        f"{run.cases:,} distinct cases"
        if run.distinct == run.cases
        else f"{run.cases:,} case visits ({run.distinct:,} distinct)"
    )
    report.keep(
        "memory large",
        bc.result(
            "memory",
            f"SQLite: peak RSS, {run.operations:,} engine calls over {visited} of a "
            f"{scale.cases:,}-case database",
            [run.peak_rss_kib / 1024],
            "MiB",
            baseline=base,
            note=(
                f"case() and deadlines() per case, fire() on every {MEMORY_FIRE_EVERY}th "
                f"({run.fires:,}, {run.fire_seconds / max(run.fires, 1) * 1e3:.1f} ms each); "
                f"{run.peak_rss_kib_tenth / 1024:.0f} MiB after a tenth of the calls; "
                f"{run.seconds:.0f} s; one run"
            ),
        ),
    )


# -- 8. verify_audit -------------------------------------------------------------------------------


def grow_audit_log(engine: nw.Engine, clock: bc.StepClock, cases: int) -> None:
    """Open cases that start every statutory clock, then let every pending alarm fire."""
    for i in range(cases):
        clock.advance(dt.timedelta(minutes=10))
        day = clock.now.date()
        engine.open_case(
            f"V-{i:05d}",
            pathway=bc.PATHWAY_ID,
            site=_scale.SITES[i % len(_scale.SITES)],
            actor=bc.SOCIAL_WORKER,
            facts={"proceedings_issued_on": day, "entered_care_on": day},
        )
    clock.advance(dt.timedelta(days=400))
    engine.process_due(clock.now)


def hash_floor(sql: sa.Engine) -> tuple[int, int]:
    """Read every audit row through the DBAPI and hash its canonical bytes.

    The floor of a verification: no chains, no Merkle tree, no replay, no SQLAlchemy result
    processing; only the decoding the hash needs (JSON columns, instants on SQLite, where they
    are stored as text). Returns (entries, entries whose hash differs from the stored one).
    """
    from nim_workflow._audit import entry_hash

    table = schema.audit_events
    raw = sql.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SELECT * FROM nimwf_audit_events ORDER BY id")
        names = [d[0] for d in cursor.description]
        decode: list[Callable[[object], object] | None] = [None] * len(names)
        if sql.dialect.name == "sqlite":
            for i, name in enumerate(names):
                kind = table.c[name].type if name in table.c else None
                if isinstance(kind, sa.JSON):
                    decode[i] = _json_or_none
                elif isinstance(kind, schema.UTCDateTime):
                    decode[i] = _sqlite_instant
        entries = differ = 0
        for row in cursor.fetchall():
            fields = {
                name: value if fn is None else fn(value)
                for name, value, fn in zip(names, row, decode, strict=True)
            }
            entries += 1
            if entry_hash(fields) != fields["hash"]:
                differ += 1
        cursor.close()
    finally:
        raw.close()
    return entries, differ


def _json_or_none(value: object) -> object:
    return None if value is None else json.loads(str(value))


def _sqlite_instant(value: object) -> object:
    return None if value is None else dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)


def bench_verify(
    report: Report, sizes: Sizes, url: str, label: str, start: dt.datetime, grow: int
) -> None:
    """Events/s of ``verify_audit`` (shallow and deep) against the hash-only floor."""
    clock = bc.StepClock(start)
    engine = bench_engine(url, clock=clock)
    try:
        if grow:
            print(f"verify: opening {grow} more cases and firing every due alarm on {label}")
            grow_audit_log(engine, clock, grow)
        engine.audit(limit=1)  # sequences every committed entry first
        checked = engine.verify_audit(deep=True)
        print(f"verify: verify_audit over {checked.checked:,} events on {label}")
        if not checked.ok:
            problems = "; ".join(checked.problems[:3])
            report.findings.append(f"{label}: verify_audit(deep=True) found problems: {problems}")
        entries, differ = hash_floor(engine.sqlalchemy_engine)
        if differ:
            report.findings.append(
                f"{label}: {differ} of {entries} entries do not match their hash"
            )
        samples: dict[str, list[float]] = {"floor": [], "shallow": [], "deep": []}
        actions: dict[str, Callable[[], object]] = {
            "floor": partial(hash_floor, engine.sqlalchemy_engine),
            "shallow": engine.verify_audit,
            "deep": partial(engine.verify_audit, deep=True),
        }
        order = list(actions)
        for repeat in range(sizes.repeats):
            for kind in order[repeat % 3 :] + order[: repeat % 3]:
                gc.collect()
                samples[kind].append(entries / bc.timed(actions[kind]))
    finally:
        engine.close()
    base = report.keep(
        f"verify floor {label}",
        bc.baseline_row(
            "verify",
            f"{label}: read every audit row and sha256 its canonical bytes ({entries:,} events)",
            samples["floor"],
            "events/s",
            note="DBAPI rows, nim_workflow._audit.entry_hash per row: the hash-only floor",
        ),
    )
    for kind in ("shallow", "deep"):
        call = "verify_audit()" if kind == "shallow" else "verify_audit(deep=True)"
        report.keep(
            f"verify {kind} {label}",
            bc.result(
                "verify",
                f"{label}: {call} ({entries:,} events)",
                samples[kind],
                "events/s",
                baseline=base,
                note="ratio = throughput multiple",
            ),
        )


# -- 9. working-day arithmetic ---------------------------------------------------------------------


def bench_calendar(report: Report, sizes: Sizes) -> None:
    """``WorkingCalendar`` against a day-by-day loop over the ``holidays`` package."""
    print("calendar: working-day arithmetic (england-and-wales)")
    with bench_engine("sqlite://") as engine:
        calendar = engine.calendar(bc.SITE, bc.PATHWAY_ID)
        rule = engine.pathway(bc.PATHWAY_ID).rule("lac_review")
    duration = rule.duration
    assert str(duration) == "20 working_days", duration
    rng = random.Random(bc.SEED)
    first = dt.date(2026, 1, 1)
    starts = [first + dt.timedelta(days=rng.randrange(730)) for _ in range(sizes.calendar_starts)]
    year_starts = starts[: sizes.calendar_year_starts]
    years = range(2025, 2030)
    # Built once, outside the timings, the way a naive caller would hold it.
    bank = holidays.country_holidays("GB", subdiv="ENG", years=years)
    # Warm the calendar's per-year caches outside the timings too.
    for start in starts:
        calendar.add(start, duration)
        calendar.count_working_days(start, start + dt.timedelta(days=365))
    expected_add = [bc.naive_add_working_days(bank, s, duration.amount) for s in starts]
    if [calendar.add(s, duration) for s in starts] != expected_add:
        report.findings.append("calendar: WorkingCalendar.add and the naive loop disagree")
    year = dt.timedelta(days=365)
    expected_count = [bc.naive_count_working_days(bank, s, s + year) for s in year_starts]
    if [calendar.count_working_days(s, s + year) for s in year_starts] != expected_count:
        report.findings.append("calendar: count_working_days and the naive loop disagree")

    variants: dict[str, tuple[Callable[[], object], int]] = {
        "naive add": (
            lambda: [bc.naive_add_working_days(bank, s, duration.amount) for s in starts],
            len(starts),
        ),
        "add": (lambda: [calendar.add(s, duration) for s in starts], len(starts)),
        "naive count": (
            lambda: [bc.naive_count_working_days(bank, s, s + year) for s in year_starts],
            len(year_starts),
        ),
        "count": (
            lambda: [calendar.count_working_days(s, s + year) for s in year_starts],
            len(year_starts),
        ),
    }
    samples: dict[str, list[float]] = {key: [] for key in variants}
    for _ in range(sizes.repeats):
        for key, (action, count) in variants.items():
            gc.collect()
            samples[key].append(bc.timed(action) / count * 1e6)
    base = report.add(
        bc.baseline_row(
            "calendar",
            "naive: 20 working days, day by day over holidays (GB-ENG)",
            samples["naive add"],
            "us/call",
        )
    )
    report.add(
        bc.result(
            "calendar",
            "WorkingCalendar.add(start, 20 working_days)",
            samples["add"],
            "us/call",
            baseline=base,
        )
    )
    base = report.add(
        bc.baseline_row(
            "calendar",
            "naive: working days in a year, day by day over holidays",
            samples["naive count"],
            "us/call",
        )
    )
    report.add(
        bc.result(
            "calendar",
            "WorkingCalendar.count_working_days(start, start + 365 days)",
            samples["count"],
            "us/call",
            baseline=base,
        )
    )


# -- the run ---------------------------------------------------------------------------------------


def environment(pg_url: str | None) -> dict[str, str]:
    """The machine and the software the numbers were measured on."""
    info: dict[str, str] = {}
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["CPUs (nproc)"] = f"{usable} ({cpu})"
    info["Load average at start (1, 5, 15 min)"] = ", ".join(
        f"{load:.2f}" for load in os.getloadavg()
    )
    info["OS"] = platform.platform()
    info["Python"] = platform.python_version()
    for package in ("sqlalchemy", "transitions", "holidays", "psycopg"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    info["nim_workflow"] = nw.__version__
    with tempfile.TemporaryDirectory() as tmp:
        probe = sqlite3.connect(Path(tmp) / "probe.db")
        mode = probe.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        sync = probe.execute("PRAGMA synchronous").fetchone()[0]
        probe.close()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    info["SQLite"] = (
        f"{sqlite3.sqlite_version} (file in {tempfile.gettempdir()}, journal_mode={mode}, "
        f"synchronous={names.get(sync, sync)})"
    )
    if pg_url:
        probe_engine = sa.create_engine(pg_url)
        try:
            with probe_engine.connect() as conn:
                version = conn.execute(sa.text("SHOW server_version")).scalar_one()
                settings = ", ".join(
                    f"{name}={conn.execute(sa.text(f'SHOW {name}')).scalar_one()}"
                    for name in ("fsync", "synchronous_commit", "shared_buffers")
                )
            host = sa.make_url(pg_url).host or "local socket"
            info["PostgreSQL"] = f"{version} on {host} ({settings})"
        finally:
            probe_engine.dispose()
    else:
        info["PostgreSQL"] = "not measured (no --pg-url and no NIM_WORKFLOW_TEST_PG_URL)"
    return info


def invoked_command() -> str:
    """The command line as typed, including a tools/with-postgres.sh wrapper if there was one."""
    argv = [os.path.relpath(sys.executable, ROOT), os.path.relpath(sys.argv[0], ROOT)]
    command = shlex.join([*argv, *sys.argv[1:]])
    try:
        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return command
    if any(part.endswith(b"with-postgres.sh") for part in parent):
        return f"tools/with-postgres.sh {command}"
    return command


def _format_value(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(rows: Sequence[bc.Result]) -> list[str]:
    """The results as a Markdown table."""
    lines = [
        "| Group | Measurement | Median | Unit | Min-max over repeats | Ratio | Notes |",
        "|---|---|---:|---|---|---:|---|",
    ]
    for row in rows:
        ratio = "" if row.ratio is None else f"{row.ratio:.3g}x"
        if row.baseline == row.name:
            ratio = "1 (baseline)"
        lines.append(
            f"| {row.group} | {row.name} | {_format_value(row.median)} | {row.unit} | "
            f"{_format_value(row.low)}-{_format_value(row.high)} | {ratio} | {row.note} |"
        )
    return lines


def _rows_of(row: bc.Result) -> str:
    """The row count a reads row names in its parentheses ("(1,800 rows)" gives "1,800")."""
    return row.name.rsplit("(", 1)[-1].split(" rows")[0]


def targets(report: Report) -> list[Target]:
    """The issue's targets beside this run's figures."""
    out: list[Target] = []
    nproc = report.facts.get("cpus", "?")
    for label in ("SQLite", "PostgreSQL"):
        fire = report.key(f"write engine {label}")
        if fire is not None and fire.ratio is not None:
            out.append(
                Target(
                    f"`Engine.fire` on {label}: at least 0.5x raw throughput",
                    f"{fire.median:,.0f} transitions/s, {fire.ratio:.2f}x raw",
                    fire.ratio >= 0.5,
                )
            )
        cpu = report.key(f"write engine cpu {label}")
        limit = 1.0 if label == "SQLite" else 1.5
        if cpu is not None:
            out.append(
                Target(
                    f"Client CPU per `Engine.fire` on {label}: at most {limit} ms",
                    f"{cpu.median:.2f} ms",
                    cpu.median <= limit,
                )
            )
        statements = report.key(f"write engine statements {label}")
        if statements is not None:
            out.append(
                Target(
                    f"SQL statements per `Engine.fire` on {label}: at most 6",
                    f"{statements.median:.1f}",
                    statements.median <= 6,
                )
            )
    for key, what in (
        ("workers fire 4 PostgreSQL", "4 processes firing on distinct cases (PostgreSQL)"),
        ("due w2 PostgreSQL", "`process_due` with 2 worker processes (PostgreSQL)"),
    ):
        row = report.key(key)
        if row is not None and row.ratio is not None:
            out.append(
                Target(
                    f"{what}: at least 1.5x the throughput of 1 process",
                    f"{row.ratio:.2f}x on {nproc} CPUs (nproc)",
                    row.ratio >= 1.5,
                )
            )
    for label in ("SQLite", "PostgreSQL"):
        for key in ("due", "overdue", "due site", "overdue site"):
            row = report.key(f"reads {key} {label}")
            if row is None or row.ratio is None:
                continue
            call = row.name.split(": ", 1)[1].split(", ", 1)[0]
            if "site=" in row.name:
                call = row.name.split(": ", 1)[1].rsplit(", ", 1)[0]
            scale = report.facts.get(f"open cases {label}", "?")
            out.append(
                Target(
                    f"`{call}` on {label} at {scale} open cases: median at most 15 ms and "
                    "at most 1.2x raw SQL",
                    f"{_format_value(row.median)} ms, {row.ratio:.2f}x raw ({_rows_of(row)} rows)",
                    row.median <= 15 and row.ratio <= 1.2,
                )
            )
    for label in ("SQLite", "PostgreSQL"):
        for kind, call in (("shallow", "verify_audit()"), ("deep", "verify_audit(deep=True)")):
            row = report.key(f"verify {kind} {label}")
            if row is not None:
                out.append(
                    Target(
                        f"`{call}` on {label}: at least 200,000 events/s",
                        f"{row.median:,.0f} events/s",
                        row.median >= 200_000,
                    )
                )
    row = report.key("report")
    if row is not None:
        cases = int(report.facts.get("report cases", "0"))
        if report.facts.get("report scope") == "all":
            out.append(
                Target(
                    f"The HTML report for {cases:,} cases: at most 10 s (target set at 100,000)",
                    f"{row.median:.1f} s",
                    row.median <= 10 if cases >= 100_000 else None,
                )
            )
        else:
            out.append(
                Target(
                    "The HTML report for 100,000 cases: at most 10 s",
                    f"not measured within budget: {row.median:.1f} s for "
                    f"{row.name.split('(', 1)[1].rstrip(')')}; about "
                    f"{report.facts.get('report estimate', '?')} s estimated for all "
                    f"{cases:,}",
                    False,
                )
            )
    small, large = report.key("memory small"), report.key("memory large")
    if small is not None and large is not None and large.ratio is not None:
        calls = large.name.split("RSS, ", 1)[1].split(" engine calls")[0]
        opened = small.name.split("advance ", 1)[1].split(" cases")[0]
        out.append(
            Target(
                f"Peak RSS after {calls} operations below 2x that after opening and advancing "
                f"{opened} cases (target set at 100,000 and 1,000)",
                f"{large.median:.0f} MiB against {small.median:.0f} MiB ({large.ratio:.2f}x)",
                large.ratio < 2,
            )
        )
    return out


def targets_table(report: Report) -> list[str]:
    """The targets as a Markdown table."""
    lines = ["| Target | Measured | Met |", "|---|---|---|"]
    for target in targets(report):
        met = {True: "yes", False: "no", None: "n/a"}[target.met]
        lines.append(f"| {target.target} | {target.measured} | {met} |")
    return lines


def reading(report: Report) -> list[str]:
    """A short reading of the numbers, written from them rather than ahead of them."""
    out: list[str] = []
    nproc = report.facts.get("cpus", "?")

    def row(prefix: str) -> bc.Result | None:
        return next((r for r in report.rows if r.name.startswith(prefix)), None)

    naive = row("naive: new transitions.Machine")
    shared = row("PathwayMachine.for_pathway")
    bind = [r for r in report.rows if "add_model/trigger/remove_model" in r.name]
    trap = [r for r in report.rows if r.name.endswith("(add_model trap)")]
    trap_no_gc = next((r for r in report.rows if r.name.endswith("gc disabled")), None)
    fire = report.key("write engine SQLite")
    if naive and shared and shared.ratio and bind:
        share = ""
        if fire is not None:
            fire_us = 1e6 / fire.median
            share = (
                f" Either way it is about {shared.median / fire_us:.1%} of an `Engine.fire` on "
                f"SQLite ({fire_us / 1e3:.2f} ms in the write workload), so the database, not the "
                "machine, sets the pace of a transition."
            )
        out.append(
            f"- **Shared machine.** Deciding and firing through `PathwayMachine.for_pathway` "
            f"costs {shared.median:.0f} us per command against {naive.median:.0f} us for "
            f"building a `Machine` per case ({1 / shared.ratio:.1f}x faster). Of those "
            f"{shared.median:.0f} us, {bind[0].median:.0f} us is `transitions` itself (bind, "
            "trigger, unbind on a bare shared machine); the rest is `decide()`. The bundled "
            "pathway is small (6 stages, 8 triggers); a per-case machine costs more as a pathway "
            f"grows, a bound one does not.{share}"
        )
    if len(bind) == 2 and len(trap) == 2:
        small, big = trap
        n_small, n_big = small.name.split()[4], big.name.split()[4]
        no_gc = (
            f" With the garbage collector switched off, {n_big} registered cases cost "
            f"{trap_no_gc.median:.0f} us each: that part is `add_model`'s membership test over "
            "the list of every model (quadratic in total); the rest is the collector scanning "
            "every live model and the trigger partials bound to it."
            if trap_no_gc
            else ""
        )
        out.append(
            f"- **The add_model trap.** Keeping every case registered costs {small.median:.0f} us "
            f"per case at {n_small} cases and {big.median:.0f} us at {n_big}, against "
            f"{bind[0].median:.0f} and {bind[1].median:.0f} us binding per command "
            f"({small.median / bind[0].median:.1f}x and {big.median / bind[1].median:.1f}x), "
            f"and it keeps every case in memory.{no_gc}"
        )
    for label in ("SQLite", "PostgreSQL"):
        out.extend(_reading_write(report, label))
        if label == "SQLite":
            out.extend(_reading_profile(report))
    out.extend(_reading_workers(report, nproc))
    for label in ("SQLite", "PostgreSQL"):
        due = report.key(f"due engine {label}")
        claim = report.key(f"due bare {label}")
        if due and claim and due.ratio:
            out.append(
                f"- **process_due on {label}.** {due.median:.3f} ms per alarm "
                f"({1000 / due.median:,.0f} alarms/s), {due.ratio:.1f}x a bare claim "
                f"({claim.median:.3f} ms) that only UPDATEs each alarm and INSERTs one event row."
            )
    one = report.key("due w1 PostgreSQL")
    if one is not None:
        multiples = [
            (count, found)
            for count in (2, 4)
            if (found := report.key(f"due w{count} PostgreSQL")) is not None and found.ratio
        ]
        if multiples:
            text = " and ".join(
                f"{found.median:,.0f} alarms/s with {count} ({found.ratio:.2f}x)"
                for count, found in multiples
            )
            out.append(
                f"- **process_due workers on PostgreSQL.** {one.median:,.0f} alarms/s with one "
                f"worker process against {text}, on {nproc} CPUs (nproc) shared by the workers "
                f"and the server. Batches of up to {ALARM_BATCH} are claimed with `SKIP LOCKED`."
            )
    for label in ("SQLite", "PostgreSQL"):
        out.extend(_reading_reads(report, label))
    out.extend(_reading_report(report))
    out.extend(_reading_memory(report))
    for label in ("SQLite", "PostgreSQL"):
        out.extend(_reading_verify(report, label))
    add = row("WorkingCalendar.add")
    count = row("WorkingCalendar.count_working_days")
    if add and count and add.ratio and count.ratio:
        out.append(
            f"- **Working days.** `add` of 20 working days takes {add.median:.1f} us "
            f"({add.ratio:.2f}x the naive loop): it is itself a day-by-day walk, made cheaper "
            "by per-year holiday snapshots instead of the `holidays` object's lookups. "
            f"`count_working_days` over a year takes {count.median:.1f} us, "
            f"{1 / count.ratio:.0f}x faster than counting day by day, because it counts "
            "weekdays arithmetically and bisects a sorted list of blocked dates."
        )
    for finding in report.findings:
        out.append(f"- **Noticed:** {finding}.")
    return out


def _reading_write(report: Report, label: str) -> list[str]:
    fire, raw = report.key(f"write engine {label}"), report.key(f"write raw {label}")
    cpu, raw_cpu = report.key(f"write engine cpu {label}"), report.key(f"write raw cpu {label}")
    stmts = report.key(f"write engine statements {label}")
    if not (fire and raw and cpu and raw_cpu and stmts and fire.ratio):
        return []
    ms, raw_ms = 1e3 / fire.median, 1e3 / raw.median
    waiting = max(ms - cpu.median, 0.0)
    durability = report.facts.get(f"durability {label}")
    same = f" Durability: {durability}." if durability else ""
    if label == "PostgreSQL":
        same = (
            " Both commit to the same server, whose settings (above) may make commits cheaper "
            "than a durable server's."
        )
    cases = fire.name.split("Engine.fire, ", 1)[1].split(" cases")[0]
    verdict = "meets" if fire.ratio >= 0.5 else "misses"
    return [
        f"- **Engine.fire on {label}.** {fire.median:,.0f} transitions/s over {cases} cases "
        f"walked round-robin ({ms:.2f} ms each), {fire.ratio:.2f}x the throughput of the raw "
        f"loop ({raw.median:,.0f}/s, {raw_ms:.2f} ms), so it {verdict} the 0.5x target. Of each "
        f"transition's {ms:.2f} ms, {cpu.median:.2f} ms is CPU in the client (raw: "
        f"{raw_cpu.median:.2f} ms) and about {waiting:.2f} ms is waiting on the database; it "
        f"sends {stmts.median:.1f} SQL statements where the raw loop sends 3.{same}"
    ]


def _reading_profile(report: Report) -> list[str]:
    whole = report.key("profile total")
    parts = [
        (label, report.key(f"profile {label}"))
        for label in (*(p[0] for p in _profile.PARTS), _profile.COMMIT, _profile.REST)
    ]
    shown = [(label, row) for label, row in parts if row is not None and row.median >= 0.005]
    raw_cpu = report.key("write raw cpu SQLite")
    stmts = report.key("write engine statements SQLite")
    if whole is None or not shown or raw_cpu is None or stmts is None:
        return []
    biggest = sorted(shown, key=lambda item: -item[1].median)  # type: ignore[union-attr]
    listed = "; ".join(
        f"{label} {row.median:.2f} ms ({row.median / whole.median:.0%})"  # type: ignore[union-attr]
        for label, row in biggest
    )
    sql = sum(
        row.median  # type: ignore[union-attr]
        for label, row in shown
        if label.startswith(("read the case", "write the rows", "audit entries: insert"))
    )
    return [
        f"- **What bounds Engine.fire's CPU (SQLite).** Profiled part by part, a transition's "
        f"{whole.median:.2f} ms of client CPU goes to: {listed}. The statements themselves "
        f"(reading the case, writing the rows, the audit insert and heads) take {sql:.2f} ms for "
        f"about {stmts.median:.0f} statements, roughly {sql / max(stmts.median, 1) * 1e3:.0f} us "
        "each through SQLAlchemy Core with its type processing, where the raw loop spends "
        f"{raw_cpu.median:.2f} ms on its whole transaction. The statement count has a floor in "
        "the design: the audit entry records digests of every table of the case before and after "
        "the change (so an edit made outside the engine is found, and between which entries), so "
        "the case is read whole (5 statements); each table a transition changes costs an UPDATE "
        "and an INSERT (intervals, deadlines, alarms), then the case row, the entry, its chain "
        "head and the log head. Six statements would need the case's rows kept as one document. "
        "What is left to take: executing the built statements on the DBAPI cursor with "
        "SQLAlchemy's own type processors (most of the per-statement cost), one UNION read of "
        "the child tables, and digests kept per row so a change re-hashes only what it touched."
    ]


def _reading_workers(report: Report, nproc: str) -> list[str]:
    one, four = report.key("workers fire 1 PostgreSQL"), report.key("workers fire 4 PostgreSQL")
    if not (one and four and four.ratio):
        return []
    cpu = report.key("write engine cpu PostgreSQL")
    busy = ""
    if cpu is not None:
        busy = (
            f" At {cpu.median:.2f} ms of client CPU per transition, one process at "
            f"{one.median:,.0f} transitions/s keeps {cpu.median * one.median / 10:.0f}% of a "
            "CPU busy on the client side alone."
        )
    return [
        f"- **4 processes firing on PostgreSQL.** {four.median:,.0f} transitions/s against "
        f"{one.median:,.0f} with one process doing the same work: a {four.ratio:.2f}x "
        f"throughput multiple on {nproc} CPUs (nproc), which the four clients share with the "
        f"server.{busy}"
    ]


def _reading_reads(report: Report, label: str) -> list[str]:
    parts = []
    for key, call in (
        ("due", "`due(before=)`"),
        ("overdue", "`overdue(at=)`"),
        ("due site", "`due(before=, site=)`"),
        ("overdue site", "`overdue(at=, site=)`"),
    ):
        row, raw = report.key(f"reads {key} {label}"), report.key(f"reads raw {key} {label}")
        if row is None or raw is None or row.ratio is None:
            continue
        rows = _rows_of(row)
        per_row = (row.median - raw.median) / max(int(rows.replace(",", "")), 1) * 1e3
        parts.append(
            f"{call} {_format_value(row.median)} ms for {rows} deadlines ({row.ratio:.2f}x the "
            f"raw query's {_format_value(raw.median)} ms; {per_row:.0f} us more per row)"
        )
    if not parts:
        return []
    scale = report.facts.get(f"open cases {label}", "?")
    return [
        f"- **Reads on {label} at {scale} open cases.** " + "; ".join(parts) + ". The raw query "
        "only fetches four columns of the open deadlines; the engine also joins each case for "
        "its pathway and builds a `Deadline` with its calendar."
    ]


def _reading_report(report: Report) -> list[str]:
    row, raw = report.key("report"), report.key("report raw")
    if row is None or raw is None:
        return []
    which = row.name.split("(", 1)[1].rstrip(")")
    text = (
        f"- **The HTML report.** `build_report` and writing the page take {row.median:.1f} s for "
        f"{which} ({row.note}), against {raw.median * 1e3:.1f} ms to count the open cases by "
        "site and stage in SQL. The summary behind it reads each table once per site (no query "
        f"per case); the page's timeline draws at most {TIMELINE_ROWS} cases per site (those "
        "most in need of attention) beside month charts of every case, so what grows with the "
        "cases is the summary and the tables that list every open case and deadline."
    )
    cases = int(report.facts.get("report cases", "0"))
    if report.facts.get("report scope") != "all":
        text += (
            f" Scaled from that site, all {cases:,} cases would take about "
            f"{report.facts.get('report estimate', '?')} s, beyond the {REPORT_BUDGET:.0f} s "
            f"this run allows the report, so the {cases:,}-case figure is not measured."
        )
    return [text]


def _reading_memory(report: Report) -> list[str]:
    small, large = report.key("memory small"), report.key("memory large")
    if small is None or large is None or large.ratio is None:
        return []
    tenth = float(large.note.split(" MiB after a tenth")[0].rsplit(" ", 1)[-1])
    growth = large.median - tenth
    trend = (
        "so it levels off rather than growing with the number of cases touched"
        if growth <= 0.05 * large.median
        else f"so it grew by {growth:.0f} MiB over the last nine tenths of the calls"
    )
    calls = large.name.split("RSS, ", 1)[1].split(" engine calls")[0]
    text = (
        f"- **Memory.** A fresh process making {calls} engine calls over the cases of the "
        f"large database peaked at {large.median:.0f} MiB, {large.ratio:.2f}x the "
        f"{small.median:.0f} MiB of one that opened and advanced {small.name.split('advance ')[1]}"
        f". It had reached {tenth:.0f} MiB after a tenth of the calls, {trend}."
    )
    fire = report.key("write engine SQLite")
    fire_ms = report.facts.get("memory fire ms")
    if fire is not None and fire_ms is not None:
        text += (
            f" Its {report.facts.get('memory fires', '?')} `fire()` calls took {fire_ms} ms "
            f"each on the large database, against {1e3 / fire.median:.2f} ms in the write "
            "workload's small one."
        )
    return [text]


def _reading_verify(report: Report, label: str) -> list[str]:
    floor = report.key(f"verify floor {label}")
    shallow, deep = report.key(f"verify shallow {label}"), report.key(f"verify deep {label}")
    if not (floor and shallow and deep and shallow.ratio and deep.ratio):
        return []
    events = floor.name.rsplit("(", 1)[1].split(" events")[0]
    return [
        f"- **verify_audit on {label}.** Over {events} events, a shallow check runs at "
        f"{shallow.median:,.0f} events/s and a deep one at {deep.median:,.0f} events/s, against "
        f"{floor.median:,.0f} events/s for reading the rows and hashing each entry alone "
        f"({shallow.ratio:.2f}x and {deep.ratio:.2f}x that floor). The 200,000 events/s target "
        "is above that floor: every entry's SHA-256 is taken over its canonical JSON, built in "
        "Python, so the floor is the JSON encoding of each entry, and no ordering of the checks "
        "gets under it. A shallow check adds the chain links, positions and the Merkle tree "
        "over the log; a deep one replays every case's states. Going faster needs the work "
        "split over processes (chains are independent) or an encoding cheaper than JSON for "
        "new entries (a new entry format)."
    ]


NOT_MEASURED = [
    "Durable commits on PostgreSQL when the throwaway server from tools/with-postgres.sh is "
    "used: it runs with fsync and synchronous_commit off, so commit latency there is a lower "
    "bound, and client and server share the same CPUs.",
    "Tail latencies: the table reports medians; the min-max column shows the spread of the "
    "per-repeat medians, not of single operations.",
    "The audit log of the copied cases: the 100,000-case databases hold audit entries only for "
    "the cases seeded through the engine, so `verify_audit` is measured on a separate log made "
    "entirely through the engine, and `history`/`audit` reads at scale are not measured.",
    "Start-up time and pathway loading.",
]


def write_markdown(path: Path, report: Report, command: str, started: dt.datetime) -> None:
    """Write the results page: the machine, the date, the command, the tables and a reading."""
    lines = [
        "# Benchmarks",
        "",
        "Measured with `bench/run.py` (`make bench`; see `bench/README.md`); run it again to",
        "refresh this page. Each figure is the median over interleaved repeats; each ratio",
        "divides a median by the median of the baseline measured in the same run. For times",
        "(ms, s, MiB) below 1 is less than the baseline; for rates (per second) above 1 is more.",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Command: `{command}`",
        f"- Wall time of the whole run: {report.facts.get('wall', '?')}",
    ]
    lines += [
        f"- {key.removeprefix('env:')}: {value}"
        for key, value in report.facts.items()
        if key.startswith("env:")
    ]
    if report.timings:
        lines.append(
            "- Wall time per group: "
            + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in report.timings.items())
        )
    conditions = [
        f"- {key[0].upper()}{key[1:]}: {value}"
        for key, value in report.facts.items()
        if key.startswith(("durability ", "scale "))
    ]
    lines += ["", "## Targets", "", *targets_table(report), ""]
    lines += ["## Results", "", *table(report.rows), ""]
    if conditions:
        lines += ["## Conditions of this run", "", *conditions, ""]
    lines += site_report_section(report)
    lines += trial_section(report)
    lines += ["## What the numbers say", "", *reading(report), ""]
    lines += ["## Not measured", "", *(f"- {item}" for item in NOT_MEASURED), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Run every benchmark, print the table and write the Markdown page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and less work")
    parser.add_argument("--pg-url", help=f"PostgreSQL server URL (default: ${PG_URL_VARIABLE})")
    parser.add_argument("--out", default="docs/benchmarks.md", help="where to write the results")
    parser.add_argument(
        "--only",
        choices=["report", "trial"],
        help="run one part alone and rewrite only its section of the page: 'report' measures "
        "the one-site report (10,000 cases against 1,000), 'trial' the trial's families "
        "(family actions, and a site of families' report and export)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    pg_url = args.pg_url or os.environ.get(PG_URL_VARIABLE) or None
    started = dt.datetime.now(dt.UTC)
    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out
    if args.only == "report":
        return main_site_report(sizes, out, started)
    if args.only == "trial":
        return main_trial(sizes, out, started, pg_url)
    clock_start = time.monotonic()
    report = Report()
    env = environment(pg_url)
    for key, value in env.items():
        report.facts[f"env:{key}"] = value
    report.facts["cpus"] = str(cpus())
    print(f"nim_workflow benchmarks ({'quick' if args.quick else 'full'}, {sizes.repeats} repeats)")
    for key, value in env.items():
        print(f"  {key}: {value}")

    with report.timing("machine"):
        bench_machine(report, sizes)
    with tempfile.TemporaryDirectory(prefix="nimwf-bench-") as name:
        tmp = Path(name)
        write_url = f"sqlite:///{tmp}/write.db"
        with report.timing("write"):
            small = bench_write(report, sizes, write_url, str(tmp / "raw.db"), "SQLite")
            bench_write_profile(report, sizes)
        with report.timing("reads"):
            scale = build_sqlite_scale(report, sizes, write_url, tmp / "seed.db", tmp / "scale.db")
            report.facts["open cases SQLite"] = f"{scale.open_cases:,}"
            bench_reads(report, sizes, scale, "SQLite")
        with report.timing("report"):
            bench_report(report, sizes, scale, tmp)
            report.facts["site report date"] = f"{started:%Y-%m-%d %H:%M} UTC"
            bench_site_report(report, sizes, tmp)
        with report.timing("memory"):
            bench_memory(report, sizes, scale, small)
        (tmp / "scale.db").unlink()
        with report.timing("verify"):
            bench_verify(report, sizes, write_url, "SQLite", scale.end, sizes.verify_cases)
        with report.timing("process_due"):
            bench_process_due(report, sizes, f"sqlite:///{tmp}/due.db", "SQLite")
        with report.timing("trial"):
            report.facts["trial date"] = f"{started:%Y-%m-%d %H:%M} UTC"
            bench_trial(report, sizes, tmp, pg_url)
        if pg_url:
            pool = _workers.WorkerPool(4)
            try:
                with bc.postgres_database(pg_url) as url:
                    with report.timing("write"):
                        bench_write(report, sizes, url, url, "PostgreSQL")
                    with report.timing("workers"):
                        bench_fire_workers(report, sizes, url, "PostgreSQL", pool)
                        pool.forget(url)
                    with report.timing("verify"):
                        bench_verify(report, sizes, url, "PostgreSQL", bc.T0, 0)
                with bc.postgres_database(pg_url) as url, report.timing("process_due"):
                    bench_process_due(report, sizes, url, "PostgreSQL", pool=pool)
            finally:
                pool.close()
            with bc.postgres_database(pg_url) as url, report.timing("reads"):
                pg_scale = build_postgres_scale(report, sizes, tmp / "seed.db", url, scale.end)
                report.facts["open cases PostgreSQL"] = f"{pg_scale.open_cases:,}"
                bench_reads(report, sizes, pg_scale, "PostgreSQL")
    with report.timing("calendar"):
        bench_calendar(report, sizes)

    seconds = time.monotonic() - clock_start
    report.facts["wall"] = f"{seconds:.0f} s"
    write_markdown(out, report, invoked_command(), started)
    print()
    print("\n".join(targets_table(report)))
    print()
    print("\n".join(table(report.rows)))
    print()
    print("\n".join(reading(report)))
    print(f"\nwrote {out} in {seconds:.0f} s")
    return 0


def main_site_report(sizes: Sizes, out: Path, started: dt.datetime) -> int:
    """``--only report``: the one-site report alone, its section of the page rewritten."""
    clock_start = time.monotonic()
    report = Report()
    report.facts["site report date"] = f"{started:%Y-%m-%d %H:%M} UTC"
    print(
        f"nim_workflow benchmarks: the one-site report only ({sizes.site_report_repeats} repeats)"
    )
    with tempfile.TemporaryDirectory(prefix="nimwf-bench-") as name:
        bench_site_report(report, sizes, Path(name))
    write_site_report_section(out, report)
    print()
    print("\n".join(site_report_section(report)))
    seconds = time.monotonic() - clock_start
    print(f"wrote the section '{SITE_REPORT_HEADING}' of {out} in {seconds:.0f} s")
    return 0


def main_trial(sizes: Sizes, out: Path, started: dt.datetime, pg_url: str | None) -> int:
    """``--only trial``: the trial group alone, its section of the page rewritten."""
    clock_start = time.monotonic()
    report = Report()
    report.facts["trial date"] = f"{started:%Y-%m-%d %H:%M} UTC"
    print(f"nim_workflow benchmarks: the trial's families only ({sizes.repeats} repeats)")
    with tempfile.TemporaryDirectory(prefix="nimwf-bench-") as name:
        bench_trial(report, sizes, Path(name), pg_url)
    write_trial_section(out, report)
    print()
    print("\n".join(trial_section(report)))
    seconds = time.monotonic() - clock_start
    print(f"wrote the section '{TRIAL_HEADING}' of {out} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
