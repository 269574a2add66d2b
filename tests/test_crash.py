"""Kill the host at random moments: nothing committed is lost, nothing is half-written.

Two runs, on SQLite and on PostgreSQL, each with a short version here and a long one marked
``soak`` (``make soak``):

* **A busy host, killed and restarted.** ``tests/crash_worker.py actions`` opens cases and fires
  a seeded random sequence of calls with a moving injected clock; the test SIGKILLs it a seeded
  few milliseconds after it announces a database call at or after a seeded step (so mostly
  inside that call's transaction), checks the database, and starts it again on the same
  database. After every kill: the audit chain
  verifies, every event the host was told of (after its commit) is still there, each case's
  version, stage history, pauses, facts and deadline extensions agree with its audit events, and
  every fired alarm has exactly one audit event. At the end, after one more ``process_due``,
  nothing that fell due is left pending.
* **Deadline workers, killed and restarted.** Four ``crash_worker.py alarms`` processes call
  ``process_due()`` in a loop while a shared simulated clock sweeps a year of a cohort's alarms;
  the test SIGKILLs seeded workers at seeded moments and starts replacements. Every alarm that
  fell due fires exactly once, and the workers' own logs show that more than one of them fired
  alarms while others were firing too.

The seeds are fixed and every assertion message carries them. A kill lands at a moment that
depends on timing, so a seed fixes the calls made and the step a kill follows, not the exact
instruction it interrupts. ``python tests/crash_worker.py actions URL SEED ROUND JOURNAL --steps
N`` replays a run's calls by hand on a database in the state that run began from.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import sqlalchemy as sa
from crash_worker import T0 as HOST_T0
from crash_worker import alarm_key, newest_instant
from deadline_helpers import (
    ENGLAND,
    LOUISIANA,
    SCOTLAND,
    FakeClock,
    alarm_statuses,
    case_in_stage,
    migrated_engine,
    open_case,
    utc,
)

import nim_workflow as nw
from nim_workflow._store._schema import alarms, cases, deadlines

WORKER = Path(__file__).with_name("crash_worker.py")

#: Audit actions that change no case row, so do not bump its version.
NOT_CASE_CHANGES = frozenset({"denied", "reminder", "breach", "escalation", "lapsed"})
ALARM_ACTIONS = frozenset({"reminder", "breach", "escalation"})

CRASH_SEED = 90210
WORKERS_SEED = 4242


# -- the child processes --------------------------------------------------------------------------


class Child:
    """A worker script run as a child process, whose stdout lines the test reads as they come."""

    def __init__(self, args: list[str], stderr: Path, *, stdin: bool = False) -> None:
        self.stderr_path = stderr
        self._stderr = stderr.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        assert self.process.stdout is not None
        self.stdout: IO[bytes] = self.process.stdout
        os.set_blocking(self.stdout.fileno(), False)
        self._partial = b""
        self.lines: list[str] = []
        self.killed = False

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def take(self) -> list[str]:
        """Whatever complete lines the child has written since the last call."""
        try:
            self._partial += os.read(self.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return []
        *complete, self._partial = self._partial.split(b"\n")
        new = [line.decode() for line in complete]
        self.lines.extend(new)
        return new

    def send(self, line: str) -> None:
        """Write one line to the child's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def kill(self) -> str:
        """SIGKILL the child, wait for it to be gone and return the last line it wrote."""
        self.killed = True
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        os.set_blocking(self.stdout.fileno(), True)
        while chunk := os.read(self.stdout.fileno(), 1 << 16):
            self._partial += chunk
        self.take()
        return self.lines[-1] if self.lines else ""

    def close(self) -> None:
        """Make sure the child is gone and every pipe and file is closed."""
        if self.process.poll() is None:
            self.kill()
        self.process.wait(timeout=30)
        self.stdout.close()
        if self.process.stdin is not None:
            self.process.stdin.close()
        self._stderr.close()

    def errors(self) -> str:
        """The child's stderr (a traceback, if it crashed), for an assertion message."""
        self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")[-4000:]


