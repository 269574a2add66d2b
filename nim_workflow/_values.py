"""The immutable value objects that cross the public API: actors, cases, deadlines, events.

They are frozen, slotted and typed; datetimes in them are timezone-aware and in UTC, dates are the
local dates of the case's site. Nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nim_workflow import _validate
from nim_workflow._errors import InvalidInput
from nim_workflow._pathway._model import CALENDARS

EventKind = Literal[
    "opened",
    "transition",
    "fact_recorded",
    "paused",
    "resumed",
    "extended",
    "reminder",
    "breach",
    "escalation",
    "denied",
    "upgraded",
    "assigned",
    # The trial (TRIAL.md): a family's own audit chain.
    "family_opened",
    "child_added",
    "allocated",
    "status_changed",
    "family_action",
    "visit_recorded",
    "visit_reminder",
]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
DeadlineStatus = Literal["open", "met", "missed", "cancelled"]
#: The word every view shows for a deadline: its stored ``status``, or ``overdue`` for an open one
#: already past due.
DeadlineState = Literal["open", "overdue", "met", "missed", "cancelled"]


def is_overdue(status: str, due_at: dt.datetime, at: dt.datetime) -> bool:
    """Whether a deadline is overdue at the instant ``at``: still open and due by then.

    The one test every read uses, the same comparison as ``Engine.overdue(at)`` makes in SQL
    (``due_at <= at``): a deadline overdue in one view is overdue in all of them.
    """
    return status == "open" and due_at <= at


@dataclass(frozen=True, slots=True, init=False)
class Actor:
    """Who is acting: an id the host authenticated, and the roles the host grants them.

    ``Actor("sw-017", roles={"social_worker"})``. The engine never authenticates people; it only
    checks the roles it is given against the roles the pathway demands.
    """

    id: str
    roles: frozenset[str]

    def __init__(self, id: str, *, roles: Iterable[str] = ()) -> None:
        """Check the id and roles as the engine's door does; ``InvalidInput`` (a ValueError).

        A bare string for ``roles`` is one role (split into letters it never means anything).
        """
        object.__setattr__(self, "id", _validate.identifier(id, "actor", "an actor id"))
        object.__setattr__(self, "roles", _validate.roles(roles))


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One child's case on one pathway version, as stored now."""

    reference: str
    pathway_id: str
    pathway_version: int
    site: str
    stage: str
    version: int
    opened_at: dt.datetime
    stage_entered_at: dt.datetime
    closed_at: dt.datetime | None
    outcome: str | None
    paused: bool
    facts: Mapping[str, Any] = field(default_factory=dict)
    paused_at: dt.datetime | None = None
    #: The staff id of the worker who holds the case (``Engine.assign``); ``None``: unassigned.
    worker: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "facts", _frozen(self.facts))

    @property
    def is_open(self) -> bool:
        """Whether the case has not reached a final stage."""
        return self.closed_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class StageInterval:
    """A stretch of time a case spent in one stage.

    ``trigger`` is the trigger that brought the case into the stage (``None`` for the stage it
    opened in); ``left_at`` is ``None`` while the case is still there, and ``working_days`` then
    counts up to now.
    """

    stage: str
    entered_at: dt.datetime
    left_at: dt.datetime | None
    trigger: str | None
    working_days: int
    left_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Adjustment:
    """One change to a deadline's due date after it was set: a pause or an extension."""

    kind: Literal["pause", "extension"]
    at: dt.datetime
    shift: str
    previous_due_on: dt.date
    due_on: dt.date
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """Why a deadline is due when it is: anchor, rule, days skipped, pauses and extensions."""

    start_on: dt.date
    anchor: str
    rule: str
    base_due_on: dt.date
    skipped: tuple[tuple[dt.date, str], ...]
    adjustments: tuple[Adjustment, ...]
    due_on: dt.date
    due_at: dt.datetime
    timezone: str

    def lines(self) -> list[str]:
        """The explanation as short sentences, in the order they apply."""
        out = [f"clock started {self.start_on.isoformat()} ({self.anchor})"]
        out.append(f"rule: {self.rule} -> {self.base_due_on.isoformat()}")
        for day, why in self.skipped:
            out.append(f"skipped {day.isoformat()}: {why}")
        for adj in self.adjustments:
            text = (
                f"{adj.kind} on {adj.at.date().isoformat()}: +{adj.shift}, "
                f"{adj.previous_due_on.isoformat()} -> {adj.due_on.isoformat()}"
            )
            out.append(text + (f" ({adj.detail})" if adj.detail else ""))
        out.append(
            f"due on {self.due_on.isoformat()}, missed when it ends in {self.timezone} "
            f"({self.due_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC)"
        )
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


