"""The ``Engine``: the facade host systems call to open cases, fire transitions and ask what is due.

Each state-changing call is one database transaction (or runs inside the host's, with
``connection=``), in two halves. It reads and locks the case whole (:mod:`._store._case_state`)
and **decides** in memory: the shared state machine's verdict, the stage history, the deadlines
settled and opened with their alarms (:mod:`._deadlines`, which runs no SQL), the facts, the
audit entry and the version bump. Then the store **writes** that plan with statements built
once, and everything commits together. A refusal writes only its own ``denied`` audit event.
Subscribers hear of a change only after it committed. The engine holds no state that another
process would need: the database is the truth.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import sqlalchemy as sa
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import Connection, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from nim_workflow import _audit, _checkpoint, _deadlines, _decide, _export, _validate, _verify
from nim_workflow._cache import CALENDARS_KEPT, BoundedCache
from nim_workflow._calendar import WorkingCalendar
from nim_workflow._checkpoint import Checkpoint
from nim_workflow._deadlines import CaseClock
from nim_workflow._errors import (
    ActionRefused,
    CaseExists,
    CaseNotFound,
    ConcurrentUpdate,
    InvalidInput,
    NimWorkflowError,
    OutsideWindow,
    PermissionDenied,
    StaffNotFound,
    UnknownSite,
)
from nim_workflow._families import FamilyActions
from nim_workflow._machine import PathwayMachine
from nim_workflow._pathway._bundled import bundled_pathways
from nim_workflow._pathway._loader import load_pathway, load_pathway_text
from nim_workflow._pathway._model import Pathway
from nim_workflow._sites import bundled_sites, sites_given
from nim_workflow._store import _case_state, _migrate, _reads
from nim_workflow._store._case_state import CaseState, Row
from nim_workflow._store._schema import (
    GENESIS_HASH,
    alarms,
    cases,
    deadlines,
    pathways,
    staff,
    visit_alarms,
)
from nim_workflow._trial._bundled import bundled_trials
from nim_workflow._trial._loader import load_trial
from nim_workflow._trial._model import Trial
from nim_workflow._values import (
    EVENT_KINDS,
    SITE_CLOSURE,
    Actor,
    AuditEvent,
    AuditReport,
    Case,
    Caseload,
    CaseUpgrade,
    Deadline,
    DeadlineChange,
    Event,
    EventKind,
    ExportManifest,
    Site,
    StaffMember,
    StageInterval,
)

Clock = Callable[[], dt.datetime]
Subscriber = Callable[[Event], object]

DEFAULT_URL = "sqlite:///nim-workflow.db"
_PROCESS_BATCH = 500
#: How far ahead of the engine's clock process_due(at=) may look without allow_future: the
#: clocks of several machines sharing one database never agree exactly.
_FUTURE_GRACE = dt.timedelta(minutes=5)


_INSERT_CASE = cases.insert()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: The role that may change the staff roster.
ROSTER_ROLE = "administrator"


def _staff_sites(sites: Iterable[str]) -> frozenset[str]:
    if isinstance(sites, str) or not isinstance(sites, Iterable):
        raise InvalidInput('sites must be a list of site names (or ["*"])', field="sites")
    places = frozenset(
        "*" if site == "*" else _validate.identifier(site, "sites", "a site") for site in sites
    )
    if not places:
        raise InvalidInput('a staff member works at one site at least ("*": all)', field="sites")
    return places


def _to_staff(row: Any) -> StaffMember:
    return StaffMember(
        id=row.staff_id,
        roles=frozenset(row.roles),
        sites=frozenset(row.sites),
        added_at=row.added_at,
        updated_at=row.updated_at,
        removed_at=row.removed_at,
    )


def _default_logger() -> Any:
    # A structlog logger over the stdlib "nim_workflow" logger: silent below WARNING until the
    # host configures logging, and never configuring anything itself.
    return structlog.wrap_logger(
        logging.getLogger("nim_workflow"),
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
        ],
    )


@dataclass(slots=True)
class _Unit:
    """One unit of work: the cases it holds in memory, its audit entries, the events to publish.

    ``cases`` holds each case the unit locked, with the changes decided but not yet written
    (:mod:`nim_workflow._store._case_state`). ``entries`` are the audit entries decided so far,
    each with the index of its published event (``None``: not published), and ``chains`` the
    heads of the chains they extend. :meth:`finish` writes all of it just before the commit.
    ``written`` pairs each entry's row id with its event's index once written on PostgreSQL,
    so the seqs the sequencer gives after the commit can be filled in.
    """

    conn: Connection
    events: list[Event] = field(default_factory=list)
    cases: dict[str, CaseState] = field(default_factory=dict)
    entries: list[tuple[dict[str, Any], int | None]] = field(default_factory=list)
    chains: dict[tuple[str, str], _audit.ChainHead] = field(default_factory=dict)
    written: list[tuple[int, int | None]] = field(default_factory=list)
    registered: list[tuple[str, int]] = field(default_factory=list)

    def chain(self, stream: str, reference: str) -> _audit.ChainHead:
        """The head of a chain as this unit moves it: from the case read, or read now."""
        key = (stream, reference)
        head = self.chains.get(key)
        if head is None:
            state = self.cases.get(reference) if stream == "case" else None
            if state is not None and state.chain_loaded:
                if state.chain is None:
                    head = _audit.ChainHead(0, GENESIS_HASH, None)
                else:
                    head = _audit.ChainHead(*state.chain, stored=state.chain[0])
            else:
                head = _audit.chain_head(self.conn, stream, reference)
            self.chains[key] = head
        return head

    def finish(self, *, refused: bool = False) -> None:
        """Write what the unit decided: the cases' rows, then the audit entries and chain heads.

        After a refusal only its ``denied`` entry is written. On SQLite the writer is also the
        sequencer and gives the entries their seqs as it inserts them.
        """
        if not refused:
            _case_state.flush(self.conn, list(self.cases.values()))
            if _case_state.checking():
                _case_state.check_against_database(self.conn, self.cases.values())
        if not self.entries:
            return
        fields = [entry for entry, _ in self.entries]
        try:
            ids = _audit.write_entries(self.conn, fields, self.chains)
        except _audit.ChainMoved as exc:
            raise ConcurrentUpdate(str(exc), None, None) from exc
        if ids:
            self.written = [(i, index) for i, (_, index) in zip(ids, self.entries, strict=True)]
        else:
            for entry, index in self.entries:
                if index is not None:
                    self.events[index] = dataclasses.replace(self.events[index], seq=entry["seq"])
        self.entries = []

    def fill_seqs(self, assigned: Mapping[int, int]) -> None:
        """Give the published events the seqs the sequencer assigned their entries."""
        for entry_id, index in self.written:
            if index is not None and entry_id in assigned:
                self.events[index] = dataclasses.replace(self.events[index], seq=assigned[entry_id])


def _declared_closures(site: Site) -> dict[dt.date, str]:
    """A declared site's closures, by date; dates given in code checked as closures= dates are."""
    if site.closure_source is not None:
        return dict(site.closures)
    return {_decide.closure_date(site.id, day): name for day, name in site.closures.items()}


@dataclass(frozen=True, slots=True)
class _Subscription:
    callback: Subscriber
    kinds: frozenset[str] | None


