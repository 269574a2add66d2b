"""Helpers shared by the deadline, processor and engine-property tests.

Times of day are always explicit: ``utc(...)`` for instants given in UTC, ``london(...)`` and
``chicago(...)`` for instants given as a site's wall-clock time. The engines built here take an
injected clock, so no test ever depends on when it runs.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing.synchronize
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

import nim_workflow as nw
from nim_workflow import _engine as _engine_module
from nim_workflow._store._schema import alarms

ENGLAND = "nim-uk-england"
SCOTLAND = "nim-uk-scotland"
LOUISIANA = "nim-us-louisiana"
PATHWAYS = (ENGLAND, SCOTLAND, LOUISIANA)

#: The site each pathway's cases are opened at unless a test names another. Louisiana's is
#: ``new-orleans``, a test site without the Jefferson Parish court closures, so the dates worked
#: by hand count the state's holidays only (``jefferson-parish`` is named where they matter).
SITE = {ENGLAND: "london", SCOTLAND: "glasgow", LOUISIANA: "new-orleans"}

#: The sites the engines built here declare: the bundled ones, and two with no closures of their
#: own, one for Louisiana (``new-orleans``) and one more for England (``croydon``).
TEST_SITES = (
    *nw.bundled_sites().values(),
    nw.Site(
        id="new-orleans",
        title="New Orleans (a test site without local closures)",
        timezone="America/Chicago",
        calendar="louisiana",
        pathways={LOUISIANA},
    ),
    nw.Site(
        id="croydon",
        title="Croydon (a test site without local closures)",
        timezone="Europe/London",
        calendar="england-and-wales",
        pathways={ENGLAND},
    ),
)

LONDON_TZ = ZoneInfo("Europe/London")
CHICAGO_TZ = ZoneInfo("America/Chicago")
TZ = {ENGLAND: LONDON_TZ, SCOTLAND: LONDON_TZ, LOUISIANA: CHICAGO_TZ}

#: For each pathway, date facts that start every statutory clock it has.
CLOCK_FACTS = {
    ENGLAND: ("proceedings_issued_on", "entered_care_on"),
    SCOTLAND: ("placed_on", "cso_made_on"),
    LOUISIANA: ("entered_care_on",),
}

SOCIAL_WORKER = nw.Actor("sw-017", roles={"social_worker"})
TEAM_MANAGER = nw.Actor("tm-004", roles={"team_manager"})
CLINICIAN = nw.Actor("cl-009", roles={"clinician"})
COURT_OFFICER = nw.Actor("co-002", roles={"court_officer"})
COORDINATOR = nw.Actor("pc-001", roles={"coordinator"})

#: The trigger (with who fires it and the facts it needs) that brings a case into each stage.
ENTRY = {
    "assessment": ("accept_referral", TEAM_MANAGER, {"consent_recorded": True}),
    "treatment": ("offer_treatment", TEAM_MANAGER, {"assessment_report_filed": True}),
    "recommendation": ("complete_treatment", CLINICIAN, {"treatment_review_filed": True}),
    "court": (
        "submit_recommendation",
        TEAM_MANAGER,
        {"final_report_filed": True, "recommendation": "return_home"},
    ),
}
STAGE_ORDER = ("referral", "assessment", "treatment", "recommendation", "court")

ALARM_ACTIONS = ("reminder", "breach", "escalation")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """An aware instant given in UTC."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def london(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """An aware instant given as wall-clock time in London (GMT or BST as the date has it)."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=LONDON_TZ)


