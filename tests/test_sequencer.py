"""The sequencer: committed entries join one gapless global log, once each, in chain order.

On SQLite the writer sequences its own entries before it commits. On PostgreSQL whoever holds the
advisory lock sequences after commit, so writers never wait on each other: a host transaction
holding one case does not delay another, a sequencer killed mid-batch loses nothing, and several
writers at once still give a gapless log. Tests name what ran at once and check that it did.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from engine_helpers import TM, Clock, open_at

import nim_workflow as nw
from nim_workflow import _audit
from nim_workflow._store._schema import audit_events

#: Generous: a fire on another case that waits for a host transaction would wait for ever.
NOT_DELAYED_SECONDS = 10.0


def unsequenced(engine: nw.Engine) -> int:
    """How many committed entries have no seq yet."""
    with engine.sqlalchemy_engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(audit_events.c.seq.is_(None))
            ).scalar_one()
        )


def assert_gapless(engine: nw.Engine) -> list[nw.AuditEvent]:
    """Every entry sequenced once, seqs 1..N, each chain in its own order; the log verifies."""
    log = engine.audit()
    assert unsequenced(engine) == 0
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    positions: dict[tuple[str, str], int] = {}
    for event in log:
        key = (event.stream, event.reference)
        assert event.position == positions.get(key, 0) + 1, event
        positions[key] = event.position
    report = engine.verify_audit(deep=True)
    assert report.ok, report.problems
    assert report.sequenced == len(log)
    return log


@pytest.fixture
def pg_engine(fresh_pg_url: str) -> Iterator[nw.Engine]:
    """A migrated engine on a fresh PostgreSQL database."""
    engine = nw.Engine(fresh_pg_url, clock=Clock())
    engine.migrate()
    yield engine
    engine.close()


def test_sqlite_writers_sequence_inline(sqlite_url: str) -> None:
    """On SQLite no committed entry ever waits for a seq."""
    with nw.Engine(sqlite_url, clock=Clock()) as engine:
        engine.migrate()
        for number in range(3):
            open_at(engine, f"SQ-{number}", "treatment")
            assert unsequenced(engine) == 0
        assert_gapless(engine)


class HeldSequencerLock:
    """A session holding the sequencer's advisory lock, as a busy (or stuck) sequencer would."""

    def __init__(self, engine: nw.Engine) -> None:
        self.conn = engine.sqlalchemy_engine.connect()
        self.conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _audit.SEQUENCER_LOCK})
        self.conn.commit()

    def release(self) -> None:
        """Let the lock go and close the session."""
        self.conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _audit.SEQUENCER_LOCK})
        self.conn.commit()
        self.conn.close()


@pytest.mark.postgres
def test_writers_never_wait_for_the_sequencer(pg_engine: nw.Engine) -> None:
    """With the sequencer busy, writes commit unsequenced; the next reader sequences them."""
    held = HeldSequencerLock(pg_engine)
    try:
        open_at(pg_engine, "BUSY-1", "treatment")
        waiting = unsequenced(pg_engine)
        assert waiting >= 3
    finally:
        held.release()
    log = assert_gapless(pg_engine)
    assert len(log) == waiting


SEQUENCE_AND_HANG = textwrap.dedent(
    """
    import sys, time
    import sqlalchemy as sa
    from nim_workflow import _audit
    bind = sa.create_engine(sys.argv[1])
    with bind.connect() as conn:
        conn.begin()
        assert _audit.try_sequencer_lock(conn, wait=True)
        assigned = _audit.sequence(conn)
        print(len(assigned), flush=True)
        time.sleep(600)
    """
)


@pytest.mark.postgres
def test_a_sequencer_killed_mid_batch_loses_nothing(pg_engine: nw.Engine) -> None:
    """A sequencer killed after numbering a batch, before commit, leaves it whole for the next."""
    held = HeldSequencerLock(pg_engine)
    try:
        for number in range(3):
            open_at(pg_engine, f"KILL-{number}", "assessment")
        pending = unsequenced(pg_engine)
    finally:
        held.release()
    url = pg_engine.sqlalchemy_engine.url.render_as_string(hide_password=False)
    victim = subprocess.Popen(
        [sys.executable, "-c", SEQUENCE_AND_HANG, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert victim.stdout is not None
        numbered = int(victim.stdout.readline())
        assert numbered == pending, "the victim numbered the whole batch before it was killed"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        if victim.stdout is not None:
            victim.stdout.close()
    assert unsequenced(pg_engine) == pending
    log = assert_gapless(pg_engine)
    assert len(log) == pending


@pytest.mark.postgres
def test_a_host_transaction_on_one_case_does_not_delay_another(pg_engine: nw.Engine) -> None:
    """While a host holds case A open in its transaction, a fire on case B commits at once."""
    open_at(pg_engine, "HOLD-A", "referral")
    open_at(pg_engine, "FREE-B", "referral")
    host = pg_engine.sqlalchemy_engine.connect()
    done = threading.Event()
    took: list[float] = []
    try:
        host.begin()
        pg_engine.fire("HOLD-A", "accept_referral", actor=TM, connection=host)

        def other() -> None:
            started = time.monotonic()
            pg_engine.fire("FREE-B", "accept_referral", actor=TM)
            took.append(time.monotonic() - started)
            done.set()

        worker = threading.Thread(target=other)
        worker.start()
        finished = done.wait(NOT_DELAYED_SECONDS)
        assert finished, "a fire on case B waited for the host's transaction on case A"
        assert pg_engine.case("FREE-B").stage == "assessment"
        assert pg_engine.case("HOLD-A").stage == "referral", "A is not committed yet"
        host.commit()
        worker.join()
    finally:
        host.close()
    assert took
    assert took[0] < NOT_DELAYED_SECONDS
    assert pg_engine.case("HOLD-A").stage == "assessment"
    assert_gapless(pg_engine)


@pytest.mark.postgres
def test_writers_at_once_give_one_gapless_log(fresh_pg_url: str) -> None:
    """Four writers on distinct cases, overlapping in time, leave a gapless, verified log."""
    engines = [nw.Engine(fresh_pg_url, clock=Clock()) for _ in range(4)]
    engines[0].migrate()
    windows: list[tuple[float, float]] = [(0.0, 0.0)] * len(engines)
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            start.wait()
            began = time.monotonic()
            for number in range(4):
                open_at(engines[index], f"W{index}-{number}", "treatment")
            windows[index] = (began, time.monotonic())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        # They ran at once: every writer started before every other one finished.
        assert max(began for began, _ in windows) < min(ended for _, ended in windows)
        log = assert_gapless(engines[0])
        assert {e.reference for e in log} == {f"W{i}-{n}" for i in range(4) for n in range(4)}
    finally:
        for engine in engines:
            engine.close()
