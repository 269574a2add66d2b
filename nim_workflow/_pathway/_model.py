"""The typed, immutable model of a pathway definition.

A pathway file (YAML, under ``pathways/``) compiles into one :class:`Pathway`. Everything the
engine, the deadline processor and the report need is here, resolved: ``from: "*"`` expanded to
the open stages, default reminders filled in, the content hash computed. Nothing in this module
reads files; see ``_loader`` for parsing and validation.

The file format (every key; ``?`` marks optional ones)::

    id: nim-uk-england                    # [a-z0-9-]+
    version: 1                            # positive integer; bump it when the content changes
    title: NIM, London Infant and Family Team
    calendar: england-and-wales           # england-and-wales | scotland | louisiana
    timezone: Europe/London               # an IANA zone
    roles:                                # role id -> human title
      team_manager: Team manager
    permissions:                          # who may do the actions that are not transitions
      open_case: [social_worker, team_manager]
      record: [social_worker, clinician, team_manager, court_officer]
      pause: [team_manager, coordinator]
      resume: [team_manager, coordinator]
    facts:                                # the only facts a case may hold
      consent_recorded: {type: bool}
      proceedings_issued_on: {type: date}
      recommendation: {type: enum, values: [return_home, permanence_away]}
    stages:                               # ids; exactly one initial, at least one final
      - {id: referral, title: Referral, initial: true}
      - {id: closed, title: Closed, final: true}
    transitions:
      - trigger: accept_referral
        from: referral                    # a stage, a list of stages, or "*" (every open stage)
        to: assessment
        roles: [team_manager]
        requires: [consent_recorded]      # ?  facts that must be set (bool facts: true)
        reason_required: false            # ?
        outcome: not_eligible             # ?  only into a final stage
        outcome_from: decision            # ?  an enum fact whose value becomes the outcome
    deadlines:
      - name: assessment
        stage: assessment                 # a stage deadline: clock starts on entering the stage
        duration: 12 weeks                # N working_days | days | weeks | months
        reminders:                        # ?  default: [{before: 10 working_days}]
          - {before: 10 working_days}
          - {every: 1 months, label: monthly_update}
          - {fraction: 0.5, label: mid_way_review}
        escalate_to: team_manager         # role told when the deadline is breached
        extension: {step: 3 months, limit: 1, roles: [team_manager]}   # ?
      - name: lac_review
        anchor: entered_care_on           # a statutory clock: starts when this date fact is set
        duration: 20 working_days
        recurs:                           # ?  the next occurrence runs from this fact's date
          fact: lac_review_held_on
          durations: [3 months, 6 months] # 2nd occurrence, then every later one
        escalate_to: team_manager
      - name: care_proceedings
        anchor: proceedings_issued_on
        duration: 26 weeks
        met_by: [record_decision]         # ?  triggers that meet it when fired by the due date
        escalate_to: team_manager
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Unit = Literal["working_days", "days", "weeks", "months"]
UNITS: tuple[Unit, ...] = ("working_days", "days", "weeks", "months")
FactType = Literal["bool", "date", "enum"]
CalendarName = Literal["england-and-wales", "scotland", "louisiana"]
CALENDARS: tuple[CalendarName, ...] = ("england-and-wales", "scotland", "louisiana")
#: Actions that are not transitions and whose roles a pathway declares under ``permissions``.
PERMISSION_ACTIONS: tuple[str, ...] = ("open_case", "record", "pause", "resume")
#: ``from: "*"`` in a file means every stage that is not final.
ANY_OPEN = "*"

_DURATION = re.compile(r"^\s*(\d+)\s+(working_days|days|weeks|months)\s*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Duration:
    """A length of time in one unit, as a pathway rule states it (``12 weeks``)."""

    amount: int
    unit: Unit

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse ``"<N> <unit>"``; raise ``ValueError`` naming the accepted units otherwise."""
        match = _DURATION.match(text)
        if match is None:
            raise ValueError(
                f"{text!r} is not a duration; write '<N> <unit>' "
                f"with unit one of {', '.join(UNITS)}"
            )
        return cls(amount=int(match.group(1)), unit=match.group(2))  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.amount} {self.unit}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FactSpec:
    """A fact a case may hold: its name, its type and, for enums, the allowed values."""

    name: str
    type: FactType
    values: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    """A stage of the pathway."""

    id: str
    title: str
    initial: bool = False
    final: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """A trigger that moves a case from one of ``sources`` to ``dest``."""

    trigger: str
    sources: tuple[str, ...]
    dest: str
    roles: frozenset[str]
    requires: tuple[str, ...] = ()
    reason_required: bool = False
    outcome: str | None = None
    outcome_fact: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reminder:
    """When a deadline reminds.

    ``before`` its due date, ``every`` period from its start, or at a ``fraction`` of the span
    from start to due date. Exactly one of the three is set.
    """

    label: str
    before: Duration | None = None
    every: Duration | None = None
    fraction: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Extension:
    """How a deadline may be extended: by ``step``, at most ``limit`` times, by these roles."""

    step: Duration
    limit: int
    roles: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadlineRule:
    """A stage deadline (``stage`` set) or a statutory clock (``anchor_fact`` set)."""

    name: str
    duration: Duration
    escalate_to: str
    stage: str | None = None
    anchor_fact: str | None = None
    recur_fact: str | None = None
    recur_durations: tuple[Duration, ...] = ()
    reminders: tuple[Reminder, ...] = ()
    extension: Extension | None = None
    #: Triggers that settle this deadline as met when fired on or before its due date (the
    #: court's decision meets the care-proceedings clock); otherwise closing cancels it.
    met_by: frozenset[str] = frozenset()

    @property
    def kind(self) -> Literal["stage", "clock"]:
        """``stage`` for a stage deadline, ``clock`` for a statutory clock."""
        return "stage" if self.stage is not None else "clock"

    def duration_for(self, occurrence: int) -> Duration:
        """The span of the ``occurrence``-th deadline (1-based) of this rule."""
        if occurrence <= 1 or not self.recur_durations:
            return self.duration
        index = min(occurrence - 2, len(self.recur_durations) - 1)
        return self.recur_durations[index]


