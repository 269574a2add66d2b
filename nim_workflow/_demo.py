"""The demo: a realistic three-site cohort run through eighteen months of pathway on a fake clock.

:func:`run_demo` creates an embedded SQLite database, migrates it, and plays about eighty cases
through the eighteen months (:data:`DEMO_DAYS` days) that end on its end
date, today by default, with a simulated clock that moves one day at a time, running the deadline
processor every simulated day so reminders, breaches and escalations fire on the way. Ending today,
the simulation stops at the moment the demo starts, so the command line's clock (the real one)
and the demo's summary see the same day: what the demo reports overdue is what
``nim-workflow overdue`` lists straight after. Every case follows a plan drawn from
``random.Random(seed)`` with the stage durations of the domain brief, so the same seed and end
date always give the same cohort (a past end date, the same run to the event). At the end it
builds the coordinator's summary and, if asked, writes the HTML report.

London and Glasgow run the BeST? trial (TRIAL.md, ``trials/best.yaml``): about 23 families (sibling
groups, some 29 children) at each are referred, consent, and are allocated one to one to ``nim``
(``nim-uk-england``, ``nim-uk-scotland``) or ``comparator`` (``best-sau-london``,
``best-facs-glasgow``); the allocation opens each child's case on the arm's pathway. The engine
never randomises: the demo's seeded RNG stands in for the trial's portal (permuted blocks of four
per site, ids ``BEST-0001`` on), and the site's coordinator records each result. A sibling group's
referral is accepted (a few declined or paused) as one family action; from there each child's
case runs on its own. The trial's researcher records the research visits (most in their windows,
some late, some missed), a few families withdraw consent or are lost to follow-up, a baby joins a
family's arm at each site, and each child's placements, permanence date and receipt of the
intervention are recorded as the pathways' outcome facts. Jefferson Parish's twenty cases
(``nim-us-louisiana``) are outside the trial. If the engine does not run the trial (pathways
without the comparators), London and Glasgow have thirty NIM cases each, as before the trial.

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
import dataclasses
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
from nim_workflow._trial._model import Trial, VisitRule
from nim_workflow._values import EVENT_KINDS, Actor, Event

__all__ = [
    "DEMO_DAYS",
    "DEMO_END",
    "DEMO_START",
    "EXAMPLE_REFERENCE",
    "DemoCounts",
    "DemoResult",
    "demo_start",
    "format_trial",
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

Action = Literal[
    "open",
    "assign",
    "record",
    "fire",
    "pause",
    "resume",
    "extend",
    "attempt",
    # a trial family's
    "open_family",
    "status",
    "allocate",
    "fire_family",
    "pause_family",
    "resume_family",
    "add_child",
    "visit",
]
#: The trial the demo's UK sites run (TRIAL.md), when the engine runs it.
DEMO_TRIAL = "best"


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
    #: The trial at each of its sites: families, children, families per arm and per trial
    #: status, and research visits per visit and status (see :func:`format_trial`).
    trial: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", MappingProxyType(dict(self.events)))
        object.__setattr__(self, "trial", MappingProxyType(dict(self.trial)))


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
    #: Families in the trial (TRIAL.md) when the engine runs it at the site; else ``cases``
    #: cases on ``pathway`` (the site's NIM pathway, the trial's ``nim`` arm).
    families: int = 0


#: London and Glasgow randomise families into the BeST? trial (about 23 each, some 29 children,
#: BeST?'s 1.28 children per family); Jefferson Parish's cohort is outside the trial.
_SITES = (
    _Site("london", "nim-uk-england", "LDN", "lon", 30, "Europe/London", "entered_care_on", 23),
    _Site("glasgow", "nim-uk-scotland", "GLA", "gla", 30, "Europe/London", "placed_on", 23),
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
    args: dict[str, Any] = field(default_factory=dict)


class _CasePlan:
    """One case's plan in the making: its steps so far, the last instant, where its stages are."""

    def __init__(
        self,
        planner: _Planner,
        site: _Site,
        reference: str,
        *,
        last: dt.datetime | None = None,
        delivery: str | None = None,
    ) -> None:
        self.planner = planner
        self.site = site
        self.reference = reference
        self.staff = {
            key: Actor(f"{site.staff}-{key}-1", roles={role}) for key, role in _ROLES.items()
        }
        self.sw = Actor(f"{site.staff}-sw-{planner.rng.randint(1, 3)}", roles={"social_worker"})
        self.steps: list[_Step] = []
        self.last = last
        self.opened_at = last
        self.day = dt.date.min
        self.paused = False
        self.withdraw_in: str | None = None
        #: A trial child's family's receipt of the allocated intervention (None: no trial).
        self.delivery = delivery
        self.pathway = planner.engine.pathway(site.pathway)

    def add(self, day: dt.date, action: Action, **args: Any) -> dt.datetime:
        """A step on ``day`` (or the next working day), after every step before it."""
        planner = self.planner
        when = planner.at(self.site, planner.working(self.site, day), self.last)
        planner.order += 1
        self.steps.append(_Step(when, planner.order, self.reference, action, args))
        self.last = when
        if self.opened_at is None:
            self.opened_at = when
        return when

    def assign(self, opened_at: dt.datetime, minutes: int = 1) -> None:
        """The team manager gives the case to its social worker minutes after it is opened.

        Where the pathway lets a team manager assign (versions before 3 do not). Timed without
        the planner's random draws, and before any later step (those are at least five minutes
        on), so the cohort is the same with or without.
        """
        if _ROLES["tm"] not in self.pathway.roles_for("assign"):
            return
        planner = self.planner
        planner.order += 1
        when = opened_at + dt.timedelta(minutes=minutes)
        self.steps.append(
            _Step(
                when,
                planner.order,
                self.reference,
                "assign",
                {"actor": self.staff["tm"], "worker": self.sw.id},
            )
        )
        self.last = max(self.last or when, when)

    def knows(self, fact: str) -> bool:
        return fact in self.pathway.facts

    def merged(self, statutory: list[tuple[dt.date, Action, dict[str, Any]]]) -> list[_Step]:
        return self.planner.merge(self, statutory)