def chicago(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """An aware instant given as wall-clock time in Chicago (CST or CDT)."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=CHICAGO_TZ)


class FakeClock:
    """An injectable clock that only moves when a test moves it."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, now: dt.datetime) -> None:
        """Jump to ``now`` (forwards or backwards)."""
        self.now = now


@contextmanager
def migrated_engine(
    url: str,
    clock: FakeClock | None = None,
    closures: Mapping[str, Any] | None = None,
) -> Iterator[nw.Engine]:
    """A migrated engine over ``url``, declaring ``TEST_SITES``, that is closed afterwards."""
    engine = nw.Engine(
        url, clock=clock or FakeClock(utc(2026, 1, 1)), closures=closures, sites=TEST_SITES
    )
    try:
        engine.migrate()
        yield engine
    finally:
        engine.close()


def open_case(
    engine: nw.Engine,
    reference: str,
    pathway: str,
    at: dt.datetime | None,
    *,
    site: str | None = None,
    facts: Mapping[str, Any] | None = None,
) -> nw.Case:
    """Open a case in ``referral`` at ``at`` (``None``: the engine's clock), as a social worker."""
    return engine.open_case(
        reference,
        pathway=pathway,
        site=site or SITE[pathway],
        actor=SOCIAL_WORKER,
        at=at,
        facts=facts,
    )


def enter(engine: nw.Engine, reference: str, stage: str, at: dt.datetime) -> nw.Case:
    """Fire the trigger that moves the case from the previous stage into ``stage`` at ``at``."""
    trigger, actor, facts = ENTRY[stage]
    return engine.fire(reference, trigger, actor=actor, at=at, facts=facts)


def case_in_stage(
    engine: nw.Engine,
    reference: str,
    pathway: str,
    stage: str,
    entered_at: dt.datetime,
    *,
    site: str | None = None,
    facts: Mapping[str, Any] | None = None,
) -> nw.Case:
    """A case that entered ``stage`` at ``entered_at``, having passed the earlier stages then.

    Every earlier stage is entered and left at the same instant, so its deadlines are settled
    ``met`` and raise no alarms.
    """
    case = open_case(engine, reference, pathway, entered_at, site=site, facts=facts)
    for step in STAGE_ORDER[1 : STAGE_ORDER.index(stage) + 1]:
        case = enter(engine, reference, step, entered_at)
    return case


def deadline(
    engine: nw.Engine, reference: str, name: str, occurrence: int | None = None
) -> nw.Deadline:
    """The newest deadline of ``name`` on the case (or its ``occurrence``-th one)."""
    found = [
        d
        for d in engine.deadlines(reference)
        if d.name == name and (occurrence is None or d.occurrence == occurrence)
    ]
    assert found, f"{reference} has no {name!r} deadline (occurrence {occurrence})"
    return found[-1]


def action_counts(engine: nw.Engine, reference: str | None = None) -> Counter[str]:
    """How many audit events of each action there are (of one case, or of all)."""
    return Counter(event.action for event in engine.audit(reference))


def alarm_keys(engine: nw.Engine, reference: str | None = None) -> Counter[tuple[str, ...]]:
    """Fired alarms in the audit log, counted per (reference, deadline, kind, label, due instant).

    The instant the alarm was due is part of the key because one deadline may raise several
    reminders with the same label (England's monthly treatment updates).
    """
    return Counter(
        (
            e.reference,
            f"{e.detail['deadline']}#{e.detail['occurrence']}",
            e.action,
            str(e.detail["label"]),
            str(e.detail["alarm_due_at"]),
        )
        for e in engine.audit(reference)
        if e.action in ALARM_ACTIONS
    )


def event_keys(events: list[nw.Event]) -> list[tuple[str, str, str, str]]:
    """Events returned by ``process_due`` as sorted (reference, deadline, kind, label)."""
    return sorted(
        (e.reference, str(e.detail["deadline"]), e.kind, str(e.detail["label"])) for e in events
    )


def alarm_statuses(engine: nw.Engine, *, due_by: dt.datetime | None = None) -> Counter[str]:
    """How many stored alarm rows have each status (only those due by ``due_by``, if given)."""
    query = sa.select(alarms.c.status, sa.func.count()).group_by(alarms.c.status)
    if due_by is not None:
        query = query.where(alarms.c.due_at <= due_by)
    with engine.sqlalchemy_engine.connect() as conn:
        return Counter({status: int(n) for status, n in conn.execute(query)})


def process_due_worker(
    url: str,
    at_iso: str,
    barrier: multiprocessing.synchronize.Barrier,
    results: Any,
    batch: int = 10,
) -> None:
    """Run in a spawned process: build an engine from ``url``, wait for the others, process.

    Puts ``("ok", fired, began, ended)`` (wall-clock seconds) on ``results``. Batches are kept
    small so the due alarms are more than one batch, and the workers share them out.
    """
    _engine_module._PROCESS_BATCH = batch
    engine = nw.Engine(url, clock=FakeClock(dt.datetime.fromisoformat(at_iso)))
    try:
        barrier.wait(timeout=60)
        began = time.time()
        fired = engine.process_due(at=dt.datetime.fromisoformat(at_iso), allow_future=True)
        results.put(("ok", len(fired), began, time.time()))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(("error", f"{type(exc).__name__}: {exc}", 0.0, 0.0))
    finally:
        engine.close()