@dataclass(frozen=True, slots=True, kw_only=True)
class Pathway:
    """A validated, immutable pathway definition at one version.

    ``content_hash`` is the SHA-256 of the file's bytes: a running case stays on the version (and
    hash) it started with, and registering different content under an existing version is refused.
    """

    id: str
    version: int
    title: str
    calendar: CalendarName
    timezone: str
    roles: Mapping[str, str]
    permissions: Mapping[str, frozenset[str]]
    facts: Mapping[str, FactSpec]
    stages: tuple[Stage, ...]
    transitions: tuple[Transition, ...]
    deadlines: tuple[DeadlineRule, ...]
    source: str = field(default="<memory>", compare=False)
    content_hash: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", MappingProxyType(dict(self.roles)))
        object.__setattr__(self, "permissions", MappingProxyType(dict(self.permissions)))
        object.__setattr__(self, "facts", MappingProxyType(dict(self.facts)))

    @property
    def key(self) -> tuple[str, int]:
        """``(id, version)``: how stored cases name the definition they run on."""
        return (self.id, self.version)

    @property
    def initial_stage(self) -> str:
        """The id of the stage every case opens in."""
        return next(s.id for s in self.stages if s.initial)

    @property
    def final_stages(self) -> frozenset[str]:
        """Ids of the stages that close a case."""
        return frozenset(s.id for s in self.stages if s.final)

    def stage(self, stage_id: str) -> Stage:
        """The stage with this id; ``KeyError`` if there is none."""
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        raise KeyError(stage_id)

    def transitions_from(self, stage_id: str) -> tuple[Transition, ...]:
        """Every transition whose sources include ``stage_id``, in file order."""
        return tuple(t for t in self.transitions if stage_id in t.sources)

    def transition(self, trigger: str, stage_id: str) -> Transition | None:
        """The transition ``trigger`` fires from ``stage_id``, or ``None``."""
        for t in self.transitions:
            if t.trigger == trigger and stage_id in t.sources:
                return t
        return None

    def triggers(self) -> tuple[str, ...]:
        """Every distinct trigger, in file order."""
        return tuple(dict.fromkeys(t.trigger for t in self.transitions))

    def rule(self, name: str) -> DeadlineRule:
        """The deadline rule with this name; ``KeyError`` if there is none."""
        for rule in self.deadlines:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def stage_rules(self, stage_id: str) -> tuple[DeadlineRule, ...]:
        """The deadline rules whose clock starts when a case enters ``stage_id``."""
        return tuple(r for r in self.deadlines if r.stage == stage_id)

    def clock_rules(self) -> tuple[DeadlineRule, ...]:
        """The statutory clocks, anchored on date facts."""
        return tuple(r for r in self.deadlines if r.anchor_fact is not None)

    def roles_for(self, action: str) -> frozenset[str]:
        """Roles allowed to do a non-transition ``action`` (see ``PERMISSION_ACTIONS``)."""
        return self.permissions.get(action, frozenset())
