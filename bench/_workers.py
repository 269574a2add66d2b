"""Work that runs in processes of its own: the write workload, the memory runs, worker pools.

Each function here is the body of a process started with the ``spawn`` method, so it begins in a
fresh interpreter: its peak resident set size (``VmHWM``) is its own, and worker processes share
nothing with the parent but the database.

- :func:`write_workload`: N cases opened through the engine, then walked round-robin, every
  transition its own transaction, interleaved chunk by chunk with a raw DBAPI baseline.
- :func:`memory_operations`: many engine calls over many distinct cases of a large database.
- :class:`WorkerPool`: long-lived worker processes that fire transitions or process due alarms
  together, released by a barrier, so process start-up is never inside a measurement.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import _cases as bc
import sqlalchemy as sa

import nim_workflow as nw

SYNC_FULL = 2


# -- equal durability on SQLite --------------------------------------------------------------------


def sqlite_durability(engine: nw.Engine) -> str:
    """Make the engine's SQLite connections commit with ``synchronous=FULL``; say what was done.

    Reads what the engine's own connection sets; only if it is not FULL does the bench add a
    ``connect`` listener that sets it (after the engine's own) and empties the pool, so the
    engine and the raw baseline commit with the same durability.
    """
    sql = engine.sqlalchemy_engine
    with sql.connect() as conn:
        sync = conn.exec_driver_sql("PRAGMA synchronous").scalar_one()
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
    named = bc.SQLITE_SYNC.get(sync, str(sync))
    if sync == SYNC_FULL:
        return f"engine's own connections: journal_mode={mode}, synchronous={named}"

    @sa.event.listens_for(sql, "connect")
    def _full(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    sql.dispose()
    with sql.connect() as conn:
        now = bc.SQLITE_SYNC.get(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())
    return (
        f"engine's own connections set journal_mode={mode}, synchronous={named}; the bench set "
        f"synchronous={now} on them (a connect listener) so durability equals the raw baseline's"
    )


# -- the write workload ----------------------------------------------------------------------------


@dataclass
class WriteRun:
    """What one write workload measured: per-pass samples and per-transition counts."""

    cases: int
    transitions: int = 0
    open_seconds: float = 0.0
    engine_tps: list[float] = field(default_factory=list)
    raw_tps: list[float] = field(default_factory=list)
    engine_cpu_ms: list[float] = field(default_factory=list)
    raw_cpu_ms: list[float] = field(default_factory=list)
    engine_statements: float = 0.0
    raw_statements: float = 0.0
    durability: str = ""
    peak_rss_kib: int = 0
    engine_ops: int = 0


def _pathway_dests() -> list[str]:
    pathway = nw.bundled_pathways()[bc.PATHWAY_ID]
    dests = []
    for (trigger, _actor, _facts), stage in zip(bc.WALK, bc.WALK_STAGES, strict=True):
        transition = pathway.transition(trigger, stage)
        assert transition is not None, (trigger, stage)
        dests.append(transition.dest)
    assert tuple(dests) == bc.WALK_DESTS, dests
    return dests


def write_workload(url: str, raw_target: str, cases: int, chunk: int) -> WriteRun:
    """Open ``cases`` through the engine, then walk them round-robin against a raw baseline.

    Each pass takes every case one step along :data:`_cases.WALK` (one ``Engine.fire`` each,
    its own transaction, the case read from the database by the engine); the raw baseline does
    the same step on its own rows. The two alternate ``chunk`` cases at a time, taking turns at
    going first, so drift in the machine's speed falls on both. Every pass is one sample.
    ``raw_target`` is a SQLite file path, or a PostgreSQL URL for psycopg.
    """
    dests = _pathway_dests()
    clock = bc.StepClock()
    engine = nw.Engine(url, clock=clock)
    engine.migrate()
    run = WriteRun(cases=cases)
    raw: bc.RawSqlite | bc.RawPostgres
    if engine.sqlalchemy_engine.dialect.name == "sqlite":
        raw = bc.RawSqlite(raw_target)
        run.durability = f"{sqlite_durability(engine)}; raw sqlite3: {raw.settings()}"
    else:
        raw = bc.RawPostgres(raw_target)
    count = bc.statement_counter(engine.sqlalchemy_engine)
    references = [f"W-{i:05d}" for i in range(cases)]
    start = time.perf_counter()
    for ref in references:
        clock.advance(dt.timedelta(seconds=1))
        engine.open_case(ref, pathway=bc.PATHWAY_ID, site=bc.SITE, actor=bc.SOCIAL_WORKER)
    run.open_seconds = time.perf_counter() - start
    raw.seed(references, bc.WALK_STAGES[0], clock.now)
    statements = 0
    chunks = [references[i : i + chunk] for i in range(0, cases, chunk)]
    for (trigger, actor, facts), dest in zip(bc.WALK, dests, strict=True):
        wall = {"engine": 0.0, "raw": 0.0}
        cpu = {"engine": 0.0, "raw": 0.0}
        for number, refs in enumerate(chunks):

            def engine_part(
                refs: Sequence[str] = refs,
                trigger: str = trigger,
                actor: nw.Actor = actor,
                facts: Mapping[str, Any] = facts,
            ) -> None:
                for ref in refs:
                    clock.advance(dt.timedelta(seconds=1))
                    engine.fire(ref, trigger, actor, facts=facts)

            def raw_part(
                refs: Sequence[str] = refs,
                trigger: str = trigger,
                dest: str = dest,
                facts: Mapping[str, Any] = facts,
            ) -> None:
                for ref in refs:
                    clock.advance(dt.timedelta(seconds=1))
                    raw.transition(ref, trigger, dest, facts, clock.now)

            parts: list[tuple[str, Callable[[], None]]] = [
                ("engine", engine_part),
                ("raw", raw_part),
            ]
            if number % 2:
                parts.reverse()
            for kind, action in parts:
                before = count()
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                action()
                wall[kind] += time.perf_counter() - wall_start
                cpu[kind] += time.process_time() - cpu_start
                if kind == "engine":
                    statements += count() - before
        run.engine_tps.append(cases / wall["engine"])
        run.raw_tps.append(cases / wall["raw"])
        run.engine_cpu_ms.append(cpu["engine"] / cases * 1e3)
        run.raw_cpu_ms.append(cpu["raw"] / cases * 1e3)
        run.transitions += cases
    run.engine_statements = statements / run.transitions
    run.raw_statements = raw.statements
    run.engine_ops = cases + run.transitions
    raw.close()
    engine.close()
    return run


def write_workload_process(url: str, raw_target: str, cases: int, chunk: int, out: Any) -> None:
    """:func:`write_workload` in a spawned process; sends back its result and peak RSS."""
    try:
        run = write_workload(url, raw_target, cases, chunk)
        run.peak_rss_kib = bc.peak_rss_kib()
        out.put(("ok", run))
    except BaseException:
        out.put(("error", traceback.format_exc()))


# -- memory: many operations over many cases ------------------------------------------------------


@dataclass
class MemoryRun:
    """Peak RSS after a tenth of the operations and after all of them."""

    operations: int
    cases: int
    distinct: int
    fires: int
    seconds: float
    fire_seconds: float
    peak_rss_kib_tenth: int
    peak_rss_kib: int


def memory_operations(url: str, operations: int, fire_every: int, at: str) -> MemoryRun:
    """``operations`` engine calls over distinct open cases of a large database.

    Case after case (in reference order, so every site and calendar is visited): ``case()`` and
    ``deadlines()``, and on every ``fire_every``-th case also one ``fire`` of its next step
    along the walk; after the last open case it starts again from the first. Nothing is kept
    between cases, so memory that grows is the engine's.
    """
    clock = bc.StepClock(dt.datetime.fromisoformat(at))
    engine = nw.Engine(url, clock=clock)
    by_stage = dict(zip(bc.WALK_STAGES, bc.WALK, strict=True))
    done = cases = fires = distinct = 0
    fire_seconds = 0.0
    tenth = 0
    last = ""
    wrapped = False
    start = time.perf_counter()
    while done < operations:
        with engine.sqlalchemy_engine.connect() as conn:
            page = conn.execute(
                sa.text(
                    "SELECT reference FROM nimwf_cases WHERE reference > :last "
                    "AND closed_at IS NULL ORDER BY reference LIMIT 1000"
                ),
                {"last": last},
            ).scalars()
            refs = list(page)
        if not refs:
            last, wrapped = "", True
            continue
        last = refs[-1]
        for ref in refs:
            case = engine.case(ref)
            engine.deadlines(ref)
            done += 2
            cases += 1
            distinct += not wrapped
            if cases % fire_every == 0 and case.stage in by_stage:
                trigger, actor, facts = by_stage[case.stage]
                clock.advance(dt.timedelta(seconds=1))
                fire_seconds += bc.timed(partial(engine.fire, ref, trigger, actor, facts=facts))
                done += 1
                fires += 1
            if not tenth and done >= operations // 10:
                tenth = bc.peak_rss_kib()
            if done >= operations:
                break
    seconds = time.perf_counter() - start
    engine.close()
    return MemoryRun(
        operations=done,
        cases=cases,
        distinct=distinct,
        fires=fires,
        seconds=seconds,
        fire_seconds=fire_seconds,
        peak_rss_kib_tenth=tenth,
        peak_rss_kib=bc.peak_rss_kib(),
    )


def memory_process(url: str, operations: int, fire_every: int, at: str, out: Any) -> None:
    """:func:`memory_operations` in a spawned process."""
    try:
        out.put(("ok", memory_operations(url, operations, fire_every, at)))
    except BaseException:
        out.put(("error", traceback.format_exc()))


def in_fresh_process(target: Callable[..., None], *args: Any, timeout: float = 1800) -> Any:
    """Run ``target(*args, queue)`` in a freshly spawned interpreter and return what it sent."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    try:
        status, value = queue.get(timeout=timeout)
    finally:
        process.join(timeout=60)
    if status != "ok":
        raise RuntimeError(f"{target.__name__} failed in its process:\n{value}")
    return value


# -- the worker pool -------------------------------------------------------------------------------


def _pool_worker(index: int, barriers: dict[int, Any], tasks: Any, results: Any) -> None:
    """Serve tasks until told to stop: warm up, wait at the barrier, work, report the times."""
    engines: dict[str, tuple[nw.Engine, bc.StepClock]] = {}
    while True:
        task = tasks.get()
        kind = task[0]
        if kind == "stop":
            break
        if kind == "forget":
            found = engines.pop(task[1], None)
            if found is not None:
                found[0].close()
            continue
        _, url, parties, payload = task
        try:
            if url not in engines:
                clock = bc.StepClock()
                engines[url] = (nw.Engine(url, clock=clock), clock)
            engine, clock = engines[url]
            # Warm up: a pooled connection and the pathways, before the clock starts.
            engine.next_due_at()
            done = 0
            if kind == "fire":
                refs, step, now = payload
                trigger, actor, facts = bc.WALK[step]
                clock.now = dt.datetime.fromisoformat(now)
                barriers[parties].wait()
                start = time.monotonic()
                for ref in refs:
                    clock.advance(dt.timedelta(milliseconds=1))
                    engine.fire(ref, trigger, actor, facts=facts)
                    done += 1
            else:
                at = dt.datetime.fromisoformat(payload)
                clock.now = at
                barriers[parties].wait()
                start = time.monotonic()
                done = len(engine.process_due(at))
            end = time.monotonic()
            results.put(("ok", index, start, end, done))
        except BaseException:
            results.put(("error", index, traceback.format_exc(), 0, 0))
    for engine, _clock in engines.values():
        engine.close()


@dataclass(frozen=True, slots=True)
class Round:
    """One round of work by N workers: wall seconds from the first start to the last end."""

    seconds: float
    done: list[int]


class WorkerPool:
    """Up to ``size`` long-lived worker processes that work in rounds released by a barrier."""

    SIZES = (1, 2, 4)

    def __init__(self, size: int = 4) -> None:
        context = multiprocessing.get_context("spawn")
        self.size = size
        self.barriers = {n: context.Barrier(n) for n in self.SIZES if n <= size}
        self.results = context.Queue()
        self.tasks = [context.Queue() for _ in range(size)]
        self.processes = [
            context.Process(
                target=_pool_worker, args=(i, self.barriers, self.tasks[i], self.results)
            )
            for i in range(size)
        ]
        for process in self.processes:
            process.start()

    def _round(self, payloads: Sequence[tuple[str, str, Any]]) -> Round:
        parties = len(payloads)
        for queue, (kind, url, payload) in zip(self.tasks, payloads, strict=False):
            queue.put((kind, url, parties, payload))
        outcomes = [self.results.get(timeout=900) for _ in range(parties)]
        errors = [o[2] for o in outcomes if o[0] != "ok"]
        if errors:
            for barrier in self.barriers.values():
                barrier.abort()
            raise RuntimeError("a worker failed:\n" + "\n".join(str(e) for e in errors))
        start = min(o[2] for o in outcomes)
        end = max(o[3] for o in outcomes)
        return Round(seconds=end - start, done=[o[4] for o in outcomes])

    def fire(
        self, url: str, workers: int, refs: Sequence[str], step: int, now: dt.datetime
    ) -> Round:
        """``workers`` processes each fire walk step ``step`` on their share of ``refs``."""
        shares = [list(refs[i::workers]) for i in range(workers)]
        return self._round([("fire", url, (share, step, now.isoformat())) for share in shares])

    def process_due(self, url: str, workers: int, at: dt.datetime) -> Round:
        """``workers`` processes each call ``process_due(at)`` at the same moment."""
        return self._round([("due", url, at.isoformat()) for _ in range(workers)])

    def forget(self, url: str) -> None:
        """Close every worker's engine on ``url`` (before its database is dropped)."""
        for queue in self.tasks:
            queue.put(("forget", url))

    def close(self) -> None:
        for queue in self.tasks:
            queue.put(("stop",))
        for process in self.processes:
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