def wait_for_lines(until: float, selector: selectors.BaseSelector) -> list[tuple[Child, str]]:
    """Lines the children write before ``until`` (a ``time.monotonic()`` instant), as they come."""
    remaining = until - time.monotonic()
    if remaining <= 0:
        return []
    got: list[tuple[Child, str]] = []
    for key, _ in selector.select(timeout=remaining):
        child: Child = key.data
        got.extend((child, line) for line in child.take())
        if child.process.poll() is not None:
            # At end of file the descriptor stays readable: stop watching it.
            got.extend((child, line) for line in child.take())
            selector.unregister(child.stdout)
    return got


# -- checking the database ------------------------------------------------------------------------


@dataclass
class Figures:
    """What one run did, for the assertion messages and docs/reliability.md."""

    kills: int = 0
    steps: list[int] = field(default_factory=list)
    #: The call each kill interrupted ("between calls" when it came between two).
    interrupted: Counter[str] = field(default_factory=Counter)
    events: int = 0
    cases: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    alarms: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        return (
            f"{self.kills} kills after {self.steps} steps, interrupting "
            f"{dict(self.interrupted)}; {self.cases} cases, {self.events} "
            f"audit events {dict(self.actions)}; alarm rows {dict(self.alarms)}"
        )


def _instant(value: Any) -> dt.datetime:
    """A datetime from the database or an audit detail, as an aware UTC instant."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _json_facts(facts: Any) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in facts.items()}


def check_case(engine: nw.Engine, case: nw.Case, own: list[nw.AuditEvent], where: str) -> None:
    """One case's row, history, pauses, facts and deadlines agree with its audit events."""
    ref = case.reference
    changes = [e for e in own if e.action not in NOT_CASE_CHANGES]
    assert changes, f"{where}: case {ref} has no audit event"
    assert changes[0].action == "opened", f"{where}: {ref} starts with {changes[0].action}"
    # open_case writes version 1 with its "opened" event; every later change adds one.
    assert case.version == len(changes), (
        f"{where}: {ref} is at version {case.version} after {len(changes)} changes "
        f"{[e.action for e in changes]}"
    )

    transitions = [e for e in own if e.action == "transition"]
    history = engine.history(ref)
    assert len(history) == 1 + len(transitions), f"{where}: {ref} {history} vs {transitions}"
    first = history[0]
    assert (first.stage, first.trigger, first.entered_at) == (
        changes[0].to_stage,
        None,
        changes[0].at,
    ), f"{where}: {ref} opened {changes[0]}, history starts {first}"
    for n, event in enumerate(transitions):
        left, entered = history[n], history[n + 1]
        assert (left.stage, left.left_at) == (event.from_stage, event.at), (
            f"{where}: {ref} left {left} but the log says {event}"
        )
        assert (entered.stage, entered.trigger, entered.entered_at) == (
            event.to_stage,
            event.trigger,
            event.at,
        ), f"{where}: {ref} entered {entered} but the log says {event}"
    assert history[-1].left_at is None, f"{where}: {ref} {history[-1]}"
    assert (case.stage, case.stage_entered_at) == (history[-1].stage, history[-1].entered_at)
    pathway = engine.pathway(case.pathway_id, case.pathway_version)
    if case.stage in pathway.final_stages:
        assert case.closed_at == transitions[-1].at, f"{where}: {ref} closed_at {case.closed_at}"
    else:
        assert case.closed_at is None, f"{where}: {ref} is open but has closed_at"

    switches = [e for e in own if e.action in ("paused", "resumed")]
    assert [e.action for e in switches] == ["paused", "resumed"] * (len(switches) // 2) + (
        ["paused"] if len(switches) % 2 else []
    ), f"{where}: {ref} pauses out of order {[e.action for e in switches]}"
    assert case.paused == (len(switches) % 2 == 1), f"{where}: {ref} paused={case.paused}"
    expected_pauses = [
        (pause.at, resume.at if resume is not None else None)
        for pause, resume in itertools.zip_longest(switches[::2], switches[1::2])
    ]
    assert engine.pauses(ref) == expected_pauses, f"{where}: {ref} pauses"

    facts: dict[str, Any] = {}
    for event in changes:
        facts.update(event.detail.get("facts") or {})
    assert _json_facts(case.facts) == facts, f"{where}: {ref} facts differ from the log"

    extended = Counter(
        (e.detail["deadline"], e.detail["occurrence"]) for e in own if e.action == "extended"
    )
    # Re-recording a clock's date fact replaces its row under the same occurrence, so the
    # extensions of one (name, occurrence) may be spread over several rows.
    on_rows: Counter[tuple[str, int]] = Counter()
    for deadline in engine.deadlines(ref):
        on_rows[(deadline.name, deadline.occurrence)] += deadline.extensions
        if deadline.status == "open":
            assert case.closed_at is None, f"{where}: closed {ref} has open {deadline}"
            assert deadline.stage in (None, case.stage), f"{where}: {ref} {deadline}"
    assert +on_rows == extended, f"{where}: {ref} extensions {on_rows} but the log {extended}"


