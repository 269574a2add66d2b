"""The demo: a realistic three-site cohort run through eighteen months of pathway on a fake clock.

:func:`run_demo` creates an embedded SQLite database, migrates it, and plays about eighty cases
(London on ``nim-uk-england``, Glasgow on ``nim-uk-scotland``, Jefferson Parish on
``nim-us-louisiana``) through the eighteen months (:data:`DEMO_DAYS` days) that end on its end
date, today by default, with a simulated clock that moves one day at a time, running the deadline
processor every simulated day so reminders, breaches and escalations fire on the way. Ending today,
the simulation stops at the moment the demo starts, so the command line's clock (the real one)
and the demo's summary see the same day: what the demo reports overdue is what
``nim-workflow overdue`` lists straight after. Every case follows a plan drawn from
``random.Random(seed)`` with the stage durations of the domain brief, so the same seed and end
date always give the same cohort (a past end date, the same run to the event). At the end it
builds the coordinator's summary and, if asked, writes the HTML report.

Cases carry references only (``LDN-2025-0001``; London's newest, the README's example, is
:data:`EXAMPLE_REFERENCE`), never names or birth dates, and the only facts
recorded are the ones the pathways declare. Everyone who acts is put on the staff roster first,
with the roles and site they act in; the person running the demo (the operating-system user) is
its administrator and a coordinator at every site, so the command line works on the demo's
database as them straight away.

The demo never destroys data it did not create. It marks every database it creates as its own
(:func:`_claim`): a SQLite file with ``PRAGMA application_id`` = :data:`DEMO_APPLICATION_ID`,
written into the new file before anything else; any other database (PostgreSQL) by creating the
table :data:`DEMO_MARK_TABLE` in it, which it does only when the database holds no tables at
all. A later run replaces a SQLite file only when it carries that mark, and refuses everything
else at the path (a real case database, any other file, a directory) without writing or deleting
a byte.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
import random
import sqlite3
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from nim_workflow._engine import ROSTER_ROLE, Engine
from nim_workflow._errors import InvalidInput, NimWorkflowError, PermissionDenied
from nim_workflow._pathway._model import Pathway
from nim_workflow._report import Summary, build_report, summarize
from nim_workflow._values import EVENT_KINDS, Actor, Event

__all__ = [
    "DEMO_DAYS",
    "DEMO_END",
    "DEMO_START",
    "EXAMPLE_REFERENCE",
    "DemoCounts",
    "DemoResult",
    "demo_start",
    "run_demo",
]

DEFAULT_URL = "sqlite:///nim-workflow-demo.db"
DEFAULT_HTML = "nim-workflow-report.html"
#: The demo's mark on a SQLite database it created: the file header's ``application_id`` (the
#: 32-bit number SQLite keeps at offset 68 to say what a file is for), "NWdm" in ASCII. The demo
#: sets it as the first write to a file it has just created, and replaces a file only if it is a
#: SQLite database carrying it.
DEMO_APPLICATION_ID = 0x4E57646D
#: The demo's mark on any other database: a table it creates in a database holding no tables at
#: all, before its schema. Outside the library's ``nimwf_`` names, which the migrations own.
DEMO_MARK_TABLE = "nim_workflow_demo"
#: The first sixteen bytes of every SQLite 3 database file.
_SQLITE_HEADER = b"SQLite format 3\x00"
#: The files SQLite keeps beside a database file, which go with it.
_COMPANIONS = ("-wal", "-shm", "-journal")
#: Who administers the demo's roster when the operating-system user cannot be told.
FALLBACK_OPERATOR = "demo-admin"
#: The operator's roles: the roster's administrator, and a coordinator (pause, resume, upgrade).
OPERATOR_ROLES = frozenset({ROSTER_ROLE, "coordinator"})
#: A pinned run's first and last simulated days (``run_demo(end=DEMO_END)``): the tests' cohort,
#: the same one every time. By default the demo ends today and starts :data:`DEMO_DAYS` earlier.
DEMO_START = dt.date(2025, 5, 1)
DEMO_END = dt.date(2026, 11, 20)
#: The newest London case: opened days before the demo ends, so open and unpaused then, it is the
#: case the README's coordinator commands show, pause and resume, whatever day the demo ends.
EXAMPLE_REFERENCE = "LDN-DEMO-0001"
#: How long the demo's world runs before its end date: about eighteen months (568 days, so that a
#: run ending on :data:`DEMO_END` starts on :data:`DEMO_START`).
DEMO_DAYS = (DEMO_END - DEMO_START).days
_OPENING_DAYS = 560
#: The deadline processor runs at this UTC time each simulated day, before the day's work (which
#: is done in local office hours), so overnight breaches are seen first thing in the morning.
_PROCESS_AT = dt.time(7, 0)

Action = Literal["open", "assign", "record", "fire", "pause", "resume", "extend", "attempt"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoCounts:
    """What the demo did: cases, transitions, events by kind and how the deadlines went."""

    cases: int
    open_cases: int
    closed_cases: int
    transitions: int
    events: Mapping[str, int]
    deadlines_met: int
    deadlines_missed: int
    paused_cases: int
    extensions: int
    withdrawn: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", MappingProxyType(dict(self.events)))


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    """The outcome of :func:`run_demo`: where it ran, as of when, what happened, the summary."""

    url: str
    as_of: dt.datetime
    counts: DemoCounts
    summary: Summary
    html: Path | None
    #: The staff id of the person who ran it: the roster's administrator, at every site.
    operator: str = FALLBACK_OPERATOR


# -- the sites ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Site:
    site: str
    pathway: str
    prefix: str
    staff: str
    cases: int
    timezone: str
    anchor: str  # the date fact recorded when the child entered care or was placed


_SITES = (
    _Site("london", "nim-uk-england", "LDN", "lon", 30, "Europe/London", "entered_care_on"),
    _Site("glasgow", "nim-uk-scotland", "GLA", "gla", 30, "Europe/London", "placed_on"),
    _Site(
        "jefferson-parish",
        "nim-us-louisiana",
        "JEF",
        "jef",
        20,
        "America/Chicago",
        "entered_care_on",
    ),
)

_ROLES = {
    "sw": "social_worker",
    "cl": "clinician",
    "tm": "team_manager",
    "co": "court_officer",
    "pc": "coordinator",
}

_DECLINE_REASONS = (
    "not eligible: a child in the family is over 60 months",
    "not eligible: the child is placed with a parent",
    "not eligible: outside the pilot area",
)
_WITHDRAW_REASONS = (
    "proceedings discontinued by the local authority",
    "family moved out of the area",
    "consent withdrawn",
)
_PAUSE_REASONS = (
    "child admitted to hospital",
    "court adjourned the hearing",
    "parent unavailable for sessions",
    "placement move",
)
#: The deadline rule whose clock starts when a case enters each stage.
_STAGE_RULE = {
    "referral": "referral_decision",
    "assessment": "assessment",
    "treatment": "treatment",
    "recommendation": "final_report",
}
_EXTEND_REASONS = {
    "referral_decision": "awaiting the local authority's papers",
    "assessment": "more observed contact needed before the report",
    "treatment": "treatment progressing; more sessions agreed at review",
    "final_report": "expert input awaited",
    "care_proceedings": "court extended the timetable to resolve the proceedings justly",
}


@dataclass(frozen=True, slots=True)
class _Step:
    when: dt.datetime
    order: int
    reference: str
    action: Action
    args: Mapping[str, Any] = field(default_factory=dict)


class _Planner:
    """Draws one case's plan: every action it will take, when, and by whom."""

    def __init__(self, rng: random.Random, engine: Engine) -> None:
        self._rng = rng
        self._engine = engine
        self._order = 0

    # -- time helpers ------------------------------------------------------------------------

    def working(self, site: _Site, day: dt.date) -> dt.date:
        """``day`` or the next working day of the site."""
        cal = self._engine.calendar(site.site, site.pathway)
        while not cal.is_working_day(day):
            day += dt.timedelta(days=1)
        return day

    def _at(self, site: _Site, day: dt.date, after: dt.datetime | None) -> dt.datetime:
        """An office-hours instant on ``day`` (local), later than ``after``."""
        hour = self._rng.randint(9, 15)
        minute = self._rng.randrange(0, 60, 5)
        local = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZoneInfo(site.timezone))
        when = local.astimezone(dt.UTC)
        if after is not None and when <= after:
            when = after + dt.timedelta(minutes=10)
        return when

    def _gauss(self, mean: float, sd: float, low: float, high: float) -> int:
        return round(min(max(self._rng.gauss(mean, sd), low), high))

    # -- a case --------------------------------------------------------------------------------

    def plan(
        self, site: _Site, number: int, opened_on: dt.date, *, reference: str | None = None
    ) -> list[_Step]:
        """Every step of one case, in time order; steps past the demo's end are never run.

        ``reference`` names the case instead of its site, year and ``number``.
        """
        rng = self._rng
        ref = reference or f"{site.prefix}-{opened_on.year}-{number:04d}"
        staff = {key: Actor(f"{site.staff}-{key}-1", roles={role}) for key, role in _ROLES.items()}
        sw = Actor(f"{site.staff}-sw-{rng.randint(1, 3)}", roles={"social_worker"})
        steps: list[_Step] = []
        last: dt.datetime | None = None

        def add(day: dt.date, action: Action, **args: Any) -> dt.datetime:
            nonlocal last
            when = self._at(site, self.working(site, day), last)
            self._order += 1
            steps.append(_Step(when, self._order, ref, action, args))
            last = when
            return when

        def days(n: float) -> dt.timedelta:
            return dt.timedelta(days=round(n))

        opened_on = self.working(site, opened_on)
        care_on = opened_on - days(rng.randint(6, 40))
        facts: dict[str, Any] = {site.anchor: care_on}
        opened_at = add(opened_on, "open", actor=sw, facts=facts)
        # A minute later the team manager gives the case to the social worker who opened it
        # (their caseload), where the pathway lets a team manager assign (versions before 3 do
        # not). Timed without the planner's random draws, and before any later step (those are
        # at least five minutes on), so the cohort is the same with or without.
        if _ROLES["tm"] in self._engine.pathway(site.pathway).roles_for("assign"):
            self._order += 1
            steps.append(
                _Step(
                    opened_at + dt.timedelta(minutes=1),
                    self._order,
                    ref,
                    "assign",
                    {"actor": staff["tm"], "worker": sw.id},
                )
            )
        statutory = self._statutory(site, care_on, opened_on, staff, sw)

        # Referral: most are accepted within the 10 working days, some late, a few declined.
        day = opened_on
        if rng.random() < 0.07:
            add(
                day + days(rng.randint(3, 12)),
                "fire",
                actor=staff["tm"],
                trigger="decline_referral",
                reason=rng.choice(_DECLINE_REASONS),
            )
            return self._merge(steps, statutory, site, ref, until=last)
        day += days(rng.randint(0, 4))
        add(day, "record", actor=sw, facts={"consent_recorded": True})
        if rng.random() < 0.04:
            # The social worker tries to accept it themselves: refused and audited.
            add(day, "attempt", actor=sw, trigger="accept_referral")
        slow = rng.random() < 0.12
        day += days(rng.randint(12, 24) if slow else rng.randint(1, 8))
        add(day, "fire", actor=staff["tm"], trigger="accept_referral")

        withdraw_in = None
        if rng.random() < 0.14:
            withdraw_in = rng.choice(("assessment", "assessment", "treatment", "recommendation"))
        paused = False

        def stage_block(stage: str, length: int, due_days: int, extension: tuple[int, int]) -> int:
            """Plan pauses, extensions and a withdrawal in a stage; return its real length."""
            nonlocal paused, day
            start = day
            if withdraw_in == stage:
                add(
                    start + days(length * rng.uniform(0.2, 0.8)),
                    "fire",
                    actor=staff["tm"],
                    trigger="withdraw",
                    reason=rng.choice(_WITHDRAW_REASONS),
                )
                return -1
            pause_days = 0
            if not paused and stage in ("assessment", "treatment") and rng.random() < 0.12:
                paused = True
                pause_at = start + days(length * rng.uniform(0.2, 0.5))
                pause_days = rng.randint(14, 42)
                who = staff["pc"] if rng.random() < 0.5 else staff["tm"]
                paused_at = add(pause_at, "pause", actor=who, reason=rng.choice(_PAUSE_REASONS))
                resumed_at = add(paused_at.date() + days(pause_days), "resume", actor=who)
                pause_days = (resumed_at.date() - paused_at.date()).days
            total = length + pause_days
            due = due_days + pause_days
            step, limit = extension
            extended = 0
            # Glasgow's treatment running long is usually extended (GIFT works "up to 12
            # months"); elsewhere a late stage is often simply late.
            chance = 0.9 if (site.site == "glasgow" and stage == "treatment") else 0.55
            while total > due and extended < limit and rng.random() < chance:
                add(
                    start + days(due - rng.randint(4, 12)),
                    "extend",
                    actor=staff["tm"],
                    name=_STAGE_RULE[stage],
                    reason=_EXTEND_REASONS[_STAGE_RULE[stage]],
                )
                due += step
                extended += 1
            day = start + days(total)
            return total

        # Assessment, about 12 weeks (London) or 3 months (Glasgow, Louisiana).
        if site.site == "london":
            a_len, a_due = self._gauss(82, 12, 55, 125), 84
        else:
            a_len, a_due = self._gauss(92, 16, 60, 140), 91
        if stage_block("assessment", a_len, a_due, (28, 1)) < 0:
            return self._merge(steps, statutory, site, ref, until=last)
        add(
            day - days(rng.randint(1, 6)),
            "record",
            actor=staff["cl"],
            facts={"assessment_report_filed": True},
        )
        treat = rng.random() >= 0.2
        add(
            day,
            "fire",
            actor=staff["tm"],
            trigger="offer_treatment" if treat else "recommend_without_treatment",
        )

        if treat:
            if site.site == "london":
                t_len, t_due, t_ext = self._gauss(152, 20, 110, 215), 152, (30, 2)
            elif site.site == "glasgow":
                t_len, t_due, t_ext = rng.randint(180, 370), 274, (91, 1)
            else:
                t_len, t_due, t_ext = self._gauss(255, 35, 170, 330), 274, (91, 1)
            if stage_block("treatment", t_len, t_due, t_ext) < 0:
                return self._merge(steps, statutory, site, ref, until=last)
            add(
                day - days(rng.randint(1, 8)),
                "record",
                actor=staff["cl"],
                facts={"treatment_review_filed": True},
            )
            closer = staff["cl"] if rng.random() < 0.6 else staff["tm"]
            add(day, "fire", actor=closer, trigger="complete_treatment")

        # Final report and recommendation, about 4 weeks.
        r_len = self._gauss(25, 7, 10, 48)
        if stage_block("recommendation", r_len, 28, (14, 1)) < 0:
            return self._merge(steps, statutory, site, ref, until=last)
        home = rng.random() < (0.3 if treat else 0.1)
        recommendation = "return_home" if home else "permanence_away"
        add(
            day - days(rng.randint(2, 5)),
            "record",
            actor=staff["cl"],
            facts={"final_report_filed": True},
        )
        add(day - days(1), "record", actor=staff["tm"], facts={"recommendation": recommendation})
        add(day, "fire", actor=staff["tm"], trigger="submit_recommendation")

        # Court or hearing: weeks in London, months in Glasgow.
        if site.site == "london":
            c_len = rng.randint(21, 90)
        elif site.site == "glasgow":
            c_len = rng.randint(60, 240)
        else:
            c_len = rng.randint(30, 130)
        day += days(c_len)
        if home:
            decision = "return_home" if rng.random() < 0.8 else "kinship_care"
        else:
            decision = rng.choices(
                ("adoption", "kinship_care", "long_term_foster_care"), weights=(55, 25, 20)
            )[0]
        add(day, "fire", actor=staff["co"], trigger="record_decision", facts={"decision": decision})
        return self._merge(steps, statutory, site, ref, until=last)

    def _statutory(
        self,
        site: _Site,
        care_on: dt.date,
        opened_on: dt.date,
        staff: Mapping[str, Actor],
        sw: Actor,
    ) -> list[tuple[dt.date, Action, dict[str, Any]]]:
        """The statutory-clock facts of a case as (record day, action, args), up to ~3 years."""
        rng = self._rng
        out: list[tuple[dt.date, Action, dict[str, Any]]] = []
        horizon = care_on + dt.timedelta(days=1100)

        declared = self._engine.pathway(site.pathway).facts

        def record(day: dt.date, actor: Actor, fact: str, value: dt.date) -> None:
            # An older version of a pathway may not know a fact yet (the demo runs on any).
            if fact in declared:
                out.append((day, "record", {"actor": actor, "facts": {fact: value}}))

        if site.pathway == "nim-uk-england":
            issued = care_on + dt.timedelta(days=rng.randint(0, 5))
            record(
                max(issued, opened_on) + dt.timedelta(days=rng.randint(0, 3)),
                sw,
                "proceedings_issued_on",
                issued,
            )
            # Care proceedings: 26 weeks beginning with the day of issue, then extensions of up
            # to 8 weeks each, as many as the court grants.
            due = issued + dt.timedelta(weeks=26, days=-1)
            for _ in range(3):
                if rng.random() < 0.65:
                    weeks = rng.choice((4, 6, 8, 8))
                    out.append(
                        (
                            due - dt.timedelta(days=rng.randint(3, 12)),
                            "extend",
                            {
                                "actor": staff["co"],
                                "name": "care_proceedings",
                                "reason": _EXTEND_REASONS["care_proceedings"],
                                "by": f"{weeks} weeks",
                            },
                        )
                    )
                    due += dt.timedelta(weeks=weeks)
        if site.pathway in ("nim-uk-england", "nim-uk-scotland"):
            # Looked-after child reviews: first within 20 working days (England) or 6 weeks
            # (Scotland), second within 3 months, then every 6 months; some are held late.
            first = rng.randint(16, 34) if site.pathway == "nim-uk-england" else rng.randint(28, 50)
            held = care_on + dt.timedelta(days=first)
            gaps = [rng.randint(75, 100)] + [rng.randint(160, 195) for _ in range(6)]
            for gap in [0, *gaps]:
                # Now and then a review slips by weeks (the IRO is off sick, a hearing moves).
                slip = rng.randint(20, 60) if rng.random() < 0.1 else 0
                held += dt.timedelta(days=gap + slip)
                if held > horizon:
                    break
                record(held + dt.timedelta(days=rng.randint(0, 3)), sw, "lac_review_held_on", held)
        if site.pathway == "nim-uk-scotland":
            # Interim orders of up to 22 days while the grounds are proved, then the hearing
            # makes a compulsory supervision order, continued at review hearings each year.
            interim = care_on + dt.timedelta(days=rng.randint(1, 4))
            for _ in range(rng.randint(1, 3)):
                record(interim, staff["co"], "icso_made_on", interim)
                interim += dt.timedelta(days=rng.randint(18, 23))
            made = interim + dt.timedelta(days=rng.randint(0, 40))
            record(made, staff["co"], "cso_made_on", made)
            continued = made + dt.timedelta(days=rng.randint(330, 368))
            while continued <= horizon:
                record(continued, staff["co"], "cso_continued_on", continued)
                continued += dt.timedelta(days=rng.randint(330, 368))
        if site.pathway == "nim-us-louisiana":
            # Adjudication and disposition, then case reviews at least every 6 months (art. 692)
            # and permanency hearings at least yearly (art. 702).
            adjudicated = care_on + dt.timedelta(days=rng.randint(20, 50))
            record(adjudicated, staff["co"], "adjudicated_on", adjudicated)
            disposition = adjudicated + dt.timedelta(days=rng.randint(10, 40))
            record(disposition, staff["co"], "disposition_on", disposition)
            review = disposition + dt.timedelta(days=rng.randint(70, 100))
            while review <= horizon:
                record(review, sw, "case_review_held_on", review)
                review += dt.timedelta(days=rng.randint(160, 195))
            held = care_on + dt.timedelta(days=rng.randint(250, 360))
            while held <= horizon:
                record(
                    held + dt.timedelta(days=rng.randint(0, 2)),
                    staff["co"],
                    "permanency_hearing_held_on",
                    held,
                )
                held += dt.timedelta(days=rng.randint(330, 390))
        return out

    def _merge(
        self,
        steps: list[_Step],
        statutory: list[tuple[dt.date, Action, dict[str, Any]]],
        site: _Site,
        reference: str,
        *,
        until: dt.datetime | None,
    ) -> list[_Step]:
        """Add the statutory-clock steps that fall while the case is open."""
        opened_at = steps[0].when
        merged = list(steps)
        for late, (day, action, args) in enumerate(statutory, start=1):
            when = self._at(site, self.working(site, day), None)
            if when <= opened_at:
                # Held before the referral: recorded on the day the case is opened.
                when = opened_at + dt.timedelta(minutes=5 * late)
            if until is not None and when >= until:
                continue
            self._order += 1
            merged.append(_Step(when, self._order, reference, action, args))
        return sorted(merged, key=lambda s: (s.when, s.order))


