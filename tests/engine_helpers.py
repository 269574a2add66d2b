"""Shared helpers for the engine's contract tests: the documented pathway table, actors, walks.

The expectations here are written from PATHWAYS.md (the binding description of the bundled
pathways), not read from the YAML files, so a pathway file that drifts from the contract fails
the suite instead of silently changing what the tests expect.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

import nim_workflow as nw

# -- the contract, as PATHWAYS.md states it -------------------------------------------------------

PATHWAY_IDS = ("nim-uk-england", "nim-uk-scotland", "nim-us-louisiana")
SITES = {
    "nim-uk-england": "london",
    "nim-uk-scotland": "glasgow",
    "nim-us-louisiana": "jefferson-parish",
}
STAGES = ("referral", "assessment", "treatment", "recommendation", "court", "closed")
OPEN_STAGES = STAGES[:-1]
ROLES = ("social_worker", "clinician", "team_manager", "court_officer", "coordinator")
DECISIONS = ("return_home", "adoption", "kinship_care", "long_term_foster_care")
RECOMMENDATIONS = ("return_home", "permanence_away")
COMMON_FACTS = {
    "consent_recorded": "bool",
    "assessment_report_filed": "bool",
    "treatment_review_filed": "bool",
    "final_report_filed": "bool",
    "recommendation": "enum",
    "decision": "enum",
}
DATE_FACTS = {
    "nim-uk-england": ("proceedings_issued_on", "entered_care_on", "lac_review_held_on"),
    "nim-uk-scotland": ("placed_on", "lac_review_held_on", "cso_made_on"),
    "nim-us-louisiana": ("entered_care_on", "permanency_hearing_held_on"),
}


@dataclass(frozen=True)
class TriggerSpec:
    """One row of the PATHWAYS.md trigger table."""

    sources: tuple[str, ...]
    dest: str
    roles: frozenset[str]
    requires: tuple[str, ...] = ()
    reason_required: bool = False
    outcome: str | None = None


TRIGGERS: dict[str, TriggerSpec] = {
    "accept_referral": TriggerSpec(
        ("referral",), "assessment", frozenset({"team_manager"}), ("consent_recorded",)
    ),
    "decline_referral": TriggerSpec(
        ("referral",),
        "closed",
        frozenset({"team_manager"}),
        reason_required=True,
        outcome="not_eligible",
    ),
    "offer_treatment": TriggerSpec(
        ("assessment",), "treatment", frozenset({"team_manager"}), ("assessment_report_filed",)
    ),
    "recommend_without_treatment": TriggerSpec(
        ("assessment",),
        "recommendation",
        frozenset({"team_manager"}),
        ("assessment_report_filed",),
    ),
    "complete_treatment": TriggerSpec(
        ("treatment",),
        "recommendation",
        frozenset({"clinician", "team_manager"}),
        ("treatment_review_filed",),
    ),
    "submit_recommendation": TriggerSpec(
        ("recommendation",),
        "court",
        frozenset({"team_manager"}),
        ("final_report_filed", "recommendation"),
    ),
    "record_decision": TriggerSpec(
        ("court",), "closed", frozenset({"court_officer"}), ("decision",)
    ),
    "withdraw": TriggerSpec(
        OPEN_STAGES,
        "closed",
        frozenset({"team_manager"}),
        reason_required=True,
        outcome="withdrawn",
    ),
}

#: Who may do the actions that are not transitions.
ACTION_ROLES: dict[str, frozenset[str]] = {
    "open_case": frozenset({"social_worker", "team_manager"}),
    "record": frozenset({"social_worker", "clinician", "team_manager", "court_officer"}),
    "pause": frozenset({"team_manager", "coordinator"}),
    "resume": frozenset({"team_manager", "coordinator"}),
}

#: Facts that satisfy each trigger's requirements (decision filled in by the caller).
FACTS_FOR: dict[str, dict[str, Any]] = {
    "accept_referral": {"consent_recorded": True},
    "decline_referral": {},
    "offer_treatment": {"assessment_report_filed": True},
    "recommend_without_treatment": {"assessment_report_filed": True},
    "complete_treatment": {"treatment_review_filed": True},
    "submit_recommendation": {"final_report_filed": True, "recommendation": "return_home"},
    "record_decision": {"decision": "return_home"},
    "withdraw": {},
}

#: The triggers that lead from referral into each stage along the treatment path.
PATH_TO: dict[str, tuple[str, ...]] = {
    "referral": (),
    "assessment": ("accept_referral",),
    "treatment": ("accept_referral", "offer_treatment"),
    "recommendation": ("accept_referral", "offer_treatment", "complete_treatment"),
    "court": (
        "accept_referral",
        "offer_treatment",
        "complete_treatment",
        "submit_recommendation",
    ),
}
WITH_TREATMENT = (*PATH_TO["court"], "record_decision")
WITHOUT_TREATMENT = (
    "accept_referral",
    "recommend_without_treatment",
    "submit_recommendation",
    "record_decision",
)


def triggers_from(stage: str) -> list[str]:
    """Every trigger valid from ``stage``, sorted."""
    return sorted(t for t, spec in TRIGGERS.items() if stage in spec.sources)


def may_fire(role: str, trigger: str) -> bool:
    """Whether PATHWAYS.md lets ``role`` fire ``trigger``."""
    return role in TRIGGERS[trigger].roles


# -- actors and time ------------------------------------------------------------------------------

T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)  # a Monday, away from any bank holiday


def actor(role: str, suffix: str = "1") -> nw.Actor:
    """A one-role actor with a stable id such as ``team_manager-1``."""
    return nw.Actor(f"{role}-{suffix}", roles={role})


SW = actor("social_worker")
CLIN = actor("clinician")
TM = actor("team_manager")
CO = actor("court_officer")
COORD = actor("coordinator")
#: Holds every role that fires a transition: for getting a case into position quickly.
EVERYONE = nw.Actor("setup-1", roles=set(ROLES))


def firer(trigger: str) -> nw.Actor:
    """A one-role actor allowed to fire ``trigger``."""
    return CO if trigger == "record_decision" else TM


class Clock:
    """A settable clock for ``nw.Engine(clock=...)``: case times never come from the wall."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        """Move the clock on by a ``timedelta(**delta)`` and return the new instant."""
        self.now = self.now + dt.timedelta(**delta)
        return self.now


def new_engine(url: str | sa.Engine, clock: Clock | None = None) -> nw.Engine:
    """An engine on ``url`` with an injected clock, migrated."""
    engine = nw.Engine(url, clock=clock or Clock())
    engine.migrate()
    return engine


def open_at(
    engine: nw.Engine,
    reference: str,
    stage: str,
    *,
    pathway: str = "nim-uk-england",
    clock: Clock | None = None,
    facts: Mapping[str, Any] | None = None,
) -> nw.Case:
    """Open a case and move it along the treatment path into ``stage``, facts in place to go on.

    The facts every trigger needs are recorded as the case goes, so the case is ready for any
    trigger valid from ``stage``; ``facts`` are added at opening.
    """
    case = engine.open_case(reference, pathway=pathway, site=SITES[pathway], actor=SW, facts=facts)
    for trigger in PATH_TO[stage]:
        if clock is not None:
            clock.advance(days=1)
        case = engine.fire(reference, trigger, actor=EVERYONE, facts=FACTS_FOR[trigger])
    ready: dict[str, Any] = {}
    for trigger in triggers_from(stage):
        ready.update(FACTS_FOR[trigger])
    if ready:
        case = engine.record(reference, ready, actor=SW)
    return case


# -- looking at the database directly -------------------------------------------------------------


def reflect(bind: sa.Engine | sa.Connection) -> sa.MetaData:
    """The database's tables as they are, reflected (not the package's own metadata)."""
    metadata = sa.MetaData()
    metadata.reflect(bind)
    return metadata


_REFLECTED: weakref.WeakKeyDictionary[sa.Engine, sa.MetaData] = weakref.WeakKeyDictionary()


def tables_of(bind: sa.Engine) -> sa.MetaData:
    """The reflected tables of a database, reflected once per SQLAlchemy engine."""
    # Reflection is slow and the schema does not change within a test.
    metadata = _REFLECTED.get(bind)
    if metadata is None:
        metadata = _REFLECTED[bind] = reflect(bind)
    return metadata


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        # SQLite hands back naive UTC, PostgreSQL aware: compare instants.
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    if isinstance(value, str):
        # JSON may come back as text on one backend and as objects on the other.
        try:
            loaded = json.loads(value)
        except ValueError:
            return value
        return loaded if isinstance(loaded, dict | list) else value
    return value


def dump(bind: sa.Engine, *, skip: Iterable[str] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted, keyed by table name (``skip`` leaves tables out)."""
    skipped = set(skip)
    out: dict[str, list[tuple[Any, ...]]] = {}
    tables = tables_of(bind).sorted_tables
    with bind.connect() as conn:
        for table in tables:
            if table.name in skipped:
                continue
            rows = [tuple(_plain(v) for v in row) for row in conn.execute(sa.select(table))]
            out[table.name] = sorted(rows, key=repr)
    return out


