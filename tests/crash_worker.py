"""The host processes that tests/test_crash.py kills: run as a script, never imported by the engine.

Two modes, each a process a test starts, SIGKILLs at a random moment and starts again on the same
database:

``actions URL SEED ROUND JOURNAL [--steps N]``
    A busy host. It reads where the database stands (its cases, the newest audit instant), starts
    its injected clock there, processes what fell due while it was down, then does a realistic
    random sequence of calls drawn from ``random.Random(f"{SEED}:{ROUND}")``: open cases, record
    facts, fire transitions (mostly allowed ones, some refused), pause and resume, extend
    deadlines, process due alarms, move the clock on. It prints ``ready <clock>`` once, then
    ``doing <n> <action>`` before each call and ``step <n> <outcome>`` after it, and appends
    every event it was told of (after the commit) to JOURNAL, so the test can check that nothing
    acknowledged was lost. It runs until killed, or for N steps when ``--steps`` is given (to
    replay a seed by hand).

``alarms URL LOG --start ISO --end ISO --span SECONDS``
    A deadline worker. After ``ready`` it reads ``go <wall0>`` on stdin; its simulated clock then
    runs from START (at wall time wall0) to END (SPAN seconds later), the same for every worker.
    It calls ``process_due()`` in a loop, printing ``calling`` before each call and ``call <n>``
    after it, and appends one line per call to LOG (its pid, the wall instants the call began and
    ended, the audit seqs it fired); it exits once the clock has reached END and a last call
    found nothing due.

Both modes silence the engine's log (denials are logged as warnings) so that only a traceback
reaches stderr; an unexpected exception ends the process with a non-zero status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import sys
import time
from typing import Any, TextIO

import sqlalchemy as sa

import nim_workflow as nw
from nim_workflow._store._schema import audit_events

PATHWAYS = ("nim-uk-england", "nim-uk-scotland", "nim-us-louisiana")
SITE = {
    "nim-uk-england": "london",
    "nim-uk-scotland": "glasgow",
    "nim-us-louisiana": "jefferson-parish",
}
ROLES = ("social_worker", "clinician", "team_manager", "court_officer", "coordinator")
#: Where the clock of an empty database starts: a Monday morning, away from bank holidays.
T0 = dt.datetime(2027, 1, 4, 9, 0, tzinfo=dt.UTC)
#: How many running cases the host keeps about: fewer, and it opens new ones more often.
RUNNING = 8


class MovingClock:
    """The injected clock of ``actions``: it only moves when the host moves it, and only on."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Host:
    """One run of the busy host: a seeded random walk over the public API."""

    def __init__(self, engine: nw.Engine, clock: MovingClock, rng: random.Random, run: int):
        self.engine = engine
        self.clock = clock
        self.rng = rng
        self.run = run
        self.references = [case.reference for case in engine.cases(open_only=False)]
        self.opened_here = 0

    # -- choosing -----------------------------------------------------------------------------

    def actor(self, allowed: frozenset[str] | set[str]) -> nw.Actor:
        """Mostly someone allowed to do it; sometimes anyone (a refusal then follows)."""
        if allowed and self.rng.random() < 0.85:
            role = self.rng.choice(sorted(allowed))
        else:
            role = self.rng.choice(ROLES)
        return nw.Actor(f"{role}-{self.rng.randint(1, 3)}", roles={role})

    def fact_value(self, spec: Any, *, needed: bool = False) -> Any:
        """A value of the fact's type: true for a needed flag, a date in the last few weeks."""
        if spec.type == "bool":
            return True if needed else self.rng.random() < 0.9
        if spec.type == "date":
            today = self.clock.now.date()
            return today - dt.timedelta(days=self.rng.randint(0, 40))
        return self.rng.choice(spec.values)

    def pick_case(self, *, paused: bool | None = None) -> str:
        """Mostly an open case (paused or not, if asked); now and then a closed or unknown one."""
        if not self.references or self.rng.random() < 0.03:
            return f"NONE-{self.rng.randint(1, 5)}"
        running = [
            case.reference
            for case in self.engine.cases()
            if paused is None or case.paused == paused
        ]
        if running and self.rng.random() < 0.9:
            return self.rng.choice(running)
        return self.rng.choice(self.references)

    # -- acting -------------------------------------------------------------------------------

    def step(self, number: int) -> str:
        """Make one call (or move the clock); return its name. Library refusals are expected.

        The call is announced before it is made, so a test that kills the process knows which
        call it interrupted.
        """
        weights = {
            "advance": 20,
            "process_due": 10,
            "open": 12 if len(self.engine.cases()) < RUNNING else 1,
            "record": 15,
            "fire": 27,
            "pause_or_resume": 10,
            "extend": 10,
        }
        action = self.rng.choices(list(weights), weights=list(weights.values()))[0]
        say(f"doing {number} {action}")
        try:
            getattr(self, f"do_{action}")()
        except nw.NimWorkflowError as refused:
            return f"{action}:{type(refused).__name__}"
        return action

    def do_advance(self) -> None:
        unit = self.rng.choices(["minutes", "hours", "days"], weights=[4, 4, 2])[0]
        amount = {"minutes": 120, "hours": 36, "days": 21}[unit]
        self.clock.now += dt.timedelta(**{unit: self.rng.randint(1, amount)})

    def do_process_due(self) -> None:
        self.engine.process_due()

    def do_open(self) -> None:
        pathway_id = self.rng.choice(PATHWAYS)
        pathway = self.engine.pathway(pathway_id)
        if self.references and self.rng.random() < 0.05:
            reference = self.rng.choice(self.references)  # CaseExists
        else:
            reference = f"R{self.run:02}-{self.opened_here:03}"
            self.opened_here += 1
        facts = {}
        dated = [spec for spec in pathway.facts.values() if spec.type == "date"]
        if dated and self.rng.random() < 0.5:
            spec = self.rng.choice(dated)
            facts[spec.name] = self.fact_value(spec)
        self.engine.open_case(
            reference,
            pathway=pathway_id,
            site=SITE[pathway_id],
            actor=self.actor(pathway.roles_for("open_case")),
            facts=facts or None,
        )
        if reference not in self.references:
            self.references.append(reference)

    def _case(self, *, paused: bool | None = None) -> tuple[nw.Case, nw.Pathway]:
        case = self.engine.case(self.pick_case(paused=paused))
        return case, self.engine.pathway(case.pathway_id, case.pathway_version)

    def do_record(self) -> None:
        case, pathway = self._case()
        specs = self.rng.sample(list(pathway.facts.values()), k=self.rng.randint(1, 2))
        facts = {spec.name: self.fact_value(spec) for spec in specs}
        self.engine.record(case.reference, facts, actor=self.actor(pathway.roles_for("record")))

    def do_fire(self) -> None:
        case, pathway = self._case(paused=self.rng.random() < 0.1)
        options = pathway.transitions_from(case.stage)
        if options and self.rng.random() < 0.85:
            # Withdrawing or declining ends a case early: rarer than moving it on.
            weights = [1 if t.outcome is not None else 6 for t in options]
            transition = self.rng.choices(options, weights=weights)[0]
        else:
            trigger = self.rng.choice(pathway.triggers())
            transition = next(t for t in pathway.transitions if t.trigger == trigger)
        facts = {}
        if self.rng.random() < 0.8:
            for name in (*transition.requires, transition.outcome_fact):
                if name is not None:
                    facts[name] = self.fact_value(pathway.facts[name], needed=True)
        reason = None
        if transition.reason_required and self.rng.random() < 0.9:
            reason = "the family moved out of the area"
        self.engine.fire(
            case.reference,
            transition.trigger,
            actor=self.actor(transition.roles),
            reason=reason,
            facts=facts or None,
        )

    def do_pause_or_resume(self) -> None:
        # Resume more often than pause, so that cases are not left paused for good.
        case, pathway = self._case(paused=self.rng.random() < 0.6)
        if case.paused:
            self.engine.resume(case.reference, actor=self.actor(pathway.roles_for("resume")))
        else:
            reason = "the child is in hospital" if self.rng.random() < 0.9 else ""
            self.engine.pause(
                case.reference, actor=self.actor(pathway.roles_for("pause")), reason=reason
            )

    def do_extend(self) -> None:
        case, pathway = self._case()
        extendable = [
            d
            for d in self.engine.deadlines(case.reference)
            if d.status == "open" and pathway.rule(d.name).extension is not None
        ]
        if not extendable:
            return
        chosen = self.rng.choice(extendable)
        extension = pathway.rule(chosen.name).extension
        assert extension is not None
        self.engine.extend_deadline(
            case.reference,
            chosen.name,
            actor=self.actor(extension.roles),
            reason="the court granted more time",
        )


