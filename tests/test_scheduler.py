"""The alarm clock: APScheduler wakes the processor, and the database stays the only record."""

from __future__ import annotations

import datetime as dt
import threading

import sqlalchemy as sa

import nim_workflow as nw
from nim_workflow._scheduler import DeadlineScheduler
from nim_workflow._store._schema import alarms

SW = nw.Actor("sw-1", roles={"social_worker"})


def _engine(db_url: str) -> nw.Engine:
    engine = nw.Engine(db_url)
    engine.migrate()
    return engine


def pending_alarm_times(engine: nw.Engine) -> list[dt.datetime]:
    """Every pending alarm's time, read straight from the table (not through next_due_at)."""
    with engine.sqlalchemy_engine.connect() as conn:
        return [
            row.due_at
            for row in conn.execute(sa.select(alarms.c.due_at).where(alarms.c.status == "pending"))
        ]


def _wait_for_first_run(scheduler: DeadlineScheduler) -> None:
    """Block (on an Event, not a sleep) until the start-up run has finished, or 10 s pass."""
    waiter = threading.Event()
    for _ in range(200):
        if scheduler.runs >= 1:
            return
        waiter.wait(0.05)
    raise AssertionError("the scheduler's start-up run did not finish")


def test_start_catches_up_on_what_fell_due_while_nothing_ran(db_url: str) -> None:
    """Deadlines that fell due before any process ran fire once when the scheduler starts."""
    engine = _engine(db_url)
    # Opened three months ago: the referral decision (10 working days) is long overdue.
    opened = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    engine.open_case("LDN-1", pathway="nim-uk-england", site="london", actor=SW, at=opened)
    breached = threading.Event()
    engine.subscribe(lambda event: breached.set(), kinds=["breach"])
    engine.start_scheduler(sweep_seconds=3600)
    try:
        assert breached.wait(timeout=20), "the start-up run did not fire the overdue breach"
    finally:
        engine.stop_scheduler()
    actions = [event.action for event in engine.audit("LDN-1")]
    assert actions.count("breach") == 1
    assert actions.count("escalation") == 1
    # A second start (a restart) finds nothing left to fire.
    engine.start_scheduler(sweep_seconds=3600)
    engine.stop_scheduler()
    assert [event.action for event in engine.audit("LDN-1")].count("breach") == 1
    engine.close()


def test_wake_job_is_armed_at_the_next_pending_alarm(db_url: str) -> None:
    """After a run, the one-shot wake job is set to the next alarm the database holds."""
    engine = _engine(db_url)
    engine.open_case("LDN-2", pathway="nim-uk-england", site="london", actor=SW)
    scheduler = DeadlineScheduler(engine, sweep_seconds=3600)
    scheduler.start()
    try:
        _wait_for_first_run(scheduler)
        wake = scheduler._scheduler.get_job("nimwf-wake")
        assert wake is not None
        pending = pending_alarm_times(engine)
        assert len(set(pending)) > 1, "the case should hold alarms at several times"
        assert wake.next_run_time == min(pending)
    finally:
        scheduler.stop()
        engine.close()


def test_no_wake_job_when_nothing_is_pending(db_url: str) -> None:
    """With no pending alarm the scheduler arms nothing but the sweep."""
    engine = _engine(db_url)
    scheduler = DeadlineScheduler(engine, sweep_seconds=3600)
    scheduler.start()
    try:
        _wait_for_first_run(scheduler)
        assert engine.next_due_at() is None
        assert scheduler._scheduler.get_job("nimwf-wake") is None
        assert scheduler._scheduler.get_job("nimwf-sweep") is not None
    finally:
        scheduler.stop()
        engine.close()


def test_a_new_case_rearms_the_wake_job(db_url: str) -> None:
    """A change this engine commits re-arms the wake job at its earlier alarm."""
    engine = _engine(db_url)
    scheduler = DeadlineScheduler(engine, sweep_seconds=3600)
    scheduler.start()
    try:
        _wait_for_first_run(scheduler)
        assert scheduler._scheduler.get_job("nimwf-wake") is None
        engine.open_case("LDN-3", pathway="nim-uk-england", site="london", actor=SW)
        wake = scheduler._scheduler.get_job("nimwf-wake")
        assert wake is not None
        pending = pending_alarm_times(engine)
        assert len(set(pending)) > 1, "the case should hold alarms at several times"
        assert wake.next_run_time == min(pending)
    finally:
        scheduler.stop()
        engine.close()


def test_stop_scheduler_is_safe_when_not_started(db_url: str) -> None:
    """Stopping a scheduler that never started does nothing, and the engine goes on working."""
    engine = _engine(db_url)
    engine.stop_scheduler()
    engine.open_case("LDN-4", pathway="nim-uk-england", site="london", actor=SW)
    assert engine.process_due() == []
    assert engine.next_due_at() == min(pending_alarm_times(engine))
    engine.stop_scheduler()
    engine.close()


class _Processor:
    """A deadline processor that is not an Engine: the scheduler needs only its protocol."""

    def __init__(self, wake_at: dt.datetime | None) -> None:
        self.wake_at = wake_at
        self.processed = threading.Event()
        self.listeners: list[object] = []

    def process_due(self) -> list[nw.Event]:
        self.processed.set()
        return []

    def next_due_at(self) -> dt.datetime | None:
        return self.wake_at

    def subscribe(self, callback: object, kinds: object = None) -> object:
        self.listeners.append(callback)

        def unsubscribe() -> None:
            self.listeners.remove(callback)

        return unsubscribe


def test_the_scheduler_drives_any_deadline_processor() -> None:
    wake_at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    processor = _Processor(wake_at)
    scheduler = DeadlineScheduler(processor, sweep_seconds=3600)
    scheduler.start()
    try:
        assert processor.processed.wait(10), "the first run never came"
        assert len(processor.listeners) == 1
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
        while scheduler._scheduler.get_job("nimwf-wake") is None:
            assert dt.datetime.now(dt.UTC) < deadline, "the wake job was never armed"
            threading.Event().wait(0.01)
        assert scheduler._scheduler.get_job("nimwf-wake").next_run_time == wake_at
    finally:
        scheduler.stop()
    assert processor.listeners == []
