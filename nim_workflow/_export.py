"""The evaluator's export: every case as flat tables, a data dictionary and a checksummed manifest.

The tables are data (:data:`TABLES`): each names its columns, with a type and a description, and
a function that produces its rows from one read of the database. The files, the data dictionary
and the manifest are all written from those definitions, so a table added later is one more
:class:`Table` and nothing else. The trial's tables (families, allocations, visits, outcomes;
TRIAL.md) come from the shared bulk read of :mod:`nim_workflow._store._trial_reads`.

Case references, family references and the portal's allocation ids are pseudonymised with a
keyed hash (HMAC-SHA256) whose key the site keeps, each kind under its own prefix: the same key
gives the same pseudonyms in every export, and without it they cannot be reversed. The manifest
names the key only by a fingerprint. Only the facts a case's pathway version declares are
exported. Everything is written into a temporary directory beside the target and renamed
into place at the end, so a failure or a refusal leaves nothing behind.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args

from nim_workflow import _validate
from nim_workflow._calendar import WorkingCalendar
from nim_workflow._errors import InvalidInput
from nim_workflow._pathway._model import Pathway
from nim_workflow._store import _reads
from nim_workflow._store._trial_reads import PLACEMENT_FACT, TrialRead, read_trial
from nim_workflow._trial import _visits
from nim_workflow._trial._model import Trial
from nim_workflow._values import ExportManifest, ExportTable, StageInterval, is_overdue

if TYPE_CHECKING:
    from nim_workflow._engine import Engine

__all__ = [
    "FORMATS",
    "TABLES",
    "Column",
    "ExportFormat",
    "Table",
    "check_format",
    "export",
    "pseudonym_key_bytes",
]

ExportFormat = Literal["csv", "parquet"]
FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)
ColumnType = Literal["text", "integer", "boolean", "date", "timestamp"]

#: The manifest's own layout; raised when a reader of an older export would misread it.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DICTIONARY = "dictionary.csv"
#: Shorter keys are refused: a pseudonym is only as hard to reverse as its key is to guess.
MIN_KEY_BYTES = 16
PSEUDONYM_PREFIX = "c_"
#: The prefixes of a family's pseudonym and of an allocation id's: same hash, another kind.
FAMILY_PREFIX = "f_"
ALLOCATION_PREFIX = "a_"
_PSEUDONYM_HEX = 32
_FINGERPRINT_LABEL = b"nim-workflow export key fingerprint v1"
_FINGERPRINT_HEX = 16

# -- the table definitions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One column of an exported table: its name, type and what it means."""

    name: str
    type: ColumnType
    description: str