def newest_instant(engine: nw.Engine) -> dt.datetime | None:
    """The latest ``at`` in the audit log (read through the typed column, so always aware)."""
    with engine.sqlalchemy_engine.connect() as conn:
        value: dt.datetime | None = conn.execute(
            sa.select(audit_events.c.at).order_by(audit_events.c.at.desc()).limit(1)
        ).scalar()
    return value


def say(line: str) -> None:
    """Tell the parent test how far this process got (one line, flushed at once)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def alarm_key(reference: str, kind: str, detail: Any) -> str:
    """What identifies one alarm's firing, whether or not its entry has a seq yet."""
    return "|".join(
        [
            reference,
            kind,
            str(detail["deadline"]),
            str(detail["occurrence"]),
            detail["alarm_due_at"],
        ]
    )


def run_actions(args: argparse.Namespace) -> int:
    rng = random.Random(f"{args.seed}:{args.round}")
    clock = MovingClock(T0)
    engine = nw.Engine(args.url, clock=clock)
    journal: TextIO = open(args.journal, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def remember(event: nw.Event) -> None:
        # Written after the commit: every line names an event the database must still hold.
        # On PostgreSQL an event may be published before it is sequenced (seq None): the
        # instant then identifies it with its kind and case.
        at = event.at.astimezone(dt.UTC).isoformat()
        line = {"seq": event.seq, "kind": event.kind, "reference": event.reference, "at": at}
        journal.write(json.dumps(line) + "\n")

    engine.subscribe(remember)
    newest = newest_instant(engine)
    # A restart comes some hours or days after the crash: what fell due meanwhile is caught up.
    start = T0 if newest is None else newest + dt.timedelta(hours=rng.randint(1, 96))
    clock.now = start
    host = Host(engine, clock, rng, args.round)
    say(f"ready {start.isoformat()}")
    say("doing 0 process_due")
    engine.process_due()
    say("step 0 process_due")
    steps = 0
    while args.steps is None or steps < args.steps:
        steps += 1
        say(f"step {steps} {host.step(steps)}")
    engine.close()
    journal.close()
    return 0


def run_alarms(args: argparse.Namespace) -> int:
    start = dt.datetime.fromisoformat(args.start)
    end = dt.datetime.fromisoformat(args.end)
    speed = (end - start) / args.span
    wall0 = 0.0

    def now() -> dt.datetime:
        return min(end, start + speed * (time.time() - wall0))

    engine = nw.Engine(args.url, clock=now)
    log: TextIO = open(args.log, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
    say("ready")
    command = sys.stdin.readline().split()
    if command[:1] != ["go"]:
        return 2
    wall0 = float(command[1])
    while True:
        reached_end = now() >= end
        say("calling")
        began = time.time()
        fired = engine.process_due()
        ended = time.time()
        seqs = [alarm_key(event.reference, event.kind, event.detail) for event in fired]
        log.write(
            json.dumps({"pid": os.getpid(), "began": began, "ended": ended, "seqs": seqs}) + "\n"
        )
        say(f"call {len(seqs)}")
        if reached_end and not fired:
            break
        if not fired:
            # A real worker would wait for the next due instant; nap rather than spin.
            time.sleep(0.01)
    engine.close()
    log.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    actions = modes.add_parser("actions")
    actions.add_argument("url")
    actions.add_argument("seed", type=int)
    actions.add_argument("round", type=int)
    actions.add_argument("journal")
    actions.add_argument("--steps", type=int, default=None)
    alarms = modes.add_parser("alarms")
    alarms.add_argument("url")
    alarms.add_argument("log")
    alarms.add_argument("--start", required=True)
    alarms.add_argument("--end", required=True)
    alarms.add_argument("--span", type=float, required=True)
    args = parser.parse_args(argv)
    # Denials are logged as warnings; a handler here keeps them off stderr (tracebacks only).
    logging.getLogger("nim_workflow").addHandler(logging.NullHandler())
    return run_actions(args) if args.mode == "actions" else run_alarms(args)


if __name__ == "__main__":
    sys.exit(main())
