"""The alarm clock: APScheduler wakes the deadline processor when the next alarm falls due.

The database is the only record of what is due. The scheduler holds at most one one-shot "wake"
job, re-armed from ``Engine.next_due_at()`` after every run and after every change this engine
commits, plus a periodic sweep as a safety net for changes made by other processes. It runs the
processor once at start, so whatever fell due while no process was running fires then (APScheduler
3.x drops one-shot jobs whose time passed while the process was down; nothing here relies on its
job store).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from nim_workflow._values import Event


class DeadlineProcessor(Protocol):
    """What the scheduler calls: all it knows of the engine (which satisfies this)."""

    def process_due(self) -> Sequence[Event]:
        """Fire everything due now; each alarm fires once, however many processes call."""
        ...

    def next_due_at(self) -> dt.datetime | None:
        """When the next pending alarm falls due, or ``None``."""
        ...

    def subscribe(
        self, callback: Callable[[Event], object], kinds: Iterable[Any] | None = None
    ) -> Callable[[], None]:
        """Hear of each committed change; returns the function that stops it."""
        ...


_WAKE = "nimwf-wake"
_SWEEP = "nimwf-sweep"


class DeadlineScheduler:
    """Wakes ``processor.process_due()`` in a background thread of this process."""

    def __init__(
        self, processor: DeadlineProcessor, *, sweep_seconds: float = 60.0, logger: Any = None
    ) -> None:
        if sweep_seconds <= 0:
            raise ValueError("sweep_seconds must be positive")
        self._engine = processor
        self._log = logger if logger is not None else logging.getLogger("nim_workflow")
        self._sweep_seconds = sweep_seconds
        self._scheduler = BackgroundScheduler(
            timezone=dt.UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._unsubscribe: Any = None
        self._run_lock = threading.Lock()
        # Re-arming touches the scheduler's job store, whose lock shutdown() holds while it
        # waits for running jobs: a run that re-armed during shutdown would never finish.
        self._arm_lock = threading.Lock()
        self._stopping = False
        self.runs = 0
        self.last_error: BaseException | None = None

    def start(self) -> None:
        """Start the background thread, run the processor at once, then keep it woken."""
        self._scheduler.add_job(
            self._run,
            "interval",
            seconds=self._sweep_seconds,
            id=_SWEEP,
            next_run_time=dt.datetime.now(dt.UTC),
        )
        self._scheduler.start()
        self._unsubscribe = self._engine.subscribe(self._on_event)

    def stop(self) -> None:
        """Stop the thread, waiting for a run in progress to finish."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        with self._arm_lock:
            self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def _on_event(self, event: Event) -> None:
        # A change this engine committed may have created an earlier alarm than the one armed.
        if event.kind not in ("reminder", "breach", "escalation"):
            self._arm()

    def _run(self) -> None:
        with self._run_lock:
            try:
                self._engine.process_due()
                self.last_error = None
            except Exception as exc:
                self.last_error = exc
                self._log.exception("nimwf.processor_failed")
            try:
                self._arm()
            finally:
                # Counted once the wake job is armed too: a run is done when the next is set.
                self.runs += 1

    def _arm(self) -> None:
        with self._arm_lock:
            if self._stopping or not self._scheduler.running:
                return
            self._arm_locked()

    def _arm_locked(self) -> None:
        try:
            wake_at = self._engine.next_due_at()
        except Exception:
            return
        if wake_at is None or wake_at <= dt.datetime.now(dt.UTC):
            # Nothing pending, or only what a run just could not fire (an engine clock behind
            # the wall clock): leave it to the sweep rather than spin.
            job = self._scheduler.get_job(_WAKE)
            if job is not None:
                job.remove()
            return
        self._scheduler.add_job(
            self._run, "date", run_date=wake_at, id=_WAKE, replace_existing=True
        )