@dataclass(frozen=True, slots=True, kw_only=True)
class Deadline:
    """A stage deadline or one occurrence of a statutory clock.

    ``due_on`` is the local date it is due on; ``due_at`` the UTC instant that date ends in the
    site's time zone, after which it is overdue. ``stage`` is ``None`` for statutory clocks.

    ``status`` is the stored lifecycle (``open``, ``met``, ``missed``, ``cancelled``); ``overdue``
    says whether it was open and past due at the moment it was read (the engine's clock, or the
    ``at=`` the read was given). :attr:`state` is the word to show people.
    """

    reference: str
    stage: str | None
    name: str
    due_on: dt.date
    due_at: dt.datetime
    status: DeadlineStatus
    settled_at: dt.datetime | None
    extensions: int
    kind: Literal["stage", "clock", "window"] = "stage"
    occurrence: int = 1
    start_on: dt.date | None = None
    site: str = ""
    #: A window's first day (a research visit held before it is refused); ``None`` otherwise.
    opens_on: dt.date | None = None
    #: Open and past ``due_at`` when read (as ``Engine.overdue`` would list it then).
    overdue: bool = False
    explanation: Explanation | None = field(default=None, compare=False, repr=False)

    @property
    def state(self) -> DeadlineState:
        """``overdue`` for an open deadline read past its due instant, else ``status``.

        The one word the command line, its JSON and the report show for a deadline.
        """
        return "overdue" if self.overdue else self.status

    def explain(self) -> Explanation:
        """Why this deadline is due when it is (anchor, rule, holidays, pauses, extensions)."""
        if self.explanation is None:  # pragma: no cover - the engine always fills it
            raise LookupError("this deadline was built without its explanation")
        return self.explanation


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadlineChange:
    """What moving a case onto another pathway version did to one of its deadlines.

    ``change`` is ``moved`` or ``unchanged`` (an open deadline worked out again under the new
    rule), ``opened`` (a rule the new version adds) or ``cancelled`` (a rule it no longer has).
    """

    name: str
    occurrence: int
    due_on_before: dt.date | None
    due_on_after: dt.date | None
    change: Literal["moved", "unchanged", "opened", "cancelled"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseUpgrade:
    """One case moved (or, in a dry run, that would move) onto a newer pathway version."""

    reference: str
    pathway_id: str
    from_version: int
    to_version: int
    from_stage: str
    to_stage: str
    changes: tuple[DeadlineChange, ...]
    #: False for a dry run: nothing was written.
    applied: bool

    @property
    def dates_changed(self) -> int:
        """How many due dates differ: moved, opened or cancelled deadlines."""
        return sum(1 for change in self.changes if change.change != "unchanged")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened to a case, published to subscribers after it committed."""

    kind: EventKind
    reference: str
    at: dt.datetime
    detail: Mapping[str, Any] = field(default_factory=dict)
    seq: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", _frozen(self.detail))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """One entry of the append-only audit log.

    ``seq`` is the entry's place in the global, gapless log (``None`` only on an entry just
    written on PostgreSQL and not yet sequenced). ``stream`` and ``reference`` name its chain
    (``"case"`` and the case reference, or ``"staff"`` and a staff id); ``position`` counts from 1
    within that chain, and ``prev_hash`` is the hash of the chain's entry before it.
    """

    seq: int | None
    reference: str
    at: dt.datetime
    actor_id: str
    action: EventKind
    from_stage: str | None
    to_stage: str | None
    reason: str | None
    detail: Mapping[str, Any]
    hash: str
    prev_hash: str = ""
    roles: tuple[str, ...] = ()
    trigger: str | None = None
    stream: str = "case"
    position: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", _frozen(self.detail))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    """The result of verifying the audit log.

    ``ok``; how many entries were ``checked`` and how many are ``sequenced`` into the global
    log; how many signed ``checkpoints`` were checked; whether the check was ``deep`` (the state
    tables compared with what the log recorded); the ``problems`` found, each saying what is wrong,
    where and since when; and ``notes`` that do not make the log untrustworthy (an old defect the
    migration recorded).
    """

    ok: bool
    checked: int
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    sequenced: int = 0
    checkpoints: int = 0
    deep: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffMember:
    """A person on the staff roster: the roles they hold and the sites they work at.

    The command line acts as a roster member and takes their roles from here, never from the
    caller. ``sites`` holds ``"*"`` for every site. ``removed_at`` is set once they leave (the row
    stays, so the audit trail keeps naming them).
    """

    id: str
    roles: frozenset[str]
    sites: frozenset[str]
    added_at: dt.datetime
    updated_at: dt.datetime
    removed_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        """Whether they are on the roster now."""
        return self.removed_at is None

    def works_at(self, site: str) -> bool:
        """Whether they may act on cases at ``site``."""
        return "*" in self.sites or site in self.sites

    def actor(self) -> Actor:
        """The ``Actor`` the engine checks against the pathway's roles."""
        return Actor(self.id, roles=self.roles)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportTable:
    """One file of an export: the table it holds, its file name, rows and SHA-256 of its bytes."""

    name: str
    file: str
    rows: int
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportManifest:
    """What ``Engine.export`` wrote, as its ``manifest.json`` records it.

    ``directory`` holds one file per table (``tables``, by table name), the data ``dictionary``
    and the manifest. ``as_of`` is the instant days late and working days were counted to,
    ``created_at`` when the export was made (the engine's clock). ``key_fingerprint`` tells two
    exports made with the same pseudonym key apart from others without revealing it; ``None``
    when references were exported as stored (``pseudonymised`` false).
    """

    directory: Path
    format: Literal["csv", "parquet"]
    as_of: dt.datetime
    created_at: dt.datetime
    pseudonymised: bool
    key_fingerprint: str | None
    tables: Mapping[str, ExportTable]
    dictionary: ExportTable

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", _frozen(self.tables))