def check_alarms(
    engine: nw.Engine, events: list[nw.AuditEvent], where: str, *, settled_by: dt.datetime | None
) -> Counter[str]:
    """Each fired alarm row has exactly one audit event and each alarm event one row.

    With ``settled_by``, also: no alarm due by then is still pending on a running deadline of a
    case that is not paused. Returns the alarm rows counted by status.
    """
    query = (
        sa.select(
            alarms.c.reference,
            alarms.c.kind,
            alarms.c.label,
            alarms.c.due_at,
            alarms.c.status,
            alarms.c.fired_at,
            deadlines.c.rule,
            deadlines.c.occurrence,
            deadlines.c.status.label("deadline_status"),
            cases.c.paused_at,
        )
        .join(deadlines, deadlines.c.id == alarms.c.deadline_id)
        .join(cases, cases.c.reference == alarms.c.reference)
    )
    with engine.sqlalchemy_engine.connect() as conn:
        rows = conn.execute(query).all()
    fired_rows = Counter(
        (r.reference, r.rule, r.occurrence, r.kind, r.label, _instant(r.due_at), r.fired_at)
        for r in rows
        if r.status == "fired"
    )
    fired_events = Counter(
        (
            e.reference,
            e.detail["deadline"],
            e.detail["occurrence"],
            e.action,
            e.detail["label"],
            _instant(e.detail["alarm_due_at"]),
            e.at,
        )
        for e in events
        if e.action in ALARM_ACTIONS
    )
    assert fired_rows == fired_events, (
        f"{where}: fired alarm rows without their one event: {fired_rows - fired_events}; "
        f"events without their row: {fired_events - fired_rows}"
    )
    twice = {key: n for key, n in fired_events.items() if n > 1}
    assert not twice, f"{where}: alarms fired more than once: {twice}"
    early = [key for key in fired_rows if key[6] < key[5]]
    assert not early, f"{where}: alarms fired before they fell due: {early}"
    stranded = [r for r in rows if r.status == "pending" and r.deadline_status != "open"]
    assert not stranded, f"{where}: pending alarms of settled deadlines: {stranded}"
    if settled_by is not None:
        left = [
            r
            for r in rows
            if r.status == "pending" and r.paused_at is None and _instant(r.due_at) <= settled_by
        ]
        assert not left, f"{where}: due by {settled_by} but still pending: {left}"
    return Counter(r.status for r in rows)


