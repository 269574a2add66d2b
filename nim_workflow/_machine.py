"""The one shared ``transitions`` state machine of each pathway version, and the decisions it makes.

A :class:`PathwayMachine` is built once per pathway version (id, version and content hash) and
shared by every case on that version. A case is never registered with it for longer than one
command: :meth:`PathwayMachine.fire` binds a throw-away model at the case's stage, runs the trigger
and unbinds the model again, even when the trigger raises. :meth:`PathwayMachine.decide` answers
the same question without moving anything, and says exactly why a trigger is refused: not valid
from the stage, no role that may fire it, or which required facts (or the reason) are missing.

Requirements: a required ``bool`` fact must be ``True``; any other required fact must be present
and not ``None``; ``reason_required`` needs a reason that is not blank, reported missing as
``"reason"``. The fact an outcome is read from (``outcome_from``) is required too.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from transitions import EventData, Machine

from nim_workflow._errors import (
    ActionRefused,
    InvalidInput,
    PermissionDenied,
    RequirementsNotMet,
    TransitionNotAllowed,
)
from nim_workflow._pathway._model import Pathway, Transition

__all__ = ["REASON", "Decision", "PathwayMachine", "Refusal"]

#: Why a trigger is refused: not valid from the stage, no permitted role, or requirements unmet.
Refusal = Literal["not_valid", "role", "requirements"]
#: The name under which a missing (or blank) reason is reported in ``Decision.missing``.
REASON = "reason"


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Whether ``trigger`` may fire from ``stage`` for this actor now, and if not, why not.

    ``dest`` and ``outcome`` describe the transition when the trigger is valid from the stage,
    whether or not this actor may fire it; ``outcome`` is ``None`` when the destination is not final
    or when the outcome fact has not been recorded yet.
    """

    stage: str
    trigger: str
    allowed: bool
    problem: Refusal | None = None
    #: Required facts not yet met, in the order the pathway lists them; ``"reason"`` last.
    missing: tuple[str, ...] = ()
    #: Roles any one of which may fire the trigger (empty when it is not valid from the stage).
    roles_required: frozenset[str] = frozenset()
    #: Every trigger valid from ``stage``, whoever may fire it, in pathway order.
    valid_triggers: tuple[str, ...] = ()
    dest: str | None = None
    outcome: str | None = None
    reason_required: bool = False

    def refusal(self, *, reference: str, actor_id: str) -> ActionRefused | None:
        """The exception that reports this refusal for a case, or ``None`` if it is allowed."""
        if self.problem == "not_valid":
            return TransitionNotAllowed(reference, self.trigger, self.stage, self.valid_triggers)
        if self.problem == "role":
            return PermissionDenied(reference, self.trigger, actor_id, self.roles_required)
        if self.problem == "requirements":
            return RequirementsNotMet(reference, self.trigger, self.missing)
        return None


class _BoundCase:
    """The throw-away model a case's stage is bound to for one command.

    ``transitions`` adds trigger methods and the ``state`` attribute to it; holding the command's
    facts and reason here lets the machine's own condition check them.
    """

    state: str

    def __init__(self, facts: Mapping[str, object], reason: str | None) -> None:
        self.facts = facts
        self.reason = reason


