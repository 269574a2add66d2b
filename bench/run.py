"""Benchmarks of nim_workflow, run on demand; results go to stdout and to docs/benchmarks.md.

    python bench/run.py [--quick] [--pg-url URL] [--out docs/benchmarks.md]
    tools/with-postgres.sh .venv/bin/python bench/run.py      # with a throwaway PostgreSQL

Four groups, each reported as the median over repeated runs together with its ratio to a baseline
measured in the same run (a ratio below 1 means less time than the baseline):

1. ``machine``: deciding and firing a trigger through the shared ``PathwayMachine`` against building
   a ``transitions.Machine`` per case, and keeping every case registered with ``add_model``.
2. ``fire``: ``Engine.fire`` per transition on SQLite (file, WAL) and PostgreSQL against a bare
   SQLAlchemy read-UPDATE-INSERT transaction on the same database.
3. ``process_due``: due alarms fired by one call, against a bare batched claim; on PostgreSQL
   also 4 worker processes against 1.
4. ``calendar``: ``WorkingCalendar.add`` (20 working days) and ``count_working_days`` over a year
   against a day-by-day loop over the ``holidays`` package.

The engine reads an injected clock and every random choice comes from a seeded generator, so two
runs do the same work. Nothing here is part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import math
import multiprocessing
import os
import platform
import random
import shlex
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path

import _cases as bc
import holidays
import sqlalchemy as sa

import nim_workflow as nw
from nim_workflow._machine import PathwayMachine
from nim_workflow._store import _schema as schema

PG_URL_VARIABLE = "NIM_WORKFLOW_TEST_PG_URL"
#: The engine claims alarms 500 at a time; the bare baseline claims in batches of the same size.
ALARM_BATCH = 500
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each benchmark does; ``--quick`` shrinks everything."""

    repeats: int
    machine_cases: int
    machine_trap_cases: int
    fire_cases: int
    alarms: int
    calendar_starts: int
    calendar_year_starts: int


FULL = Sizes(
    repeats=7,
    machine_cases=1000,
    machine_trap_cases=10000,
    fire_cases=50,
    alarms=2000,
    calendar_starts=1000,
    calendar_year_starts=200,
)
QUICK = Sizes(
    repeats=3,
    machine_cases=1000,
    machine_trap_cases=3000,
    fire_cases=12,
    alarms=600,
    calendar_starts=300,
    calendar_year_starts=50,
)


@dataclass
class Report:
    """Everything measured in one run, and what the run found along the way."""

    rows: list[bc.Result] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)

    def add(self, row: bc.Result) -> bc.Result:
        self.rows.append(row)
        ratio = "" if row.ratio is None else f"{row.ratio:8.3f}x"
        print(f"  {row.group:<12} {row.name:<62} {row.median:10.3f} {row.unit:<12}{ratio}")
        return row

    def find(self, name: str) -> bc.Result | None:
        return next((row for row in self.rows if row.name == name), None)


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


# -- 2. Engine.fire --------------------------------------------------------------------------------


