"""The engine's deciding part: whether a command may act on a case, and the values it writes.

Everything here is decided from what a command holds in memory (the case's row read under its
lock, the pathway, the actor, the arguments) and runs no SQL. A refusal the pathway or the law
makes (a role missing, a closed or paused case, a blank reason, an extension used up) is
*returned*, for the engine to audit as ``denied`` and raise; a malformed argument, which writes
nothing at all, is raised here as :class:`InvalidInput`. :mod:`._deadlines` decides the clocks,
:mod:`._machine` the transitions; this module decides the rest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from nim_workflow import _validate
from nim_workflow._errors import (
    ActionRefused,
    CasePaused,
    ConcurrentUpdate,
    ExtensionNotAllowed,
    InvalidInput,
    PermissionDenied,
    RequirementsNotMet,
    StaffNotFound,
    TransitionNotAllowed,
)
from nim_workflow._pathway._model import DeadlineRule, Duration, FactSpec, Pathway
from nim_workflow._store._case_state import CaseState
from nim_workflow._values import Actor, StaffMember

__all__ = [
    "MAX_GRANT",
    "changed_facts",
    "check_not_before",
    "check_upgrade",
    "check_version",
    "closure_date",
    "coerce_fact",
    "coerce_facts",
    "date_facts",
    "enter_stage",
    "extension_refusal",
    "extension_use_refusal",
    "facts_from_json",
    "facts_to_json",
    "fire_refusal",
    "granted",
    "may_act",
    "pause_refusal",
    "stage_map",
]

#: The most of any unit an extension's ``by=`` may name: no rule's step is longer (the loader
#: allows at most 1,000 of any unit).
MAX_GRANT = 1000
#: How many of an upgrade's problems its refusal lists before counting the rest.
_PROBLEMS_SHOWN = 5


# -- the case as it stands ---------------------------------------------------------------------


def check_version(case: Any, expected: int | None) -> None:
    """Refuse a command made against a version of the case that is no longer current."""
    if expected is not None and case.version != expected:
        raise ConcurrentUpdate(case.reference, expected, case.version)


def check_not_before(case: Any, when: dt.datetime) -> None:
    """Refuse a command dated before the case's newest change: history is written in order."""
    newest = case.updated_at or case.stage_entered_at
    if when < newest:
        raise InvalidInput(
            f"case {case.reference}: {when.isoformat()} is before its newest change "
            f"({newest.isoformat()}); history is written in order",
            field="at",
        )


def may_act(case: Any, actor: Actor, action: str, allowed: frozenset[str]) -> ActionRefused | None:
    """Whether ``actor`` may take ``action`` (one of ``allowed``'s roles) on an open case."""
    if not actor.roles & allowed:
        return PermissionDenied(case.reference, action, actor.id, allowed)
    if case.closed_at is not None:
        return TransitionNotAllowed(case.reference, action, case.stage, ())
    return None


def check_worker(worker: str, member: StaffMember | None, site: str, pathway: Pathway) -> None:
    """Refuse a worker who cannot hold a case at ``site`` on ``pathway``: nothing is written.

    They must be on the staff roster now, work at the site and hold one of the pathway's roles.
    """
    if member is None:
        raise StaffNotFound(worker)
    if not member.active:
        raise StaffNotFound(worker, removed=True)
    if not member.works_at(site):
        raise InvalidInput(
            f"{worker} does not work at {site} (their sites: {', '.join(sorted(member.sites))})",
            field="worker",
        )
    if not member.roles & pathway.roles.keys():
        raise InvalidInput(
            f"{worker} holds no role of pathway {pathway.id} (their roles: "
            f"{', '.join(sorted(member.roles))}; the pathway's: "
            f"{', '.join(sorted(pathway.roles))})",
            field="worker",
        )


def fire_refusal(case: Any, trigger: str) -> ActionRefused | None:
    """What stops any trigger before the pathway is asked: a closed case, then a paused one."""
    if case.closed_at is not None:
        return TransitionNotAllowed(case.reference, trigger, case.stage, ())
    if case.paused_at is not None:
        return CasePaused(case.reference, trigger)
    return None


def pause_refusal(case: Any, reason: str | None) -> ActionRefused | None:
    """What stops a pause an actor may make: the case already paused, or no reason given."""
    if case.paused_at is not None:
        return CasePaused(case.reference, "pause")
    if _blank(reason):
        return RequirementsNotMet(case.reference, "pause", ("reason",))
    return None