# -- the staff roster -----------------------------------------------------------------------------


def _operator() -> str:
    """The operating-system user running the demo as a staff id (a fallback if it is no id)."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError, ImportError):
        # getpass raises OSError (KeyError before Python 3.13) when no user can be found.
        return FALLBACK_OPERATOR
    try:
        Actor(name)
    except InvalidInput:
        return FALLBACK_OPERATOR
    return name


def _demo_staff() -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Everyone the planner has act, by staff id: their one role and their one site."""
    members: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for site in _SITES:
        for key, role in _ROLES.items():
            # Cases are opened by one of three social workers; one of each other role.
            for number in range(1, 4) if key == "sw" else (1,):
                members[f"{site.staff}-{key}-{number}"] = (
                    frozenset({role}),
                    frozenset({site.site}),
                )
    return members


def _add_roster(engine: Engine, operator: str, at: dt.datetime) -> None:
    """Put the operator on the roster as its administrator, then everyone the cases need."""
    members = _demo_staff()
    extra_roles, _sites = members.pop(operator, (frozenset(), frozenset()))
    admin = Actor(operator, roles=OPERATOR_ROLES)
    engine.add_staff(
        operator,
        roles=OPERATOR_ROLES | extra_roles,
        sites={"*"},
        actor=admin,
        reason="runs the demo",
        at=at,
    )
    for staff_id, (roles, sites) in members.items():
        engine.add_staff(
            staff_id, roles=roles, sites=sites, actor=admin, reason="demo staff", at=at
        )


