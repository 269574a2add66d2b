# mypy: disable-error-code="misc"
# (The mixin's methods annotate ``self`` as the Engine they are part of, which mypy flags as misc.)
"""The trial's families: open, add a sibling, allocate, trial status, family actions, visits.

TRIAL.md. A family is the sibling group the trial randomises: a reference, a site, a trial and
its children's cases. :class:`FamilyActions` is part of :class:`~nim_workflow.Engine` (a mixin,
kept apart because the trial is its own subject); every method here runs through the engine's
units of work, so a family's change, its children's case changes and their audit entries
commit together or not at all.

- A family has its own audit chain (stream ``family``): opened, child added, allocated, status
  changed, each family action, each visit recorded and each visit reminder.
- ``allocate`` records the trial portal's result once and never invents one: it opens each
  child's case on the arm's pathway for the site (or moves a case still at its first stage
  onto it), and plans the research visits.
- Trial status is not service status: withdrawing consent stops research visits (their
  reminders are cancelled), not the children's cases.
- Family actions (``fire_family``, ``pause_family``, ``resume_family``) run the engine's own
  case commands on every open child case inside one transaction: if any child refuses, none
  moves, and only that refusal is audited.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from nim_workflow import _deadlines, _decide, _validate
from nim_workflow._calendar import WorkingCalendar
from nim_workflow._deadlines import CaseClock
from nim_workflow._errors import (
    ActionRefused,
    AlreadyAllocated,
    FamilyExists,
    FamilyNotFound,
    InvalidInput,
    OutsideWindow,
    PermissionDenied,
)
from nim_workflow._pathway._model import Pathway
from nim_workflow._store._case_state import Row
from nim_workflow._store._schema import (
    cases,
    families,
    family_children,
    visit_alarms,
    visits,
)
from nim_workflow._trial import _visits
from nim_workflow._trial._model import RANDOMISED, Trial, VisitRule
from nim_workflow._values import Actor, Case, Family, Visit

if TYPE_CHECKING:
    from nim_workflow._engine import Engine, _Unit

__all__ = ["FamilyActions"]

#: Statuses a family may be moved into by ``set_trial_status``, from the statuses listed.
#: ``randomised`` is the allocation's; a family lost to follow-up and found again returns to it.
_STATUS_FROM: Mapping[str, frozenset[str]] = {
    "consented": frozenset({"enrolled"}),
    "randomised": frozenset({"lost_to_follow_up"}),
    "withdrawn_consent": frozenset({"enrolled", "consented", "randomised", "lost_to_follow_up"}),
    "lost_to_follow_up": frozenset({"randomised"}),
    "completed": frozenset({"randomised"}),
}


def _children_of(conn: Connection, family: str) -> list[Any]:
    return list(
        conn.execute(
            sa.select(family_children)
            .where(family_children.c.family == family)
            .order_by(family_children.c.joined_at, family_children.c.reference)
        ).all()
    )


def _to_family(row: Any, children: Sequence[Any]) -> Family:
    return Family(
        reference=row.reference,
        site=row.site,
        trial=row.trial,
        arm=row.arm,
        allocation_id=row.allocation_id,
        status=row.status,
        cases=tuple(child.reference for child in children),
        opened_at=row.opened_at,
        allocated_at=row.allocated_at,
        randomised_on=row.randomised_on,
        version=row.version,
    )


def _anchor_of(facts: Mapping[str, Any], rule: VisitRule) -> dt.date | None:
    """The date a visit per child runs from: its anchor fact as the child's case holds it."""
    value = facts.get(rule.anchor)
    return None if value is None else dt.date.fromisoformat(value)


def _child_list(children: object) -> list[str]:
    if isinstance(children, str | bytes) or not isinstance(children, Sequence | frozenset | set):
        raise InvalidInput(
            "children must be a list of case references, e.g. ['GLA-0001', 'GLA-0002']",
            field="children",
        )
    out: list[str] = []
    for child in children:
        _validate.identifier(child, "children", "a case reference")
        if child in out:
            raise InvalidInput(f"child {child!r} is listed twice", field="children")
        out.append(child)
    return out