def enter_stage(state: CaseState, stage: str, at: dt.datetime, by: str | None) -> None:
    """Close the case's open stage interval (if any) and open one for ``stage``."""
    for interval in state.rows["intervals"]:
        if interval.left_at is None:
            state.change("intervals", interval, left_at=at, left_by=by)
    state.add("intervals", stage=stage, entered_at=at, left_at=None, entered_by=by, left_by=None)


# -- extensions --------------------------------------------------------------------------------


def extension_refusal(
    reference: str, name: str, rule: DeadlineRule, actor: Actor
) -> ActionRefused | None:
    """Whether ``rule`` may be extended at all, and by this actor."""
    if rule.extension is None:
        return ExtensionNotAllowed(reference, name, "its rule allows no extension")
    if not actor.roles & rule.extension.roles:
        return PermissionDenied(reference, f"extend {name}", actor.id, rule.extension.roles)
    return None


def extension_use_refusal(
    reference: str, name: str, rule: DeadlineRule, extensions: int, reason: str | None
) -> ActionRefused | None:
    """Whether an open deadline extended ``extensions`` times may be extended once more now."""
    assert rule.extension is not None  # extension_refusal() came first
    limit = rule.extension.limit
    if limit is not None and extensions >= limit:
        return ExtensionNotAllowed(
            reference,
            name,
            f"already extended {extensions} time(s), the most its rule allows "
            f"({limit} x {rule.extension.step})",
        )
    if _blank(reason):
        return RequirementsNotMet(reference, f"extend {name}", ("reason",))
    return None


def granted(by: object) -> Duration | None:
    """``extend_deadline``'s ``by``: a pathway-style duration or a timedelta of whole days."""
    if by is None:
        return None
    if isinstance(by, dt.timedelta):
        if by % dt.timedelta(days=1):
            raise InvalidInput(f"by={by} is not a whole number of days", field="by")
        length = Duration(amount=by.days, unit="days")
    elif isinstance(by, str):
        try:
            length = Duration.parse(by[:40])
        except ValueError as exc:
            raise InvalidInput(f"by: {exc}", field="by") from None
    else:
        raise InvalidInput(
            f"by must be a duration such as '4 weeks' or a timedelta, not {type(by).__name__}",
            field="by",
        )
    if length.amount <= 0:
        raise InvalidInput(f"by={length} must be longer than zero", field="by")
    if length.amount > MAX_GRANT:
        # No step is this long, and the calendar arithmetic of comparing it with the step
        # would overflow.
        raise InvalidInput(
            f"by={_validate.shown(str(length))} is longer than any extension step", field="by"
        )
    return length


# -- facts -------------------------------------------------------------------------------------


def coerce_facts(pathway: Pathway, facts: Mapping[str, Any] | None) -> dict[str, Any]:
    """A command's facts checked against the pathway's declarations, each in its stored type."""
    if facts is None:
        return {}
    _validate.fact_names(facts)
    out: dict[str, Any] = {}
    for name, value in facts.items():
        spec = pathway.facts.get(name)
        if spec is None:
            declared = ", ".join(sorted(pathway.facts))
            raise InvalidInput(
                f"fact {_validate.shown(name)} is not declared by pathway {pathway.id} "
                f"(declared: {declared}); the engine stores only declared facts",
                field="facts",
            )
        out[name] = coerce_fact(spec, value)
    return out


def coerce_fact(spec: FactSpec, value: Any) -> Any:
    """One fact's value checked against its declaration: a bool, a date or one of its values."""
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise InvalidInput(
                f"fact {spec.name!r} is true or false, not {_validate.shown(value)}",
                field=spec.name,
            )
        return value
    if spec.type == "date":
        return _validate.date_value(value, spec.name)
    if not isinstance(value, str) or value not in spec.values:
        raise InvalidInput(
            f"fact {spec.name!r} must be one of {', '.join(spec.values)}; "
            f"got {_validate.shown(value)}",
            field=spec.name,
        )
    return value