def check_database(
    engine: nw.Engine, where: str, figures: Figures, *, settled_by: dt.datetime | None = None
) -> list[nw.AuditEvent]:
    """The whole database agrees with its audit log; returns the log."""
    report = engine.verify_audit(deep=True)
    assert report.ok, f"{where}: audit chain broken: {report.problems[:5]}"
    events = engine.audit()
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), f"{where}: gaps in seq"
    by_case: defaultdict[str, list[nw.AuditEvent]] = defaultdict(list)
    for event in events:
        by_case[event.reference].append(event)
    all_cases = {case.reference: case for case in engine.cases(open_only=False)}
    for reference, case in all_cases.items():
        check_case(engine, case, by_case[reference], where)
    for reference in by_case.keys() - all_cases.keys():
        # Refusals are audited under the reference asked for, even one never opened.
        actions = {e.action for e in by_case[reference]}
        assert actions == {"denied"}, f"{where}: {reference} is no case but has {actions}"
    figures.alarms = check_alarms(engine, events, where, settled_by=settled_by)
    figures.events = len(events)
    figures.cases = len(all_cases)
    figures.actions = Counter(e.action for e in events)
    return events


def check_journal(events: list[nw.AuditEvent], journal: Path, where: str) -> int:
    """Every event the host heard of after its commit is in the log as it was told."""
    logged = {e.seq: (e.action, e.reference) for e in events}
    by_instant = {(e.action, e.reference, e.at.astimezone(dt.UTC).isoformat()) for e in events}
    told = 0
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # the line being written when the kill came
            continue
        told += 1
        if entry["seq"] is None:
            assert (entry["kind"], entry["reference"], entry["at"]) in by_instant, (
                f"{where}: acknowledged event {entry} lost"
            )
            continue
        assert logged.get(entry["seq"]) == (entry["kind"], entry["reference"]), (
            f"{where}: acknowledged event {entry} lost (the log has {logged.get(entry['seq'])})"
        )
    return told


# -- 1. a busy host, killed and restarted ---------------------------------------------------------


def kill_a_host(
    url: str, seed: int, run: int, rng: random.Random, tmp_path: Path
) -> tuple[int, str]:
    """Start the host for run ``run`` and SIGKILL it inside a call, after a seeded step.

    The kill comes a seeded few milliseconds after the host announces the first database call
    at or after step ``kill_after``. Returns the number of steps it completed and the call the
    kill interrupted ("between calls" if that call had already returned).
    """
    kill_after = rng.randint(0, 600)
    delay = rng.uniform(0, 0.008)
    where = f"seed={seed} run={run} kill at step {kill_after} + {delay * 1000:.1f} ms"
    child = Child(
        ["actions", url, str(seed), str(run), str(tmp_path / "journal.jsonl")],
        tmp_path / f"host-{run}.stderr",
    )
    selector = selectors.DefaultSelector()
    selector.register(child.stdout, selectors.EVENT_READ, child)
    deadline = time.monotonic() + 120
    try:
        while True:
            lines = wait_for_lines(deadline, selector)
            assert child.process.poll() is None, (
                f"{where}: the host ended by itself ({child.process.returncode}):\n{child.errors()}"
            )
            assert time.monotonic() < deadline, f"{where}: the host stalled: {child.lines[-3:]}"
            last = lines[-1][1].split() if lines else []
            if last[:1] == ["doing"] and int(last[1]) >= kill_after and last[2] != "advance":
                break
        time.sleep(delay)  # a seeded moment inside the call (or just after it)
        last = child.kill()
        assert child.process.returncode == -signal.SIGKILL, where
        done = [int(line.split()[1]) for line in child.lines if line.startswith("step ")]
        words = last.split()
        in_flight = words[2] if words[:1] == ["doing"] else "between calls"
        if in_flight == "advance":  # moving the clock makes no call
            in_flight = "between calls"
        return max(done, default=-1), in_flight
    finally:
        selector.close()
        child.close()