def bench_fire(
    report: Report, sizes: Sizes, url: str, label: str, *, host_engine_variant: bool
) -> None:
    """Median ms per ``Engine.fire`` against a bare read-UPDATE-INSERT transaction."""
    print(f"fire: Engine.fire per transition on {label}")
    clock = bc.StepClock()
    engine = nw.Engine(url, clock=clock)
    engine.migrate()
    count_statements = bc.statement_counter(engine.sqlalchemy_engine)
    bare = sa.create_engine(url)
    if bare.dialect.name == "sqlite":
        bc.sqlite_pragmas(bare)
    bc.baseline_metadata.create_all(bare)
    count_bare = bc.statement_counter(bare)
    # The same engine built from a host's SQLAlchemy engine: no pool_pre_ping round trip.
    hosted = nw.Engine(sa.create_engine(url), clock=clock) if host_engine_variant else None
    kinds = ["engine", "bare", *(["hosted"] if hosted else [])]
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    statements: dict[str, list[int]] = {kind: [] for kind in kinds}
    transitions_done = 0
    for repeat in range(sizes.repeats):
        refs = [f"F{repeat}-{i:04d}" for i in range(sizes.fire_cases)]
        hosted_refs = [f"H{repeat}-{i:04d}" for i in range(sizes.fire_cases)]
        for ref in refs + (hosted_refs if hosted else []):
            clock.advance(dt.timedelta(seconds=1))
            engine.open_case(ref, pathway=bc.PATHWAY_ID, site=bc.SITE, actor=bc.SOCIAL_WORKER)
        with bare.begin() as conn:
            conn.execute(
                bc.baseline_cases.insert(),
                [{"reference": r, "stage": "referral", "version": 1, "facts": {}} for r in refs],
            )
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for trigger, actor, facts in bc.WALK:
            for i, ref in enumerate(refs):
                clock.advance(dt.timedelta(minutes=1))
                before = count_statements()
                times["engine"].append(
                    bc.timed(partial(engine.fire, ref, trigger, actor, facts=facts))
                )
                statements["engine"].append(count_statements() - before)
                if hosted is not None:
                    href = hosted_refs[i]
                    times["hosted"].append(
                        bc.timed(partial(hosted.fire, href, trigger, actor, facts=facts))
                    )
                before = count_bare()
                times["bare"].append(
                    bc.timed(partial(bc.baseline_transition, bare, ref, trigger, "next", clock.now))
                )
                statements["bare"].append(count_bare() - before)
        transitions_done += len(times["engine"])
        for kind in kinds:
            samples[kind].append(sorted(times[kind])[len(times[kind]) // 2] * 1e3)
    engine_statements = sum(statements["engine"]) / len(statements["engine"])
    bare_statements = sum(statements["bare"]) / len(statements["bare"])
    per_repeat = transitions_done // sizes.repeats
    base = report.add(
        bc.baseline_row(
            "fire",
            f"{label}: bare SELECT+UPDATE+INSERT transaction",
            samples["bare"],
            "ms/transition",
            note=f"{bare_statements:.0f} SQL statements, then COMMIT",
        )
    )
    report.add(
        bc.result(
            "fire",
            f"{label}: Engine.fire ({per_repeat} transitions per repeat)",
            samples["engine"],
            "ms/transition",
            baseline=base,
            note=f"{engine_statements:.1f} SQL statements (mean), then COMMIT",
        )
    )
    if hosted is not None:
        report.add(
            bc.result(
                "fire",
                f"{label}: Engine.fire on a host engine (no pool_pre_ping)",
                samples["hosted"],
                "ms/transition",
                baseline=base,
            )
        )
        hosted.close()
        hosted.sqlalchemy_engine.dispose()
    report.facts[f"statements per Engine.fire ({label})"] = f"{engine_statements:.1f}"
    engine.close()
    bare.dispose()


# -- 3. process_due --------------------------------------------------------------------------------


class AlarmFixture:
    """A database holding N due alarms, and a way to set them all pending again between repeats."""

    def __init__(self, url: str, alarms: int) -> None:
        self.url = url
        self.clock = bc.StepClock()
        self.engine = nw.Engine(url, clock=self.clock)
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


def run_workers(fixture: AlarmFixture, workers: int) -> tuple[float, list[int]]:
    """Seconds from the first worker's start to the last one's end, and what each one fired."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(
            target=bc.process_due_worker,
            args=(fixture.url, fixture.due_at.isoformat(), barrier, results),
        )
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        if process.exitcode != 0:
            raise RuntimeError(f"worker process ended with exit code {process.exitcode}")
    start = min(o[0] for o in outcomes)
    end = max(o[1] for o in outcomes)
    return end - start, [o[2] for o in outcomes]


def bench_process_due(report: Report, sizes: Sizes, url: str, label: str, *, workers: bool) -> None:
    """ms per alarm for one ``process_due`` call over N due alarms; 4 workers against 1."""
    print(f"process_due: due alarms on {label}")
    fixture = AlarmFixture(url, sizes.alarms)
    n = fixture.pending
    samples: dict[str, list[float]] = {"engine": [], "bare": [], "w1": [], "w4": []}
    try:
        for _ in range(sizes.repeats):
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
            if workers:
                for count, key in ((1, "w1"), (4, "w4")):
                    fixture.reset()
                    seconds, each = run_workers(fixture, count)
                    total = sum(each)
                    if total != n:
                        report.findings.append(
                            f"{label}: {count} worker process(es) fired {total} of {n} due "
                            f"alarms (per worker: {each}; still pending afterwards: "
                            f"{fixture.pending_by_kind()})"
                        )
                    samples[key].append(seconds / max(total, 1) * 1e3)
    finally:
        fixture.close()
    base = report.add(
        bc.baseline_row(
            "process_due",
            f"{label}: bare claim, UPDATE+INSERT per alarm, {ALARM_BATCH} per txn",
            samples["bare"],
            "ms/alarm",
        )
    )
    report.add(
        bc.result(
            "process_due",
            f"{label}: process_due, {n} due alarms in one call",
            samples["engine"],
            "ms/alarm",
            baseline=base,
        )
    )
    if workers:
        one = report.add(
            bc.baseline_row(
                "process_due",
                f"{label}: 1 worker process, {n} alarms (wall time)",
                samples["w1"],
                "ms/alarm",
            )
        )
        report.add(
            bc.result(
                "process_due",
                f"{label}: 4 worker processes, {n} alarms (wall time)",
                samples["w4"],
                "ms/alarm",
                baseline=one,
            )
        )


# -- 4. working-day arithmetic ---------------------------------------------------------------------


def bench_calendar(report: Report, sizes: Sizes) -> None:
    """``WorkingCalendar`` against a day-by-day loop over the ``holidays`` package."""
    print("calendar: working-day arithmetic (england-and-wales)")
    with nw.Engine("sqlite://") as engine:
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


def reading(report: Report) -> list[str]:
    """A short reading of the numbers, written from them rather than ahead of them."""
    out: list[str] = []

    def row(prefix: str) -> bc.Result | None:
        return next((r for r in report.rows if r.name.startswith(prefix)), None)

    naive = row("naive: new transitions.Machine")
    shared = row("PathwayMachine.for_pathway")
    bind = [r for r in report.rows if "add_model/trigger/remove_model" in r.name]
    trap = [r for r in report.rows if r.name.endswith("(add_model trap)")]
    trap_no_gc = next((r for r in report.rows if r.name.endswith("gc disabled")), None)
    fire = row("SQLite: Engine.fire (")
    if naive and shared and shared.ratio and bind:
        share = (
            f" Either way it is about {shared.median / (fire.median * 1e3):.1%} of an "
            f"`Engine.fire` on SQLite ({fire.median:.2f} ms), so the database, not the machine, "
            "sets the pace of a transition."
            if fire
            else ""
        )
        out.append(
            f"- **Shared machine.** Deciding and firing through `PathwayMachine.for_pathway` "
            f"costs {shared.median:.0f} us per command against {naive.median:.0f} us for "
            f"building a `Machine` per case ({1 / shared.ratio:.1f}x faster). Of those "
            f"{shared.median:.0f} us, {bind[0].median:.0f} us is `transitions` itself (bind, "
            "trigger, unbind on a bare shared machine); the rest is `decide()`, which "
            "`Engine.fire` runs twice (once for the refusal, again inside "
            "`PathwayMachine.fire`). The bundled pathway is small (6 stages, 8 triggers); a "
            "per-case machine costs more as a pathway grows, a bound one does not."
            f"{share}"
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
        fire = row(f"{label}: Engine.fire (")
        bare = row(f"{label}: bare SELECT")
        if fire and bare and fire.ratio:
            stmts = report.facts.get(f"statements per Engine.fire ({label})", "?")
            out.append(
                f"- **Engine.fire on {label}.** {fire.median:.2f} ms per transition, "
                f"{fire.ratio:.1f}x a bare read-UPDATE-INSERT transaction ({bare.median:.2f} ms). "
                f"A transition sends about {stmts} statements (stage history, deadlines settled "
                "and opened with their alarms, the case's row digests before and after, the chain "
                "head, event insert, case update, and a re-read of the case to return it), all "
                "through SQLAlchemy Core; the overhead is "
                "those round trips and statement building, not the state machine."
            )
        hosted = row(f"{label}: Engine.fire on a host engine")
        if fire and hosted:
            saved = fire.median - hosted.median
            effect = (
                f"saves {saved:.2f} ms per transition: the engine's own SQLAlchemy engine is built "
                "with `pool_pre_ping`, one extra round trip every time a connection is checked out"
                if saved > 0
                else "made no measurable difference"
            )
            out.append(
                f"- **pool_pre_ping on {label}.** Handing the engine a host's SQLAlchemy engine "
                f"(no `pool_pre_ping`) {effect} ({hosted.median:.2f} against {fire.median:.2f} "
                "ms)."
            )
        due = row(f"{label}: process_due")
        claim = row(f"{label}: bare claim")
        if due and claim and due.ratio:
            out.append(
                f"- **process_due on {label}.** {due.median:.3f} ms per alarm "
                f"({1000 / due.median:,.0f} alarms/s), {due.ratio:.1f}x a bare claim "
                f"({claim.median:.3f} ms). Each alarm is an UPDATE of the alarm and an INSERT "
                "of its audit entry into its case's chain, with the case's row digests before "
                "and after, one statement at a time; the batch is sequenced into the global log "
                "(inline on SQLite, after commit on PostgreSQL)."
            )
    one = row("PostgreSQL: 1 worker")
    four = row("PostgreSQL: 4 worker")
    if one and four and four.ratio:
        verdict = (
            "so extra workers do not add throughput"
            if four.ratio > 0.8
            else "so the work does spread over workers"
        )
        out.append(
            f"- **4 workers against 1 on PostgreSQL.** {four.median:.3f} against "
            f"{one.median:.3f} ms per alarm of wall time ({four.ratio:.2f}x), {verdict}. Audit "
            "entries go to per-case chains, so workers no longer queue on one head row; "
            f"batches of up to {ALARM_BATCH} are claimed with `SKIP LOCKED` on the alarm and "
            "its case. The host has "
            f"{report.facts.get('cpus', '?')} CPUs shared by the workers and the server."
        )
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


NOT_MEASURED = [
    "Concurrent `Engine.fire` from several processes or threads (contention on case rows; the "
    "write-path benchmark of the performance work will measure it).",
    "Reads and reports (`history`, `deadlines`, `audit`, `verify_audit`, the HTML report) and "
    "how they scale with the size of the audit log.",
    "Memory use, start-up time and pathway loading.",
    "Durable commits on PostgreSQL when the throwaway server from tools/with-postgres.sh is "
    "used: it runs with fsync and synchronous_commit off, so commit latency there is a lower "
    "bound, and client and server share the same CPUs.",
    "Tail latencies: the table reports medians; the min-max column shows the spread of the "
    "per-repeat medians, not of single operations.",
]


def write_markdown(path: Path, report: Report, command: str, started: dt.datetime) -> None:
    """Write the results page: the machine, the date, the command, the table and a reading."""
    lines = [
        "# Benchmarks",
        "",
        "Measured with `bench/run.py` (see `bench/README.md`); run it again to refresh this page.",
        "Each figure is the median over repeated runs; each ratio divides a median by the median",
        "of the baseline measured in the same run (below 1: faster than the baseline).",
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
    lines += ["", "## Results", "", *table(report.rows), ""]
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
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    pg_url = args.pg_url or os.environ.get(PG_URL_VARIABLE) or None
    started = dt.datetime.now(dt.UTC)
    clock_start = time.monotonic()
    report = Report()
    env = environment(pg_url)
    for key, value in env.items():
        report.facts[f"env:{key}"] = value
    report.facts["cpus"] = env["CPUs (nproc)"].split()[0]
    print(f"nim_workflow benchmarks ({'quick' if args.quick else 'full'}, {sizes.repeats} repeats)")
    for key, value in env.items():
        print(f"  {key}: {value}")

    bench_machine(report, sizes)
    with tempfile.TemporaryDirectory(prefix="nimwf-bench-") as tmp:
        bench_fire(report, sizes, f"sqlite:///{tmp}/fire.db", "SQLite", host_engine_variant=False)
        bench_process_due(report, sizes, f"sqlite:///{tmp}/due.db", "SQLite", workers=False)
    if pg_url:
        with bc.postgres_database(pg_url) as url:
            bench_fire(report, sizes, url, "PostgreSQL", host_engine_variant=True)
        with bc.postgres_database(pg_url) as url:
            bench_process_due(report, sizes, url, "PostgreSQL", workers=True)
    bench_calendar(report, sizes)

    seconds = time.monotonic() - clock_start
    report.facts["wall"] = f"{seconds:.0f} s"
    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out
    write_markdown(out, report, invoked_command(), started)
    print()
    print("\n".join(table(report.rows)))
    print()
    print("\n".join(reading(report)))
    print(f"\nwrote {out} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
