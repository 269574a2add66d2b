"""The typed, immutable model of a trial definition.

A trial file (YAML, under ``trials/``) compiles into one :class:`Trial`: which pathway each arm's
children follow at each site, the research visits as windows after an anchor date, the trial
statuses a family can hold, and which staff roles may act on the trial's families. Nothing in
this module reads files; see ``_loader`` for parsing and validation.

The file format (every key; ``?`` marks optional ones)::

    id: best                              # [a-z0-9-]+
    title: Best Services Trial (BeST?)
    registration: NCT02653716             # the trial's registry number
    unit: family                          # what is randomised: families (sibling groups)
    arms:                                 # arm id -> its title and, per site, its pathway
      nim:
        title: New Orleans Intervention Model
        pathways: {london: nim-uk-england, glasgow: nim-uk-scotland}
      comparator:
        title: Services as usual
        pathways: {london: best-sau-london, glasgow: best-facs-glasgow}
    visits:
      - name: baseline
        title: Baseline visit
        per: child                        # child | family: who one visit is recorded for
        anchor: entered_care_on           # a date fact of every arm's pathway, or randomised
        window: {opens: 4 weeks, closes: 14 weeks}   # first and last day, "after" the anchor
        target: 15 months                 # ?  the visit's nominal time, inside the window
        reminders:                        # ?  default: none
          - {when: opens}
          - {when: before_close, lead: 2 weeks}
    statuses: [enrolled, consented, randomised, withdrawn_consent, lost_to_follow_up, completed]
    roles:                                # role id -> title; the staff roster's roles
      coordinator: Pilot-site coordinator
      researcher: Trial researcher
    permissions:                          # every trial action, once -> the roles that may do it
      open_family: [coordinator]
      add_child: [coordinator]
      allocate: [coordinator]
      set_status: [coordinator, researcher]
      record_visit: [researcher]

Durations are those of pathway files (``<N> days|weeks|months``) except working days: one trial
spans sites with different calendars, so its windows count calendar time. The trial's
``permissions`` say who may act on a family; each child's case is governed by its own pathway's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from nim_workflow._pathway._model import Duration

__all__ = [
    "RANDOMISED",
    "STATUSES",
    "TRIAL_ACTIONS",
    "Trial",
    "TrialArm",
    "VisitAnchor",
    "VisitReminder",
    "VisitRule",
]

#: A date fact every arm's pathway declares (``"entered_care_on"``), or :data:`RANDOMISED`.
VisitAnchor = str
#: The anchor that is the family's randomisation date, recorded by the allocation.
RANDOMISED = "randomised"
#: The trial statuses every trial declares (TRIAL.md), in the order a family passes through them.
STATUSES: tuple[str, ...] = (
    "enrolled",
    "consented",
    "randomised",
    "withdrawn_consent",
    "lost_to_follow_up",
    "completed",
)
#: The actions on a trial's families whose roles every trial declares under ``permissions``.
TRIAL_ACTIONS: tuple[str, ...] = (
    "open_family",
    "add_child",
    "allocate",
    "set_status",
    "record_visit",
)
VisitUnit = Literal["child", "family"]
ReminderWhen = Literal["opens", "before_close"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialArm:
    """One arm of the trial: the pathway its children follow at each site."""

    id: str
    title: str
    #: Site id -> the id of the pathway the arm's children follow there.
    pathways: Mapping[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "pathways", MappingProxyType(dict(self.pathways)))


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitReminder:
    """When a research visit reminds: as its window ``opens``, or ``lead`` ``before_close``."""

    when: ReminderWhen
    #: For ``before_close``: how long before the window's last day; ``None`` for ``opens``.
    lead: Duration | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitRule:
    """A research visit: due in a window that opens and closes after its anchor date.

    The window's first day is ``opens`` after the anchor and its last day ``closes`` after it
    (counted "after": the anchor is day 0). A visit recorded before the window opens is refused;
    one recorded after it closes is recorded and marked late. Windows never pause.
    """

    name: str
    title: str
    #: Whether one visit is recorded for each child or one for the whole family.
    per: VisitUnit
    #: A date fact every arm's pathway declares, or :data:`RANDOMISED`.
    anchor: VisitAnchor
    opens: Duration
    closes: Duration
    #: The visit's nominal time when the source gives one (15 months), inside the window.
    target: Duration | None = None
    reminders: tuple[VisitReminder, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Trial:
    """A validated, immutable trial definition.

    ``content_hash`` is the SHA-256 of the file's bytes, as for a pathway.
    """

    id: str
    title: str
    registration: str
    unit: Literal["family"]
    arms: Mapping[str, TrialArm]
    visits: tuple[VisitRule, ...]
    statuses: tuple[str, ...]
    #: Role id -> its title: the staff roster's roles that act on the trial's families.
    roles: Mapping[str, str]
    #: Each of :data:`TRIAL_ACTIONS` -> the roles that may do it.
    permissions: Mapping[str, frozenset[str]]
    source: str = field(default="<memory>", compare=False)
    content_hash: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", MappingProxyType(dict(self.arms)))
        object.__setattr__(self, "roles", MappingProxyType(dict(self.roles)))
        object.__setattr__(self, "permissions", MappingProxyType(dict(self.permissions)))

    @property
    def sites(self) -> tuple[str, ...]:
        """The sites the trial runs at (every arm names a pathway at each), sorted."""
        return tuple(sorted({site for arm in self.arms.values() for site in arm.pathways}))

    def visit(self, name: str) -> VisitRule:
        """The visit rule with this name; ``KeyError`` if there is none."""
        for visit in self.visits:
            if visit.name == name:
                return visit
        raise KeyError(name)

    def pathway_for(self, arm: str, site: str) -> str:
        """The pathway id the children of ``arm`` follow at ``site``; ``KeyError`` if none."""
        return self.arms[arm].pathways[site]

    def roles_for(self, action: str) -> frozenset[str]:
        """The roles that may do ``action``; ``KeyError`` if it is not in :data:`TRIAL_ACTIONS`."""
        if action not in TRIAL_ACTIONS:
            raise KeyError(action)
        return self.permissions.get(action, frozenset())