@dataclass(frozen=True, slots=True, kw_only=True)
class Caseload:
    """The open cases one worker holds at one site, as ``Engine.caseloads`` counts them.

    ``worker`` is ``None`` for the site's unassigned cases. ``active`` is false when the worker
    has left the staff roster (or was never on it): their cases need another worker.
    ``by_stage`` counts the cases per stage id; ``paused`` the cases whose team clock is
    stopped; ``overdue`` the open deadlines of these cases past due at the instant read, by the
    same test as ``Engine.overdue``.
    """

    site: str
    worker: str | None
    active: bool
    cases: int
    by_stage: Mapping[str, int]
    paused: int
    overdue: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_stage", _frozen(dict(self.by_stage)))


VisitStatus = Literal["pending", "in_window", "late", "missed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Family:
    """A trial's family (a sibling group): its site, its arm once allocated, its trial status.

    ``cases`` are the references of its children's cases, in the order they joined; a child's
    case is opened by the allocation when it was not open already. ``arm``, ``allocation_id``,
    ``allocated_at`` and ``randomised_on`` (the site's local date of the allocation) are
    ``None`` until the trial's portal allocates the family. ``status`` is the trial status, not
    the children's service status (TRIAL.md).
    """

    reference: str
    site: str
    trial: str
    arm: str | None
    allocation_id: str | None
    status: str
    cases: tuple[str, ...]
    opened_at: dt.datetime
    allocated_at: dt.datetime | None = None
    randomised_on: dt.date | None = None
    version: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Visit:
    """A research visit: its window, when it was held, and its status on the day read.

    ``subject`` is the child's case reference for a visit per child, the family's reference for
    a visit per family. ``status``: ``pending`` (not held, window not yet closed), ``in_window``
    (held within it), ``late`` (held after it closed), ``missed`` (not held, window closed).
    ``stopped`` is true when the family's trial status (withdrawn consent, lost to follow-up)
    stopped the research visits before this one was held.
    """

    name: str
    subject: str
    family: str
    opens_on: dt.date
    closes_on: dt.date
    held_on: dt.date | None
    status: VisitStatus
    target_on: dt.date | None = None
    stopped: bool = False


#: The label a closure date given without a name carries (``explain()`` shows it).
SITE_CLOSURE = "site closure"


@dataclass(frozen=True, slots=True, init=False)
class Site:
    """A declared site: where cases are opened, which pathways it runs, and its calendar.

    ``id`` is the name cases are opened at (``"london"``). ``pathways`` are the ids of the
    pathways the site runs (a case on any other is refused there). ``calendar`` and ``timezone``
    are those of its pathways (the engine checks they agree). ``closures`` are the site's own
    non-working dates, each with its name, in date order (given as ``{date: name}``, or as dates
    alone, named "site closure"). ``source`` is the file the site was declared in (``None`` for
    one built in code), and ``closure_source`` the closure file its dates came from, if any.

    Built in code, it is checked as the engine's door checks arguments (``InvalidInput``)::

        nw.Site(id="croydon", title="Croydon", timezone="Europe/London",
                calendar="england-and-wales", pathways={"nim-uk-england"},
                closures=[dt.date(2026, 3, 6)])
    """

    id: str
    title: str
    timezone: str
    calendar: str
    pathways: frozenset[str]
    closures: Mapping[dt.date, str]
    source: str | None
    closure_source: str | None

    def __init__(
        self,
        *,
        id: str,
        title: str,
        timezone: str,
        calendar: str,
        pathways: Iterable[str],
        closures: Mapping[dt.date, str] | Iterable[dt.date] = (),
        source: str | None = None,
        closure_source: str | None = None,
    ) -> None:
        """Check every field as the engine's door does; ``InvalidInput`` naming the field."""
        _validate.identifier(id, "site")
        if not isinstance(title, str) or not title.strip():
            raise InvalidInput(f"site {id!r}: title must be non-empty text", field="title")
        if calendar not in CALENDARS:
            raise InvalidInput(
                f"site {id!r}: unknown calendar {_validate.shown(calendar)}; expected "
                f"one of {', '.join(CALENDARS)}",
                field="calendar",
            )
        _check_timezone(id, timezone)
        if isinstance(pathways, str | bytes) or not isinstance(pathways, Iterable):
            raise InvalidInput(
                f"site {id!r}: pathways must be a list of pathway ids", field="pathways"
            )
        ids = frozenset(_validate.identifier(p, "pathways", "a pathway id") for p in pathways)
        if not ids:
            raise InvalidInput(f"site {id!r} runs no pathway", field="pathways")
        for name, value in (("source", source), ("closure_source", closure_source)):
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"site {id!r}: {name} must be text or None", field=name)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "title", title)
        object.__setattr__(self, "timezone", timezone)
        object.__setattr__(self, "calendar", calendar)
        object.__setattr__(self, "pathways", ids)
        object.__setattr__(self, "closures", _site_closures(id, closures))
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "closure_source", closure_source)


def _check_timezone(site: str, timezone: object) -> None:
    try:
        if not isinstance(timezone, str) or not timezone:
            raise ValueError(timezone)
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"site {site!r}: unknown time zone {_validate.shown(timezone)}", field="timezone"
        ) from None


def _site_closures(site: str, given: object) -> Mapping[dt.date, str]:
    """``given`` (dates, or ``{date: name}``) as a read-only mapping in date order."""
    if isinstance(given, str | bytes) or not isinstance(given, Iterable):
        raise InvalidInput(f"closures[{site!r}] must be a list of dates", field="closures")
    pairs = given.items() if isinstance(given, Mapping) else ((day, SITE_CLOSURE) for day in given)
    named: dict[dt.date, str] = {}
    for day, name in pairs:
        if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
            raise InvalidInput(
                f"closures[{site!r}]: {_validate.shown(day)} is not a datetime.date",
                field="closures",
            )
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(
                f"closures[{site!r}][{day.isoformat()}]: the name must be non-empty text",
                field="closures",
            )
        named[day] = name
    return MappingProxyType(dict(sorted(named.items())))