class Engine(FamilyActions):
    """A workflow engine over one database.

    ``url`` is any SQLAlchemy URL (SQLite and PostgreSQL are supported) or a SQLAlchemy ``Engine``
    whose life stays the caller's. ``clock`` returns the current aware datetime (default: the
    system clock in UTC). ``pathways`` are Pathway objects or file paths (default: the bundled
    pathways). ``sites`` are the declared sites, ``nw.Site`` objects or site file paths (default:
    the bundled sites, ``pathways/sites/``); a case is opened only at a declared site, on a
    pathway it runs, and an unknown site anywhere is refused with :class:`UnknownSite`.
    ``closures`` maps a declared site to extra non-working dates for its calendar, added to the
    site's own closures. ``signing_key`` (an Ed25519 private key or
    the path of its PEM file) signs the audit log's checkpoints; it never enters the database.
    ``trials`` are the trials the engine runs (``nw.Trial`` objects or trial file paths; default:
    the bundled trials whose pathways and sites the engine has).
    """

    def __init__(
        self,
        url: str | sa.Engine = DEFAULT_URL,
        clock: Clock | None = None,
        pathways: Iterable[Pathway | str | os.PathLike[str]] | None = None,
        closures: Mapping[str, Iterable[dt.date]] | None = None,
        *,
        logger: Any = None,
        signing_key: Ed25519PrivateKey | str | os.PathLike[str] | None = None,
        sites: Iterable[Site | str | os.PathLike[str]] | None = None,
        trials: Iterable[Trial | str | os.PathLike[str]] | None = None,
    ) -> None:
        if isinstance(url, sa.Engine):
            self._sa = url
            self._owns_engine = False
        elif isinstance(url, str):
            self._sa = _create_engine(url)
            self._owns_engine = True
        else:
            raise InvalidInput("url must be a database URL or a SQLAlchemy Engine", field="url")
        if clock is not None and not callable(clock):
            raise InvalidInput(
                "clock must be a callable returning an aware datetime", field="clock"
            )
        self._clock: Clock = clock or _utcnow
        # The checkpoint signing key stays in this process: never in the database.
        self._signing_key = (
            None if signing_key is None else _checkpoint.load_private_key(signing_key)
        )
        self._pathways: dict[tuple[str, int], Pathway] = {}
        self._latest: dict[str, Pathway] = {}
        for item in bundled_pathways().values() if pathways is None else pathways:
            self._register_in_memory(item if isinstance(item, Pathway) else load_pathway(item))
        # Sites are declared data: the bundled ones unless the host declares its own.
        self._sites: dict[str, Site] = bundled_sites() if sites is None else sites_given(sites)
        self._check_site_calendars()
        self._trials = self._trials_given(trials)
        #: The facts that anchor a visit per child: recording one plans the child's visits.
        self._visit_anchors = frozenset(
            rule.anchor
            for trial in self._trials.values()
            for rule in trial.visits
            if rule.per == "child"
        )
        # Each site starts from its declared closures, by name; the caller's dates add to them,
        # never replace them, and read as the calendar's default label. Dates given in code are
        # checked as closures= dates are; a closure file's rules were checked on loading (they
        # expand to 2100, a year beyond the dates the engine keeps, harmlessly).
        self._closures: dict[str, dict[dt.date, str]] = {
            site.id: _declared_closures(site) for site in self._sites.values()
        }
        if closures is not None and not isinstance(closures, Mapping):
            raise InvalidInput("closures must map a site to its closure dates", field="closures")
        for site_id, days in (closures or {}).items():
            _validate.identifier(site_id, "closures", "a site")
            if site_id not in self._sites:
                raise UnknownSite(site_id, self._sites, field="closures")
            if isinstance(days, str | bytes) or not isinstance(days, Iterable):
                raise InvalidInput(
                    f"closures[{site_id!r}] must be a list of dates", field="closures"
                )
            named = self._closures[site_id]
            for day in days:
                named.setdefault(_decide.closure_date(site_id, day), SITE_CLOSURE)
        # Bounded: sites are the host's names, so one calendar per site ever seen would grow
        # without end in a long-lived process.
        self._calendars: BoundedCache[tuple[str, int, str], WorkingCalendar] = BoundedCache(
            CALENDARS_KEPT
        )
        # Pathway versions known to be stored in this engine's database (committed by it).
        self._registered: set[tuple[str, int]] = set()
        self._subscribers: list[_Subscription] = []
        self._host_pending: weakref.WeakKeyDictionary[Connection, list[Event]] = (
            weakref.WeakKeyDictionary()
        )
        self._log = logger if logger is not None else _default_logger()
        self._dialect = self._sa.dialect.name
        self._scheduler: Any = None
        self._lock = threading.Lock()

    # -- life -------------------------------------------------------------------------------------

    @property
    def sqlalchemy_engine(self) -> sa.Engine:
        """The SQLAlchemy engine this engine works through."""
        return self._sa

    @property
    def pathways(self) -> Mapping[str, Pathway]:
        """The newest registered version of each pathway, by id."""
        return dict(self._latest)

    def sites(self) -> dict[str, Site]:
        """The declared sites, by id, each with every closure date this engine gives it."""
        return {
            site_id: dataclasses.replace(site, closures=self._closures[site_id])
            for site_id, site in sorted(self._sites.items())
        }

    def _site(self, site: object, field: str = "site") -> Site:
        """The declared site ``site``; :class:`UnknownSite` (nearest name suggested) if none."""
        name = _validate.lookup(site, field, "a site")
        found = self._sites.get(name)
        if found is None:
            raise UnknownSite(name, self._sites, field=field)
        return found

    def _optional_site(self, site: object) -> str | None:
        """A site filter: ``None`` (every site) or a declared site's id."""
        return None if site is None else self._site(site).id

    def _trials_given(
        self, trials: Iterable[Trial | str | os.PathLike[str]] | None
    ) -> dict[str, Trial]:
        """The trials to run: each checked against this engine's pathways and sites."""
        known = dict(self._latest)
        if trials is None:
            # The bundled trials, where this engine runs their pathways at their sites.
            return {
                trial.id: trial
                for trial in bundled_trials().values()
                if all(
                    pathway in known and site in self._sites
                    for arm in trial.arms.values()
                    for site, pathway in arm.pathways.items()
                )
            }
        out: dict[str, Trial] = {}
        for item in trials:
            trial = (
                item
                if isinstance(item, Trial)
                else load_trial(item, pathways=known, sites=self._sites)
            )
            for arm in trial.arms.values():
                for site, pathway in arm.pathways.items():
                    if site not in self._sites:
                        raise UnknownSite(site, self._sites, field="trials")
                    if pathway not in known:
                        raise InvalidInput(
                            f"trial {trial.id!r}: arm {arm.id!r} follows pathway {pathway!r} "
                            f"at {site!r}, which this engine does not run",
                            field="trials",
                        )
            out[trial.id] = trial
        return out

    def _check_site_calendars(self) -> None:
        """Refuse a site whose calendar or time zone differs from a registered pathway it runs."""
        for site in self._sites.values():
            for pathway_id in sorted(site.pathways):
                pathway = self._latest.get(pathway_id)
                if pathway is None:
                    continue
                if (pathway.calendar, pathway.timezone) != (site.calendar, site.timezone):
                    raise InvalidInput(
                        f"site {site.id!r} keeps calendar {site.calendar} in {site.timezone}, "
                        f"but the pathway it runs, {pathway_id}, keeps {pathway.calendar} in "
                        f"{pathway.timezone}",
                        field="sites",
                    )

    def now(self) -> dt.datetime:
        """The engine's clock: the current instant in UTC (injected clocks included)."""
        return self._now()

    def pathway(self, pathway_id: str, version: int | None = None) -> Pathway:
        """A registered pathway by id (newest version unless ``version`` is given)."""
        _validate.identifier(pathway_id, "pathway")
        _validate.version(version, "version")
        found = (
            self._latest.get(pathway_id)
            if version is None
            else self._pathways.get((pathway_id, version))
        )
        if found is None:
            known = ", ".join(sorted(self._latest)) or "none"
            which = "" if version is None else f" version {version}"
            raise InvalidInput(
                f"unknown pathway {pathway_id!r}{which} (registered: {known})", field="pathway"
            )
        return found

    def close(self) -> None:
        """Stop the scheduler and, if this engine created its database engine, dispose of it."""
        self.stop_scheduler()
        if self._owns_engine:
            self._sa.dispose()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrate(self) -> None:
        """Create or upgrade the schema to this library's newest migration; idempotent."""
        with self._sa.begin() as conn:
            _migrate.upgrade(conn)
        with self._write(None) as unit:
            for pathway in self._pathways.values():
                self._ensure_registered(unit, pathway)

    def schema_revision(self) -> tuple[str | None, str]:
        """The database's schema revision and the one this library needs, as ``(current, head)``.

        ``current`` is ``None`` before the first ``migrate()``.
        """
        with self._read() as conn:
            current = _migrate.current_revision(conn)
        return current, _migrate.head_revision()

    # -- subscriptions -----------------------------------------------------------------------------

    def subscribe(
        self, callback: Subscriber, kinds: Iterable[EventKind] | None = None
    ) -> Callable[[], None]:
        """Call ``callback(event)`` after each committed change of the given kinds (all if None).

        Returns a function that unsubscribes. A subscriber that raises is logged and skipped:
        the change it heard of has already committed. The durable record is the audit log.
        """
        if not callable(callback):
            raise InvalidInput("callback must be callable with one event", field="callback")
        if isinstance(kinds, str):
            kinds = (kinds,)  # type: ignore[assignment]
        wanted = None if kinds is None else frozenset(kinds)
        if wanted is not None and not wanted <= set(EVENT_KINDS):
            unknown = sorted(_validate.shown(kind) for kind in wanted - set(EVENT_KINDS))
            raise InvalidInput(f"unknown event kinds: {', '.join(unknown)}", field="kinds")
        subscription = _Subscription(callback, wanted)
        self._subscribers.append(subscription)

        def unsubscribe() -> None:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

        return unsubscribe

    def _publish(self, events: Sequence[Event]) -> None:
        for published in events:
            for sub in list(self._subscribers):
                if sub.kinds is not None and published.kind not in sub.kinds:
                    continue
                try:
                    sub.callback(published)
                except Exception:
                    self._log.exception(
                        "nimwf.subscriber_failed",
                        reference=published.reference,
                        kind=published.kind,
                    )

    # -- units of work -----------------------------------------------------------------------------

    @contextmanager
    def _write(self, connection: Connection | None) -> Iterator[_Unit]:
        """A writing transaction: ours (committed here) or the host's (committed by the host).

        A refusal (``ActionRefused``) commits what was written (its ``denied`` audit event) and
        re-raises; any other error rolls everything back.
        """
        if connection is not None:
            yield from self._write_in_host(connection)
            return
        unit: _Unit | None = None
        try:
            with self._transaction() as conn:
                unit = _Unit(conn)
                try:
                    yield unit
                except ActionRefused:
                    unit.finish(refused=True)
                    raise
                unit.finish()
        except ActionRefused:
            # Committed (the refusal's own entry): publish it as any committed change.
            if unit is not None:
                self._after_commit(unit)
            raise
        assert unit is not None
        self._after_commit(unit)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A writing transaction on a connection of ours.

        Committed when the body ends, or when it raises a refusal (``ActionRefused``: what the
        refusal wrote, its ``denied`` entry, stands); rolled back on any other error. A writer
        that lost to another (a lock conflict) raises :class:`ConcurrentUpdate`.
        """
        try:
            with self._sa.connect() as conn:
                if self._dialect == "sqlite":
                    # Take the write lock up front: two writers that both read first would
                    # otherwise deadlock on the lock upgrade instead of queueing.
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.begin()
                try:
                    yield conn
                except ActionRefused:
                    conn.commit()
                    raise
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
        except DBAPIError as exc:
            if _is_lock_conflict(exc):
                raise ConcurrentUpdate("(database)", None, None) from exc
            raise

    def _begin_in_host(self, connection: Connection) -> None:
        """Begin the host's transaction on SQLite before a first SAVEPOINT, if not begun yet.

        The sqlite3 driver begins lazily, before the first write; a SAVEPOINT issued first would
        open (and on release commit) a transaction of its own.
        """
        if self._dialect != "sqlite":
            return
        raw = connection.connection.dbapi_connection
        if raw is not None and not getattr(raw, "in_transaction", True):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    def _after_commit(self, unit: _Unit) -> None:
        """Sequence what just committed (PostgreSQL; SQLite did it inline), then publish."""
        self._registered.update(unit.registered)
        if unit.written and self._dialect == "postgresql":
            unit.fill_seqs(self._sequence(wait=False))
        self._publish(unit.events)

    def _sequence(self, *, wait: bool) -> dict[int, int]:
        """Integrate committed, unsequenced audit entries into the global log; ``{id: seq}``.

        On PostgreSQL the sequencer is whoever holds the advisory lock: with ``wait=False`` a
        writer that finds it taken leaves its entries to the holder (or the next reader, writer
        or sweep), so writers never queue behind one another. A failure here never undoes the
        write that already committed: the entries wait for the next sequencer.
        """
        assigned: dict[int, int] = {}
        if self._dialect == "sqlite":
            # SQLite's only writer sequenced its entries before it committed.
            return assigned
        try:
            while True:
                with self._sa.connect() as conn:
                    conn.begin()
                    if not _audit.try_sequencer_lock(conn, wait=wait):
                        conn.rollback()
                        return assigned
                    batch = _audit.sequence(conn)
                    conn.commit()
                assigned.update(batch)
                if len(batch) < _audit.SEQUENCE_BATCH:
                    return assigned
        except DBAPIError as exc:
            if wait:
                raise
            self._log.warning("nimwf.sequencer_deferred", error=type(exc).__name__)
            return assigned

    def _write_in_host(self, connection: Connection) -> Iterator[_Unit]:
        """Write through the host's connection inside a savepoint of its transaction.

        A failure part-way through rolls back to the savepoint, so the host's own work is
        untouched and nothing half-written can be committed with it; a refusal keeps its
        ``denied`` event. Events wait for the host's commit.
        """
        self._begin_in_host(connection)
        savepoint = connection.begin_nested()
        unit = _Unit(connection)
        try:
            yield unit
        except ActionRefused:
            unit.finish(refused=True)
            savepoint.commit()
            self._after_host_commit(connection, unit.events)
            raise
        except DBAPIError as exc:
            savepoint.rollback()
            if _is_lock_conflict(exc):
                # Two host transactions locking cases in opposite orders: the database picks
                # one to fail; the host retries it like any other lost race.
                raise ConcurrentUpdate("(database)", None, None) from exc
            raise
        except BaseException:
            savepoint.rollback()
            raise
        unit.finish()
        savepoint.commit()
        self._after_host_commit(connection, unit.events)

    def _after_host_commit(self, connection: Connection, events: list[Event]) -> None:
        """Hold events written through a host's connection until the host commits.

        SQLAlchemy's ``commit`` event runs *before* the database commit, so the hook commits the
        DBAPI connection itself and publishes only once that succeeded (SQLAlchemy's own commit
        that follows finds nothing left to do). A rollback drops the events. Pending events are
        kept per engine and per ``Connection`` object, never in the pooled connection's ``info``,
        which outlives the host's transaction.
        """
        if not events:
            return
        pending = self._host_pending.get(connection)
        if pending is not None:
            pending.extend(events)
            return
        self._host_pending[connection] = list(events)

        def on_commit(conn: Connection) -> None:
            queued = self._host_pending.get(conn)
            if not queued:
                return
            self._host_pending[conn] = []
            conn.connection.dbapi_connection.commit()  # type: ignore[union-attr]
            if self._dialect == "postgresql":
                self._sequence(wait=False)
            self._publish(queued)

        def on_rollback(conn: Connection) -> None:
            if conn in self._host_pending:
                self._host_pending[conn] = []

        event.listen(connection, "commit", on_commit)
        event.listen(connection, "rollback", on_rollback)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._sa.connect() as conn:
            yield conn

    # -- pathways and calendars --------------------------------------------------------------------

    def _register_in_memory(self, pathway: Pathway) -> None:
        known = self._pathways.get(pathway.key)
        if known is not None and known.content_hash != pathway.content_hash:
            raise InvalidInput(
                f"pathway {pathway.id!r} version {pathway.version} given twice with different "
                "content; give the changed definition a new version",
                field="pathways",
            )
        self._pathways[pathway.key] = pathway
        newest = self._latest.get(pathway.id)
        if newest is None or pathway.version > newest.version:
            self._latest[pathway.id] = pathway

    def _ensure_registered(self, unit: _Unit, pathway: Pathway) -> None:
        if pathway.key in self._registered:
            return
        conn = unit.conn
        stored = conn.execute(
            sa.select(pathways.c.content_hash).where(
                pathways.c.pathway_id == pathway.id, pathways.c.version == pathway.version
            )
        ).scalar_one_or_none()
        if stored is None:
            values = {
                "pathway_id": pathway.id,
                "version": pathway.version,
                "content_hash": pathway.content_hash,
                "title": pathway.title,
                "source_text": _source_text(pathway),
                "registered_at": self._clock(),
            }
            # Another process may register the same version at the same moment: insert if
            # absent (no savepoint, which SQLite would turn into a commit of the host's work),
            # then compare with whatever is stored.
            insert = (
                postgresql.insert(pathways)
                if self._dialect == "postgresql"
                else sqlite.insert(pathways)
            )
            conn.execute(insert.values(**values).on_conflict_do_nothing())
            stored = conn.execute(
                sa.select(pathways.c.content_hash).where(
                    pathways.c.pathway_id == pathway.id, pathways.c.version == pathway.version
                )
            ).scalar_one()
        if stored != pathway.content_hash:
            raise InvalidInput(
                f"pathway {pathway.id!r} version {pathway.version} is already registered in this "
                "database with different content; give the changed definition a new version",
                field="pathway",
            )
        # Checked once: a pathway version's row is never changed or removed once committed,
        # which only the engine's own transactions are known to do.
        unit.registered.append(pathway.key)

    def _pathway_of(self, conn: Connection, pathway_id: str, version: int) -> Pathway:
        found = self._pathways.get((pathway_id, version))
        if found is not None:
            return found
        # A case on a version this process was not given: rebuild it from the stored text.
        text = conn.execute(
            sa.select(pathways.c.source_text).where(
                pathways.c.pathway_id == pathway_id, pathways.c.version == version
            )
        ).scalar_one()
        pathway = load_pathway_text(text, f"<stored {pathway_id} v{version}>")
        with self._lock:
            self._pathways.setdefault(pathway.key, pathway)
        return pathway

    def _calendar(self, pathway: Pathway, site: str) -> WorkingCalendar:
        key = (pathway.id, pathway.version, site)
        cal = self._calendars.get(key)
        if cal is None:
            cal = self._calendars.put(
                key,
                WorkingCalendar(
                    pathway.calendar, pathway.timezone, self._closures.get(site, frozenset())
                ),
            )
        return cal

    def calendar(self, site: str, pathway: str) -> WorkingCalendar:
        """The working-day calendar a declared site uses on a pathway, closures included."""
        _validate.identifier(site, "site")
        return self._calendar(self.pathway(pathway), self._site(site).id)

    def _clock_for(self, conn: Connection, row: Any) -> CaseClock:
        pathway = self._pathway_of(conn, row.pathway_id, row.pathway_version)
        return CaseClock(row.reference, row.site, pathway, self._calendar(pathway, row.site))

    # -- input checks ------------------------------------------------------------------------------

    def _at(self, at: dt.datetime | None) -> dt.datetime:
        """``at`` checked, or the engine's clock now (also checked: a host's clock may be off)."""
        return self._now() if at is None else _validate.instant(at)

    def _now(self) -> dt.datetime:
        return _validate.instant(self._clock(), "clock")

    @staticmethod
    def _given(at: object) -> dt.datetime | None:
        """An explicit ``at=`` checked at the door; ``None`` means "now", read under the lock."""
        return None if at is None else _validate.instant(at)

    def _when(self, given: dt.datetime | None) -> dt.datetime:
        """When an action on a locked case happens: as given, or the clock read now.

        Read after the case lock is held, so a writer that waited for another's commit dates
        its action after it, and meets the state the winner left (its refusal, or its own
        ConcurrentUpdate), never a complaint about time running backwards.
        """
        return self._now() if given is None else given

    @staticmethod
    def _check_actor(actor: object) -> None:
        if not isinstance(actor, Actor):
            raise InvalidInput(
                f"actor must be an nw.Actor, not {type(actor).__name__} {_validate.shown(actor)}",
                field="actor",
            )

    @staticmethod
    def _check_connection(connection: object) -> None:
        if connection is not None and not isinstance(connection, Connection):
            raise InvalidInput(
                "connection must be a SQLAlchemy Connection with a transaction begun, not "
                f"{type(connection).__name__}",
                field="connection",
            )

    # -- state-changing calls ----------------------------------------------------------------------

    def open_case(
        self,
        reference: str,
        pathway: str,
        site: str,
        actor: Actor,
        at: dt.datetime | None = None,
        facts: Mapping[str, Any] | None = None,
        *,
        connection: Connection | None = None,
    ) -> Case:
        """Open a case in its pathway's initial stage and start that stage's deadlines."""
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(reference, "reference", "a case reference")
        _validate.identifier(site, "site")
        declared = self._site(site)
        definition = self.pathway(pathway)
        if definition.id not in declared.pathways:
            raise InvalidInput(
                f"site {site!r} does not run pathway {definition.id!r}; it runs "
                f"{', '.join(sorted(declared.pathways))}",
                field="pathway",
            )
        new_facts = _decide.coerce_facts(definition, facts)
        with self._write(connection) as unit:
            when = self._when(given)
            allowed = definition.roles_for("open_case")
            if not actor.roles & allowed:
                self._deny(
                    unit,
                    actor,
                    "open_case",
                    PermissionDenied(reference, "open_case", actor.id, allowed),
                    at=when,
                    reference=reference,
                )
            self._open(unit, reference, definition, site, actor, when, new_facts)
            case = self._held(unit, reference)
        self._log.info(
            "nimwf.opened",
            reference=reference,
            to_stage=definition.initial_stage,
            actor_id=actor.id,
            outcome="ok",
        )
        return case

    def _open(
        self,
        unit: _Unit,
        reference: str,
        definition: Pathway,
        site: str,
        actor: Actor,
        when: dt.datetime,
        new_facts: Mapping[str, Any],
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Open a case in this unit: its row, first stage, deadlines, clocks and ``opened`` entry.

        ``detail`` adds to the entry's detail (an allocation names the family and its arm).
        """
        conn = unit.conn
        self._ensure_registered(unit, definition)
        stage = definition.initial_stage
        values = {
            "reference": reference,
            "pathway_id": definition.id,
            "pathway_version": definition.version,
            "site": site,
            "stage": stage,
            "version": 1,
            "opened_at": when,
            "stage_entered_at": when,
            "closed_at": None,
            "outcome": None,
            "paused_at": None,
            "facts": _decide.facts_to_json(new_facts),
            "updated_at": when,
            "worker": None,
        }
        try:
            conn.execute(_INSERT_CASE, values)
        except IntegrityError as exc:
            # The reference is taken (or was, a moment ago, by a concurrent writer): the
            # unit rolls back, so the failed INSERT leaves nothing behind.
            raise CaseExists(reference) from exc
        state = _case_state.opened(reference, values)
        unit.cases[reference] = state
        _decide.enter_stage(state, stage, when, None)
        clock = CaseClock(reference, site, definition, self._calendar(definition, site))
        opened = _deadlines.open_stage_deadlines(state, clock, stage, when)
        clocks = _deadlines.record_clock_facts(
            state, clock, _decide.date_facts(new_facts), when, facts=new_facts
        )
        self._audit(
            unit,
            reference=reference,
            at=when,
            actor=actor,
            action="opened",
            to_stage=stage,
            detail={
                "pathway": definition.id,
                "pathway_version": definition.version,
                "site": site,
                "facts": _decide.facts_to_json(new_facts),
                "deadlines_opened": opened,
                "clocks": clocks,
                **(detail or {}),
            },
        )

    def fire(
        self,
        reference: str,
        trigger: str,
        actor: Actor,
        reason: str | None = None,
        at: dt.datetime | None = None,
        facts: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
        *,
        connection: Connection | None = None,
    ) -> Case:
        """Fire ``trigger`` on a case: take ``facts`` first, then move it if the pathway allows."""
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(reference, "reference", "a case reference")
        _validate.identifier(trigger, "trigger")
        _validate.reason(reason)
        _validate.version(expected_version)
        with self._write(connection) as unit:
            conn = unit.conn
            row = self._lock_case(unit, reference)
            when = self._when(given)
            _decide.check_version(row, expected_version)
            clock = self._clock_for(conn, row)
            pathway = clock.pathway
            new_facts = _decide.coerce_facts(pathway, facts)
            _decide.check_not_before(row, when)
            stored = _decide.facts_from_json(pathway, row.facts)
            merged = {**stored, **new_facts}
            machine = PathwayMachine.for_pathway(pathway)
            decision = machine.decide(
                row.stage, trigger, roles=actor.roles, facts=merged, reason=reason
            )
            refusal = _decide.fire_refusal(row, trigger) or decision.refusal(
                reference=reference, actor_id=actor.id
            )
            if refusal is not None:
                self._deny(
                    unit,
                    actor,
                    "fire",
                    refusal,
                    at=when,
                    reference=reference,
                    trigger=trigger,
                    stage=row.stage,
                )
            dest = machine.fire(
                row.stage,
                trigger,
                roles=actor.roles,
                facts=merged,
                reason=reason,
                reference=reference,
                actor_id=actor.id,
            )
            changed = _decide.changed_facts(stored, new_facts)
            self._check_windows(unit, clock, row, actor, changed, when, "fire", trigger)
            closing = dest in pathway.final_stages
            state = unit.cases[reference]
            _decide.enter_stage(state, dest, when, trigger)
            clocks = _deadlines.record_clock_facts(
                state, clock, _decide.date_facts(changed), when, facts=merged
            )
            if changed.keys() & self._visit_anchors:
                self._sync_child_visits(unit, reference, changed, when)
            settled = _deadlines.settle_met_by(state, clock, trigger, when)
            settled |= _deadlines.settle_stage_deadlines(
                state, clock, row.stage, when, closing=closing, trigger=trigger
            )
            opened: list[str] = []
            if closing:
                settled |= _deadlines.close_open(state, clock, when, trigger)
            else:
                opened = _deadlines.open_stage_deadlines(state, clock, dest, when)
            self._update_case(
                unit,
                row,
                at=when,
                stage=dest,
                stage_entered_at=when,
                facts=_decide.facts_to_json(merged),
                closed_at=when if closing else None,
                outcome=decision.outcome if closing else None,
            )
            self._audit(
                unit,
                reference=reference,
                at=when,
                actor=actor,
                action="transition",
                trigger=trigger,
                from_stage=row.stage,
                to_stage=dest,
                reason=reason,
                detail={
                    "facts": _decide.facts_to_json(changed),
                    "deadlines_settled": settled,
                    "deadlines_opened": opened,
                    "clocks": clocks,
                    "outcome": decision.outcome if closing else None,
                    "case_version": row.version + 1,
                },
            )
            case = self._held(unit, reference)
        self._log.info(
            "nimwf.transition",
            reference=reference,
            trigger=trigger,
            from_stage=row.stage,
            to_stage=dest,
            actor_id=actor.id,
            facts=sorted(changed),
            outcome="ok",
        )
        return case

    def record(
        self,
        reference: str,
        facts: Mapping[str, Any],
        actor: Actor,
        at: dt.datetime | None = None,
        *,
        expected_version: int | None = None,
        connection: Connection | None = None,
    ) -> Case:
        """Record declared facts on a case; date facts start or move its statutory clocks."""
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(reference, "reference", "a case reference")
        _validate.version(expected_version)
        _validate.fact_names(facts)
        with self._write(connection) as unit:
            conn = unit.conn
            row = self._lock_case(unit, reference)
            when = self._when(given)
            _decide.check_version(row, expected_version)
            clock = self._clock_for(conn, row)
            new_facts = _decide.coerce_facts(clock.pathway, facts)
            if not new_facts:
                raise InvalidInput("record needs at least one fact", field="facts")
            _decide.check_not_before(row, when)
            self._check_may(unit, row, actor, "record", clock.pathway, when)
            stored = _decide.facts_from_json(clock.pathway, row.facts)
            changed = _decide.changed_facts(stored, new_facts)
            if not changed:
                return self._held(unit, reference)
            self._check_windows(unit, clock, row, actor, changed, when, "record", None)
            merged = {**stored, **changed}
            clocks = _deadlines.record_clock_facts(
                unit.cases[reference], clock, _decide.date_facts(changed), when, facts=merged
            )
            if changed.keys() & self._visit_anchors:
                self._sync_child_visits(unit, reference, changed, when)
            self._update_case(unit, row, at=when, facts=_decide.facts_to_json(merged))
            self._audit(
                unit,
                reference=reference,
                at=when,
                actor=actor,
                action="fact_recorded",
                from_stage=row.stage,
                to_stage=row.stage,
                detail={"facts": _decide.facts_to_json(changed), "clocks": clocks},
            )
            case = self._held(unit, reference)
        self._log.info(
            "nimwf.fact_recorded",
            reference=reference,
            facts=sorted(changed),
            actor_id=actor.id,
            outcome="ok",
        )
        return case

    def pause(
        self,
        reference: str,
        actor: Actor,
        reason: str,
        at: dt.datetime | None = None,
        *,
        connection: Connection | None = None,
    ) -> Case:
        """Stop the team's clock: the case's stage deadlines stand still until it is resumed.

        The law's clocks (rules with ``pausable: false``) and research windows run on.
        """
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(reference, "reference", "a case reference")
        _validate.reason(reason)
        with self._write(connection) as unit:
            conn = unit.conn
            row = self._lock_case(unit, reference)
            when = self._when(given)
            _decide.check_not_before(row, when)
            clock = self._clock_for(conn, row)
            self._check_may(unit, row, actor, "pause", clock.pathway, when)
            refusal = _decide.pause_refusal(row, reason)
            if refusal is not None:
                self._deny(
                    unit, actor, "pause", refusal, at=when, reference=reference, stage=row.stage
                )
            paused_on = clock.calendar.local_date(when)
            unit.cases[reference].add(
                "pauses", paused_at=when, resumed_at=None, paused_on=paused_on, resumed_on=None
            )
            self._update_case(unit, row, at=when, paused_at=when)
            self._audit(
                unit,
                reference=reference,
                at=when,
                actor=actor,
                action="paused",
                from_stage=row.stage,
                to_stage=row.stage,
                reason=reason,
                detail={"paused_on": paused_on.isoformat()},
            )
            case = self._held(unit, reference)
        self._log.info("nimwf.paused", reference=reference, actor_id=actor.id, outcome="ok")
        return case

    def resume(
        self,
        reference: str,
        actor: Actor,
        at: dt.datetime | None = None,
        *,
        reason: str | None = None,
        connection: Connection | None = None,
    ) -> Case:
        """Restart the team's clock; the stage deadlines move later by the paused time."""
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(reference, "reference", "a case reference")
        _validate.reason(reason)
        with self._write(connection) as unit:
            conn = unit.conn
            row = self._lock_case(unit, reference)
            when = self._when(given)
            _decide.check_not_before(row, when)
            clock = self._clock_for(conn, row)
            self._check_may(unit, row, actor, "resume", clock.pathway, when)
            if row.paused_at is None:
                raise InvalidInput(f"case {reference} is not paused", field="reference")
            state = unit.cases[reference]
            pause = [p for p in state.rows["pauses"] if p.resumed_at is None][-1]
            resumed_on = clock.calendar.local_date(when)
            state.change("pauses", pause, resumed_at=when, resumed_on=resumed_on)
            moved = _deadlines.shift_for_pause(state, clock, pause.paused_on, resumed_on, when)
            self._update_case(unit, row, at=when, paused_at=None)
            self._audit(
                unit,
                reference=reference,
                at=when,
                actor=actor,
                action="resumed",
                from_stage=row.stage,
                to_stage=row.stage,
                reason=reason,
                detail={
                    "paused_on": pause.paused_on.isoformat(),
                    "resumed_on": resumed_on.isoformat(),
                    "deadlines_moved": moved,
                },
            )
            case = self._held(unit, reference)
        self._log.info("nimwf.resumed", reference=reference, actor_id=actor.id, outcome="ok")
        return case

    def assign(
        self,
        reference: str,
        worker: str | None,
        actor: Actor,
        at: dt.datetime | None = None,
        *,
        reason: str | None = None,
        expected_version: int | None = None,
        connection: Connection | None = None,
    ) -> Case:
        """Give the case to the staff member who holds it (``None``: unassign it), audited.

        ``worker`` must be on the staff roster, work at the case's site and hold a role of the
        case's pathway; anything else is refused with nothing written. Who may assign is the
        pathway's ``assign`` permission. Assigning the worker who already holds the case changes
        nothing and writes nothing.
        """
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(reference, "reference", "a case reference")
        if worker is not None:
            _validate.identifier(worker, "worker", "a staff id")
        _validate.reason(reason)
        _validate.version(expected_version)
        with self._write(connection) as unit:
            conn = unit.conn
            row = self._lock_case(unit, reference)
            when = self._when(given)
            _decide.check_version(row, expected_version)
            _decide.check_not_before(row, when)
            pathway = self._pathway_of(conn, row.pathway_id, row.pathway_version)
            self._check_may(unit, row, actor, "assign", pathway, when)
            if worker is not None:
                found = conn.execute(sa.select(staff).where(staff.c.staff_id == worker)).first()
                _decide.check_worker(
                    worker, None if found is None else _to_staff(found), row.site, pathway
                )
            if worker == row.worker:
                return self._held(unit, reference)
            self._update_case(unit, row, at=when, worker=worker)
            self._audit(
                unit,
                reference=reference,
                at=when,
                actor=actor,
                action="assigned",
                from_stage=row.stage,
                to_stage=row.stage,
                reason=reason,
                detail={"worker": worker, "previous": row.worker},
            )
            case = self._held(unit, reference)
        self._log.info(
            "nimwf.assigned", reference=reference, worker=worker, actor_id=actor.id, outcome="ok"
        )
        return case

    def extend_deadline(
        self,
        reference: str,
        name: str,
        actor: Actor,
        reason: str,
        at: dt.datetime | None = None,
        *,
        by: str | dt.timedelta | None = None,
        connection: Connection | None = None,
    ) -> Deadline:
        """Extend one open deadline by what was granted (``by``), with a reason.

        ``by`` is a duration in the pathway files' syntax (``"4 weeks"``, ``"10 working_days"``)
        or a ``timedelta`` of whole days, at most the rule's step; ``None`` grants the full step.
        A rule with a ``limit`` allows that many extensions; one without allows any number.
        """
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(reference, "reference", "a case reference")
        _validate.identifier(name, "name", "a deadline name")
        _validate.reason(reason)
        granted = _decide.granted(by)
        with self._write(connection) as unit:
            conn = unit.conn
            row = self._lock_case(unit, reference)
            when = self._when(given)
            _decide.check_not_before(row, when)
            clock = self._clock_for(conn, row)
            pathway = clock.pathway
            try:
                rule = pathway.rule(name)
            except KeyError:
                names = ", ".join(r.name for r in pathway.deadlines)
                raise InvalidInput(
                    f"pathway {pathway.id} has no deadline named {name!r} (it has: {names})",
                    field="name",
                ) from None
            refusal = _decide.extension_refusal(reference, name, rule, actor)
            if refusal is not None:
                self._deny(
                    unit,
                    actor,
                    "extend",
                    refusal,
                    at=when,
                    reference=reference,
                    trigger=name,
                    stage=row.stage,
                )
            assert rule.extension is not None  # refused above otherwise
            state = unit.cases[reference]
            target = _deadlines.open_deadline_row(state, name)
            if target is None:
                raise InvalidInput(
                    f"case {reference} has no open {name!r} deadline to extend", field="name"
                )
            step = rule.extension.step
            if granted is not None and _deadlines.longer_than(
                clock, rule, target.due_on, granted, step
            ):
                raise InvalidInput(
                    f"by={granted} is longer than the most {name!r} may be extended at a time "
                    f"({step})",
                    field="by",
                )
            refusal = _decide.extension_use_refusal(
                reference, name, rule, target.extensions, reason
            )
            if refusal is not None:
                self._deny(
                    unit,
                    actor,
                    "extend",
                    refusal,
                    at=when,
                    reference=reference,
                    trigger=name,
                    stage=row.stage,
                )
            before = Row(target)
            new_due = _deadlines.extend(
                state,
                clock,
                target,
                rule,
                by=granted or step,
                at=when,
                actor_id=actor.id,
                reason=reason,
            )
            self._update_case(unit, row, at=when)
            self._audit(
                unit,
                reference=reference,
                at=when,
                actor=actor,
                action="extended",
                trigger=None,
                from_stage=row.stage,
                to_stage=row.stage,
                reason=reason,
                detail={
                    "deadline": name,
                    "occurrence": before.occurrence,
                    "previous_due_on": before.due_on.isoformat(),
                    "due_on": new_due.isoformat(),
                    "extension": before.extensions + 1,
                    "by": str(granted or step),
                    "limit": rule.extension.limit,
                },
            )
            result = _deadlines.to_deadline(clock, target, at=when)
        self._log.info(
            "nimwf.extended", reference=reference, deadline=name, actor_id=actor.id, outcome="ok"
        )
        return result

    # -- pathway versions --------------------------------------------------------------------------

    def upgrade_cases(
        self,
        pathway: str,
        actor: Actor,
        reason: str,
        to_version: int | None = None,
        stage_map: Mapping[str, str] | None = None,
        dry_run: bool = False,
        at: dt.datetime | None = None,
        *,
        connection: Connection | None = None,
    ) -> list[CaseUpgrade]:
        """Move the running cases of ``pathway`` onto ``to_version`` (default: the newest).

        Each case moves in one audited step (``upgraded``): its open deadlines are worked out
        again from their anchors under the new rules (finished pauses and granted extensions
        applied again), rules the new version adds start from the facts the case holds, rules it
        dropped are cancelled, settled deadlines stay as they were. A case in a stage the new
        version lacks needs ``stage_map`` (``{old_stage: new_stage}``); without it, or with a
        fact the new version does not declare, the whole call is refused by name and nothing is
        written. ``dry_run`` works out and returns every change, then writes nothing. Closed
        cases, and cases already on the version, are left alone; cases not upgraded keep working
        on their own version.
        """
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(pathway, "pathway")
        _validate.version(to_version, "to_version")
        if not isinstance(dry_run, bool):
            raise InvalidInput("dry_run must be True or False", field="dry_run")
        target = self.pathway(pathway, to_version)
        if not _validate.reason(reason) or not reason.strip():
            raise InvalidInput("upgrading cases needs a reason", field="reason")
        mapping = _decide.stage_map(target, stage_map)
        with self._read() as conn:
            running = conn.execute(
                sa.select(cases.c.reference, cases.c.pathway_version, cases.c.stage, cases.c.facts)
                .where(
                    cases.c.pathway_id == target.id,
                    cases.c.closed_at.is_(None),
                    cases.c.pathway_version < target.version,
                )
                .order_by(cases.c.reference)
            ).all()
            # The versions running cases are on, each looked up once.
            olds = {
                version: self._pathway_of(conn, target.id, version)
                for version in {row.pathway_version for row in running}
            }
        _decide.check_upgrade(target, mapping, running, olds)
        allowed = target.roles_for("upgrade")
        if not actor.roles & allowed:
            # Refused before any case is touched; audited on the first case it would have moved.
            first = running[0].reference if running else f"(any of {target.id})"
            refusal = PermissionDenied(first, f"upgrade {target.id}", actor.id, allowed)
            if not running:
                raise refusal
            with self._write(connection) as unit:
                held = self._lock_case(unit, first)
                self._deny(
                    unit,
                    actor,
                    "upgrade",
                    refusal,
                    at=self._when(given),
                    reference=first,
                    stage=held.stage,
                )
        results: list[CaseUpgrade] = []
        for planned in running:
            try:
                with self._write(connection) as unit:
                    case_row = self._lock_case(unit, planned.reference)
                    when = self._when(given)
                    upgrade = self._upgrade_case(
                        unit, case_row, target, mapping, actor, reason, when
                    )
                    if upgrade is not None and dry_run:
                        raise _DryRun(upgrade)
            except _DryRun as rolled_back:
                upgrade = rolled_back.upgrade
            if upgrade is not None:
                results.append(upgrade)
        self._log.info(
            "nimwf.upgraded",
            pathway=target.id,
            to_version=target.version,
            cases=len(results),
            dry_run=dry_run,
            actor_id=actor.id,
            outcome="ok",
        )
        return results

    def _upgrade_case(
        self,
        unit: _Unit,
        row: Any,
        target: Pathway,
        mapping: Mapping[str, str],
        actor: Actor,
        reason: str,
        when: dt.datetime,
    ) -> CaseUpgrade | None:
        """Move one locked case onto ``target``; ``None`` if it closed or moved meanwhile."""
        conn = unit.conn
        if row.closed_at is not None or row.pathway_version >= target.version:
            return None
        _decide.check_not_before(row, when)
        self._ensure_registered(unit, target)
        old = self._clock_for(conn, row)
        new = CaseClock(row.reference, row.site, target, self._calendar(target, row.site))
        stage = mapping.get(row.stage, row.stage)
        facts = _decide.facts_from_json(old.pathway, row.facts)
        state = unit.cases[row.reference]
        closed_pauses = [
            (p.paused_on, p.resumed_on) for p in state.rows["pauses"] if p.resumed_on is not None
        ]
        stage_started_on = new.calendar.local_date(row.stage_entered_at)
        if stage != row.stage:
            _decide.enter_stage(state, stage, when, "upgraded")
            stage_started_on = new.calendar.local_date(when)
        changes = _deadlines.rework_open(
            state, new, stage, facts, closed_pauses, stage_started_on, when
        )
        self._update_case(
            unit,
            row,
            at=when,
            pathway_version=target.version,
            stage=stage,
            **({"stage_entered_at": when} if stage != row.stage else {}),
        )
        self._audit(
            unit,
            reference=row.reference,
            at=when,
            actor=actor,
            action="upgraded",
            from_stage=row.stage,
            to_stage=stage,
            reason=reason,
            detail={
                "pathway": target.id,
                "from_version": row.pathway_version,
                "to_version": target.version,
                "deadlines": changes,
                "case_version": row.version + 1,
            },
        )
        return CaseUpgrade(
            reference=row.reference,
            pathway_id=target.id,
            from_version=row.pathway_version,
            to_version=target.version,
            from_stage=row.stage,
            to_stage=stage,
            changes=tuple(
                DeadlineChange(
                    name=c["deadline"],
                    occurrence=c["occurrence"],
                    due_on_before=dt.date.fromisoformat(c["from"]) if c["from"] else None,
                    due_on_after=dt.date.fromisoformat(c["to"]) if c["to"] else None,
                    change=c["change"],
                )
                for c in changes
            ),
            applied=True,
        )

    # -- the deadline processor --------------------------------------------------------------------

    def process_due(
        self,
        at: dt.datetime | None = None,
        *,
        allow_future: bool = False,
        connection: Connection | None = None,
    ) -> list[Event]:
        """Fire every reminder, breach and escalation due by ``at``; each fires exactly once.

        Alarms are claimed in batches (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the write lock on
        SQLite), marked fired and audited in one transaction per batch, then published. Alarms of
        paused cases wait for the resume, which moves them.

        An ``at`` later than the engine's clock would fire breaches that have not happened yet,
        every one at once: it is refused unless ``allow_future=True`` says the caller is
        simulating time on purpose (tests, the demo, a replay).
        """
        self._check_connection(connection)
        when = self._at(at)
        if at is not None and not allow_future:
            now = self._now()
            if when > now + _FUTURE_GRACE:
                raise InvalidInput(
                    f"at={when.isoformat()} is later than the engine's clock "
                    f"({now.isoformat()}): processing the future would fire breaches that have "
                    "not happened; pass allow_future=True when simulating time",
                    field="at",
                )
        fired: list[Event] = []
        while True:
            with self._write(connection) as unit:
                batch = self._claim_and_fire(unit, when)
            fired.extend(unit.events)
            # Stop on an empty batch, not a short one: under SKIP LOCKED a batch can come back
            # short while due alarms remain.
            if not batch:
                break
        while True:
            with self._write(connection) as unit:
                reminders = self._claim_visit_reminders(unit, when)
            fired.extend(unit.events)
            if not reminders:
                break
        if fired:
            self._log.info("nimwf.processed", fired=len(fired), at=when.isoformat())
        return fired

    def _claim_and_fire(self, unit: _Unit, when: dt.datetime) -> Sequence[Any]:
        conn = unit.conn
        query = (
            sa.select(
                alarms.c.id,
                alarms.c.reference,
                alarms.c.kind,
                alarms.c.label,
                alarms.c.due_at,
                deadlines.c.rule,
                deadlines.c.due_on,
                deadlines.c.due_at.label("deadline_due_at"),
                deadlines.c.occurrence,
                deadlines.c.stage,
                deadlines.c.site,
            )
            .join(deadlines, deadlines.c.id == alarms.c.deadline_id)
            .join(cases, cases.c.reference == alarms.c.reference)
            .where(
                alarms.c.status == "pending",
                alarms.c.due_at <= when,
                deadlines.c.status == "open",
                cases.c.paused_at.is_(None),
            )
            .order_by(alarms.c.due_at, alarms.c.id)
            .limit(_PROCESS_BATCH)
        )
        if self._dialect == "postgresql":
            # The case row is locked too, skipping cases a writer holds: the alarm's audit entry
            # joins the case's chain in order, and nobody waits on anybody.
            query = query.with_for_update(of=[alarms, cases], skip_locked=True)
        rows = conn.execute(query).all()
        # The batch's cases as they stand before any alarm fires, read in one pass per table;
        # the alarms' changes are written together when the unit finishes.
        unread = {alarm.reference for alarm in rows} - unit.cases.keys()
        if unread:
            for reference, state in _case_state.load_many(conn, unread).items():
                state.digests = _audit.state_digests(state.case, state.rows)
                unit.cases[reference] = state
        held = {
            alarm["id"]: (state, alarm)
            for state in (unit.cases[r] for r in {a.reference for a in rows})
            for alarm in state.rows["alarms"]
        }
        for alarm in rows:
            state, alarm_row = held[alarm.id]
            if alarm_row.status != "pending":  # pragma: no cover - the claim holds the lock
                continue
            if alarm.kind == "reminder" and alarm.deadline_due_at <= when:
                # Caught up late (the processor was down, or the case was paused): the deadline
                # has passed, its breach says so, and a "due soon" reminder would mislead. The
                # lapse is audited (not published) so the alarm row's change has its entry.
                state.change("alarms", alarm_row, status="lapsed")
                self._audit(
                    unit,
                    reference=alarm.reference,
                    at=when,
                    actor=None,
                    action="lapsed",  # type: ignore[arg-type]
                    from_stage=alarm.stage,
                    to_stage=alarm.stage,
                    detail={
                        "deadline": alarm.rule,
                        "occurrence": alarm.occurrence,
                        "due_on": alarm.due_on.isoformat(),
                        "alarm_due_at": alarm.due_at.isoformat(),
                    },
                    publish=False,
                )
                continue
            state.change("alarms", alarm_row, status="fired", fired_at=when)
            detail: dict[str, Any] = {
                "deadline": alarm.rule,
                "label": alarm.label,
                "occurrence": alarm.occurrence,
                "due_on": alarm.due_on.isoformat(),
                "alarm_due_at": alarm.due_at.isoformat(),
                "site": alarm.site,
            }
            if alarm.kind == "escalation":
                detail["escalate_to"] = alarm.label
            self._audit(
                unit,
                reference=alarm.reference,
                at=when,
                actor=None,
                action=alarm.kind,
                from_stage=alarm.stage,
                to_stage=alarm.stage,
                detail=detail,
            )
        return rows

    def next_due_at(self) -> dt.datetime | None:
        """The instant the next pending alarm falls due, or ``None`` if nothing is pending.

        Alarms are the deadlines' reminders, breaches and escalations and the research visits'
        reminders.
        """
        with self._read() as conn:
            visit_due = conn.execute(
                sa.select(sa.func.min(visit_alarms.c.due_at)).where(
                    visit_alarms.c.status == "pending"
                )
            ).scalar()
            value: dt.datetime | None = conn.execute(
                sa.select(sa.func.min(alarms.c.due_at))
                .join(deadlines, deadlines.c.id == alarms.c.deadline_id)
                .join(cases, cases.c.reference == alarms.c.reference)
                .where(
                    alarms.c.status == "pending",
                    deadlines.c.status == "open",
                    cases.c.paused_at.is_(None),
                )
            ).scalar()
        found = [_as_utc(v) for v in (value, visit_due) if v is not None]
        return min(found) if found else None

    def start_scheduler(self, *, sweep_seconds: float = 60.0) -> None:
        """Wake ``process_due`` in this process at the next due instant, and sweep periodically."""
        from nim_workflow._scheduler import DeadlineScheduler

        with self._lock:
            if self._scheduler is None:
                self._scheduler = DeadlineScheduler(
                    self, sweep_seconds=sweep_seconds, logger=self._log
                )
                self._scheduler.start()

    def stop_scheduler(self) -> None:
        """Stop the in-process scheduler, if it runs; the database keeps everything it knew."""
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.stop()

    # -- reading -----------------------------------------------------------------------------------

    def case(self, reference: str) -> Case:
        """The case as stored now."""
        _validate.lookup(reference, "reference", "a case reference")
        with self._read() as conn:
            return self._load(conn, reference)

    def cases(
        self,
        site: str | None = None,
        stage: str | None = None,
        open_only: bool = True,
        *,
        worker: str | None = None,
    ) -> list[Case]:
        """Cases, oldest opened first, filtered by site, stage and the worker who holds them.

        Open ones only by default.
        """
        site = self._optional_site(site)
        _validate.optional_lookup(stage, "stage")
        _validate.optional_lookup(worker, "worker")
        if not isinstance(open_only, bool):
            raise InvalidInput("open_only must be True or False", field="open_only")
        query, params = _reads.cases_query(site, stage, open_only, worker)
        with self._read() as conn:
            return [self._to_case(conn, row) for row in conn.execute(query, params)]

    def caseloads(self, site: str | None = None, at: dt.datetime | None = None) -> list[Caseload]:
        """Each worker's open cases per site, and each site's unassigned ones.

        Sorted by site, then worker (unassigned last; their ``active`` is true). ``overdue``
        counts the open deadlines of a worker's cases past due at ``at`` (default: now), as
        :meth:`overdue` does.
        """
        now = self._at(at)
        site = self._optional_site(site)
        with self._read() as conn:
            rows = conn.execute(
                _reads.OPEN_CASELOAD[site is not None], {} if site is None else {"site": site}
            ).all()
            members = {m.staff_id: m for m in conn.execute(sa.select(staff))}
        held = {row.reference: (row.site, row.worker) for row in rows}
        # Read after the cases: a case opened in between is not in ``held``, and not counted.
        overdue = Counter(
            held[d.reference] for d in self.overdue(at=now, site=site) if d.reference in held
        )
        groups: dict[tuple[str, str | None], list[Any]] = {}
        for row in rows:
            groups.setdefault((row.site, row.worker), []).append(row)
        loads = []
        for (place, worker), held_rows in groups.items():
            member = members.get(worker) if worker is not None else None
            loads.append(
                Caseload(
                    site=place,
                    worker=worker,
                    active=worker is None or (member is not None and member.removed_at is None),
                    cases=len(held_rows),
                    by_stage=Counter(r.stage for r in held_rows),
                    paused=sum(r.paused_at is not None for r in held_rows),
                    overdue=overdue[(place, worker)],
                )
            )
        return sorted(loads, key=lambda c: (c.site, c.worker is None, c.worker or ""))

    def allowed_triggers(self, reference: str, actor: Actor) -> list[str]:
        """What this actor may fire on the case now (empty while it is paused or closed)."""
        self._check_actor(actor)
        _validate.lookup(reference, "reference", "a case reference")
        with self._read() as conn:
            row = self._row(conn, reference)
            if row.closed_at is not None or row.paused_at is not None:
                return []
            pathway = self._pathway_of(conn, row.pathway_id, row.pathway_version)
            facts = _decide.facts_from_json(pathway, row.facts)
        return PathwayMachine.for_pathway(pathway).allowed_triggers(
            row.stage, roles=actor.roles, facts=facts
        )

    def history(self, reference: str, at: dt.datetime | None = None) -> list[StageInterval]:
        """The stages the case went through, oldest first, with working days spent in each."""
        _validate.lookup(reference, "reference", "a case reference")
        now = self._at(at)
        with self._read() as conn:
            row = self._row(conn, reference)
            pathway = self._pathway_of(conn, row.pathway_id, row.pathway_version)
            rows = conn.execute(_reads.HISTORY, {"reference": reference}).all()
        cal = self._calendar(pathway, row.site)
        return [_reads.stage_interval(interval, pathway, cal, now) for interval in rows]

    def pauses(self, reference: str) -> list[tuple[dt.datetime, dt.datetime | None]]:
        """The case's pauses, oldest first, as (paused_at, resumed_at or None)."""
        _validate.lookup(reference, "reference", "a case reference")
        with self._read() as conn:
            self._row(conn, reference)
            return [
                (row.paused_at, row.resumed_at)
                for row in conn.execute(_reads.PAUSES, {"reference": reference})
            ]

    def deadlines(self, reference: str, *, at: dt.datetime | None = None) -> list[Deadline]:
        """Every deadline of one case, open and settled, in the order they were set.

        ``at`` (default: now) is the moment the read is taken: an open deadline due by then is
        ``overdue``, as ``overdue(at)`` would list it.
        """
        _validate.lookup(reference, "reference", "a case reference")
        now = self._at(at)
        with self._read() as conn:
            row = self._row(conn, reference)
            clock = self._clock_for(conn, row)
            rows = conn.execute(
                sa.select(deadlines)
                .where(deadlines.c.reference == reference)
                .order_by(deadlines.c.id)
            ).all()
            return [_deadlines.to_deadline(clock, d, at=now) for d in rows]

    def due(
        self,
        before: dt.datetime,
        site: str | None = None,
        *,
        include_overdue: bool = True,
        at: dt.datetime | None = None,
    ) -> list[Deadline]:
        """Open deadlines due before the instant ``before``, soonest first.

        ``at`` (default: now) is the moment the read is taken: those due by then are ``overdue``
        (as ``overdue(at)`` lists them), and ``include_overdue=False`` leaves them out.
        """
        limit = _validate.instant(before, "before")
        site = self._optional_site(site)
        now = self._at(at)
        after = None if include_overdue else now
        return self._open_deadlines(limit, site, inclusive=False, now=now, after=after)

    def overdue(self, at: dt.datetime | None = None, site: str | None = None) -> list[Deadline]:
        """Open deadlines whose due date has ended by ``at`` (default: now), oldest first."""
        now = self._at(at)
        site = self._optional_site(site)
        return self._open_deadlines(now, site, inclusive=True, now=now)

    def _open_deadlines(
        self,
        limit: dt.datetime,
        site: str | None,
        *,
        inclusive: bool,
        now: dt.datetime,
        after: dt.datetime | None = None,
    ) -> list[Deadline]:
        query, params = _reads.open_deadlines_query(
            limit=limit, inclusive=inclusive, site=site, after=after
        )
        with self._read() as conn:
            resolver = self._resolver(conn)
            return [
                _deadlines.to_deadline(resolver.clock(row), row, at=now)
                for row in conn.execute(query, params)
            ]

    def export(
        self,
        directory: str | os.PathLike[str],
        format: str = "csv",
        pseudonym_key: bytes | str | os.PathLike[str] | None = None,
        *,
        pseudonymise: bool = True,
        at: dt.datetime | None = None,
    ) -> ExportManifest:
        """Write the evaluator's export of every case into ``directory``; what was written.

        One file per table (children, facts, stage intervals, deadlines, pauses, and the
        trial's families, allocations, visits and outcomes) as ``csv`` or ``parquet`` (which
        needs ``nim-workflow[parquet]``), a ``dictionary.csv`` describing every column and a
        ``manifest.json`` with row counts and a SHA-256 per file. ``directory`` is created if
        absent and refused if it is not empty. Case, family and allocation references are
        pseudonymised with ``pseudonym_key`` (bytes of at least 16, or a path to the file
        holding them), the same key giving the same pseudonyms; ``pseudonymise=False`` exports
        them as stored.
        Only the facts each case's pathway version declares are exported. ``at`` (default:
        now) is the instant working days, days late and visit statuses are counted to; not
        before the latest change to any case or family, since the tables hold them as stored
        now.
        """
        chosen = _export.check_format(format)
        key = _export.pseudonym_key_bytes(pseudonym_key, pseudonymise)
        now = self._at(at)
        changes: list[tuple[str, dt.datetime] | None] = []
        if at is not None:
            case = self._latest_change()
            changes = [
                None if case is None else (f"case {case[0]!r}", case[1]),
                self._latest_family_change(),
            ]
        for latest in changes:
            if latest is not None and latest[1] > now:
                # The tables hold every case and family as stored now: counted to an earlier
                # instant they would mix the present with the past.
                raise InvalidInput(
                    f"at={now.isoformat()} is before the latest change ({latest[0]} at "
                    f"{latest[1].isoformat()}): the export reads cases and families as they "
                    "are stored now",
                    field="at",
                )
        return _export.export(self, directory, chosen, key, at=now, created_at=self._now())

    # -- bulk reads (internal: the report and the command line's listings) ---------------------

    def _resolver(self, conn: Connection) -> _reads.Resolver:
        """Pathway and calendar look-ups for one read on ``conn``, each made once."""
        return _reads.Resolver(
            lambda pathway_id, version: self._pathway_of(conn, pathway_id, version),
            self._calendar,
        )

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A read connection whose statements all see one snapshot where the database can.

        On PostgreSQL the transaction also reads instants in UTC (``SET LOCAL``: the session's
        own setting is back when it ends), so the driver hands them over already in UTC.
        """
        with self._sa.connect() as conn:
            if self._dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
            yield conn

    def _bulk_sites(
        self, site: str | None, *, at: dt.datetime, until: dt.datetime
    ) -> dict[str, _reads.SiteRead]:
        """Internal: what the report needs about every case of every site (or ``site``), by site.

        One statement per table, whatever the number of cases. Stays count working days up to
        ``at`` (as ``history(at=at)``); ``open_deadlines`` are each site's open deadlines due
        before ``until``, in ``due`` order.
        """
        site = self._optional_site(site)
        now = self._at(at)
        limit = _validate.instant(until, "until")
        with self._snapshot() as conn:
            return _reads.read_sites(conn, self._resolver(conn), site, now=now, until=limit)

    def _bulk_history(
        self,
        at: dt.datetime | None = None,
        *,
        site: str | None = None,
        stage: str | None = None,
        open_only: bool = True,
        latest: bool = False,
    ) -> dict[str, list[StageInterval]]:
        """Internal: ``history(reference, at)`` of each case ``cases`` lists, in one read.

        The filters are ``cases``'; the result is by reference. With ``latest``, only each
        case's newest stay is read.
        """
        site = self._optional_site(site)
        _validate.optional_lookup(stage, "stage")
        now = self._at(at)
        with self._read() as conn:
            return _reads.read_histories(
                conn,
                self._resolver(conn),
                now,
                site=site,
                stage=stage,
                open_only=open_only,
                latest=latest,
            )

    def _latest_change(self, site: str | None = None) -> tuple[str, dt.datetime] | None:
        """Internal: the case (at ``site``, or anywhere) that changed last, and when.

        A change is what moves a case's version (refusals and alarms do not): what a listing of
        the past must not have missed.
        """
        site = self._optional_site(site)
        with self._read() as conn:
            row = conn.execute(
                _reads.LATEST_CHANGE[site is not None], {} if site is None else {"site": site}
            ).first()
        return None if row is None else (row.reference, row.updated_at)

    def _bulk_pauses(
        self, site: str | None = None
    ) -> dict[str, list[tuple[dt.datetime, dt.datetime | None]]]:
        """Internal: ``pauses(reference)`` of every case (at ``site``) that has any, in one read."""
        site = self._optional_site(site)
        with self._read() as conn:
            found = _reads.read_pauses(conn, site)
        return {ref: [(r.paused_at, r.resumed_at) for r in rows] for ref, rows in found.items()}

    def audit(
        self,
        reference: str | None = None,
        after_seq: int | None = None,
        *,
        limit: int | None = None,
        family: str | None = None,
    ) -> list[AuditEvent]:
        """Audit entries in log order, of one case (or all if ``None``), after ``after_seq``.

        ``family`` reads a trial family's own entries instead (opened, allocated, status
        changes, family actions, visits) and excludes ``reference``.

        Everything committed before the call is sequenced first, so a host tailing the log
        with ``after_seq`` (the newest seq it has seen) misses nothing and sees nothing twice.
        """
        _validate.optional_lookup(reference, "reference", "a case reference")
        _validate.optional_lookup(family, "family", "a family reference")
        if family is not None and reference is not None:
            raise InvalidInput("give a case reference or a family, not both", field="family")
        _validate.sequence(after_seq, "after_seq")
        _validate.sequence(limit, "limit")
        self._sequence(wait=True)
        with self._read() as conn:
            if family is not None:
                return _audit.read(conn, family, after_seq, limit, stream="family")
            return _audit.read(conn, reference, after_seq, limit)

    def checkpoint(self, *, out: str | os.PathLike[str] | None = None) -> Checkpoint:
        """Sign the audit log's current Merkle tree head with the engine's signing key.

        Everything committed is sequenced first. ``out`` appends the checkpoint to a checkpoints
        file too (ship that file where the database's administrators cannot rewrite it).
        """
        if self._signing_key is None:
            raise InvalidInput(
                "this engine has no signing key: pass signing_key= (an Ed25519 private key or "
                "the path of its PEM file)",
                field="signing_key",
            )
        self._sequence(wait=True)
        with self._read() as conn:
            head = _audit.log_head(conn)
        signed = _checkpoint.sign(
            self._signing_key,
            log_id=head.log_id,
            size=head.size,
            root_hash=head.root_hash,
            signed_at=self._now(),
        )
        if out is not None:
            _checkpoint.append_to_file(out, signed)
        self._log.info("nimwf.checkpoint", size=signed.size, key_id=signed.key_id)
        return signed

    def verify_audit(
        self,
        deep: bool = False,
        checkpoints: Iterable[Checkpoint] | str | os.PathLike[str] | None = None,
        public_key: Any = None,
    ) -> AuditReport:
        """Check every entry and chain, the sequenced log against its Merkle head, and more.

        ``checkpoints`` (Checkpoint objects, or the path of a checkpoints file) are checked with
        ``public_key`` (an Ed25519 public key, its PEM file or raw 32 bytes; default: the
        engine's own signing key's): each must be signed, of this log, and the log must be a
        consistent extension of it. ``deep=True`` also replays every case's chain and compares
        its rows (case, stage intervals, pauses, deadlines, alarms) with what the log recorded.
        Problems are reported, never raised; bad arguments raise ``InvalidInput``.
        """
        if not isinstance(deep, bool):
            raise InvalidInput("deep must be True or False", field="deep")
        given: list[Checkpoint] = []
        file_problems: list[str] = []
        if isinstance(checkpoints, str | os.PathLike):
            given, file_problems = _checkpoint.read_file(checkpoints)
        elif checkpoints is not None:
            given = list(checkpoints)
            for item in given:
                if not isinstance(item, Checkpoint):
                    raise InvalidInput(
                        "checkpoints must be Checkpoint objects or a file path",
                        field="checkpoints",
                    )
        key: Ed25519PublicKey | None = None
        if public_key is not None:
            key = _checkpoint.load_public_key(public_key)
        elif self._signing_key is not None:
            key = self._signing_key.public_key()
        if checkpoints is not None and key is None:
            raise InvalidInput(
                "checking checkpoints needs the public key they were signed with",
                field="public_key",
            )
        with self._read() as conn:
            return _verify.verify(
                conn,
                deep=deep,
                checkpoints=given,
                checkpoint_problems=file_problems,
                public_key=key,
            )

    # -- the staff roster -----------------------------------------------------------------------

    def add_staff(
        self,
        staff_id: str,
        *,
        roles: Iterable[str],
        sites: Iterable[str],
        actor: Actor,
        reason: str | None = None,
        at: dt.datetime | None = None,
        connection: Connection | None = None,
    ) -> StaffMember:
        """Put a person on the staff roster (or change their roles and sites), audited.

        ``sites`` names the declared sites they work at (``"*"``: every site; an undeclared one
        is refused with :class:`UnknownSite`). Only an ``administrator``
        may change the roster; while it has no active administrator, the first member added
        must be one (how a new database gets its first administrator).
        """
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(staff_id, "staff_id", "a staff id")
        granted = _validate.roles(roles)
        if not granted:
            raise InvalidInput("a staff member needs at least one role", field="roles")
        places = _staff_sites(sites)
        for place in sorted(places - {"*"}):
            self._site(place, "sites")
        _validate.reason(reason)
        with self._write(connection) as unit:
            conn = unit.conn
            when = self._when(given)
            self._check_roster_admin(unit, actor, "add_staff", staff_id, when, granted)
            existing = conn.execute(sa.select(staff).where(staff.c.staff_id == staff_id)).first()
            values = {
                "roles": sorted(granted),
                "sites": sorted(places),
                "updated_at": when,
                "removed_at": None,
            }
            if existing is None:
                conn.execute(staff.insert().values(staff_id=staff_id, added_at=when, **values))
            else:
                conn.execute(staff.update().where(staff.c.staff_id == staff_id).values(**values))
            self._audit(
                unit,
                stream="staff",
                reference=staff_id,
                at=when,
                actor=actor,
                action="staff_added",  # type: ignore[arg-type]
                reason=reason,
                detail={"roles": sorted(granted), "sites": sorted(places)},
                publish=False,
            )
            member = self._staff_member(conn, staff_id)
        self._log.info("nimwf.staff_added", staff_id=staff_id, actor_id=actor.id, outcome="ok")
        return member

    def remove_staff(
        self,
        staff_id: str,
        *,
        actor: Actor,
        reason: str | None = None,
        at: dt.datetime | None = None,
        connection: Connection | None = None,
    ) -> StaffMember:
        """Take a person off the roster, audited; their row stays so the log still names them."""
        self._check_actor(actor)
        self._check_connection(connection)
        given = self._given(at)
        _validate.identifier(staff_id, "staff_id", "a staff id")
        _validate.reason(reason)
        with self._write(connection) as unit:
            conn = unit.conn
            when = self._when(given)
            self._check_roster_admin(unit, actor, "remove_staff", staff_id, when, frozenset())
            member = self._staff_member(conn, staff_id)
            if not member.active:
                raise StaffNotFound(staff_id, removed=True)
            if ROSTER_ROLE in member.roles and not any(
                ROSTER_ROLE in other.roles and other.id != staff_id
                for other in map(
                    _to_staff, conn.execute(sa.select(staff).where(staff.c.removed_at.is_(None)))
                )
            ):
                raise InvalidInput(
                    f"{staff_id} is the roster's last administrator: add another first",
                    field="staff_id",
                )
            conn.execute(
                staff.update()
                .where(staff.c.staff_id == staff_id)
                .values(removed_at=when, updated_at=when)
            )
            self._audit(
                unit,
                stream="staff",
                reference=staff_id,
                at=when,
                actor=actor,
                action="staff_removed",  # type: ignore[arg-type]
                reason=reason,
                publish=False,
            )
            member = self._staff_member(conn, staff_id)
        self._log.info("nimwf.staff_removed", staff_id=staff_id, actor_id=actor.id, outcome="ok")
        return member

    def staff(self, staff_id: str) -> StaffMember:
        """The roster's entry for ``staff_id`` (removed members too: see ``active``)."""
        _validate.lookup(staff_id, "staff_id", "a staff id")
        with self._read() as conn:
            return self._staff_member(conn, staff_id)

    def roster(self, *, include_removed: bool = False) -> list[StaffMember]:
        """Everyone on the staff roster, by id (and those removed, if asked)."""
        query = sa.select(staff).order_by(staff.c.staff_id)
        if not include_removed:
            query = query.where(staff.c.removed_at.is_(None))
        with self._read() as conn:
            return [_to_staff(row) for row in conn.execute(query)]

    def _staff_member(self, conn: Connection, staff_id: str) -> StaffMember:
        row = conn.execute(sa.select(staff).where(staff.c.staff_id == staff_id)).first()
        if row is None:
            raise StaffNotFound(staff_id)
        return _to_staff(row)

    def _check_roster_admin(
        self,
        unit: _Unit,
        actor: Actor,
        action: str,
        staff_id: str,
        when: dt.datetime,
        granted: frozenset[str],
    ) -> None:
        """Only an administrator changes the roster; an empty one takes its first administrator."""
        if ROSTER_ROLE in actor.roles:
            return
        administrators = unit.conn.execute(
            sa.select(staff.c.staff_id, staff.c.roles).where(staff.c.removed_at.is_(None))
        ).all()
        if ROSTER_ROLE in granted and not any(ROSTER_ROLE in r.roles for r in administrators):
            return
        error = PermissionDenied(staff_id, action, actor.id, {ROSTER_ROLE}, subject="staff")
        self._audit(
            unit,
            stream="staff",
            reference=staff_id,
            at=when,
            actor=actor,
            action="denied",
            detail={"action": action, "error": type(error).__name__, "message": str(error)},
            publish=False,
        )
        raise error

    # -- internals ---------------------------------------------------------------------------------

    def _row(self, conn: Connection, reference: str) -> Any:
        row = conn.execute(sa.select(cases).where(cases.c.reference == reference)).first()
        if row is None:
            raise CaseNotFound(reference)
        return row

    def _lock_case(self, unit: _Unit, reference: str) -> Row:
        """Lock the case and read it whole into the unit; return its row as read.

        The returned row is a copy that stays as it was read; the unit's copy takes the
        changes. Its state digests are taken now, before this unit changes anything.
        """
        state = unit.cases.get(reference)
        if state is None:
            state = _case_state.load(unit.conn, reference, lock=True)
            if state is None:
                raise CaseNotFound(reference)
            state.digests = _audit.state_digests(state.case, state.rows)
            unit.cases[reference] = state
        return Row(state.case)

    def _check_may(
        self, unit: _Unit, row: Any, actor: Actor, action: str, pathway: Pathway, when: dt.datetime
    ) -> None:
        refusal = _decide.may_act(row, actor, action, pathway.roles_for(action))
        if refusal is not None:
            self._deny(
                unit, actor, action, refusal, at=when, reference=row.reference, stage=row.stage
            )

    def _check_windows(
        self,
        unit: _Unit,
        clock: CaseClock,
        row: Any,
        actor: Actor,
        changed: Mapping[str, Any],
        when: dt.datetime,
        action: str,
        trigger: str | None,
    ) -> None:
        """Refuse (audited) a window's fact dated before the window opens; nothing else written."""
        early = _deadlines.window_refusal(
            unit.cases[row.reference], clock, _decide.date_facts(changed)
        )
        if early is None:
            return
        window, fact, day, opens_on = early
        self._deny(
            unit,
            actor,
            action,
            OutsideWindow(row.reference, window, fact, day.isoformat(), opens_on.isoformat()),
            at=when,
            reference=row.reference,
            trigger=trigger,
            stage=row.stage,
        )

    @staticmethod
    def _update_case(unit: _Unit, row: Any, *, at: dt.datetime, **values: Any) -> None:
        """Decide the case row's new values (one version on); written when the unit finishes."""
        unit.cases[row.reference].change_case(version=row.version + 1, updated_at=at, **values)

    def _audit(
        self,
        unit: _Unit,
        *,
        reference: str,
        at: dt.datetime,
        actor: Actor | None,
        action: EventKind,
        trigger: str | None = None,
        from_stage: str | None = None,
        to_stage: str | None = None,
        reason: str | None = None,
        detail: Mapping[str, Any] | None = None,
        stream: str = "case",
        publish: bool = True,
    ) -> AuditEvent:
        """Decide the entry for a change (or refusal) in this unit, and queue its event.

        The entry's after-state digests again only the tables the unit's copy of the case saw
        change since the last entry (an alarm firing: its alarm rows).
        """
        prior: dict[str, str] | None = None
        state: dict[str, str] | None = None
        if stream == "case" and action not in _audit.STATELESS_ACTIONS:
            # The case's rows before and after this change: a deep verify then finds any row
            # edited outside the engine, and between which two entries. Rows added have no
            # id until written, and the digests cover ids: write them first.
            held = unit.cases[reference]
            if held.unwritten_rows:
                _case_state.flush(unit.conn, [held])
            prior = held.digests
            state = _audit.state_digests(
                held.case,
                held.rows,
                only=None if prior is None else sorted(held.touched),
                base=prior,
            )
            held.digests = state
            held.touched = set()
        head = unit.chain(stream, reference)
        fields = _audit.new_entry(
            stream=stream,
            reference=reference,
            position=head.length + 1,
            prev_hash=head.head_hash,
            at=at,
            actor_id=actor.id if actor is not None else _deadlines.SYSTEM_ACTOR,
            roles=sorted(actor.roles) if actor is not None else [],
            action=action,
            trigger=trigger,
            from_stage=from_stage,
            to_stage=to_stage,
            reason=reason,
            detail=detail,
            prior_state=prior,
            state=state,
        )
        head.advance(fields)
        entry = _audit.to_event(fields)
        if not publish:
            unit.entries.append((fields, None))
            return entry
        payload = dict(entry.detail)
        for key in ("trigger", "from_stage", "to_stage", "reason"):
            value = getattr(entry, key)
            if value is not None:
                payload.setdefault(key, value)
        payload["actor_id"] = entry.actor_id
        unit.entries.append((fields, len(unit.events)))
        unit.events.append(Event(kind=action, reference=reference, at=at, detail=payload))
        return entry

    def _deny(
        self,
        unit: _Unit,
        actor: Actor,
        action: str,
        error: ActionRefused,
        *,
        at: dt.datetime,
        reference: str,
        trigger: str | None = None,
        stage: str | None = None,
        stream: str = "case",
    ) -> NoReturn:
        """Audit a refusal (it commits on its own) and raise it."""
        detail: dict[str, Any] = {
            "action": action,
            "error": type(error).__name__,
            "message": str(error),
        }
        for key in ("missing", "required", "allowed"):
            value = getattr(error, key, None)
            if value:
                detail[key] = list(value)
        self._audit(
            unit,
            reference=reference,
            at=at,
            actor=actor,
            action="denied",
            trigger=trigger,
            from_stage=stage,
            to_stage=stage,
            detail=detail,
            stream=stream,
        )
        self._log.warning(
            "nimwf.denied",
            reference=reference,
            action=action,
            trigger=trigger,
            actor_id=actor.id,
            outcome=type(error).__name__,
        )
        raise error

    def _load(self, conn: Connection, reference: str) -> Case:
        return self._to_case(conn, self._row(conn, reference))

    def _held(self, unit: _Unit, reference: str) -> Case:
        """The case as this unit leaves it (decided in memory, no read)."""
        return self._to_case(unit.conn, unit.cases[reference].case)

    def _to_case(self, conn: Connection, row: Any) -> Case:
        pathway = self._pathway_of(conn, row.pathway_id, row.pathway_version)
        return Case(
            reference=row.reference,
            pathway_id=row.pathway_id,
            pathway_version=row.pathway_version,
            site=row.site,
            stage=row.stage,
            version=row.version,
            opened_at=row.opened_at,
            stage_entered_at=row.stage_entered_at,
            closed_at=row.closed_at,
            outcome=row.outcome,
            paused=row.paused_at is not None,
            facts=_decide.facts_from_json(pathway, row.facts),
            paused_at=row.paused_at,
            worker=row.worker,
        )


# -- helpers ---------------------------------------------------------------------------------------


def _create_engine(url: str) -> sa.Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise InvalidInput(f"{url!r} is not a database URL: {exc}", field="url") from exc
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            if parsed.database and parsed.database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    try:
        return sa.create_engine(parsed, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
        raise InvalidInput(f"cannot use database URL {url!r}: {exc}", field="url") from exc


#: PostgreSQL's codes for a transaction that lost to another: deadlock, serialization failure,
#: lock not available.
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


def _as_utc(value: dt.datetime | str) -> dt.datetime:
    """An aggregate's instant (min() bypasses the column type on SQLite) as aware UTC."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _is_lock_conflict(exc: DBAPIError) -> bool:
    """Whether the database refused the work because another writer holds what it needs."""
    if getattr(exc.orig, "sqlstate", None) in _CONFLICT_SQLSTATES:
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "deadlock detected" in text


class _DryRun(Exception):
    """Raised inside a unit of work to roll a dry run back once its plan is known."""

    def __init__(self, upgrade: CaseUpgrade) -> None:
        super().__init__(upgrade.reference)
        self.upgrade = dataclasses.replace(upgrade, applied=False)


def _source_text(pathway: Pathway) -> str:
    source = Path(pathway.source)
    if pathway.source and source.is_file():
        return source.read_text(encoding="utf-8")
    raise NimWorkflowError(
        f"pathway {pathway.id!r}: the definition's source text is needed to register it, "
        f"and {pathway.source!r} is not a readable file"
    )