def newest_audited(url: str) -> dt.datetime:
    """The newest instant in the audit log: where the host's clock stood when it was killed."""
    with nw.Engine(url) as engine:
        return newest_instant(engine) or HOST_T0


def crash_run(url: str, seed: int, rounds: int, tmp_path: Path) -> Figures:
    """Kill and restart the host ``rounds`` times, checking the database after each kill."""
    with nw.Engine(url) as setup:
        setup.migrate()
    rng = random.Random(seed)
    figures = Figures()
    journal = tmp_path / "journal.jsonl"
    journal.touch()
    for run in range(rounds):
        steps, in_flight = kill_a_host(url, seed, run, rng, tmp_path)
        figures.steps.append(steps)
        figures.interrupted[in_flight] += 1
        figures.kills += 1
        where = f"seed={seed} after kill {run + 1} (at step {figures.steps[-1]})"
        with nw.Engine(url, clock=FakeClock(newest_audited(url))) as engine:
            events = check_database(engine, where, figures)
            check_journal(events, journal, where)
    # One more start, as after the last crash: whatever fell due by now fires, once.
    where = f"seed={seed} after the final restart"
    final = newest_audited(url) + dt.timedelta(hours=1)
    with nw.Engine(url, clock=FakeClock(final)) as engine:
        engine.process_due()
        events = check_database(engine, where, figures, settled_by=final)
        check_journal(events, journal, where)
    assert figures.actions["transition"] > 0, f"seed={seed}: nothing happened: {figures}"
    return figures


def test_a_killed_host_loses_nothing_and_leaves_nothing_half_written(
    db_url: str, tmp_path: Path
) -> None:
    """SIGKILLed mid-call three times, the host's database still agrees with its audit log."""
    figures = crash_run(db_url, CRASH_SEED, 3, tmp_path)
    print(f"\ncrash run on {db_url.split(':')[0]}: {figures}")


@pytest.mark.soak
def test_twenty_kills_lose_nothing_and_leave_nothing_half_written(
    db_url: str, tmp_path: Path
) -> None:
    """SIGKILLed mid-call twenty times, the host's database still agrees with its audit log."""
    figures = crash_run(db_url, CRASH_SEED + 1, 20, tmp_path)
    print(f"\ncrash soak on {db_url.split(':')[0]}: {figures}")


# -- 2. deadline workers, killed and restarted ----------------------------------------------------

SWEEP_START = utc(2027, 1, 4)
SWEEP_END = utc(2027, 12, 31, 12)


def open_cohort(url: str, count: int) -> None:
    """``count`` cases over the three pathways whose alarms fall due all through 2027."""
    clock = FakeClock(SWEEP_START)
    with migrated_engine(url, clock) as engine:
        for n in range(count):
            opened = SWEEP_START + dt.timedelta(days=n % 60, hours=10)
            clock.set(opened)
            match n % 4:
                case 0:
                    case_in_stage(engine, f"LDN-T{n:03}", ENGLAND, "treatment", opened)
                case 1:
                    placed = {"placed_on": opened.date()}
                    open_case(engine, f"GLA-{n:03}", SCOTLAND, opened, facts=placed)
                case 2:
                    care = {"entered_care_on": opened.date()}
                    open_case(engine, f"NOLA-{n:03}", LOUISIANA, opened, facts=care)
                case _:
                    issued = {"proceedings_issued_on": opened.date()}
                    open_case(engine, f"LDN-{n:03}", ENGLAND, opened, facts=issued)


@dataclass
class Call:
    """One ``process_due`` call of one worker, from its log."""

    pid: int
    began: float
    ended: float
    seqs: list[str]  # the alarms it fired (crash_worker.alarm_key)


def read_calls(log: Path) -> list[Call]:
    """The calls the workers logged (a line cut short by a kill is left out)."""
    calls = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        calls.append(Call(entry["pid"], entry["began"], entry["ended"], entry["seqs"]))
    return calls