def strings_in(value: Any) -> Iterable[str]:
    """Every string inside a value, JSON included (keys and values)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)
    elif value is not None:
        yield str(value)


def snapshot(engine: nw.Engine, reference: str) -> dict[str, Any]:
    """What the engine says about one case, and every table except the audit log's."""
    try:
        case: Any = engine.case(reference)
    except nw.CaseNotFound:
        case = None
    return {
        "case": case,
        "history": engine.history(reference) if case is not None else None,
        "deadlines": engine.deadlines(reference) if case is not None else None,
        "tables": dump(
            engine.sqlalchemy_engine,
            skip=("nimwf_audit_events", "nimwf_audit_chains", "nimwf_audit_log"),
        ),
    }


def expect_denied(
    engine: nw.Engine,
    reference: str,
    call: Callable[[], object],
    error: type[nw.NimWorkflowError],
    *,
    actor_id: str,
) -> tuple[nw.NimWorkflowError, nw.AuditEvent]:
    """Run a refused call; check it raised ``error``, changed nothing, and audited one denial."""
    before = snapshot(engine, reference)
    audit_before = engine.audit()
    try:
        call()
    except error as raised:
        caught: nw.NimWorkflowError = raised
    else:  # pragma: no cover - reported as the failure
        raise AssertionError(f"expected {error.__name__}, the call succeeded")
    assert snapshot(engine, reference) == before
    new = engine.audit(after_seq=audit_before[-1].seq if audit_before else 0)
    assert [e.action for e in new] == ["denied"], new
    denied = new[0]
    assert denied.reference == reference
    assert denied.actor_id == actor_id
    # The denial names who (actor, roles), what (the action or trigger) and why (the error).
    assert denied.detail.get("error") == type(caught).__name__
    assert denied.detail.get("action") or denied.trigger
    assert denied.roles
    assert engine.verify_audit().ok
    return caught, denied


