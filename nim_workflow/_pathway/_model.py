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
        extension: {step: 3 months, limit: 1, roles: [team_manager]}   # ?  limit ? (none: no cap)
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
        counting: beginning_with          # ?  after (default) | beginning_with: the anchor is day 1
        pausable: false                   # ?  default: true for stage deadlines, false otherwise
        met_by: [record_decision]         # ?  triggers that meet it when fired by the due date
        escalate_to: team_manager
      - name: interim_cso
        anchor: icso_made_on
        from_first: true                  # ?  only the first date of the anchor starts it
        duration: 66 days
        counting: beginning_with
        settled_by: [cso_made_on]         # ?  date facts that settle it (met by the due date)
        escalate_to: team_manager
      - name: case_review                 # the earliest recorded candidate governs
        earliest_of:
          - {anchor: disposition_on, duration: 3 months}
          - {anchor: entered_care_on, duration: 6 months}
          - {anchor: disposition_on, duration: 9 months, when_preceded_by: entered_care_on}
        recurs: {fact: case_review_held_on, durations: [6 months]}
        escalate_to: team_manager
      - name: baseline_visit              # a window: opens and closes after its anchor
        anchor: entered_care_on
        window: {opens: 4 weeks, closes: 14 weeks}
        settled_by: [baseline_visit_on]   # refused before it opens, late after it closes
        escalate_to: team_manager
      - name: asfa_15_of_22               # a cumulative clock: only days in the condition count
        cumulative:
          starts:                         # the condition begins on the earliest of these
            - {anchor: adjudicated_on}
            - {anchor: entered_care_on, plus: 60 days}
          leaves: returned_home_on        # a date fact: the condition ends (that day is out)
          returns: reentered_care_on      # a date fact: the condition begins again
          reaches: 15 months              # due when the days in the condition reach this...
          within: 22 months               # ...within the rolling period ending that day
        settled_by: [tpr_petition_filed_on]
        escalate_to: team_manager

A rule has exactly one of ``stage``, ``anchor``, ``earliest_of`` and ``cumulative``; ``window``
goes with ``anchor`` in place of ``duration``. Counting (PATHWAYS.md, "Rules of the calendar"):
"N after D" is D + N with D as day 0; "N beginning with D" makes D day 1, so the last day is one
day earlier (for working days: the Nth working day counting D itself when D is one).
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
Counting = Literal["after", "beginning_with"]
COUNTINGS: tuple[Counting, ...] = ("after", "beginning_with")
RuleKind = Literal["stage", "clock", "window"]
CalendarName = Literal["england-and-wales", "scotland", "louisiana"]
CALENDARS: tuple[CalendarName, ...] = ("england-and-wales", "scotland", "louisiana")
#: Actions that are not transitions and whose roles a pathway declares under ``permissions``.
PERMISSION_ACTIONS: tuple[str, ...] = (
    "open_case",
    "record",
    "pause",
    "resume",
    "upgrade",
    "assign",
)
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
    """How a deadline may be extended: by at most ``step`` at a time, by these roles.

    ``limit`` caps how many extensions one deadline may have; ``None`` means no cap (a court may
    extend care proceedings as often as justice needs, CA 1989 s.32(5)).
    """

    step: Duration
    roles: frozenset[str]
    limit: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One ``earliest_of`` candidate: due ``duration`` after ``anchor``, if that fact is recorded.

    With ``when_preceded_by`` the candidate applies only when that date fact is recorded and falls
    before ``anchor`` (art. 702(B): nine months after disposition *if removed before it*).
    """

    anchor: str
    duration: Duration
    when_preceded_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionStart:
    """Where a cumulative clock's condition first begins: ``anchor``, moved on by ``plus``."""

    anchor: str
    plus: Duration | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Cumulative:
    """A clock that counts only the days a case spends in a condition (in care).

    The condition first begins on the earliest recorded ``starts``; ``leaves`` ends a period
    (that day is out) and ``returns`` begins another. The clock is due on the first day ``D`` on
    which the days in the condition in the rolling period ``[D - within, D)`` reach ``reaches``,
    where ``reaches`` is measured in days as it falls from the first day in the condition (so
    an unbroken stay is due exactly ``reaches`` after it began).
    """

    starts: tuple[ConditionStart, ...]
    leaves: str
    returns: str
    reaches: Duration
    within: Duration


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadlineRule:
    """One deadline rule: a stage deadline, a statutory clock or a window.

    Exactly one of ``stage`` (the clock starts on entering the stage), ``anchor_fact`` (it starts
    when that date fact is recorded), ``candidates`` (the earliest recorded of several) and
    ``cumulative`` is set. A window is an anchored rule with ``opens`` set: due (closing)
    ``duration`` after the anchor, and not to be met before ``opens`` after it.
    """

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
    #: Date facts whose recording settles the open deadline (met on or before the due date,
    #: missed after it) without starting another.
    settled_by: tuple[str, ...] = ()
    counting: Counting = "after"
    #: Whether a pause of the case moves it. The law's clocks never pause (DOMAIN.md section 7).
    pausable: bool = True
    #: Only the first recorded date of the anchor starts the clock; later ones leave it alone.
    from_first: bool = False
    candidates: tuple[Candidate, ...] = ()
    opens: Duration | None = None
    cumulative: Cumulative | None = None

    @property
    def kind(self) -> RuleKind:
        """``stage`` for a stage deadline, ``window`` for a window, ``clock`` otherwise."""
        if self.stage is not None:
            return "stage"
        return "window" if self.opens is not None else "clock"

    @property
    def start_facts(self) -> tuple[str, ...]:
        """The date facts whose recording can start (or restart) occurrence 1 of this rule."""
        if self.anchor_fact is not None:
            return (self.anchor_fact,)
        facts: list[str] = []
        for candidate in self.candidates:
            facts += [candidate.anchor]
            if candidate.when_preceded_by is not None:
                facts.append(candidate.when_preceded_by)
        if self.cumulative is not None:
            facts += [start.anchor for start in self.cumulative.starts]
            facts += [self.cumulative.leaves, self.cumulative.returns]
        return tuple(dict.fromkeys(facts))

    @property
    def facts(self) -> tuple[str, ...]:
        """Every date fact this rule reads."""
        recur = (self.recur_fact,) if self.recur_fact is not None else ()
        return tuple(dict.fromkeys((*self.start_facts, *recur, *self.settled_by)))

    def duration_for(self, occurrence: int) -> Duration:
        """The span of the ``occurrence``-th deadline (1-based) of this rule.

        For ``earliest_of`` rules the first occurrence's span depends on the governing candidate
        (see :meth:`span`); this returns the first candidate's.
        """
        if occurrence <= 1 or not self.recur_durations:
            return self.duration
        index = min(occurrence - 2, len(self.recur_durations) - 1)
        return self.recur_durations[index]

    def span(self, occurrence: int, candidate: int | None = None) -> Duration:
        """The span of an occurrence; for ``earliest_of``, that of the governing candidate."""
        if occurrence <= 1 and candidate is not None and self.candidates:
            return self.candidates[candidate].duration
        return self.duration_for(occurrence)


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
        """The rules that run on date facts (statutory clocks and windows), not on stages."""
        return tuple(r for r in self.deadlines if r.stage is None)

    def roles_for(self, action: str) -> frozenset[str]:
        """Roles allowed to do a non-transition ``action`` (see ``PERMISSION_ACTIONS``)."""
        return self.permissions.get(action, frozenset())
