"""Concurrent writers: many engines race to move the same cases, and the database stays consistent.

On SQLite, threads in one process, each with its own ``nw.Engine`` on the same file; on PostgreSQL,
processes started with "spawn", each building its own engine from the URL. Each case is opened
once, every successful transition is in the audit log exactly once, no case skips a stage, the
chain verifies, and every loser gets a clear nim-workflow error (CaseExists, ConcurrentUpdate or
TransitionNotAllowed), never a raw database error.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import threading
from collections import Counter
from typing import Any

from engine_helpers import (
    RACE_FACTS,
    RACE_PLAN,
    T0,
    TRIGGERS,
    Clock,
    new_engine,
    race,
    race_in_process,
)

import nim_workflow as nw

REFERENCES = ["RACE-1", "RACE-2", "RACE-3"]
ALLOWED_ERRORS = {"CaseExists", "ConcurrentUpdate", "TransitionNotAllowed"}


def migrated(url: str) -> nw.Engine:
    """A migrated engine on the database the racers share (their clocks all stand at T0)."""
    return new_engine(url, Clock(T0))


def check_outcome(engine: nw.Engine, results: list[dict[str, Any]]) -> None:
    """The race's results agree with the database, and the database with the pathway."""
    assert all("crash" not in r for r in results), results
    # The racers ran at once: each began its walk before any other had finished its own.
    windows = [r["window"] for r in results]
    assert max(began for began, _ in windows) < min(ended for _, ended in windows), windows
    errors = Counter(e for r in results for e in r["errors"])
    assert set(errors) <= ALLOWED_ERRORS, errors
    opened: Counter[str] = Counter()
    for result in results:
        opened.update(result["opened"])
    assert opened == dict.fromkeys(REFERENCES, 1)
    assert errors["CaseExists"] == (len(results) - 1) * len(REFERENCES)
    wins: Counter[str] = Counter()
    for result in results:
        wins.update(result["wins"])
    audit = engine.audit()
    transitions = Counter(e.reference for e in audit if e.action == "transition")
    assert wins == transitions
    assert Counter(e.reference for e in audit if e.action == "opened") == opened
    for reference in REFERENCES:
        case = engine.case(reference)
        assert case.stage == "closed"
        assert case.outcome == RACE_FACTS["decision"]
        assert wins[reference] == len(RACE_PLAN)
        assert case.version == 1 + len(RACE_PLAN)
        history = engine.history(reference)
        assert len(history) == wins[reference] + 1
        assert history[0].trigger is None
        for left, entered in itertools.pairwise(history):
            spec = TRIGGERS[entered.trigger or ""]
            assert left.stage in spec.sources, (left, entered)
            assert entered.stage == spec.dest, (left, entered)
            assert left.left_at == entered.entered_at
    denied = [e for e in audit if e.action == "denied"]
    assert len(denied) == sum(r["not_allowed"] for r in results)
    assert all(e.detail["error"] == "TransitionNotAllowed" for e in denied)
    assert [e.seq for e in audit] == list(range(1, len(audit) + 1))
    report = engine.verify_audit(deep=True)
    assert report.ok, report.problems


def test_threads_with_their_own_engines_race_on_sqlite(sqlite_url: str) -> None:
    """Eight threads, each with its own engine on one SQLite file, open and move three cases."""
    engine = migrated(sqlite_url)
    threads = 8
    barrier = threading.Barrier(threads)
    results: list[dict[str, Any]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def run(use_expected_version: bool) -> None:
        try:
            result = race(
                sqlite_url, list(REFERENCES), use_expected_version, lambda: barrier.wait(30)
            )
        except BaseException as exc:
            with lock:
                failures.append(exc)
            raise
        with lock:
            results.append(result)

    workers = [
        threading.Thread(target=run, args=(number % 2 == 0,), name=f"racer-{number}")
        for number in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    try:
        assert not any(w.is_alive() for w in workers), "a racer did not finish"
        assert failures == []
        assert len(results) == threads
        check_outcome(engine, results)
    finally:
        engine.close()


def test_processes_with_their_own_engines_race_on_postgresql(fresh_pg_url: str) -> None:
    """Four spawned processes, each with its own engine, open and move three cases consistently."""
    engine = migrated(fresh_pg_url)
    context = multiprocessing.get_context("spawn")
    processes = 4
    barrier = context.Barrier(processes)
    outbox = context.Queue()
    workers = [
        context.Process(
            target=race_in_process,
            args=(fresh_pg_url, list(REFERENCES), number % 2 == 0, barrier, outbox),
        )
        for number in range(processes)
    ]
    for worker in workers:
        worker.start()
    results: list[dict[str, Any]] = []
    try:
        for _ in workers:
            try:
                results.append(outbox.get(timeout=90))
            except queue.Empty:
                break
        for worker in workers:
            worker.join(timeout=30)
        assert len(results) == processes, results
        assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
        check_outcome(engine, results)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=10)
        outbox.close()
        outbox.join_thread()
        engine.close()