def _days(n: float) -> dt.timedelta:
    return dt.timedelta(days=round(n))


def _facts(known: frozenset[str], entered_on: dt.date) -> dict[str, Any]:
    """A trial child's facts on joining: entry to care and first placement, where declared."""
    facts = {"entered_care_on": entered_on, "placed_on": entered_on}
    return {name: value for name, value in facts.items() if name in known}


class _Planner:
    """Draws each case's and each family's plan: every action it will take, when, and by whom."""

    def __init__(self, rng: random.Random, engine: Engine) -> None:
        self.rng = rng
        self.engine = engine
        self.order = 0

    # -- time helpers ------------------------------------------------------------------------

    def working(self, site: _Site, day: dt.date) -> dt.date:
        """``day`` or the next working day of the site."""
        cal = self.engine.calendar(site.site, site.pathway)
        while not cal.is_working_day(day):
            day += dt.timedelta(days=1)
        return day

    def at(self, site: _Site, day: dt.date, after: dt.datetime | None) -> dt.datetime:
        """An office-hours instant on ``day`` (local), later than ``after``."""
        hour = self.rng.randint(9, 15)
        minute = self.rng.randrange(0, 60, 5)
        local = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZoneInfo(site.timezone))
        when = local.astimezone(dt.UTC)
        if after is not None and when <= after:
            when = after + dt.timedelta(minutes=10)
        return when

    def _gauss(self, mean: float, sd: float, low: float, high: float) -> int:
        return round(min(max(self.rng.gauss(mean, sd), low), high))

    # -- a case outside the trial ----------------------------------------------------------------

    def plan(
        self, site: _Site, number: int, opened_on: dt.date, *, reference: str | None = None
    ) -> list[_Step]:
        """Every step of one case, in time order; steps past the demo's end are never run.

        ``reference`` names the case instead of its site, year and ``number``.
        """
        rng = self.rng
        case = _CasePlan(self, site, reference or f"{site.prefix}-{opened_on.year}-{number:04d}")
        opened_on = self.working(site, opened_on)
        care_on = opened_on - _days(rng.randint(6, 40))
        opened_at = case.add(opened_on, "open", actor=case.sw, facts={site.anchor: care_on})
        case.assign(opened_at)
        statutory = self._statutory(site, care_on, opened_on, case.staff, case.sw)

        # Referral: most are accepted within the 10 working days, some late, a few declined.
        day = opened_on
        if rng.random() < 0.07:
            case.add(
                day + _days(rng.randint(3, 12)),
                "fire",
                actor=case.staff["tm"],
                trigger="decline_referral",
                reason=rng.choice(_DECLINE_REASONS),
            )
            return case.merged(statutory)
        day += _days(rng.randint(0, 4))
        case.add(day, "record", actor=case.sw, facts={"consent_recorded": True})
        if rng.random() < 0.04:
            # The social worker tries to accept it themselves: refused and audited.
            case.add(day, "attempt", actor=case.sw, trigger="accept_referral")
        slow = rng.random() < 0.12
        day += _days(rng.randint(12, 24) if slow else rng.randint(1, 8))
        case.add(day, "fire", actor=case.staff["tm"], trigger="accept_referral")
        case.day = day
        self._after_acceptance(case)
        return case.merged(statutory)

    # -- from acceptance to the decision -----------------------------------------------------

    def _stage_block(
        self, case: _CasePlan, stage: str, length: int, due_days: int, extension: tuple[int, int]
    ) -> int:
        """Plan pauses, extensions and a withdrawal in a stage; return its real length (-1: out)."""
        rng = self.rng
        staff = case.staff
        start = case.day
        if case.withdraw_in == stage:
            out = start + _days(length * rng.uniform(0.2, 0.8))
            if case.delivery is not None and case.knows("intervention_received"):
                # A trial child leaving the service: how much of the intervention it had.
                had = "partly" if stage != "assessment" else "not_received"
                case.add(out, "record", actor=staff["tm"], facts={"intervention_received": had})
            case.add(
                out,
                "fire",
                actor=staff["tm"],
                trigger="withdraw",
                reason=rng.choice(_WITHDRAW_REASONS),
            )
            return -1
        pause_days = 0
        if not case.paused and stage in ("assessment", "treatment") and rng.random() < 0.12:
            case.paused = True
            pause_at = start + _days(length * rng.uniform(0.2, 0.5))
            pause_days = rng.randint(14, 42)
            who = staff["pc"] if rng.random() < 0.5 else staff["tm"]
            paused_at = case.add(pause_at, "pause", actor=who, reason=rng.choice(_PAUSE_REASONS))
            resumed_at = case.add(paused_at.date() + _days(pause_days), "resume", actor=who)
            pause_days = (resumed_at.date() - paused_at.date()).days
        total = length + pause_days
        due = due_days + pause_days
        step, limit = extension
        extended = 0
        # Glasgow's treatment running long is usually extended (GIFT works "up to 12
        # months"); elsewhere a late stage is often simply late.
        chance = 0.9 if (case.site.site == "glasgow" and stage == "treatment") else 0.55
        while total > due and extended < limit and rng.random() < chance:
            case.add(
                start + _days(due - rng.randint(4, 12)),
                "extend",
                actor=staff["tm"],
                name=_STAGE_RULE[stage],
                reason=_EXTEND_REASONS[_STAGE_RULE[stage]],
            )
            due += step
            extended += 1
        case.day = start + _days(total)
        return total

    def _after_acceptance(self, case: _CasePlan) -> None:
        """Assessment, treatment, the recommendation and the decision, from ``case.day`` on."""
        rng = self.rng
        site = case.site
        staff = case.staff
        if rng.random() < 0.14:
            case.withdraw_in = rng.choice(
                ("assessment", "assessment", "treatment", "recommendation")
            )

        # Assessment, about 12 weeks (London) or 3 months (Glasgow, Louisiana).
        if site.site == "london":
            a_len, a_due = self._gauss(82, 12, 55, 125), 84
        else:
            a_len, a_due = self._gauss(92, 16, 60, 140), 91
        if self._stage_block(case, "assessment", a_len, a_due, (28, 1)) < 0:
            return
        case.add(
            case.day - _days(rng.randint(1, 6)),
            "record",
            actor=staff["cl"],
            facts={"assessment_report_filed": True},
        )
        treat = rng.random() >= 0.2
        # A comparator service has no treatment stage; a NIM family that did not receive the
        # intervention goes straight from the assessment to the recommendation.
        if "offer_treatment" not in case.pathway.triggers() or case.delivery == "not_received":
            treat = False
        case.add(
            case.day,
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
            if case.delivery == "partly":
                t_len = round(t_len * rng.uniform(0.3, 0.6))  # the family stopped coming
            if self._stage_block(case, "treatment", t_len, t_due, t_ext) < 0:
                return
            case.add(
                case.day - _days(rng.randint(1, 8)),
                "record",
                actor=staff["cl"],
                facts={"treatment_review_filed": True},
            )
            closer = staff["cl"] if rng.random() < 0.6 else staff["tm"]
            case.add(case.day, "fire", actor=closer, trigger="complete_treatment")

        # Final report and recommendation, about 4 weeks.
        r_len = self._gauss(25, 7, 10, 48)
        if self._stage_block(case, "recommendation", r_len, 28, (14, 1)) < 0:
            return
        home = rng.random() < (0.3 if treat else 0.1)
        recommendation = "return_home" if home else "permanence_away"
        filed: dict[str, Any] = {"final_report_filed": True}
        if case.delivery is not None and case.knows("intervention_received"):
            filed["intervention_received"] = case.delivery
        case.add(case.day - _days(rng.randint(2, 5)), "record", actor=staff["cl"], facts=filed)
        case.add(
            case.day - _days(1),
            "record",
            actor=staff["tm"],
            facts={"recommendation": recommendation},
        )
        case.add(case.day, "fire", actor=staff["tm"], trigger="submit_recommendation")

        # Court or hearing: weeks in London, months in Glasgow.
        if site.site == "london":
            c_len = rng.randint(21, 90)
        elif site.site == "glasgow":
            c_len = rng.randint(60, 240)
        else:
            c_len = rng.randint(30, 130)
        case.day += _days(c_len)
        if home:
            decision = "return_home" if rng.random() < 0.8 else "kinship_care"
        else:
            # Each nation's own permanence orders where the pathway knows them (TRIAL.md):
            # special guardianship in England, a permanence order in Scotland.
            kinds = case.pathway.facts["decision"].values
            options = [
                (kind, weight)
                for kind, weight in (
                    ("adoption", 55),
                    ("kinship_care", 25),
                    ("long_term_foster_care", 20),
                    ("special_guardianship", 20),
                    ("permanence_order", 20),
                )
                if kind in kinds
            ]
            decision = rng.choices([k for k, _ in options], weights=[w for _, w in options])[0]
        facts: dict[str, Any] = {"decision": decision}
        decided = case.add(case.day, "fire", actor=staff["co"], trigger="record_decision")
        if case.delivery is not None and case.knows("permanence_achieved_on"):
            # The decision's day is the day permanence was achieved (TRIAL.md's outcome).
            facts["permanence_achieved_on"] = decided.astimezone(ZoneInfo(site.timezone)).date()
        case.steps[-1].args["facts"] = facts

    # -- a trial family --------------------------------------------------------------------------

    def plan_family(
        self,
        site: _Site,
        trial: Trial,
        reference: str,
        arm: str,
        children: list[str],
        opened_on: dt.date,
        *,
        allocated_after: dt.date,
        quick: bool = False,
        newborn: str | None = None,
        example: bool = False,
    ) -> tuple[list[_Step], dt.date]:
        """Every step of one trial family and its children's cases; and its allocation day.

        The family is referred (opened, enrolled), consents, and is allocated by the trial's
        portal to ``arm`` (recorded by the site's coordinator, no earlier than
        ``allocated_after`` so the portal's sequence keeps its order); the allocation opens the
        children's cases on the arm's pathway. The sibling group's referral is accepted (or
        declined, or paused first) as one family action; from there each child's case runs on
        its own. ``quick``: consent and allocation on consecutive working days (the newest
        family, allocated before the demo ends). ``newborn``: a sibling who joins the family's
        arm months later. ``example``: never declined, withdrawn or paused. The researcher
        records the research visits, most in their windows, some late, some missed, and a few
        families withdraw consent or are lost to follow-up.
        """
        rng = self.rng
        arm_site = dataclasses.replace(site, pathway=trial.pathway_for(arm, site.site))
        family = _CasePlan(self, arm_site, reference)
        staff = family.staff
        researcher = Actor(f"{site.staff}-rs-1", roles={"researcher"})
        known = self._trial_facts(trial, site)
        # Under the trial's portal, fewer than 70% of NIM families received the intervention
        # (BeST?'s results); the comparator services were mostly delivered.
        weights = (55, 30, 15) if arm == "nim" else (80, 15, 5)
        delivery = rng.choices(("received", "partly", "not_received"), weights=weights)[0]

        opened_on = self.working(site, opened_on)
        care_on = opened_on - _days(rng.randint(6, 40))
        # Siblings mostly come into care together: the same day or within days.
        cares = {
            child: care_on + _days(rng.randint(0, 3) if i else 0)
            for i, child in enumerate(children)
        }
        family.add(
            opened_on,
            "open_family",
            actor=family.sw,
            children=list(children),
            facts={child: _facts(known, day) for child, day in cares.items()},
        )
        day = opened_on + _days(1 if quick else rng.randint(1, 6))
        family.add(day, "status", actor=researcher, status="consented", reason=None)
        day = self.working(site, self.working(site, day) + _days(1 if quick else rng.randint(2, 8)))
        allocated_on = max(day, allocated_after)
        allocated_at = family.add(
            allocated_on, "allocate", actor=staff["pc"], arm=arm, allocation_id=None
        )

        # The allocation opened each child's case: its social worker, consent, statutory dates.
        cases: list[tuple[_CasePlan, list[tuple[dt.date, Action, dict[str, Any]]]]] = []
        for number, child in enumerate(children, start=1):
            case = _CasePlan(self, arm_site, child, last=allocated_at, delivery=delivery)
            case.assign(allocated_at, minutes=number)
            case.add(
                allocated_on + _days(rng.randint(0, 3)),
                "record",
                actor=case.sw,
                facts={"consent_recorded": True},
            )
            statutory = self._statutory(arm_site, cares[child], allocated_on, case.staff, case.sw)
            statutory += self._placements(case, cares[child], allocated_on)
            cases.append((case, statutory))
        family.last = max(case.last for case, _ in cases if case.last is not None)
        day = max(case.last.date() for case, _ in cases if case.last is not None)

        steps: list[_Step] = []
        if not example and rng.random() < 0.1:
            # The whole sibling group's work waits, e.g. while the parents are unavailable.
            who = staff["pc"] if rng.random() < 0.5 else staff["tm"]
            paused_at = family.add(
                day + _days(rng.randint(1, 4)),
                "pause_family",
                actor=who,
                reason=rng.choice(_PAUSE_REASONS),
            )
            family.add(paused_at.date() + _days(rng.randint(7, 28)), "resume_family", actor=who)
            day = family.last.date() if family.last is not None else day
        if not example and rng.random() < 0.05:
            # Found ineligible after randomisation: the family's referral is declined.
            declined = family.add(
                day + _days(rng.randint(3, 12)),
                "fire_family",
                actor=staff["tm"],
                trigger="decline_referral",
                reason=rng.choice(_DECLINE_REASONS),
            )
            for case, statutory in cases:
                case.last = declined
                steps += case.merged(statutory)
        else:
            slow = rng.random() < 0.12
            day += _days(rng.randint(12, 24) if slow else rng.randint(1, 8))
            accepted = family.add(
                day, "fire_family", actor=staff["tm"], trigger="accept_referral", reason=None
            )
            for case, statutory in cases:
                case.last = accepted
                case.day = accepted.astimezone(ZoneInfo(site.timezone)).date()
                self._after_acceptance(case)
                plan = case.merged(statutory)
                steps += [s for s in plan if not _closes_or_pauses(s)] if example else plan

        # Later on the family's own clock: a newborn sibling, research visits, trial status.
        later: list[tuple[dt.date, Action, dict[str, Any]]] = []
        anchors = {child: cares[child] for child in children}
        added_on: dt.date | None = None
        if newborn is not None:
            added_on = allocated_on + _days(rng.randint(150, 260))
            born = added_on - _days(rng.randint(0, 5))
            anchors[newborn] = born
            later.append(
                (
                    added_on,
                    "add_child",
                    {"actor": family.sw, "child": newborn, "facts": _facts(known, born)},
                )
            )
        stopped_on: dt.date | None = None
        if not example and newborn is None:
            draw = rng.random()
            if draw < 0.07:
                stopped_on = allocated_on + _days(rng.randint(40, 420))
                status, reason = "withdrawn_consent", "parents withdrew consent to research visits"
            elif draw < 0.13:
                stopped_on = allocated_on + _days(rng.randint(100, 450))
                status, reason = "lost_to_follow_up", "family moved away and could not be traced"
            if stopped_on is not None:
                later.append(
                    (
                        stopped_on,
                        "status",
                        {"actor": researcher, "status": status, "reason": reason},
                    )
                )
        for rule in trial.visits:
            if rule.per != "child" or rule.anchor not in known:
                continue  # month_30, 2.5 years after randomisation, falls after the demo
            subjects = {c: anchors[c] for c in children}
            later += self._visits(
                arm_site, rule, subjects, allocated_on, researcher, together=newborn is None
            )
            if newborn is not None and added_on is not None:
                later += self._visits(
                    arm_site, rule, {newborn: anchors[newborn]}, added_on, researcher
                )
        if stopped_on is not None:
            later = [item for item in later if item[1] != "visit" or item[0] < stopped_on]
        for when, action, args in sorted(later, key=lambda item: (item[0], item[1] != "add_child")):
            at = family.add(when, action, **args)
            if action == "add_child" and newborn is not None:
                steps += self._newborn(arm_site, newborn, anchors[newborn], at, delivery)
        return [*family.steps, *steps], allocated_on

    def _newborn(
        self, site: _Site, reference: str, born: dt.date, added_at: dt.datetime, delivery: str
    ) -> list[_Step]:
        """The plan of a sibling who joined the family's arm (its case opened as it joined)."""
        rng = self.rng
        case = _CasePlan(self, site, reference, last=added_at, delivery=delivery)
        case.assign(added_at)
        added_on = added_at.astimezone(ZoneInfo(site.timezone)).date()
        day = added_on + _days(rng.randint(0, 2))
        case.add(day, "record", actor=case.sw, facts={"consent_recorded": True})
        day += _days(rng.randint(2, 8))
        case.add(day, "fire", actor=case.staff["tm"], trigger="accept_referral")
        case.day = day
        statutory = self._statutory(site, born, added_on, case.staff, case.sw)
        statutory += self._placements(case, born, added_on)
        self._after_acceptance(case)
        return case.merged(statutory)

    def _trial_facts(self, trial: Trial, site: _Site) -> frozenset[str]:
        """The facts every arm's pathway at ``site`` declares (an older version may lack some)."""
        known: set[str] | None = None
        for arm in trial.arms:
            facts = set(self.engine.pathway(trial.pathway_for(arm, site.site)).facts)
            known = facts if known is None else known & facts
        return frozenset(known or ())

    def _placements(
        self, case: _CasePlan, care_on: dt.date, from_day: dt.date
    ) -> list[tuple[dt.date, Action, dict[str, Any]]]:
        """A child's placement moves (each new ``placed_on``), recorded by the social worker.

        The first placement came with the child's facts; one in two children moves once or
        twice more while the case is open (those after it closes are never recorded).
        """
        rng = self.rng
        if not case.knows("placed_on"):
            return []
        moves = rng.choices((0, 1, 2), weights=(50, 35, 15))[0]
        out: list[tuple[dt.date, Action, dict[str, Any]]] = []
        day = max(care_on, from_day)
        for _ in range(moves):
            day += _days(rng.randint(30, 200))
            out.append((day, "record", {"actor": case.sw, "facts": {"placed_on": day}}))
        return out

    def _visits(
        self,
        site: _Site,
        rule: VisitRule,
        anchors: Mapping[str, dt.date],
        earliest: dt.date,
        researcher: Actor,
        *,
        together: bool = False,
    ) -> list[tuple[dt.date, Action, dict[str, Any]]]:
        """When the researcher sees the children for ``rule``: in the window, late, or never.

        ``together``: siblings are usually seen at one home visit (one record for them all);
        now and then each child on a day of their own.
        """
        rng = self.rng
        cal = self.engine.calendar(site.site, site.pathway)
        windows = {
            child: (cal.add(day, rule.opens), cal.add(day, rule.closes))
            for child, day in anchors.items()
        }
        opens = max(max(w[0] for w in windows.values()), earliest + _days(1))
        closes = min(w[1] for w in windows.values())
        draw = rng.random()
        if draw >= 0.86 or opens > closes:
            return []  # missed: nobody saw the family in the window, nor after

        def seen(held: dt.date, child: str | None) -> tuple[dt.date, Action, dict[str, Any]]:
            args = {"actor": researcher, "name": rule.name, "held_on": held, "child": child}
            return (held, "visit", args)

        # One record for the sibling group (the child named when there is one), or one each.
        group = len(anchors) > 1 and together
        if draw >= 0.72:
            late = max(w[1] for w in windows.values()) + _days(rng.randint(3, 30))
            return [seen(late, None)] if group else [seen(late, child) for child in anchors]
        if len(anchors) == 1 or (group and rng.random() < 0.8):
            held = opens + _days(rng.randint(0, (closes - opens).days))
            return [seen(held, None if group else next(iter(anchors)))]
        out: list[tuple[dt.date, Action, dict[str, Any]]] = []
        for child, (first, last) in windows.items():
            start = max(first, earliest + _days(1))
            out.append(seen(start + _days(rng.randint(0, max((last - start).days, 0))), child))
        return out

    def _statutory(
        self,
        site: _Site,
        care_on: dt.date,
        opened_on: dt.date,
        staff: Mapping[str, Actor],
        sw: Actor,
    ) -> list[tuple[dt.date, Action, dict[str, Any]]]:
        """The statutory-clock facts of a case as (record day, action, args), up to ~3 years."""
        rng = self.rng
        out: list[tuple[dt.date, Action, dict[str, Any]]] = []
        horizon = care_on + dt.timedelta(days=1100)

        declared = self.engine.pathway(site.pathway).facts

        def record(day: dt.date, actor: Actor, fact: str, value: dt.date) -> None:
            # An older version of a pathway may not know a fact yet (the demo runs on any).
            if fact in declared:
                out.append((day, "record", {"actor": actor, "facts": {fact: value}}))

        # The law is the site's, whichever service (trial arm) the child is in.
        if site.site == "london":
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
        if site.site in ("london", "glasgow"):
            # Looked-after child reviews: first within 20 working days (England) or 6 weeks
            # (Scotland), second within 3 months, then every 6 months; some are held late.
            first = rng.randint(16, 34) if site.site == "london" else rng.randint(28, 50)
            held = care_on + dt.timedelta(days=first)
            gaps = [rng.randint(75, 100)] + [rng.randint(160, 195) for _ in range(6)]
            for gap in [0, *gaps]:
                # Now and then a review slips by weeks (the IRO is off sick, a hearing moves).
                slip = rng.randint(20, 60) if rng.random() < 0.1 else 0
                held += dt.timedelta(days=gap + slip)
                if held > horizon:
                    break
                record(held + dt.timedelta(days=rng.randint(0, 3)), sw, "lac_review_held_on", held)
        if site.site == "glasgow":
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
        if site.site == "jefferson-parish":
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

    def merge(
        self, case: _CasePlan, statutory: list[tuple[dt.date, Action, dict[str, Any]]]
    ) -> list[_Step]:
        """The case's steps and the statutory-clock steps that fall while it is open."""
        opened_at = case.opened_at
        assert opened_at is not None
        merged = list(case.steps)
        for late, (day, action, args) in enumerate(statutory, start=1):
            when = self.at(case.site, self.working(case.site, day), None)
            if when <= opened_at:
                # Held before the referral: recorded on the day the case is opened.
                when = opened_at + dt.timedelta(minutes=5 * late)
            if case.last is not None and when >= case.last:
                continue
            self.order += 1
            merged.append(_Step(when, self.order, case.reference, action, args))
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
        if site.families:
            # The trial's researcher at the site: consent and the research visits.
            members[f"{site.staff}-rs-1"] = (frozenset({"researcher"}), frozenset({site.site}))
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
        case "open_family":
            site = next(s for s in _SITES if ref.startswith(s.prefix + "-"))
            engine.open_family(
                ref,
                site.site,
                actor,
                children=args["children"],
                trial=DEMO_TRIAL,
                facts=args["facts"],
            )
        case "status":
            engine.set_trial_status(ref, args["status"], actor, reason=args["reason"])
        case "allocate":
            engine.allocate(ref, args["arm"], args["allocation_id"], actor)
        case "fire_family":
            engine.fire_family(ref, args["trigger"], actor, reason=args["reason"])
        case "pause_family":
            engine.pause_family(ref, actor, args["reason"])
        case "resume_family":
            engine.resume_family(ref, actor)
        case "add_child":
            engine.add_child(ref, args["child"], actor, facts=args["facts"])
        case "visit":
            engine.record_visit(ref, args["name"], args["held_on"], actor, child=args["child"])


def _closes_or_pauses(step: _Step) -> bool:
    """Whether ``step`` declines, withdraws, pauses or resumes its case (or family)."""
    trigger = step.args.get("trigger") if step.action in ("fire", "fire_family") else None
    pauses = ("pause", "resume", "pause_family", "resume_family")
    return step.action in pauses or trigger in ("decline_referral", "withdraw")


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
        trial = engine.trials.get(DEMO_TRIAL)
        for site in _SITES:
            if trial is not None and site.families and site.site in trial.sites:
                steps += _plan_trial_site(planner, site, trial, first, end)
                continue
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
        # The portal's allocation ids, in the order it allocated families across the sites.
        allocations = (step for step in steps if step.action == "allocate")
        for number, step in enumerate(allocations, start=1):
            step.args["allocation_id"] = f"BEST-{number:04d}"

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

        summary = summarize(engine, at=as_of, trials=True)
        counts = _counts(engine, events, as_of)
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


def _plan_trial_site(
    planner: _Planner, site: _Site, trial: Trial, first: dt.date, end: dt.date
) -> list[_Step]:
    """The plans of a trial site's families: referred steadily, the newest days before the end.

    The engine never randomises (TRIAL.md: the trial's portal does, and concealment matters):
    here the demo's seeded RNG stands in for the portal, one to one in permuted blocks of four
    per site, and the site's coordinator records each result with ``allocate``.
    """
    rng = planner.rng
    count = site.families
    slot = (_OPENING_DAYS - 30) / (count - 1)
    offsets = [int(i * slot + rng.random() * slot) for i in range(count - 1)]
    arms: list[str] = []
    while len(arms) < count:
        block = ["nim", "nim", "comparator", "comparator"]
        rng.shuffle(block)
        arms += block
    per_year: Counter[int] = Counter()

    def reference(year: int) -> str:
        per_year[year] += 1
        return f"{site.prefix}-{year}-{per_year[year]:04d}"

    steps: list[_Step] = []
    allocated_after = first
    for index in range(count):
        newest = index == count - 1
        if newest:
            # Consent and allocation on consecutive working days, allocated before the end day.
            opened_on = end - _days(rng.randint(6, 9))
            while _quick_allocation(planner, site, opened_on) >= end:
                opened_on -= dt.timedelta(days=1)
        else:
            opened_on = first + _days(offsets[index])
        # London's newest family's only child is the README's example case.
        example = newest and site.site == "london"
        if example:
            children = [EXAMPLE_REFERENCE]
        else:
            size = rng.choices((1, 2, 3), weights=(76, 20, 4))[0]
            children = [reference(opened_on.year) for _ in range(size)]
        # One family at each site has a baby during the trial, who joins the family's arm.
        newborn = reference(opened_on.year) if index == 1 else None
        plan, allocated_after = planner.plan_family(
            site,
            trial,
            f"{site.prefix}-FAM-{index + 1:03d}",
            arms[index],
            children,
            opened_on,
            allocated_after=allocated_after,
            quick=newest,
            newborn=newborn,
            example=example,
        )
        steps += plan
    return steps


def _quick_allocation(planner: _Planner, site: _Site, opened_on: dt.date) -> dt.date:
    """The allocation day of a family opened on ``opened_on`` with ``quick`` steps."""
    consented = planner.working(site, planner.working(site, opened_on) + _days(1))
    return planner.working(site, consented + _days(1))


def _trial_counts(engine: Engine, at: dt.datetime) -> dict[str, dict[str, Any]]:
    """Per trial site: families, children, families per arm and status, visits by status."""
    out: dict[str, dict[str, Any]] = {}
    for family in engine.families(trial=DEMO_TRIAL) if DEMO_TRIAL in engine.trials else []:
        entry = out.setdefault(
            family.site,
            {"families": 0, "children": 0, "arms": {}, "statuses": {}, "visits": {}},
        )
        entry["families"] += 1
        entry["children"] += len(family.cases)
        arm = family.arm or "unallocated"
        entry["arms"][arm] = entry["arms"].get(arm, 0) + 1
        entry["statuses"][family.status] = entry["statuses"].get(family.status, 0) + 1
        for visit in engine.visits(family.reference, at=at):
            by_status = entry["visits"].setdefault(visit.name, {})
            by_status[visit.status] = by_status.get(visit.status, 0) + 1
    return {site: out[site] for site in sorted(out)}


def format_trial(counts: DemoCounts) -> str:
    """The trial's part of the demo's summary: families per arm and visits, per UK site."""
    if not counts.trial:
        return ""
    lines = [f"Trial {DEMO_TRIAL}: families randomised per site and arm, research visits"]
    for site, entry in counts.trial.items():
        arms = ", ".join(f"{arm} {n}" for arm, n in sorted(entry["arms"].items()))
        lines.append(
            f"  {site}: {entry['families']} families ({entry['children']} children); {arms}"
        )
        for name, statuses in entry["visits"].items():
            seen = ", ".join(f"{status} {n}" for status, n in sorted(statuses.items()))
            lines.append(f"    {name}: {seen}")
    return "\n".join(lines) + "\n"


def _counts(engine: Engine, events: Counter[str], at: dt.datetime) -> DemoCounts:
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
        trial=_trial_counts(engine, at),
    )