def overlapping_firing_calls(calls: list[Call]) -> int:
    """How many pairs of calls by different workers both fired alarms and overlapped in time."""
    firing = sorted((c for c in calls if c.seqs), key=lambda c: c.began)
    pairs = 0
    for n, call in enumerate(firing):
        for other in firing[n + 1 :]:
            if other.began >= call.ended:
                break
            if other.pid != call.pid:
                pairs += 1
    return pairs


def active_windows_overlap(calls: list[Call]) -> bool:
    """Whether two workers' active windows (first to last firing call) overlapped."""
    windows: dict[int, tuple[float, float]] = {}
    for call in calls:
        if call.seqs:
            first, last = windows.get(call.pid, (call.began, call.ended))
            windows[call.pid] = (min(first, call.began), max(last, call.ended))
    return any(a[0] < b[1] and b[0] < a[1] for a, b in itertools.combinations(windows.values(), 2))


def peak_firing_workers(calls: list[Call]) -> int:
    """The most workers inside a call that fired alarms at one moment."""
    edges = sorted(
        edge for c in calls if c.seqs for edge in ((c.began, 1), (c.ended, -1))
    )  # at a tie the -1 sorts first: touching calls do not overlap
    peak = inside = 0
    for _, step in edges:
        inside += step
        peak = max(peak, inside)
    return peak