def expect_nothing_written(
    engine: nw.Engine,
    reference: str,
    call: Callable[[], object],
    error: type[BaseException],
) -> BaseException:
    """Run a rejected call; check it raised ``error`` and wrote nothing at all, audit included."""
    before = dump(engine.sqlalchemy_engine)
    try:
        call()
    except error as raised:
        caught: BaseException = raised
    else:  # pragma: no cover - reported as the failure
        raise AssertionError(f"expected {error.__name__}, the call succeeded")
    assert dump(engine.sqlalchemy_engine) == before
    return caught


# -- concurrency workers (module level, so a spawned process can import them) ---------------------

#: The stage a concurrent walker sees, and the trigger it fires from there.
RACE_PLAN = {
    "referral": "accept_referral",
    "assessment": "offer_treatment",
    "treatment": "complete_treatment",
    "recommendation": "submit_recommendation",
    "court": "record_decision",
}
RACE_FACTS = {
    "consent_recorded": True,
    "assessment_report_filed": True,
    "treatment_review_filed": True,
    "final_report_filed": True,
    "recommendation": "permanence_away",
    "decision": "kinship_care",
}


def race(
    url: str, references: list[str], use_expected_version: bool, start: Callable[[], object]
) -> dict[str, Any]:
    """Drive every case to closed as fast as possible against rival walkers; count the results.

    Each walker builds its own ``nw.Engine`` from the URL. First every walker tries to open every
    case (one may; the others must get CaseExists). Then it reads each case, fires the trigger the
    plan gives for its stage (with ``expected_version`` if asked) and goes on until every case is
    closed. Returns cases opened, successes per case and the type names of every error met.
    """
    engine = nw.Engine(url, clock=lambda: T0)
    opened = dict.fromkeys(references, 0)
    wins = dict.fromkeys(references, 0)
    errors: list[str] = []
    refused_not_allowed = 0
    try:
        start()
        began = time.time()
        for reference in references:
            try:
                engine.open_case(reference, pathway="nim-uk-england", site="london", actor=SW)
            except nw.CaseExists:
                errors.append("CaseExists")
            except Exception as exc:
                errors.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
            else:
                opened[reference] += 1
        pending = list(references)
        rounds = 0
        while pending and rounds < 200:
            rounds += 1
            for reference in list(pending):
                case = engine.case(reference)
                if case.closed_at is not None:
                    pending.remove(reference)
                    continue
                trigger = RACE_PLAN[case.stage]
                try:
                    engine.fire(
                        reference,
                        trigger,
                        actor=EVERYONE,
                        facts=RACE_FACTS,
                        expected_version=case.version if use_expected_version else None,
                    )
                except nw.TransitionNotAllowed:
                    refused_not_allowed += 1
                    errors.append("TransitionNotAllowed")
                except nw.ConcurrentUpdate:
                    errors.append("ConcurrentUpdate")
                except Exception as exc:
                    errors.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
                else:
                    wins[reference] += 1
        ended = time.time()
    finally:
        engine.close()
    return {
        "opened": opened,
        "wins": wins,
        "errors": errors,
        "not_allowed": refused_not_allowed,
        "window": (began, ended),
    }


def race_in_process(
    url: str,
    references: list[str],
    use_expected_version: bool,
    barrier: Any,
    results: Any,
) -> None:
    """The body of one spawned process: race, then put the result (or the crash) on a queue."""
    try:
        results.put(race(url, references, use_expected_version, lambda: barrier.wait(60)))
    except BaseException as exc:
        results.put({"crash": f"{type(exc).__name__}: {exc}"})