def changed_facts(stored: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of ``new`` whose values differ from (or are missing in) ``stored``."""
    return {name: value for name, value in new.items() if stored.get(name) != value}


def date_facts(facts: Mapping[str, Any]) -> dict[str, dt.date]:
    """The facts whose values are dates (the ones that can start or move a clock)."""
    return {name: value for name, value in facts.items() if isinstance(value, dt.date)}


def facts_to_json(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Facts in their stored form: dates as ISO text, names sorted."""
    return {
        name: value.isoformat() if isinstance(value, dt.date) else value
        for name, value in sorted(facts.items())
    }


def facts_from_json(pathway: Pathway, stored: Mapping[str, Any]) -> dict[str, Any]:
    """Stored facts back in their declared types (a date fact's ISO text as a date)."""
    out: dict[str, Any] = {}
    for name, value in stored.items():
        spec = pathway.facts.get(name)
        if spec is not None and spec.type == "date" and isinstance(value, str):
            out[name] = dt.date.fromisoformat(value)
        else:
            out[name] = value
    return out


# -- sites and pathway versions ----------------------------------------------------------------


def closure_date(site: str, day: object) -> dt.date:
    """One of a site's closures: a ``datetime.date`` in range (the argument is typed as dates)."""
    if isinstance(day, str):
        raise InvalidInput(
            f"closures[{site!r}]: {_validate.shown(day)} is not a datetime.date", field="closures"
        )
    try:
        return _validate.date_value(day, f"closures[{site!r}]")
    except InvalidInput as refused:
        raise InvalidInput(str(refused), field="closures") from None


def stage_map(target: Pathway, mapping: Mapping[str, str] | None) -> dict[str, str]:
    """``upgrade_cases``' stage map, checked: each new stage must be one of ``target``'s."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise InvalidInput("stage_map must map old stage ids to new ones", field="stage_map")
    stages = {stage.id for stage in target.stages}
    checked: dict[str, str] = {}
    for old, new in mapping.items():
        _validate.identifier(old, "stage_map", "a stage id")
        _validate.identifier(new, "stage_map", "a stage id")
        if new not in stages:
            raise InvalidInput(
                f"stage_map: {new[:100]!r} is not a stage of {target.id} version "
                f"{target.version} (its stages: {', '.join(sorted(stages))})",
                field="stage_map",
            )
        checked[old] = new
    return checked


def check_upgrade(
    target: Pathway,
    mapping: Mapping[str, str],
    running: Iterable[Any],
    olds: Mapping[int, Pathway],
) -> None:
    """Refuse, naming every case it concerns, an upgrade some running case cannot make.

    ``running`` holds each open case's ``reference``, ``pathway_version``, ``stage`` and stored
    ``facts``; ``olds`` the pathway version each is on. A case in a stage ``target`` lacks needs
    ``mapping``; a stage may not map to a final one; a case may not hold a fact ``target`` does
    not declare. ``mapping`` may not name a stage no version in use has.
    """
    new_stages = {stage.id for stage in target.stages}
    known = new_stages.union(*({stage.id for stage in old.stages} for old in olds.values()))
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise InvalidInput(
            f"stage_map names stages no version of {target.id} in use has: "
            f"{', '.join(repr(name[:100]) for name in unknown[:_PROBLEMS_SHOWN])}",
            field="stage_map",
        )
    problems: list[str] = []
    for row in running:
        stage = mapping.get(row.stage, row.stage)
        if stage not in new_stages:
            problems.append(
                f"case {row.reference} is in stage {row.stage!r}, which version "
                f"{target.version} lacks: map it with stage_map={{{row.stage!r}: ...}}"
            )
        elif target.stage(stage).final:
            problems.append(f"case {row.reference}: {stage!r} is a final stage")
        held = facts_from_json(olds[row.pathway_version], row.facts)
        undeclared = sorted(set(held) - set(target.facts))
        if undeclared:
            problems.append(
                f"case {row.reference} holds facts version {target.version} does not "
                f"declare: {', '.join(undeclared)}"
            )
    if problems:
        shown = "; ".join(problems[:_PROBLEMS_SHOWN])
        more = len(problems) - _PROBLEMS_SHOWN
        tail = f"; and {more} more" if more > 0 else ""
        raise InvalidInput(
            f"cannot upgrade {target.id} to version {target.version}: {shown}{tail}",
            field="stage_map",
        )


def _blank(reason: str | None) -> bool:
    return reason is None or not str(reason).strip()