class PathwayMachine:
    """The shared runtime state machine of one pathway version.

    Get one with :meth:`for_pathway`; constructing it directly builds a new ``transitions.Machine``,
    which is what the registry exists to avoid.
    """

    _registry: ClassVar[dict[tuple[str, int, str], PathwayMachine]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, pathway: Pathway) -> None:
        self._pathway = pathway
        self._bool_facts = frozenset(f.name for f in pathway.facts.values() if f.type == "bool")
        # add_model and remove_model mutate the machine's model list, and engines may run commands
        # from several threads; one lock keeps each bind-fire-unbind whole.
        self._lock = threading.Lock()
        self._machine = Machine(
            model=None,
            states=[stage.id for stage in pathway.stages],
            initial=pathway.initial_stage,
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=False,
        )
        for transition in pathway.transitions:
            for source in transition.sources:
                self._machine.add_transition(
                    transition.trigger,
                    source=source,
                    dest=transition.dest,
                    conditions=[self._requirements_met],
                )

    @classmethod
    def for_pathway(cls, pathway: Pathway) -> PathwayMachine:
        """The machine shared by every case on ``pathway``'s version, built on first use.

        Raises :class:`InvalidInput` if a different definition was already built under the same
        id, version and content hash: a version names one definition only.
        """
        key = (pathway.id, pathway.version, pathway.content_hash)
        with cls._registry_lock:
            machine = cls._registry.get(key)
            if machine is None:
                machine = cls._registry[key] = cls(pathway)
            elif machine.pathway is not pathway and machine.pathway != pathway:
                raise InvalidInput(
                    f"pathway {pathway.id!r} version {pathway.version} is already in use with "
                    "different content; give the changed definition a new version",
                    field="version",
                )
            return machine

    @property
    def pathway(self) -> Pathway:
        """The definition this machine runs."""
        return self._pathway

    @property
    def machine(self) -> Machine:
        """The underlying ``transitions`` machine; it holds no model between commands."""
        return self._machine

    def decide(
        self,
        stage: str,
        trigger: str,
        *,
        roles: frozenset[str],
        facts: Mapping[str, object],
        reason: str | None = None,
    ) -> Decision:
        """Whether an actor holding ``roles`` may fire ``trigger`` on a case at ``stage`` now."""
        valid = tuple(t.trigger for t in self._pathway.transitions_from(stage))
        transition = self._pathway.transition(trigger, stage)
        if transition is None:
            return Decision(
                stage=stage,
                trigger=trigger,
                allowed=False,
                problem="not_valid",
                valid_triggers=valid,
            )
        problem: Refusal | None = None
        missing = self._missing(transition, facts, reason)
        if not roles & transition.roles:
            problem = "role"
        elif missing:
            problem = "requirements"
        return Decision(
            stage=stage,
            trigger=trigger,
            allowed=problem is None,
            problem=problem,
            missing=missing,
            roles_required=transition.roles,
            valid_triggers=valid,
            dest=transition.dest,
            outcome=self._outcome(transition, facts),
            reason_required=transition.reason_required,
        )

    def allowed_triggers(
        self, stage: str, *, roles: frozenset[str], facts: Mapping[str, object]
    ) -> list[str]:
        """The triggers an actor holding ``roles`` could fire from ``stage`` now, in pathway order.

        A required reason does not hold a trigger back: it comes with the command, not the case.
        """
        allowed: list[str] = []
        for transition in self._pathway.transitions_from(stage):
            if not roles & transition.roles:
                continue
            if self._missing_facts(transition, facts):
                continue
            allowed.append(transition.trigger)
        return allowed

    def fire(
        self,
        stage: str,
        trigger: str,
        *,
        roles: frozenset[str],
        facts: Mapping[str, object],
        reason: str | None = None,
        reference: str,
        actor_id: str,
    ) -> str:
        """Run ``trigger`` on a case at ``stage`` through the shared machine; return the new stage.

        ``reference`` and ``actor_id`` only name the case and actor in the exception raised when the
        trigger is refused (:class:`TransitionNotAllowed`, :class:`PermissionDenied` or
        :class:`RequirementsNotMet`). The case is unbound from the machine before this returns or
        raises.
        """
        decision = self.decide(stage, trigger, roles=roles, facts=facts, reason=reason)
        refused = decision.refusal(reference=reference, actor_id=actor_id)
        if refused is not None:
            raise refused
        case = _BoundCase(facts, reason)
        with self._lock:
            self._machine.add_model(case, initial=stage)
            try:
                moved = case.trigger(trigger)  # type: ignore[attr-defined]
            finally:
                self._machine.remove_model(case)
        if not moved:
            # decide() said yes and the machine's condition said no: the two checks disagree.
            raise RequirementsNotMet(reference, trigger, decision.missing or (trigger,))
        return case.state

    def _requirements_met(self, event: EventData) -> bool:
        """The machine's condition on every transition: the bound case meets its requirements."""
        case = event.model
        transition = event.transition
        if not isinstance(case, _BoundCase) or transition is None or event.event is None:
            return False
        declared = self._pathway.transition(event.event.name, transition.source)
        return declared is not None and not self._missing(declared, case.facts, case.reason)

    def _missing(
        self, transition: Transition, facts: Mapping[str, object], reason: str | None
    ) -> tuple[str, ...]:
        missing = self._missing_facts(transition, facts)
        if transition.reason_required and (reason is None or not reason.strip()):
            missing = (*missing, REASON)
        return missing

    def _missing_facts(
        self, transition: Transition, facts: Mapping[str, object]
    ) -> tuple[str, ...]:
        needed = list(transition.requires)
        if transition.outcome_fact is not None and transition.outcome_fact not in needed:
            needed.append(transition.outcome_fact)
        return tuple(name for name in needed if not self._fact_met(name, facts))

    def _fact_met(self, name: str, facts: Mapping[str, object]) -> bool:
        value = facts.get(name)
        if name in self._bool_facts:
            return value is True
        return value is not None

    @staticmethod
    def _outcome(transition: Transition, facts: Mapping[str, object]) -> str | None:
        if transition.outcome_fact is not None:
            value = facts.get(transition.outcome_fact)
            return None if value is None else str(value)
        return transition.outcome