# -- running it -----------------------------------------------------------------------------------


class _SimulatedClock:
    """The demo's clock: the engine asks it for now, the simulation moves it."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _database(url: str) -> sa.Engine:
    """The SQLAlchemy engine the demo runs on; for SQLite, tuned for a disposable file.

    The settings are the library's own (foreign keys, a busy timeout, WAL), plus
    ``synchronous=NORMAL``: still consistent after a crash, but without the flush to disk on
    every commit that would otherwise take most of the demo's time.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    database = sa.create_engine(parsed, connect_args={"timeout": 30})
    on_disk = parsed.database not in (None, "", ":memory:")

    @sa.event.listens_for(database, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if on_disk:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return database


def _refusal(where: str, why: str) -> InvalidInput:
    return InvalidInput(
        f"{where} is not a database the demo created ({why}); the demo never overwrites other "
        "files: choose another --db or remove it yourself",
        field="url",
    )


def _not_the_demos(path: Path) -> str | None:
    """Why the file at ``path`` is not a database the demo created, or ``None`` if it is.

    Only reads: it looks at the file's type and first bytes, never opens it as a database (which
    could write a WAL index or roll back a journal).
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return "it is a symbolic link to nothing"
    except OSError as exc:
        return f"it cannot be examined: {exc.strerror or exc}"
    if stat.S_ISDIR(info.st_mode):
        return "it is a directory"
    if not stat.S_ISREG(info.st_mode):
        return "it is not a regular file"
    if info.st_size == 0:
        return "it is an empty file"
    try:
        with path.open("rb") as file:
            header = file.read(100)
    except OSError as exc:
        return f"it cannot be read: {exc.strerror or exc}"
    if len(header) < 100 or not header.startswith(_SQLITE_HEADER):
        return "it is not a SQLite database"
    if int.from_bytes(header[68:72], "big") != DEMO_APPLICATION_ID:
        return "it is a SQLite database without the demo's mark"
    return None


def _create_marked_sqlite(path: Path) -> None:
    """Create a new SQLite file at ``path`` with the demo's mark; never opens an existing one."""
    # O_EXCL: if anything appeared at the path since it was looked at, this fails untouched.
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    os.close(descriptor)
    try:
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.execute(f"PRAGMA application_id = {DEMO_APPLICATION_ID}")
            connection.commit()
    except BaseException:
        path.unlink(missing_ok=True)  # the file this call created, and nothing else
        raise


def _claim(url: str, *, fresh: bool) -> None:
    """Make sure the database at ``url`` is the demo's to use, creating it marked if need be.

    SQLite: nothing at the path, a new marked file is created; the demo's own marked file is
    replaced afresh (with its ``-wal``/``-shm``/``-journal`` companions) when ``fresh``, and kept
    otherwise. Any other backend: a database holding no tables is marked with
    :data:`DEMO_MARK_TABLE`; one already marked is used as it is (``fresh`` deletes nothing
    there). Anything else raises :class:`InvalidInput` before a byte is written or deleted.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise InvalidInput(f"{url!r} is not a database URL: {exc}", field="url") from exc
    if parsed.get_backend_name() != "sqlite":
        _claim_server(parsed)
        return
    if parsed.database in (None, "", ":memory:"):
        return  # a new in-memory database each time: nothing to mark or to replace
    if str(parsed.query.get("uri", "")).lower() in ("true", "1"):
        raise InvalidInput(
            "the demo needs a plain file path (sqlite:///path/to/demo.db), not a SQLite URI",
            field="url",
        )
    path = Path(parsed.database)
    companions = [Path(f"{path}{suffix}") for suffix in _COMPANIONS]
    if not os.path.lexists(path):
        left = [c for c in companions if os.path.lexists(c)]
        if left:
            raise InvalidInput(
                f"{path} does not exist but {left[0]} does, which the demo did not create; "
                "the demo never overwrites other files: choose another --db or remove it "
                "yourself",
                field="url",
            )
        _create_marked_sqlite(path)
        return
    why = _not_the_demos(path)
    if why is not None:
        raise _refusal(str(path), why)
    if fresh:
        # The demo's own database: its companions first, so a stop half-way leaves a marked file.
        for candidate in (*companions, path):
            candidate.unlink(missing_ok=True)
        _create_marked_sqlite(path)


def _claim_server(parsed: sa.URL) -> None:
    """Mark an empty server database as the demo's, or check it already is; refuse otherwise."""
    where = parsed.render_as_string(hide_password=True)
    try:
        database = sa.create_engine(parsed)
    except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
        raise InvalidInput(f"cannot use database URL {where}: {exc}", field="url") from exc
    try:
        with database.begin() as conn:
            tables = sa.inspect(conn).get_table_names()
            if DEMO_MARK_TABLE in tables:
                return
            if tables:
                raise InvalidInput(
                    f"{where} is not a database the demo created (it holds {len(tables)} "
                    f"table{'s' if len(tables) != 1 else ''} and no {DEMO_MARK_TABLE} table); "
                    "the demo runs only on an empty database or one it created: choose another "
                    "--db",
                    field="url",
                )
            mark = sa.Table(
                DEMO_MARK_TABLE,
                sa.MetaData(),
                sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            )
            mark.create(conn)
            conn.execute(mark.insert().values(created_at=dt.datetime.now(dt.UTC)))
    finally:
        database.dispose()


def _run_step(engine: Engine, step: _Step) -> None:
    args = dict(step.args)
    actor: Actor = args.pop("actor")
    ref = step.reference
    match step.action:
        case "open":
            site = next(s for s in _SITES if ref.startswith(s.prefix + "-"))
            engine.open_case(ref, pathway=site.pathway, site=site.site, actor=actor, **args)
        case "assign":
            engine.assign(ref, worker=args["worker"], actor=actor)
        case "record":
            engine.record(ref, args["facts"], actor=actor)
        case "fire":
            engine.fire(ref, args.pop("trigger"), actor=actor, **args)
        case "pause":
            engine.pause(ref, actor=actor, reason=args["reason"])
        case "resume":
            engine.resume(ref, actor=actor)
        case "extend":
            engine.extend_deadline(
                ref, args["name"], actor=actor, reason=args["reason"], by=args.get("by")
            )
        case "attempt":
            # A refusal is part of the story: the engine audits it and the case does not move.
            with contextlib.suppress(PermissionDenied):
                engine.fire(ref, args["trigger"], actor=actor)


def _closes_or_pauses(step: _Step) -> bool:
    """Whether ``step`` declines, withdraws, pauses or resumes its case."""
    trigger = step.args.get("trigger") if step.action == "fire" else None
    return step.action in ("pause", "resume") or trigger in ("decline_referral", "withdraw")


def demo_start(end: dt.date) -> dt.date:
    """The first simulated day of a demo whose last is ``end``: :data:`DEMO_DAYS` before it."""
    return end - dt.timedelta(days=DEMO_DAYS)


def run_demo(
    url: str = DEFAULT_URL,
    *,
    html: str | Path | None = DEFAULT_HTML,
    seed: int = 2026,
    end: dt.date | None = None,
    progress: Callable[[int, int], None] | None = None,
    fresh: bool = True,
    pathways: Iterable[Pathway | str | os.PathLike[str]] | None = None,
) -> DemoResult:
    """Run the demo cohort on ``url`` and write the HTML report to ``html`` (unless ``None``).

    The demo runs only on a database it created (see :func:`_claim`): nothing at ``url`` yet, it
    creates one and marks it as its own. ``fresh`` replaces a SQLite file the demo created
    earlier; without it, or on another backend, the database must hold no cases. A file or
    database the demo did not create (a real case database, a text file, a directory, an empty
    file, a server database holding other tables) raises :class:`InvalidInput`, untouched.
    ``progress(done_days, total_days)`` is called as the simulated days pass.

    The simulated world runs from :func:`demo_start` of ``end`` to ``end`` (default: today's
    date in UTC), and the summary is taken as of 23:00 UTC on ``end``; ending today, as of the
    moment the demo starts: it records nothing in the future, and its summary agrees with what
    the command line (on the real clock) shows straight after. The same ``seed`` and ``end``
    give the same cohort; with ``end`` before today, the same events and the same report too.
    An ``end`` after today raises :class:`InvalidInput`. ``pathways`` (default: the bundled
    ones) lets the cohort run on other versions, e.g. to rehearse an upgrade.
    """
    now = dt.datetime.now(dt.UTC)
    if end is None:
        end = now.date()  # today in UTC
    elif not isinstance(end, dt.date) or isinstance(end, dt.datetime):
        raise InvalidInput(f"the demo's end must be a date, not {end!r}", field="end")
    if end > now.date():
        raise InvalidInput(
            f"the demo cannot end after today ({now.date().isoformat()}): {end.isoformat()}",
            field="end",
        )
    first = demo_start(end)
    # Ending today, the world stops now: the command line's clock is the real one.
    as_of = now if end == now.date() else dt.datetime.combine(end, dt.time(23, 0), tzinfo=dt.UTC)
    # The simulated days are those whose deadline run (07:00 UTC) comes before the end.
    last = end
    if dt.datetime.combine(end, _PROCESS_AT, tzinfo=dt.UTC) > as_of:
        last -= dt.timedelta(days=1)
    _claim(url, fresh=fresh)
    start = dt.datetime.combine(first, _PROCESS_AT, tzinfo=dt.UTC)
    clock = _SimulatedClock(start)
    database = _database(url)
    engine = Engine(database, clock=clock, pathways=pathways)
    try:
        engine.migrate()
        if engine.cases(open_only=False):
            raise NimWorkflowError(
                "the demo needs an empty database; this one already holds cases "
                "(fresh=True replaces a SQLite file the demo created; or use another database)"
            )
        operator = _operator()
        _add_roster(engine, operator, start)
        events: Counter[str] = Counter()
        engine.subscribe(lambda event: _count(events, event))
        rng = random.Random(seed)
        planner = _Planner(rng, engine)
        steps: list[_Step] = []
        for site in _SITES:
            # Referrals arrive steadily (one in each equal slot of the opening window) and keep
            # arriving to the end: the newest is days old when the demo stops.
            slot = _OPENING_DAYS / (site.cases - 1)
            offsets = [int(i * slot + rng.random() * slot) for i in range(site.cases - 1)]
            offsets.append(DEMO_DAYS - rng.randint(1, 4))
            per_year: Counter[int] = Counter()
            for offset in offsets[:-1]:
                opened_on = first + dt.timedelta(days=offset)
                per_year[opened_on.year] += 1
                steps += planner.plan(site, per_year[opened_on.year], opened_on)
            # The newest case, opened days before the end: London's is the README's example,
            # opened on a working day before the end day, so open whenever the demo stops.
            opened_on = first + dt.timedelta(days=offsets[-1])
            example = EXAMPLE_REFERENCE if site.site == "london" else None
            while example is not None and planner.working(site, opened_on) >= end:
                opened_on -= dt.timedelta(days=1)
            if example is None:
                per_year[opened_on.year] += 1
            plan = planner.plan(site, per_year[opened_on.year], opened_on, reference=example)
            if example is not None:
                # Drawn like any other (the same draws, so the rest of the cohort is the same),
                # but never declined, withdrawn or paused: open and unpaused when the demo stops.
                plan = [step for step in plan if not _closes_or_pauses(step)]
            steps += plan
        steps.sort(key=lambda s: (s.when, s.order))

        total_days = (last - first).days + 1
        index = 0
        for done in range(total_days):
            day = first + dt.timedelta(days=done)
            clock.now = dt.datetime.combine(day, _PROCESS_AT, tzinfo=dt.UTC)
            engine.process_due(at=clock.now)
            day_end = min(clock.now + dt.timedelta(days=1), as_of)
            while index < len(steps) and steps[index].when < day_end:
                clock.now = steps[index].when
                _run_step(engine, steps[index])
                index += 1
            if progress is not None:
                progress(done + 1, total_days)
        clock.now = as_of
        engine.process_due(at=as_of)

        summary = summarize(engine, at=as_of)
        counts = _counts(engine, events)
        written: Path | None = None
        if html is not None:
            written = Path(html)
            written.write_text(build_report(engine, at=as_of), encoding="utf-8")
        return DemoResult(
            url=url,
            as_of=as_of,
            counts=counts,
            summary=summary,
            html=written,
            operator=operator,
        )
    finally:
        engine.close()
        database.dispose()


def _count(events: Counter[str], event: Event) -> None:
    events[event.kind] += 1


def _counts(engine: Engine, events: Counter[str]) -> DemoCounts:
    every = engine.cases(open_only=False)
    statuses: Counter[str] = Counter()
    extensions = 0
    paused = 0
    for case in every:
        for deadline in engine.deadlines(case.reference):
            statuses[deadline.status] += 1
            extensions += deadline.extensions
        if engine.pauses(case.reference):
            paused += 1
    return DemoCounts(
        cases=len(every),
        open_cases=sum(1 for c in every if c.is_open),
        closed_cases=sum(1 for c in every if not c.is_open),
        transitions=events["transition"],
        events={kind: events[kind] for kind in EVENT_KINDS},
        deadlines_met=statuses["met"],
        deadlines_missed=statuses["missed"],
        paused_cases=paused,
        extensions=extensions,
        withdrawn=sum(1 for c in every if c.outcome == "withdrawn"),
    )