@dataclass(frozen=True, slots=True)
class Table:
    """One exported table: its columns and the function that produces its rows from a read."""

    name: str
    columns: tuple[Column, ...]
    rows: Callable[[_Read], Iterable[Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class _Read:
    """Everything the tables are made from: one read of every case, and how to name them."""

    cases: Sequence[Any]
    histories: Mapping[str, list[StageInterval]]
    deadlines: Mapping[str, list[Any]]
    pauses: Mapping[str, list[Any]]
    resolver: _reads.Resolver
    at: dt.datetime
    name: Callable[[str], str]
    trial: TrialRead
    #: A family's pseudonym (its reference, unpseudonymised), and an allocation id's.
    family_name: Callable[[str], str]
    allocation_name: Callable[[str], str]
    #: The trials the engine runs, by id, and a family row's site calendar (as the engine's).
    trials: Mapping[str, Trial]
    family_calendar: Callable[[Any], WorkingCalendar]
    #: Each child's family reference, by the child's case reference.
    family_of: Mapping[str, str]
    #: Each family's children's references, in the order they joined.
    children_by_family: Mapping[str, list[str]]

    def calendar_of(self, case: Any) -> tuple[Pathway, WorkingCalendar]:
        """The case's pathway and its site's working calendar on it."""
        return self.resolver.pathway_and_calendar(case.pathway_id, case.pathway_version, case.site)

    def children_of(self, family: str) -> list[str]:
        """The family's children's references, in the order they joined."""
        return self.children_by_family.get(family, [])

    def families_in_order(self) -> list[Any]:
        """The families in the order they were opened (not by reference: see :func:`_families`)."""
        return sorted(self.trial.families, key=lambda row: (row.opened_at, row.reference))


def _children(read: _Read) -> Iterator[Sequence[Any]]:
    for case in read.cases:
        family = read.family_of.get(case.reference)
        yield (
            read.name(case.reference),
            None if family is None else read.family_name(family),
            case.site,
            case.pathway_id,
            case.pathway_version,
            case.opened_at,
            case.closed_at,
            case.outcome,
            case.stage,
            case.paused_at is not None,
        )


def _fact_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _facts(read: _Read) -> Iterator[Sequence[Any]]:
    for case in read.cases:
        declared = read.resolver.pathway(case.pathway_id, case.pathway_version).facts
        stored = case.facts or {}
        child = read.name(case.reference)
        # In the pathway's declared order; a stored fact the version does not declare (which the
        # engine never writes) is left out rather than exported.
        for name, spec in declared.items():
            if name in stored and stored[name] is not None:
                yield (child, name, _fact_text(stored[name]), spec.type)


def _stage_intervals(read: _Read) -> Iterator[Sequence[Any]]:
    for case in read.cases:
        pathway, calendar = read.calendar_of(case)
        tz = calendar.tz
        child = read.name(case.reference)
        for stay in read.histories.get(case.reference, ()):
            # Counted as the working days are: local dates after the day entered, up to the day
            # left (or the export's instant; nothing for a closed case's final stage).
            end = stay.left_at or (None if pathway.stage(stay.stage).final else read.at)
            days = 0
            if end is not None:
                entered_on = stay.entered_at.astimezone(tz).date()
                days = max(0, (end.astimezone(tz).date() - entered_on).days)
            yield (
                child,
                stay.stage,
                stay.entered_at,
                stay.left_at,
                stay.trigger,
                days,
                stay.working_days,
            )


def _days_late(row: Any, local_date: Callable[[dt.datetime], dt.date], at: dt.datetime) -> Any:
    if row.status == "missed" and row.settled_at is not None:
        late = (local_date(row.settled_at) - row.due_on).days
    elif is_overdue(row.status, row.due_at, at):
        late = (local_date(at) - row.due_on).days
    else:
        return None
    return late if late > 0 else None


def _deadlines(read: _Read) -> Iterator[Sequence[Any]]:
    for case in read.cases:
        _, calendar = read.calendar_of(case)
        child = read.name(case.reference)
        for row in read.deadlines.get(case.reference, ()):
            yield (
                child,
                row.rule,
                row.kind,
                row.stage,
                row.occurrence,
                row.due_on,
                row.due_at,
                row.status,
                row.settled_at,
                _days_late(row, calendar.local_date, read.at),
                row.extensions,
            )


def _pauses(read: _Read) -> Iterator[Sequence[Any]]:
    for case in read.cases:
        child = read.name(case.reference)
        for row in read.pauses.get(case.reference, ()):
            yield (child, row.paused_at, row.resumed_at)


# -- the trial's tables (TRIAL.md) ---------------------------------------------------------------


def _families(read: _Read) -> Iterator[Sequence[Any]]:
    # In the order opened, like the cases: ordered by reference, the rows of a pseudonymised
    # export would give away how the references sort.
    for row in read.families_in_order():
        calendar = read.family_calendar(row)
        yield (
            read.family_name(row.reference),
            row.trial,
            row.site,
            row.arm,
            row.status,
            len(read.children_of(row.reference)),
            calendar.local_date(row.opened_at),
            row.randomised_on,
        )


def _allocations(read: _Read) -> Iterator[Sequence[Any]]:
    allocated = [row for row in read.trial.families if row.arm is not None]
    for row in sorted(allocated, key=lambda row: (row.allocated_at, row.reference)):
        yield (
            read.family_name(row.reference),
            row.trial,
            row.site,
            row.arm,
            None if row.allocation_id is None else read.allocation_name(row.allocation_id),
            row.allocated_at,
            row.randomised_on,
        )


def _visit_rows(read: _Read, family: Any, stored: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """One family's visits: in the trial's visit order, then by window, then as children joined."""
    trial = read.trials.get(family.trial)
    rules = {} if trial is None else {rule.name: rule for rule in trial.visits}
    order = {name: i for i, name in enumerate(rules)}
    joined = {ref: i for i, ref in enumerate(read.children_of(family.reference))}
    calendar = read.family_calendar(family)
    today = calendar.local_date(read.at)
    status_on = calendar.local_date(family.status_at)
    for visit in sorted(
        stored,
        key=lambda v: (
            order.get(v.name, len(order)),
            v.name,
            v.opens_on,
            joined.get(v.subject, -1),
        ),
    ):
        rule = rules.get(visit.name)
        if rule is not None:
            per = str(rule.per)
        else:  # a trial this engine no longer runs: the subject says
            per = "family" if visit.subject == family.reference else "child"
        subject = read.family_name(visit.subject) if per == "family" else read.name(visit.subject)
        held = visit.held_on
        status = _visits.status(held, visit.opens_on, visit.closes_on, today)
        yield (
            read.family_name(family.reference),
            subject,
            per,
            visit.name,
            visit.anchor_on,
            visit.opens_on,
            visit.closes_on,
            visit.target_on,
            held,
            status,
            held is not None and visit.opens_on <= held <= visit.closes_on,
            (held - visit.closes_on).days if status == "late" and held is not None else None,
            _visits.stopped(held, visit.closes_on, family.status, status_on),
        )


def _visits_table(read: _Read) -> Iterator[Sequence[Any]]:
    by_family: dict[str, list[Any]] = {}
    for visit in read.trial.visits:
        by_family.setdefault(visit.family, []).append(visit)
    for family in read.families_in_order():
        yield from _visit_rows(read, family, by_family.get(family.reference, ()))


def _date_fact(facts: Mapping[str, Any], name: str) -> dt.date | None:
    value = facts.get(name)
    if value is None:
        return None
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _outcomes(read: _Read) -> Iterator[Sequence[Any]]:
    for family in read.families_in_order():
        for child in read.children_of(family.reference):
            case = read.trial.cases.get(child)
            declared: Mapping[str, Any] = {}
            stored: Mapping[str, Any] = {}
            closed_on = None
            if case is not None:
                pathway, calendar = read.resolver.pathway_and_calendar(
                    case.pathway_id, case.pathway_version, case.site
                )
                declared = pathway.facts
                # Only what the case's pathway version declares leaves, as in the facts table.
                stored = {k: v for k, v in (case.facts or {}).items() if k in declared}
                if case.closed_at is not None:
                    closed_on = calendar.local_date(case.closed_at)
            entered = _date_fact(stored, "entered_care_on")
            achieved = _date_fact(stored, "permanence_achieved_on")
            placements: int | None = None
            moves: int | None = None
            if PLACEMENT_FACT in declared:
                placements = len(read.trial.placements.get(child, []))
                moves = read.trial.moves(child)
            yield (
                read.name(child),
                read.family_name(family.reference),
                family.arm,
                family.site,
                None if case is None else case.pathway_id,
                entered,
                stored.get("decision"),
                achieved,
                None if achieved is None or entered is None else (achieved - entered).days,
                stored.get("intervention_received"),
                placements,
                moves,
                closed_on,
                None if case is None else case.outcome,
            )


_CHILD = Column(
    "child",
    "text",
    "The child's case: its reference pseudonymised with the site's key (c_ and 32 hex digits), "
    "or the reference itself in an export made without pseudonymisation.",
)
_FAMILY = Column(
    "family",
    "text",
    "The trial family (sibling group): its reference pseudonymised with the site's key (f_ and "
    "32 hex digits), or the reference itself in an export made without pseudonymisation.",
)
_LOCAL = "the site's local date"

#: The exported tables, in the order they are written: the cases' tables, then the trial's.
TABLES: tuple[Table, ...] = (
    Table(
        "children",
        (
            _CHILD,
            Column(
                "family",
                "text",
                "The trial family the child belongs to, pseudonymised as in the families "
                "table (f_ and 32 hex digits); empty for a child in no family.",
            ),
            Column("site", "text", "The declared site that runs the case."),
            Column("pathway_id", "text", "The pathway the case runs on."),
            Column("pathway_version", "integer", "The version of that pathway the case is on."),
            Column("opened_at", "timestamp", "When the case was opened (UTC)."),
            Column(
                "closed_at",
                "timestamp",
                "When the case reached a final stage (UTC); empty while open.",
            ),
            Column(
                "outcome",
                "text",
                "How the case closed (the closing trigger's outcome); empty while open.",
            ),
            Column("stage", "text", "The stage the case is in as exported."),
            Column("paused", "boolean", "Whether the team's work on the case is paused."),
        ),
        _children,
    ),
    Table(
        "facts",
        (
            _CHILD,
            Column("fact", "text", "A fact the case's pathway version declares."),
            Column(
                "value",
                "text",
                "Its recorded value as text: true/false, an ISO date "
                "(YYYY-MM-DD) or an enum value.",
            ),
            Column("type", "text", "The fact's declared type: bool, date or enum."),
        ),
        _facts,
    ),
    Table(
        "stage_intervals",
        (
            _CHILD,
            Column("stage", "text", "The stage the case was in."),
            Column("entered_at", "timestamp", "When it entered the stage (UTC)."),
            Column("left_at", "timestamp", "When it left the stage (UTC); empty if still there."),
            Column(
                "trigger",
                "text",
                "The trigger that brought the case into the stage; empty "
                "for the stage it opened in.",
            ),
            Column(
                "calendar_days",
                "integer",
                "Days from the local date entered to the local "
                "date left (or of the export's as_of), in the site's time zone; 0 for a "
                "closed case's final stage.",
            ),
            Column(
                "working_days",
                "integer",
                "Working days in the site's calendar over the same "
                "span (holidays and site closures skipped).",
            ),
        ),
        _stage_intervals,
    ),
    Table(
        "deadlines",
        (
            _CHILD,
            Column("rule", "text", "The pathway's deadline rule."),
            Column(
                "kind",
                "text",
                "stage (a stage deadline), clock (a statutory clock) or window (a visit window).",
            ),
            Column("stage", "text", "The stage a stage deadline belongs to; empty otherwise."),
            Column("occurrence", "integer", "Which occurrence of a recurring rule, from 1."),
            Column("due_on", "date", "The local date it is due on, in the site's time zone."),
            Column(
                "due_at",
                "timestamp",
                "The instant that date ends in the site's time zone "
                "(UTC): after it, the deadline is overdue.",
            ),
            Column("status", "text", "As stored: open, met, missed or cancelled."),
            Column(
                "settled_at",
                "timestamp",
                "When it was met, missed or cancelled (UTC); empty while open.",
            ),
            Column(
                "days_late",
                "integer",
                "Local days past due_on: of the day it was settled "
                "for a missed deadline, of the export's as_of for an open overdue one; empty "
                "when on time (or cancelled).",
            ),
            Column("extensions", "integer", "How many times it was extended."),
        ),
        _deadlines,
    ),
    Table(
        "pauses",
        (
            _CHILD,
            Column("paused_at", "timestamp", "When the team's work on the case was paused (UTC)."),
            Column("resumed_at", "timestamp", "When it resumed (UTC); empty while paused."),
        ),
        _pauses,
    ),
    Table(
        "families",
        (
            _FAMILY,
            Column("trial", "text", "The trial the family is in (its id, e.g. best)."),
            Column("site", "text", "The declared site the family's children are at."),
            Column(
                "arm",
                "text",
                "The arm the trial's portal allocated (e.g. nim, comparator); empty until "
                "allocated.",
            ),
            Column(
                "status",
                "text",
                "The trial status as exported (enrolled, consented, randomised, "
                "withdrawn_consent, lost_to_follow_up, completed); not the children's service "
                "status.",
            ),
            Column("children", "integer", "How many children the family has."),
            Column("opened_on", "date", f"When the family was opened: {_LOCAL}."),
            Column(
                "randomised_on",
                "date",
                f"When the allocation was recorded: {_LOCAL}; empty until allocated.",
            ),
        ),
        _families,
    ),
    Table(
        "allocations",
        (
            _FAMILY,
            Column("trial", "text", "The trial the family is in."),
            Column("site", "text", "The family's site (the stratum of the randomisation)."),
            Column("arm", "text", "The arm the trial's portal allocated."),
            Column(
                "allocation",
                "text",
                "The portal's allocation id, pseudonymised with the site's key (a_ and 32 hex "
                "digits; it identifies the family at the portal), or the id itself in an "
                "export made without pseudonymisation.",
            ),
            Column("allocated_at", "timestamp", "When the allocation was recorded (UTC)."),
            Column("randomised_on", "date", f"The same instant as {_LOCAL}."),
        ),
        _allocations,
    ),
    Table(
        "visits",
        (
            _FAMILY,
            Column(
                "subject",
                "text",
                "Who the visit is for: the child (pseudonymised as child, c_) for a visit per "
                "child, the family (as family, f_) for a visit per family.",
            ),
            Column("per", "text", "child or family: whom one visit is recorded for."),
            Column("visit", "text", "The trial's visit (e.g. baseline, month_15, month_30)."),
            Column(
                "anchor_on",
                "date",
                "The date the window is counted from: the child's anchor fact (e.g. "
                "entered_care_on) or the family's randomised_on.",
            ),
            Column("opens_on", "date", f"The window's first day: {_LOCAL}."),
            Column("closes_on", "date", f"The window's last day: {_LOCAL}."),
            Column("target_on", "date", "The visit's target date, where the trial sets one."),
            Column("held_on", "date", "When the visit was held; empty if not (yet)."),
            Column(
                "status",
                "text",
                "On the export's as_of, the site's local date: pending (not held, window "
                "not closed), in_window (held in it), late (held after it closed) or missed "
                "(not held, window closed).",
            ),
            Column(
                "in_window",
                "boolean",
                "Whether the visit was held within its window (false if not held).",
            ),
            Column(
                "days_late",
                "integer",
                "Days from closes_on to held_on for a visit held late; empty otherwise "
                "(a missed visit included).",
            ),
            Column(
                "stopped",
                "boolean",
                "Not held, and the family's trial status (withdrawn_consent, "
                "lost_to_follow_up) has stopped its research visits.",
            ),
        ),
        _visits_table,
    ),
    Table(
        "outcomes",
        (
            _CHILD,
            _FAMILY,
            Column("arm", "text", "The family's allocated arm; empty until allocated."),
            Column("site", "text", "The family's site."),
            Column(
                "pathway",
                "text",
                "The pathway the child's case runs on; empty until the allocation opens it.",
            ),
            Column(
                "entered_care_on",
                "date",
                "The entered_care_on fact: when the child entered care.",
            ),
            Column(
                "permanence_decision",
                "text",
                "The decision fact: the permanence decision, in the nation's types (e.g. "
                "return_home, adoption, special_guardianship, permanence_order).",
            ),
            Column(
                "permanence_achieved_on",
                "date",
                "The permanence_achieved_on fact; empty while not achieved.",
            ),
            Column(
                "days_to_permanence",
                "integer",
                "Days from entered_care_on to permanence_achieved_on; empty if either is "
                "not recorded (censored: not achieved by as_of).",
            ),
            Column(
                "intervention_received",
                "text",
                "Whether the allocated intervention was received: received, partly or "
                "not_received; empty if not recorded.",
            ),
            Column(
                "placements",
                "integer",
                "How many placements were recorded (each new placed_on value, from the audit "
                "log); empty if the pathway does not declare placed_on.",
            ),
            Column(
                "placement_moves",
                "integer",
                "Placement changes: placements less the first, never below 0.",
            ),
            Column(
                "closed_on",
                "date",
                f"When the child's case reached a final stage: {_LOCAL}; empty while open.",
            ),
            Column(
                "outcome",
                "text",
                "How the case closed (the closing trigger's outcome); empty while open.",
            ),
        ),
        _outcomes,
    ),
)

# -- checks at the door --------------------------------------------------------------------------


def check_format(format: object) -> ExportFormat:
    """``format`` if it is one the export writes; ``InvalidInput`` listing them otherwise.

    Parquet also needs pyarrow, which is an optional extra: without it the format is refused.
    """
    if format not in FORMATS:
        raise InvalidInput(
            f"unknown export format {_validate.shown(format)}; expected one of "
            f"{', '.join(FORMATS)}",
            field="format",
        )
    if format == "parquet":
        _pyarrow()
    return format


def _pyarrow() -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet, imported only when Parquet is asked for."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInput(
            "the parquet format needs pyarrow: install nim-workflow[parquet] "
            "(pip install 'nim-workflow[parquet]'), or export as csv",
            field="format",
        ) from None
    return pa, pq


def pseudonym_key_bytes(key: object, pseudonymise: object) -> bytes | None:
    """The pseudonym key as bytes (read from its file if a path was given); ``None`` without one.

    ``InvalidInput`` naming ``pseudonym_key`` when pseudonymising without a key, with a key
    shorter than :data:`MIN_KEY_BYTES`, or with a file that cannot be read; a key given while
    not pseudonymising is refused too (one of the two was not meant).
    """
    if not isinstance(pseudonymise, bool):
        raise InvalidInput("pseudonymise must be True or False", field="pseudonymise")
    if not pseudonymise:
        if key is not None:
            raise InvalidInput(
                "pseudonym_key given with pseudonymise=False: give one or the other",
                field="pseudonym_key",
            )
        return None
    if key is None:
        raise InvalidInput(
            "pseudonym_key is required to pseudonymise the export: the site's key (bytes, or a "
            "path to the file holding it); pass pseudonymise=False to export references as "
            "stored",
            field="pseudonym_key",
        )
    if isinstance(key, bytes | bytearray):
        found = bytes(key)
    elif isinstance(key, str | os.PathLike):
        try:
            # A key file made with `secrets.token_hex(32) > key` ends in a newline: not the key.
            found = Path(key).read_bytes().strip()
        except OSError as exc:
            raise InvalidInput(
                f"cannot read the pseudonym_key file {os.fspath(key)!r}: {exc.strerror or exc}",
                field="pseudonym_key",
            ) from None
    else:
        raise InvalidInput(
            f"pseudonym_key must be bytes or a path to a key file, not {type(key).__name__}",
            field="pseudonym_key",
        )
    if len(found) < MIN_KEY_BYTES:
        raise InvalidInput(
            f"pseudonym_key is {len(found)} bytes; at least {MIN_KEY_BYTES} are needed (make one "
            "with: python -c 'import secrets; print(secrets.token_hex(32))' > key)",
            field="pseudonym_key",
        )
    return found


def pseudonym(key: bytes, reference: str, prefix: str = PSEUDONYM_PREFIX) -> str:
    """A reference's pseudonym under ``key``: HMAC-SHA256, 32 hex digits, after ``prefix``.

    ``prefix`` says what kind of reference it was: a case's (``c_``), a family's (``f_``) or
    an allocation id's (``a_``).
    """
    digest = hmac.new(key, reference.encode("utf-8"), hashlib.sha256).hexdigest()
    return prefix + digest[:_PSEUDONYM_HEX]


def _namer(key: bytes | None, prefix: str) -> Callable[[str], str]:
    """References as stored (no key), or their pseudonyms under ``key``, each worked out once."""
    if key is None:
        return str
    memo: dict[str, str] = {}

    def name(reference: str) -> str:
        found = memo.get(reference)
        if found is None:
            found = memo[reference] = pseudonym(key, reference, prefix)
        return found

    return name


def key_fingerprint(key: bytes) -> str:
    """What the manifest records of the key: the same for the same key, and never the key."""
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:_FINGERPRINT_HEX]


def _check_directory(directory: object) -> Path:
    """The target directory, if absent or empty; ``InvalidInput`` naming ``directory`` if not."""
    if not isinstance(directory, str | os.PathLike):
        raise InvalidInput(
            f"directory must be a path, not {type(directory).__name__}", field="directory"
        )
    target = Path(directory).expanduser().absolute()
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise InvalidInput(f"{target} exists and is not a directory", field="directory")
        if (target / MANIFEST).exists():
            raise InvalidInput(
                f"{target} holds another export (it has a {MANIFEST}); choose a new directory",
                field="directory",
            )
        if any(target.iterdir()):
            raise InvalidInput(
                f"{target} is not empty; export into a new or empty directory",
                field="directory",
            )
    elif not target.parent.is_dir():
        raise InvalidInput(f"{target.parent} does not exist", field="directory")
    return target


# -- the read ------------------------------------------------------------------------------------


def _family_calendars(engine: Engine) -> Callable[[Any], WorkingCalendar]:
    """A family row's site calendar: the engine's for its trial and arm, else the site's own."""
    found: dict[tuple[str, str, str | None], WorkingCalendar] = {}

    def calendar(row: Any) -> WorkingCalendar:
        key = (row.trial, row.site, row.arm)
        cal = found.get(key)
        if cal is None:
            trial = engine._trials.get(row.trial)
            if trial is not None:
                cal = engine._family_calendar(trial, row.site, row.arm)
            else:  # a trial this engine no longer runs: the site's declared time zone
                site = engine._site(row.site)
                cal = WorkingCalendar(site.calendar, site.timezone)  # type: ignore[arg-type]
            found[key] = cal
        return cal

    return calendar


def _read(
    engine: Engine,
    at: dt.datetime,
    name: Callable[[str], str],
    family_name: Callable[[str], str],
    allocation_name: Callable[[str], str],
) -> _Read:
    """Every case with its stays, deadlines and pauses, and the trial: one statement per table."""
    with engine._snapshot() as conn:
        resolver = engine._resolver(conn)
        query, params = _reads.cases_query(None, None, False)
        every_case = conn.execute(query, params).all()
        histories = _reads.read_histories(
            conn, resolver, at, site=None, stage=None, open_only=False, latest=False
        )
        found_deadlines = _reads.by_reference(conn.execute(_reads.ALL_DEADLINES))
        found_pauses = _reads.read_pauses(conn)
        trial = read_trial(conn)
    return _Read(
        cases=every_case,
        histories=histories,
        deadlines=found_deadlines,
        pauses=found_pauses,
        resolver=resolver,
        at=at,
        name=name,
        trial=trial,
        family_name=family_name,
        allocation_name=allocation_name,
        trials=engine.trials,
        family_calendar=_family_calendars(engine),
        family_of={child.reference: child.family for child in trial.children},
        children_by_family=_children_by_family(trial),
    )


def _children_by_family(trial: TrialRead) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for child in trial.children:  # ordered by family, then as each joined
        out.setdefault(child.family, []).append(child.reference)
    return out


# -- the writers ---------------------------------------------------------------------------------


def _csv_value(value: Any, type_: ColumnType) -> str:
    if value is None:
        return ""
    if type_ == "timestamp":
        return str(value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"))
    if type_ == "date":
        return str(value.isoformat())
    if type_ == "boolean":
        return "true" if value else "false"
    return str(value)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def _arrow_type(pa: Any, type_: ColumnType) -> Any:
    return {
        "text": pa.string(),
        "integer": pa.int64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }[type_]


def _write_table(path: Path, format: ExportFormat, table: Table, rows: list[Sequence[Any]]) -> int:
    types = [column.type for column in table.columns]
    if format == "csv":
        return _write_csv(
            path,
            [column.name for column in table.columns],
            ([_csv_value(v, t) for v, t in zip(row, types, strict=True)] for row in rows),
        )
    pa, pq = _pyarrow()
    schema = pa.schema([(c.name, _arrow_type(pa, c.type)) for c in table.columns])
    arrays = [
        pa.array([row[i] for row in rows], type=schema.field(i).type)
        for i in range(len(table.columns))
    ]
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)
    return len(rows)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _iso(instant: dt.datetime) -> str:
    return _csv_value(instant, "timestamp")


def export(
    engine: Engine,
    directory: object,
    format: ExportFormat,
    key: bytes | None,
    *,
    at: dt.datetime,
    created_at: dt.datetime,
) -> ExportManifest:
    """Write every table, the dictionary and the manifest into ``directory``; the manifest.

    ``format`` and ``key`` are checked already (:func:`check_format`,
    :func:`pseudonym_key_bytes`); ``key`` is ``None`` for an export of references as stored.
    ``at`` is the instant working days and days late are counted to.
    """
    from nim_workflow import __version__  # the package imports this module: read at call time

    target = _check_directory(directory)
    read = _read(
        engine,
        at,
        _namer(key, PSEUDONYM_PREFIX),
        _namer(key, FAMILY_PREFIX),
        _namer(key, ALLOCATION_PREFIX),
    )
    suffix = "csv" if format == "csv" else "parquet"
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    )
    try:
        written: dict[str, ExportTable] = {}
        for table in TABLES:
            file = f"{table.name}.{suffix}"
            rows = _write_table(staging / file, format, table, list(table.rows(read)))
            written[table.name] = ExportTable(
                name=table.name, file=file, rows=rows, sha256=_sha256(staging / file)
            )
        entries = [(t.name, c.name, c.type, c.description) for t in TABLES for c in t.columns]
        _write_csv(staging / DICTIONARY, ("table", "column", "type", "description"), entries)
        dictionary = ExportTable(
            name="dictionary",
            file=DICTIONARY,
            rows=len(entries),
            sha256=_sha256(staging / DICTIONARY),
        )
        fingerprint = None if key is None else key_fingerprint(key)
        manifest = {
            "format_version": FORMAT_VERSION,
            "nim_workflow_version": __version__,
            "created_at": _iso(created_at),
            "as_of": _iso(at),
            "format": format,
            "pseudonymised": key is not None,
            "key_fingerprint": fingerprint,
            "tables": {
                table.name: {
                    "file": written[table.name].file,
                    "rows": written[table.name].rows,
                    "sha256": written[table.name].sha256,
                    "columns": [column.name for column in table.columns],
                }
                for table in TABLES
            },
            "dictionary": {
                "file": DICTIONARY,
                "rows": dictionary.rows,
                "sha256": dictionary.sha256,
                "columns": ["table", "column", "type", "description"],
            },
        }
        (staging / MANIFEST).write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        # The target was absent or empty when checked; an empty one gives way to the export.
        if target.is_dir():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportManifest(
        directory=target,
        format=format,
        as_of=at,
        created_at=created_at,
        pseudonymised=key is not None,
        key_fingerprint=fingerprint,
        tables=MappingProxyType(written),
        dictionary=dictionary,
    )