def workers_run(
    url: str, seed: int, *, cases: int, span: float, kills: int, tmp_path: Path
) -> dict[str, Any]:
    """Four workers sweep the cohort's year in ``span`` seconds while ``kills`` of them die.

    Returns the run's figures; fails unless every alarm due fired exactly once and more than one
    worker fired alarms while another was firing too.
    """
    open_cohort(url, cases)
    with migrated_engine(url, FakeClock(SWEEP_END)) as setup:
        due = alarm_statuses(setup, due_by=SWEEP_END)["pending"]
    rng = random.Random(seed)
    schedule = sorted(
        (rng.uniform(0.05, 0.8) * span, rng.randrange(4), rng.uniform(0, 0.003))
        for _ in range(kills)
    )
    log = tmp_path / "calls.jsonl"
    log.touch()
    args = ["alarms", url, str(log), "--start", SWEEP_START.isoformat()]
    args += ["--end", SWEEP_END.isoformat(), "--span", str(span)]
    spawned = itertools.count()
    selector = selectors.DefaultSelector()
    everyone: list[Child] = []

    def start() -> Child:
        child = Child(args, tmp_path / f"worker-{next(spawned)}.stderr", stdin=True)
        everyone.append(child)
        selector.register(child.stdout, selectors.EVENT_READ, child)
        return child

    where = f"seed={seed}"
    interrupted_calls = 0
    try:
        slots = [start() for _ in range(4)]
        ready: set[int] = set()
        limit = time.monotonic() + 120
        while len(ready) < 4:
            assert time.monotonic() < limit, f"{where}: the workers did not start"
            for child, line in wait_for_lines(limit, selector):
                if line == "ready":
                    ready.add(child.pid)
            for child in slots:
                assert child.process.poll() is None, f"{where}: {child.errors()}"
        wall0 = time.time()
        began = time.monotonic()
        for child in slots:
            child.send(f"go {wall0}")
        for offset, slot, delay in schedule:
            # Read the workers' progress (so their pipes never fill) until the next kill is due,
            # then until the victim starts a call: the kill comes a seeded moment into it.
            victim = slots[slot]
            while time.monotonic() < began + offset:
                wait_for_lines(began + offset, selector)
            while victim.lines[-1:] != ["calling"] and victim.process.poll() is None:
                wait_for_lines(time.monotonic() + 5, selector)
            if victim.process.poll() is not None:
                # On a loaded machine the run may end before a late kill: no harm, no kill.
                assert victim.process.returncode == 0, f"{where}: a worker died:\n{victim.errors()}"
                continue
            time.sleep(delay)
            selector.unregister(victim.stdout)
            interrupted_calls += victim.kill() == "calling"
            slots[slot] = start()
            slots[slot].send(f"go {wall0}")
        limit = time.monotonic() + span + 120
        while any(child.process.poll() is None for child in slots):
            assert time.monotonic() < limit, f"{where}: the workers did not finish"
            wait_for_lines(min(limit, time.monotonic() + 1), selector)
        for child in slots:
            assert child.process.returncode == 0, f"{where}: a worker failed:\n{child.errors()}"
        elapsed = time.monotonic() - began
    finally:
        selector.close()
        for child in everyone:
            child.close()

    killed = {child.pid for child in everyone if child.killed}
    with migrated_engine(url, FakeClock(SWEEP_END)) as check:
        assert check.process_due() == [], f"{where}: alarms were left for a later worker"
        events = check_database(check, where, Figures(), settled_by=SWEEP_END)
        swept = alarm_statuses(check, due_by=SWEEP_END)
    calls = read_calls(log)
    reported = [key for call in calls for key in call.seqs]
    doubled = [key for key, n in Counter(reported).items() if n > 1]
    assert not doubled, f"{where}: alarms reported by two workers: {doubled}"
    alarm_keys = {
        alarm_key(e.reference, e.action, e.detail) for e in events if e.action in ALARM_ACTIONS
    }
    lost = set(reported) - alarm_keys
    assert not lost, f"{where}: alarms a worker fired and reported, then lost: {lost}"
    fired_by: Counter[int] = Counter()
    for call in calls:
        fired_by[call.pid] += len(call.seqs)
    firing = +fired_by
    figures = {
        "alarms_due": due,
        "fired": swept["fired"],
        "lapsed": swept["lapsed"],
        "workers_started": len(everyone),
        "killed": len(killed),
        "kills_inside_a_call": interrupted_calls,
        "killed_workers_that_had_fired": len(killed & set(firing)),
        "firing_workers": len(firing),
        "overlapping_firing_calls": overlapping_firing_calls(calls),
        "peak_workers_firing_at_once": peak_firing_workers(calls),
        "seconds": round(elapsed, 1),
    }
    where = f"{where} {figures}"
    # Every alarm due by the end fired, or lapsed (a reminder caught up after its deadline).
    assert swept["fired"] + swept["lapsed"] == due > 100, where
    assert swept["pending"] == 0, where
    assert 0 < len(killed) <= kills, where
    assert len(firing) >= 2, f"{where}: only {dict(firing)} fired"
    assert active_windows_overlap(calls), f"{where}: the workers took turns, never overlapping"
    if url.startswith("postgresql"):
        # SQLite has one writer at a time; PostgreSQL's SKIP LOCKED claims let workers fire
        # together, so there the calls themselves must overlap.
        assert figures["overlapping_firing_calls"] > 0, f"{where}: no call overlapped another"
    return figures


def test_killed_workers_fire_each_due_alarm_exactly_once(db_url: str, tmp_path: Path) -> None:
    """Four deadline workers, three SIGKILLed and replaced, fire each due alarm exactly once."""
    figures = workers_run(db_url, WORKERS_SEED, cases=80, span=8.0, kills=3, tmp_path=tmp_path)
    print(f"\nworkers on {db_url.split(':')[0]}: {figures}")


@pytest.mark.soak
def test_workers_killed_over_a_long_run_fire_each_due_alarm_exactly_once(
    db_url: str, tmp_path: Path
) -> None:
    """Over a long run with twenty SIGKILLed workers, each due alarm still fires exactly once."""
    figures = workers_run(
        db_url, WORKERS_SEED + 1, cases=600, span=45.0, kills=20, tmp_path=tmp_path
    )
    print(f"\nworkers soak on {db_url.split(':')[0]}: {figures}")