class FamilyActions:
    """The trial's calls on :class:`~nim_workflow.Engine` (TRIAL.md, API.md's additions)."""

    # -- trials ------------------------------------------------------------------------------------

    @property
    def trials(self: Engine) -> Mapping[str, Trial]:
        """The trials this engine runs, by id."""
        return dict(self._trials)

    def _trial(self: Engine, trial_id: object) -> Trial:
        name = _validate.identifier(trial_id, "trial")
        found = self._trials.get(name)
        if found is None:
            known = ", ".join(sorted(self._trials)) or "(none)"
            raise InvalidInput(f"unknown trial {name!r}; this engine runs: {known}", field="trial")
        return found

    def _family_calendar(self: Engine, trial: Trial, site: str, arm: str | None) -> WorkingCalendar:
        """The site's calendar as the family's arm (before allocation, the first arm) runs it."""
        arm_id = arm if arm is not None else sorted(trial.arms)[0]
        return self._calendar(self.pathway(trial.pathway_for(arm_id, site)), site)

    def _lock_family(self: Engine, conn: Connection, reference: str) -> Any:
        query = sa.select(families).where(families.c.reference == reference)
        if self._dialect == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise FamilyNotFound(reference)
        return row

    @staticmethod
    def _check_family_not_before(row: Any, when: dt.datetime) -> None:
        """Refuse a family action dated before the family's newest change: history is in order."""
        if when < row.updated_at:
            raise InvalidInput(
                f"family {row.reference}: {when.isoformat()} is before its newest change "
                f"({row.updated_at.isoformat()}); history is written in order",
                field="at",
            )

    def _stored_family(self: Engine, conn: Connection, reference: str) -> Family:
        """The family as this transaction now has it, with its children."""
        return _to_family(self._lock_family(conn, reference), _children_of(conn, reference))

    def _check_family_may(
        self: Engine,
        unit: _Unit,
        trial: Trial,
        family: str,
        actor: Actor,
        action: str,
        when: dt.datetime,
    ) -> None:
        allowed = trial.roles_for(action)
        if not actor.roles & allowed:
            self._deny(
                unit,
                actor,
                action,
                PermissionDenied(family, action, actor.id, allowed, subject="family"),
                at=when,
                reference=family,
                stream="family",
            )

    def _child_facts(
        self: Engine, trial: Trial, site: str, facts: object, children: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Each child's facts, checked against every arm's pathway at the site, stored form.

        ``facts`` is one mapping for every child, or a mapping from child reference to that
        child's own facts.
        """
        if facts is None:
            return {child: {} for child in children}
        if not isinstance(facts, Mapping):
            raise InvalidInput("facts must be a mapping", field="facts")
        per_child = bool(facts) and all(isinstance(value, Mapping) for value in facts.values())
        if per_child:
            unknown = sorted(set(facts) - set(children))
            if unknown:
                raise InvalidInput(
                    f"facts are given for {', '.join(unknown)}, not a child of this family",
                    field="facts",
                )
        out: dict[str, dict[str, Any]] = {}
        for child in children:
            given = facts.get(child, {}) if per_child else facts
            # Checked against every arm's pathway (the arm is not known yet). A value every
            # pathway accepts is stored the same by each (dates as ISO text, flags and enum
            # values as given), so the first arm's form stands for all.
            stored = [
                _decide.facts_to_json(
                    _decide.coerce_facts(self.pathway(trial.pathway_for(arm, site)), given)
                )
                for arm in sorted(trial.arms)
            ]
            out[child] = stored[0]
        return out

    def _check_new_children(
        self: Engine, conn: Connection, site: str, children: Sequence[str]
    ) -> None:
        """A child may be in one family only, and an existing case must be at the family's site."""
        if not children:
            return
        taken = conn.execute(
            sa.select(family_children.c.reference, family_children.c.family).where(
                family_children.c.reference.in_(children)
            )
        ).first()
        if taken is not None:
            raise InvalidInput(
                f"child {taken.reference} is already in family {taken.family}; "
                "a child belongs to one family only",
                field="children",
            )
        elsewhere = conn.execute(
            sa.select(cases.c.reference, cases.c.site).where(
                cases.c.reference.in_(children), cases.c.site != site
            )
        ).first()
        if elsewhere is not None:
            raise InvalidInput(
                f"case {elsewhere.reference} is at site {elsewhere.site!r}, not the family's "
                f"site {site!r}",
                field="children",
            )

    def _insert_children(
        self: Engine,
        conn: Connection,
        family: str,
        children: Sequence[str],
        facts: Mapping[str, Mapping[str, Any]],
        when: dt.datetime,
    ) -> None:
        try:
            conn.execute(
                family_children.insert(),
                [
                    {"reference": c, "family": family, "joined_at": when, "facts": dict(facts[c])}
                    for c in children
                ],
            )
        except IntegrityError as exc:
            raise InvalidInput(
                f"a child of {', '.join(children)} joined another family meanwhile",
                field="children",
            ) from exc

    # -- families ----------------------------------------------------------------------------------

    def open_family(
        self: Engine,
        reference: str,
        site: str,
        actor: Actor,
        children: Sequence[str] = (),
        trial: str = "best",
        at: dt.datetime | None = None,
        facts: Mapping[str, Any] | None = None,
        *,
        connection: Connection | None = None,
    ) -> Family:
        """Open a family in ``trial`` at ``site`` with its children's case references.

        A child is a case already open at the site, or a reference whose case the allocation
        will open on the arm's pathway with ``facts`` (one mapping for every child, or one per
        child reference). A family needs at least one child; a child belongs to one family.
        """
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(reference, "reference", "a family reference")
        _validate.identifier(site, "site")
        definition = self._trial(trial)
        self._site(site)
        if site not in definition.sites:
            raise InvalidInput(
                f"trial {definition.id!r} does not run at site {site!r}; it runs at "
                f"{', '.join(definition.sites)}",
                field="site",
            )
        kids = _child_list(children)
        if not kids:
            raise InvalidInput("a family needs at least one child", field="children")
        child_facts = self._child_facts(definition, site, facts, kids)
        with self._write(connection) as unit:
            conn = unit.conn
            when = self._when(given)
            self._check_family_may(unit, definition, reference, actor, "open_family", when)
            self._check_new_children(conn, site, kids)
            status = definition.statuses[0]
            try:
                conn.execute(
                    families.insert().values(
                        reference=reference,
                        trial=definition.id,
                        site=site,
                        arm=None,
                        allocation_id=None,
                        allocated_at=None,
                        randomised_on=None,
                        status=status,
                        status_at=when,
                        opened_at=when,
                        updated_at=when,
                        version=1,
                    )
                )
            except IntegrityError as exc:
                raise FamilyExists(reference) from exc
            self._insert_children(conn, reference, kids, child_facts, when)
            self._audit(
                unit,
                reference=reference,
                at=when,
                actor=actor,
                action="family_opened",
                detail={
                    "trial": definition.id,
                    "site": site,
                    "status": status,
                    "children": kids,
                    "facts": child_facts,
                },
                stream="family",
            )
            family = self._stored_family(conn, reference)
        self._log.info("nimwf.family_opened", reference=reference, actor_id=actor.id, outcome="ok")
        return family

    def add_child(
        self: Engine,
        family: str,
        child: str,
        actor: Actor,
        at: dt.datetime | None = None,
        facts: Mapping[str, Any] | None = None,
        *,
        connection: Connection | None = None,
    ) -> Family:
        """A sibling joins the family, and its arm if it was allocated (visits planned too)."""
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(family, "family", "a family reference")
        _validate.identifier(child, "child", "a case reference")
        with self._write(connection) as unit:
            conn = unit.conn
            row = self._lock_family(conn, family)
            when = self._when(given)
            trial = self._trial(row.trial)
            self._check_family_may(unit, trial, family, actor, "add_child", when)
            self._check_family_not_before(row, when)
            child_facts = self._child_facts(trial, row.site, facts, [child])
            self._check_new_children(conn, row.site, [child])
            self._insert_children(conn, family, [child], child_facts, when)
            placed: dict[str, list[str]] = {}
            planned: list[dict[str, Any]] = []
            if row.arm is not None:
                placed = self._place_children(
                    unit, trial, row, [(child, child_facts[child])], actor, when
                )
                planned = self._plan_visits(unit, trial, row, [child], when, per="child")
            self._bump_family(conn, row, when)
            self._audit(
                unit,
                reference=family,
                at=when,
                actor=actor,
                action="child_added",
                detail={"child": child, "facts": child_facts[child], **placed, "visits": planned},
                stream="family",
            )
            result = self._stored_family(conn, family)
        self._log.info(
            "nimwf.child_added", reference=family, child=child, actor_id=actor.id, outcome="ok"
        )
        return result

    def allocate(
        self: Engine,
        family: str,
        arm: str,
        allocation_id: str,
        actor: Actor,
        at: dt.datetime | None = None,
        *,
        connection: Connection | None = None,
    ) -> Family:
        """Record the trial portal's allocation of ``family`` to ``arm``, once.

        Each child goes onto the arm's pathway for the family's site: its case is opened if it
        has none, moved if it is still at its first stage on another pathway, kept if it is on
        the arm's pathway already (or closed). The family's status becomes ``randomised``, its
        randomisation date the site's local date of ``at``, and the research visits are planned.
        A second allocation is refused (:class:`AlreadyAllocated`, audited), as is an unknown
        arm or an allocation id another family holds (nothing written).
        """
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(family, "family", "a family reference")
        _validate.identifier(arm, "arm")
        _validate.identifier(allocation_id, "allocation_id", "the portal's allocation id")
        with self._write(connection) as unit:
            conn = unit.conn
            row = self._lock_family(conn, family)
            when = self._when(given)
            trial = self._trial(row.trial)
            self._check_family_may(unit, trial, family, actor, "allocate", when)
            if row.arm is not None:
                self._deny(
                    unit,
                    actor,
                    "allocate",
                    AlreadyAllocated(family, row.arm, row.allocation_id),
                    at=when,
                    reference=family,
                    stream="family",
                )
            self._check_family_not_before(row, when)
            if arm not in trial.arms:
                raise InvalidInput(
                    f"unknown arm {arm!r} of trial {trial.id!r}; its arms are "
                    f"{', '.join(sorted(trial.arms))}",
                    field="arm",
                )
            if row.status in _visits.STOPPED or row.status == "completed":
                raise InvalidInput(
                    f"family {family} is {row.status}; a family is allocated before that",
                    field="family",
                )
            holder = conn.execute(
                sa.select(families.c.reference).where(
                    families.c.trial == trial.id, families.c.allocation_id == allocation_id
                )
            ).scalar()
            if holder is not None:
                raise InvalidInput(
                    f"allocation id {allocation_id!r} is family {holder}'s already",
                    field="allocation_id",
                )
            children = _children_of(conn, family)
            if not children:  # pragma: no cover - open_family refuses a family with none
                raise InvalidInput(f"family {family} has no children", field="family")
            calendar = self._family_calendar(trial, row.site, arm)
            randomised_on = calendar.local_date(when)
            conn.execute(
                families.update()
                .where(families.c.reference == family)
                .values(
                    arm=arm,
                    allocation_id=allocation_id,
                    allocated_at=when,
                    randomised_on=randomised_on,
                    status=RANDOMISED,
                    status_at=when,
                    updated_at=when,
                    version=row.version + 1,
                )
            )
            allocated = self._lock_family(conn, family)
            placed = self._place_children(
                unit,
                trial,
                allocated,
                [(child.reference, child.facts) for child in children],
                actor,
                when,
            )
            planned = self._plan_visits(
                unit, trial, allocated, [c.reference for c in children], when, per=None
            )
            self._audit(
                unit,
                reference=family,
                at=when,
                actor=actor,
                action="allocated",
                detail={
                    "arm": arm,
                    "allocation_id": allocation_id,
                    "pathway": trial.pathway_for(arm, row.site),
                    "randomised_on": randomised_on.isoformat(),
                    "status": RANDOMISED,
                    **placed,
                    "visits": planned,
                },
                stream="family",
            )
            result = _to_family(allocated, children)
        self._log.info(
            "nimwf.allocated",
            reference=family,
            arm=arm,
            allocation_id=allocation_id,
            actor_id=actor.id,
            outcome="ok",
        )
        return result

    def _bump_family(self: Engine, conn: Connection, row: Any, when: dt.datetime) -> None:
        conn.execute(
            families.update()
            .where(families.c.reference == row.reference)
            .values(updated_at=when, version=row.version + 1)
        )

    def _place_children(
        self: Engine,
        unit: _Unit,
        trial: Trial,
        family: Any,
        children: Sequence[tuple[str, Mapping[str, Any]]],
        actor: Actor,
        when: dt.datetime,
    ) -> dict[str, list[str]]:
        """Put each child on the arm's pathway; which were ``opened``, ``moved`` and ``kept``."""
        target = self.pathway(trial.pathway_for(family.arm, family.site))
        placed: dict[str, list[str]] = {"opened": [], "moved": [], "kept": []}
        about = {"family": family.reference, "arm": family.arm}
        for reference, stored in children:
            exists = unit.conn.execute(
                sa.select(cases.c.reference).where(cases.c.reference == reference)
            ).first()
            if exists is None:
                facts = _decide.coerce_facts(target, _decide.facts_from_json(target, stored))
                self._open(unit, reference, target, family.site, actor, when, facts, about)
                placed["opened"].append(reference)
                continue
            row = self._lock_case(unit, reference)
            if row.closed_at is not None or (
                row.pathway_id == target.id and row.pathway_version <= target.version
            ):
                placed["kept"].append(reference)
                continue
            self._move_case(unit, row, target, actor, when, about)
            placed["moved"].append(reference)
        return {key: value for key, value in placed.items() if value}

    def _move_case(
        self: Engine,
        unit: _Unit,
        row: Row,
        target: Pathway,
        actor: Actor,
        when: dt.datetime,
        about: Mapping[str, Any],
    ) -> None:
        """Move an open case still at its first stage onto the arm's pathway, audited.

        Its open deadlines are settled as on closing (cancelled, or missed if past due) and the
        target's first stage opens afresh; its facts carry over, so the law's clocks they
        anchor are worked out again from the same dates.
        """
        conn = unit.conn
        old = self._clock_for(conn, row)
        if row.stage != old.pathway.initial_stage:
            raise InvalidInput(
                f"case {row.reference} is at stage {row.stage!r} of {row.pathway_id}; only a "
                f"case still at its first stage can be moved onto {target.id}",
                field="children",
            )
        if row.paused_at is not None:
            raise InvalidInput(
                f"case {row.reference} is paused; resume it before the allocation moves it",
                field="children",
            )
        _decide.check_not_before(row, when)
        facts = _decide.facts_from_json(old.pathway, row.facts)
        undeclared = sorted(set(facts) - set(target.facts))
        if undeclared:
            raise InvalidInput(
                f"case {row.reference} holds {', '.join(undeclared)}, which {target.id} does "
                "not declare",
                field="children",
            )
        self._ensure_registered(unit, target)
        state = unit.cases[row.reference]
        settled = _deadlines.close_open(state, old, when, "allocated")
        clock = CaseClock(row.reference, row.site, target, self._calendar(target, row.site))
        stage = target.initial_stage
        _decide.enter_stage(state, stage, when, "allocated")
        opened = _deadlines.open_stage_deadlines(state, clock, stage, when)
        clocks = _deadlines.record_clock_facts(
            state, clock, _decide.date_facts(facts), when, facts=facts
        )
        self._update_case(
            unit,
            row,
            at=when,
            pathway_id=target.id,
            pathway_version=target.version,
            stage=stage,
            stage_entered_at=when,
        )
        self._audit(
            unit,
            reference=row.reference,
            at=when,
            actor=actor,
            action="allocated",
            from_stage=row.stage,
            to_stage=stage,
            detail={
                **about,
                "from_pathway": row.pathway_id,
                "from_version": row.pathway_version,
                "pathway": target.id,
                "pathway_version": target.version,
                "deadlines_settled": settled,
                "deadlines_opened": opened,
                "clocks": clocks,
                "case_version": row.version + 1,
            },
        )

    # -- trial status ------------------------------------------------------------------------------

    def set_trial_status(
        self: Engine,
        family: str,
        status: str,
        actor: Actor,
        at: dt.datetime | None = None,
        *,
        reason: str | None = None,
        connection: Connection | None = None,
    ) -> Family:
        """Change the family's trial status (never its children's service status), audited.

        ``consented`` follows ``enrolled``; ``randomised`` is the allocation's (and a family
        lost to follow-up and found again returns to it); ``withdrawn_consent`` and
        ``lost_to_follow_up`` stop the research visits, ``completed`` ends follow-up. The
        children's cases run on either way.
        """
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(family, "family", "a family reference")
        _validate.identifier(status, "status")
        _validate.reason(reason)
        with self._write(connection) as unit:
            conn = unit.conn
            row = self._lock_family(conn, family)
            when = self._when(given)
            trial = self._trial(row.trial)
            if status not in trial.statuses:
                raise InvalidInput(
                    f"unknown trial status {status!r}; the statuses are "
                    f"{', '.join(trial.statuses)}",
                    field="status",
                )
            self._check_family_may(unit, trial, family, actor, "set_status", when)
            if status == row.status:
                return _to_family(row, _children_of(conn, family))
            allowed_from = _STATUS_FROM.get(status, frozenset())
            if row.status not in allowed_from:
                how = (
                    "the allocation sets it"
                    if status == RANDOMISED
                    else f"it follows {', '.join(sorted(allowed_from)) or 'nothing'}"
                )
                raise InvalidInput(
                    f"family {family} is {row.status}; it cannot become {status}: {how}",
                    field="status",
                )
            self._check_family_not_before(row, when)
            conn.execute(
                families.update()
                .where(families.c.reference == family)
                .values(status=status, status_at=when, updated_at=when, version=row.version + 1)
            )
            reminders = self._rearm_reminders(conn, family, status, when)
            self._audit(
                unit,
                reference=family,
                at=when,
                actor=actor,
                action="status_changed",
                reason=reason,
                detail={"from": row.status, "to": status, "reminders": reminders},
                stream="family",
            )
            result = self._stored_family(conn, family)
        self._log.info(
            "nimwf.status_changed", reference=family, status=status, actor_id=actor.id, outcome="ok"
        )
        return result

    def _rearm_reminders(
        self: Engine, conn: Connection, family: str, status: str, when: dt.datetime
    ) -> str | None:
        """Cancel the pending visit reminders when visits stop; re-arm the future ones on return."""
        if status in _visits.STOPPED or status == "completed":
            conn.execute(
                visit_alarms.update()
                .where(visit_alarms.c.family == family, visit_alarms.c.status == "pending")
                .values(status="cancelled")
            )
            return "cancelled"
        if status == RANDOMISED:
            held = sa.select(visits.c.id).where(
                visits.c.family == family, visits.c.held_on.is_not(None)
            )
            conn.execute(
                visit_alarms.update()
                .where(
                    visit_alarms.c.family == family,
                    visit_alarms.c.status == "cancelled",
                    visit_alarms.c.due_at > when,
                    visit_alarms.c.visit_id.not_in(held),
                )
                .values(status="pending")
            )
            return "re-armed"
        return None

    # -- family actions ----------------------------------------------------------------------------

    def fire_family(
        self: Engine,
        family: str,
        trigger: str,
        actor: Actor,
        facts: Mapping[str, Any] | None = None,
        reason: str | None = None,
        at: dt.datetime | None = None,
        *,
        connection: Connection | None = None,
    ) -> list[Case]:
        """Fire ``trigger`` on every open child case of the family, all or none.

        Each child is audited as if fired alone. If any child refuses, no child moves and that
        child's refusal is audited (and raised).
        """
        _validate.identifier(trigger, "trigger")

        def one(conn: Connection, reference: str, when: dt.datetime) -> Case:
            return self.fire(
                reference, trigger, actor, reason, at=when, facts=facts, connection=conn
            )

        return self._each_child(
            family, actor, at, connection, "fire", one, {"trigger": trigger}, lambda c: True
        )

    def pause_family(
        self: Engine,
        family: str,
        actor: Actor,
        reason: str,
        at: dt.datetime | None = None,
        *,
        connection: Connection | None = None,
    ) -> list[Case]:
        """Pause every open child case not paused already, all or none."""

        def one(conn: Connection, reference: str, when: dt.datetime) -> Case:
            return self.pause(reference, actor, reason, at=when, connection=conn)

        return self._each_child(
            family, actor, at, connection, "pause", one, {"reason": reason}, lambda c: not c.paused
        )

    def resume_family(
        self: Engine,
        family: str,
        actor: Actor,
        at: dt.datetime | None = None,
        *,
        reason: str | None = None,
        connection: Connection | None = None,
    ) -> list[Case]:
        """Resume every paused child case, all or none."""

        def one(conn: Connection, reference: str, when: dt.datetime) -> Case:
            return self.resume(reference, actor, at=when, reason=reason, connection=conn)

        return self._each_child(
            family, actor, at, connection, "resume", one, {"reason": reason}, lambda c: c.paused
        )

    def _each_child(
        self: Engine,
        family: str,
        actor: Actor,
        at: dt.datetime | None,
        connection: Connection | None,
        action: str,
        one: Callable[[Connection, str, dt.datetime], Case],
        detail: Mapping[str, Any],
        wanted: Callable[[Case], bool],
    ) -> list[Case]:
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(family, "family", "a family reference")
        with self._family_transaction(connection) as conn:
            self._lock_family(conn, family)
            when = self._when(given)
            open_cases = [
                case
                for case in (
                    self._to_case(conn, row)
                    for row in conn.execute(
                        sa.select(cases)
                        .join(family_children, family_children.c.reference == cases.c.reference)
                        .where(family_children.c.family == family, cases.c.closed_at.is_(None))
                        .order_by(family_children.c.joined_at, cases.c.reference)
                    ).all()
                )
                if wanted(case)
            ]
            if not open_cases:
                raise InvalidInput(f"family {family} has no open case to {action}", field="family")
            mark = len(self._host_pending.get(conn) or ())
            outer = conn.begin_nested()
            results: list[Case] = []
            failed: str | None = None
            try:
                for case in open_cases:
                    failed = case.reference
                    results.append(one(conn, case.reference, when))
                failed = None
                with self._write(conn) as unit:
                    self._audit(
                        unit,
                        reference=family,
                        at=when,
                        actor=actor,
                        action="family_action",
                        detail={
                            "action": action,
                            **{k: v for k, v in detail.items() if v is not None},
                            "cases": [case.reference for case in open_cases],
                        },
                        stream="family",
                    )
            except ActionRefused as refusal:
                outer.rollback()
                self._drop_pending(conn, mark)
                if failed is not None:
                    # Only the refusal stands: audited on its case, alone, as a lone call's is.
                    self._deny_alone(conn, failed, actor, action, refusal, when, detail)
                raise
            except BaseException:
                outer.rollback()
                self._drop_pending(conn, mark)
                raise
            outer.commit()
        self._log.info(
            "nimwf.family_action",
            reference=family,
            action=action,
            cases=len(results),
            actor_id=actor.id,
            outcome="ok",
        )
        return results

    def _drop_pending(self: Engine, conn: Connection, mark: int) -> None:
        pending = self._host_pending.get(conn)
        if pending is not None:
            del pending[mark:]

    def _deny_alone(
        self: Engine,
        conn: Connection,
        reference: str,
        actor: Actor,
        action: str,
        refusal: ActionRefused,
        when: dt.datetime,
        detail: Mapping[str, Any],
    ) -> None:
        try:
            with self._write(conn) as unit:
                row = self._lock_case(unit, reference)
                self._deny(
                    unit,
                    actor,
                    action,
                    refusal,
                    at=when,
                    reference=reference,
                    trigger=detail.get("trigger"),
                    stage=row.stage,
                )
        except ActionRefused:
            pass

    @contextmanager
    def _family_transaction(self: Engine, connection: Connection | None) -> Iterator[Connection]:
        """The host's connection as given (its transaction begun), or a transaction of ours."""
        if connection is None:
            with self._transaction() as conn:
                yield conn
            return
        self._begin_in_host(connection)
        yield connection

    # -- research visits ---------------------------------------------------------------------------

    def _plan_visits(
        self: Engine,
        unit: _Unit,
        trial: Trial,
        family: Any,
        children: Sequence[str],
        when: dt.datetime,
        *,
        per: str | None,
    ) -> list[dict[str, Any]]:
        """Plan the visits whose anchors are known (``per``: only the child or family ones)."""
        calendar = self._family_calendar(trial, family.site, family.arm)
        planned: list[dict[str, Any]] = []
        for rule in trial.visits:
            if per is not None and rule.per != per:
                continue
            if rule.per == "family":
                subjects = [(family.reference, family.randomised_on)]
            else:
                subjects = [(c, _anchor_of(unit.cases[c].case.facts, rule)) for c in children]
            for subject, anchor_on in subjects:
                if anchor_on is None:
                    continue
                planned.append(
                    self._store_visit(
                        unit.conn, rule, family.reference, subject, anchor_on, calendar
                    )
                )
        return planned

    @staticmethod
    def _store_visit(
        conn: Connection,
        rule: VisitRule,
        family: str,
        subject: str,
        anchor_on: dt.date,
        calendar: WorkingCalendar,
    ) -> dict[str, Any]:
        """Insert (or move, if not yet held) the visit's window and its pending reminders."""
        window = _visits.plan(rule, anchor_on, calendar)
        existing = conn.execute(
            sa.select(visits.c.id, visits.c.held_on).where(
                visits.c.family == family, visits.c.subject == subject, visits.c.name == rule.name
            )
        ).first()
        values = {
            "anchor_on": window.anchor_on,
            "opens_on": window.opens_on,
            "closes_on": window.closes_on,
            "target_on": window.target_on,
        }
        if existing is None:
            visit_id = conn.execute(
                visits.insert()
                .values(family=family, subject=subject, name=rule.name, held_on=None, **values)
                .returning(visits.c.id)
            ).scalar_one()
        else:
            if existing.held_on is not None:
                return {"visit": rule.name, "subject": subject, "kept": "held"}
            visit_id = existing.id
            conn.execute(visits.update().where(visits.c.id == visit_id).values(**values))
            conn.execute(
                visit_alarms.update()
                .where(visit_alarms.c.visit_id == visit_id, visit_alarms.c.status == "pending")
                .values(status="cancelled")
            )
        alarms = _visits.reminders(rule, window, calendar)
        if alarms:
            conn.execute(
                visit_alarms.insert(),
                [
                    {
                        "visit_id": visit_id,
                        "family": family,
                        "kind": kind,
                        "due_at": due_at,
                        "status": "pending",
                        "fired_at": None,
                    }
                    for kind, due_at in alarms
                ],
            )
        return {
            "visit": rule.name,
            "subject": subject,
            "opens_on": window.opens_on.isoformat(),
            "closes_on": window.closes_on.isoformat(),
        }

    def _sync_child_visits(
        self: Engine, unit: _Unit, reference: str, changed: Mapping[str, Any], when: dt.datetime
    ) -> None:
        """A child's anchor fact was recorded: plan (or move) its visits not yet held."""
        conn = unit.conn
        row = conn.execute(
            sa.select(families)
            .join(family_children, family_children.c.family == families.c.reference)
            .where(family_children.c.reference == reference)
        ).first()
        if row is None or row.arm is None:
            return
        trial = self._trials.get(row.trial)
        if trial is None:  # pragma: no cover - a trial the engine no longer runs
            return
        calendar = self._family_calendar(trial, row.site, row.arm)
        for rule in trial.visits:
            if rule.per != "child" or rule.anchor not in changed:
                continue
            self._store_visit(conn, rule, row.reference, reference, changed[rule.anchor], calendar)

    def record_visit(
        self: Engine,
        family: str,
        name: str,
        held_on: dt.date,
        actor: Actor,
        at: dt.datetime | None = None,
        *,
        child: str | None = None,
        connection: Connection | None = None,
    ) -> list[Visit]:
        """Record that a research visit was held on ``held_on``, audited.

        A visit per child is recorded for ``child``, or for every child whose window is
        planned when ``child`` is omitted (siblings seen at one home visit). A date before the
        window opens is refused (:class:`OutsideWindow`, audited); one after it closes is
        recorded as late. No visit is recorded while the trial status stops visits.
        """
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(family, "family", "a family reference")
        _validate.identifier(name, "name", "a visit name")
        day = _validate.date_value(held_on, "held_on")
        if child is not None:
            _validate.identifier(child, "child", "a case reference")
        with self._write(connection) as unit:
            conn = unit.conn
            row = self._lock_family(conn, family)
            when = self._when(given)
            trial = self._trial(row.trial)
            try:
                rule = trial.visit(name)
            except KeyError:
                raise InvalidInput(
                    f"unknown visit {name!r}; trial {trial.id!r} has "
                    f"{', '.join(v.name for v in trial.visits)}",
                    field="name",
                ) from None
            self._check_family_may(unit, trial, family, actor, "record_visit", when)
            if row.arm is None:
                raise InvalidInput(
                    f"family {family} is not allocated; its research visits start at allocation",
                    field="family",
                )
            self._check_family_not_before(row, when)
            if row.status in _visits.STOPPED:
                raise InvalidInput(
                    f"family {family} is {row.status}: its research visits have stopped",
                    field="family",
                )
            calendar = self._family_calendar(trial, row.site, row.arm)
            today = calendar.local_date(when)
            if day > today:
                raise InvalidInput(
                    f"held_on {day.isoformat()} is after today ({today.isoformat()})",
                    field="held_on",
                )
            query = sa.select(visits).where(visits.c.family == family, visits.c.name == name)
            if rule.per == "family":
                if child is not None:
                    raise InvalidInput(
                        f"visit {name!r} is one per family; give no child", field="child"
                    )
                query = query.where(visits.c.subject == family)
            elif child is not None:
                member = conn.execute(
                    sa.select(family_children.c.reference).where(
                        family_children.c.reference == child, family_children.c.family == family
                    )
                ).first()
                if member is None:
                    raise InvalidInput(f"{child} is not a child of family {family}", field="child")
                query = query.where(visits.c.subject == child)
            planned = conn.execute(query.order_by(visits.c.subject)).all()
            if not planned:
                raise InvalidInput(
                    f"visit {name!r} of family {family} has no window yet: its anchor "
                    f"({rule.anchor}) is not recorded",
                    field="name",
                )
            held = [visit for visit in planned if visit.held_on is not None]
            if held:
                raise InvalidInput(
                    f"visit {name!r} of {held[0].subject} was recorded already, as held on "
                    f"{held[0].held_on.isoformat()}",
                    field="name",
                )
            early = [visit for visit in planned if day < visit.opens_on]
            if early:
                self._deny(
                    unit,
                    actor,
                    "record_visit",
                    OutsideWindow(
                        early[0].subject,
                        name,
                        "held_on",
                        day.isoformat(),
                        early[0].opens_on.isoformat(),
                        subject="case" if rule.per == "child" else "family",
                    ),
                    at=when,
                    reference=family,
                    stream="family",
                )
            ids = [visit.id for visit in planned]
            self._bump_family(conn, row, when)
            conn.execute(
                visits.update().where(visits.c.id.in_(ids)).values(held_on=day, recorded_at=when)
            )
            conn.execute(
                visit_alarms.update()
                .where(visit_alarms.c.visit_id.in_(ids), visit_alarms.c.status == "pending")
                .values(status="cancelled")
            )
            recorded = [
                Visit(
                    name=name,
                    subject=visit.subject,
                    family=family,
                    opens_on=visit.opens_on,
                    closes_on=visit.closes_on,
                    held_on=day,
                    status=_visits.status(day, visit.opens_on, visit.closes_on, today),
                    target_on=visit.target_on,
                )
                for visit in planned
            ]
            self._audit(
                unit,
                reference=family,
                at=when,
                actor=actor,
                action="visit_recorded",
                detail={
                    "visit": name,
                    "held_on": day.isoformat(),
                    "subjects": {v.subject: v.status for v in recorded},
                },
                stream="family",
            )
        self._log.info(
            "nimwf.visit_recorded", reference=family, visit=name, actor_id=actor.id, outcome="ok"
        )
        return recorded

    def _claim_visit_reminders(self: Engine, unit: _Unit, when: dt.datetime) -> Sequence[Any]:
        """Fire a batch of due visit reminders, exactly once each (the processor's second half)."""
        conn = unit.conn
        query = (
            sa.select(
                visit_alarms.c.id,
                visit_alarms.c.family,
                visit_alarms.c.kind,
                visit_alarms.c.due_at,
                visits.c.name,
                visits.c.subject,
                visits.c.opens_on,
                visits.c.closes_on,
                families.c.site,
                families.c.trial,
                families.c.arm,
            )
            .join(visits, visits.c.id == visit_alarms.c.visit_id)
            .join(families, families.c.reference == visit_alarms.c.family)
            .where(visit_alarms.c.status == "pending", visit_alarms.c.due_at <= when)
            .order_by(visit_alarms.c.due_at, visit_alarms.c.id)
            .limit(500)
        )
        if self._dialect == "postgresql":
            query = query.with_for_update(of=[visit_alarms, families], skip_locked=True)
        rows = conn.execute(query).all()
        for alarm in rows:
            trial = self._trials.get(alarm.trial)
            calendar = (
                None if trial is None else self._family_calendar(trial, alarm.site, alarm.arm)
            )
            if calendar is not None and when >= calendar.end_of(alarm.closes_on):
                # Caught up after the window closed: a reminder to book it would mislead.
                conn.execute(
                    visit_alarms.update()
                    .where(visit_alarms.c.id == alarm.id)
                    .values(status="lapsed", fired_at=when)
                )
                continue
            conn.execute(
                visit_alarms.update()
                .where(visit_alarms.c.id == alarm.id)
                .values(status="fired", fired_at=when)
            )
            self._audit(
                unit,
                reference=alarm.family,
                at=when,
                actor=None,
                action="visit_reminder",
                detail={
                    "visit": alarm.name,
                    "subject": alarm.subject,
                    "when": alarm.kind,
                    "opens_on": alarm.opens_on.isoformat(),
                    "closes_on": alarm.closes_on.isoformat(),
                    "alarm_due_at": alarm.due_at.isoformat(),
                    "site": alarm.site,
                },
                stream="family",
            )
        return rows

    # -- reads -------------------------------------------------------------------------------------

    def _latest_family_change(self: Engine) -> tuple[str, dt.datetime] | None:
        """Internal: the family that changed last (its row, or a visit recorded), and when."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(families.c.reference, families.c.updated_at)
                .order_by(families.c.updated_at.desc(), families.c.reference)
                .limit(1)
            ).first()
            visit = conn.execute(
                sa.select(visits.c.family, visits.c.recorded_at)
                .where(visits.c.recorded_at.is_not(None))
                .order_by(visits.c.recorded_at.desc(), visits.c.family)
                .limit(1)
            ).first()
        found = [(f"family {r[0]!r}", r[1]) for r in (row, visit) if r is not None]
        return max(found, key=lambda change: change[1]) if found else None

    def family(self: Engine, reference: str) -> Family:
        """The family as stored; :class:`FamilyNotFound` if there is none."""
        _validate.lookup(reference, "reference", "a family reference")
        with self._read() as conn:
            row = conn.execute(sa.select(families).where(families.c.reference == reference)).first()
            if row is None:
                raise FamilyNotFound(reference)
            return _to_family(row, _children_of(conn, reference))

    def families(self: Engine, site: str | None = None, trial: str | None = None) -> list[Family]:
        """Every family (at ``site``, in ``trial``), by reference."""
        site_id = self._optional_site(site)
        trial_id = None if trial is None else self._trial(trial).id
        query = sa.select(families).order_by(families.c.reference)
        if site_id is not None:
            query = query.where(families.c.site == site_id)
        if trial_id is not None:
            query = query.where(families.c.trial == trial_id)
        with self._read() as conn:
            rows = conn.execute(query).all()
            children: dict[str, list[Any]] = {}
            for child in conn.execute(
                sa.select(family_children).order_by(
                    family_children.c.joined_at, family_children.c.reference
                )
            ).all():
                children.setdefault(child.family, []).append(child)
        return [_to_family(row, children.get(row.reference, [])) for row in rows]

    def visits(self: Engine, family: str, at: dt.datetime | None = None) -> list[Visit]:
        """The family's research visits with their status on the site's date at ``at`` (now).

        Visits are planned at allocation; a child's visit anchored on a fact not yet recorded
        appears once it is.
        """
        _validate.lookup(family, "family", "a family reference")
        when = self._at(at)
        with self._read() as conn:
            row = conn.execute(sa.select(families).where(families.c.reference == family)).first()
            if row is None:
                raise FamilyNotFound(family)
            stored = conn.execute(
                sa.select(visits).where(visits.c.family == family).order_by(visits.c.id)
            ).all()
        trial = self._trials.get(row.trial)
        if trial is None or row.arm is None:
            return []
        order = {rule.name: i for i, rule in enumerate(trial.visits)}
        calendar = self._family_calendar(trial, row.site, row.arm)
        today = calendar.local_date(when)
        status_on = calendar.local_date(row.status_at)
        out = [
            Visit(
                name=visit.name,
                subject=visit.subject,
                family=family,
                opens_on=visit.opens_on,
                closes_on=visit.closes_on,
                held_on=visit.held_on,
                status=_visits.status(visit.held_on, visit.opens_on, visit.closes_on, today),
                target_on=visit.target_on,
                stopped=_visits.stopped(visit.held_on, visit.closes_on, row.status, status_on),
            )
            for visit in stored
        ]
        return sorted(out, key=lambda v: (order.get(v.name, len(order)), v.opens_on, v.subject))
