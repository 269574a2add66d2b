"""The audit log: per-chain appends, the sequencer, and the reads and digests verification uses.

The log works like Certificate Transparency (RFC 9162). Each case (and each staff member) has its
own hash chain: an entry stores its position in the chain, the hash of the chain's entry before
it, and its own hash over a canonical encoding of every field. A command decides its entries in
memory (:func:`new_entry`) and writes them with its other changes just before it commits
(:func:`write_entries`: one multi-row insert, one statement per kind of chain-head move), under
the case lock it already holds, so writers on different cases never wait on each other. A
single **sequencer** gives each committed entry its place ``seq`` in one gapless global log and
keeps the Merkle tree's compact range over that log, so a signed checkpoint of the tree head is
cheap: on SQLite the writer, which holds the database's write lock, numbers its entries as it
inserts them; on PostgreSQL the holder of an advisory lock integrates committed entries after
their writers commit.

Every entry that changes a case also records digests of the case's rows (per table) before and
after the change, so a deep verify finds a row edited outside the engine, and between which two
entries it was edited. Verification itself lives in :mod:`nim_workflow._verify`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from nim_workflow import _merkle
from nim_workflow._store._schema import (
    GENESIS_HASH,
    alarms,
    audit_chains,
    audit_events,
    audit_log,
    cases,
    deadlines,
    pauses,
    stage_intervals,
)
from nim_workflow._values import AuditEvent, EventKind

#: Actions that change the case row (and so its ``version``).
CASE_ACTIONS: frozenset[str] = frozenset(
    {
        "opened",
        "transition",
        "fact_recorded",
        "paused",
        "resumed",
        "extended",
        "upgraded",
        "assigned",
        # A trial's allocation moving a case onto the arm's pathway (a family's own
        # "allocated" entry is on the family's chain, which is not replayed as a case's).
        "allocated",
    }
)
#: Actions that change nothing: a refused attempt.
STATELESS_ACTIONS: frozenset[str] = frozenset({"denied"})
#: The advisory lock that elects the sequencer on PostgreSQL ("nimwseq" in ASCII).
SEQUENCER_LOCK = 0x6E696D77736571
#: Entries integrated per sequencer transaction.
SEQUENCE_BATCH = 5000
_READ_BATCH = 5000
#: The version tag at the head of every hashed entry: a change to the encoding is a new tag.
ENTRY_FORMAT = "nimwf-audit-2"

# The columns of each table a case's state digest covers, pinned here (not read from the
# schema) so a later migration that adds a column does not change the digests of the past.
STATE_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "case": (
        "reference",
        "pathway_id",
        "pathway_version",
        "site",
        "stage",
        "version",
        "opened_at",
        "stage_entered_at",
        "closed_at",
        "outcome",
        "paused_at",
        "facts",
        "updated_at",
        # Added by migration 0006, and digested only when set (see _case_values): the digests
        # of every case before it, and of a case never assigned, are unchanged.
        "worker",
    ),
    "intervals": ("id", "stage", "entered_at", "left_at", "entered_by", "left_by"),
    "pauses": ("id", "paused_at", "resumed_at", "paused_on", "resumed_on"),
    "deadlines": (
        "id",
        "site",
        "rule",
        "kind",
        "stage",
        "occurrence",
        "start_on",
        "base_due_on",
        "due_on",
        "due_at",
        "status",
        "settled_at",
        "extensions",
        "adjustments",
        "opens_on",
        "basis",
    ),
    "alarms": ("id", "deadline_id", "kind", "label", "due_at", "status", "fired_at"),
}
STATE_TABLES: Mapping[str, sa.Table] = {
    "case": cases,
    "intervals": stage_intervals,
    "pauses": pauses,
    "deadlines": deadlines,
    "alarms": alarms,
}
#: How the digests name each table in a verify problem.
STATE_LABELS: Mapping[str, str] = {
    "case": "case row",
    "intervals": "stage intervals",
    "pauses": "pauses",
    "deadlines": "deadlines",
    "alarms": "alarms",
}


def instant(value: dt.datetime) -> str:
    """An instant as the log encodes it: UTC, ISO 8601, microseconds."""
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _plain(value: Any) -> Any:
    # Called by json.dumps only for what JSON cannot hold itself: instants and dates.
    if isinstance(value, dt.datetime):
        return instant(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"no canonical form for {type(value).__name__}")


def _digest(rows: Iterable[Sequence[Any]]) -> str:
    body = json.dumps(
        [list(row) for row in rows],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=_plain,
    )
    # 128 bits: a second preimage is out of reach, and the entry stays short.
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def _case_values(values: Sequence[Any]) -> tuple[Any, ...]:
    """The case row's values as digested: without the trailing ``worker`` while it is unset."""
    return tuple(values[:-1]) if values[-1] is None else tuple(values)


def _state_query(name: str) -> sa.Select[Any]:
    table = STATE_TABLES[name]
    query = sa.select(*(table.c[c] for c in STATE_COLUMNS[name])).where(
        table.c.reference == sa.bindparam("reference")
    )
    return query if name == "case" else query.order_by(table.c.id)


# Built once: the safety net reads a case's state before every commit in the test suite.
_STATE_QUERIES: Mapping[str, sa.Select[Any]] = {name: _state_query(name) for name in STATE_TABLES}


def case_state(conn: Connection, reference: str) -> dict[str, str]:
    """Digests of one case's rows as stored, per table.

    The tables are the case row, intervals, pauses, deadlines and alarms: what the engine's
    safety net compares its in-memory digests with.
    """
    params = {"reference": reference}
    state = {}
    for name, query in _STATE_QUERIES.items():
        rows = conn.execute(query, params)
        state[name] = _digest(map(_case_values, rows) if name == "case" else rows)
    return state


def state_digests(
    case: Mapping[str, Any],
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    only: Iterable[str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Digests of one case's rows held in memory, as :func:`case_state` would read them.

    ``rows`` maps each child table to its rows in id order. With ``only``, just those tables
    are digested again and the rest taken from ``base`` (a change known to touch one table).
    """
    state = dict(base or {})
    for name in STATE_TABLES if only is None else only:
        columns = STATE_COLUMNS[name]
        if name == "case":
            state[name] = _digest([_case_values([case[c] for c in columns])])
        else:
            state[name] = _digest([tuple(row[c] for c in columns) for row in rows[name]])
    return state


def all_case_states(
    conn: Connection, references: Iterable[str] | None = None
) -> dict[str, dict[str, str]]:
    """Cases' state digests, read one table at a time: every case, or those in ``references``.

    A deep verify compares every case; the deadline processor reads the cases of a whole batch
    of alarms at once. Cases with no rows at all are left out.
    """
    wanted = None if references is None else sorted(set(references))
    grouped: dict[str, dict[str, list[Sequence[Any]]]] = {}
    for name, table in STATE_TABLES.items():
        columns = [table.c[c] for c in STATE_COLUMNS[name]]
        query = sa.select(table.c.reference, *columns).order_by(table.c.reference)
        if name != "case":
            query = query.order_by(table.c.id)
        if wanted is not None:
            query = query.where(table.c.reference.in_(wanted))
        for row in conn.execute(query):
            values = _case_values(row[1:]) if name == "case" else tuple(row[1:])
            grouped.setdefault(row[0], {}).setdefault(name, []).append(values)
    return {
        reference: {name: _digest(tables.get(name, [])) for name in STATE_TABLES}
        for reference, tables in grouped.items()
    }


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The exact bytes an entry's hash covers: every field, in a fixed order, as compact JSON."""
    body = [
        ENTRY_FORMAT,
        fields["stream"],
        fields["reference"],
        fields["position"],
        instant(fields["at"]),
        fields["actor_id"],
        sorted(fields["roles"]),
        fields["action"],
        fields["trigger"],
        fields["from_stage"],
        fields["to_stage"],
        fields["reason"],
        fields["detail"],
        fields["prior_state"],
        fields["state"],
        fields["prev_hash"],
    ]
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 of an entry's canonical encoding, hex."""
    return hashlib.sha256(canonical(fields)).hexdigest()


def leaf(entry_hash_hex: str) -> bytes:
    """The Merkle leaf hash of a sequenced entry: the tree covers each entry's own hash."""
    return _merkle.leaf_hash(bytes.fromhex(entry_hash_hex))


def _text(value: object, name: str) -> str | None:
    # What is hashed must be exactly what is stored: the door validates input, and this refuses
    # a value of the wrong type should one ever slip past it (a bug, never user input).
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"audit field {name} must be text or None, not {type(value).__name__}")


_CHAIN_HEAD = sa.select(audit_chains.c.length, audit_chains.c.head_hash).where(
    audit_chains.c.stream == sa.bindparam("stream"),
    audit_chains.c.reference == sa.bindparam("reference"),
)
_CHAIN_HEAD_FOR_UPDATE = _CHAIN_HEAD.with_for_update()
_INSERT_CHAIN = audit_chains.insert()


def new_entry(
    *,
    stream: str,
    reference: str,
    position: int,
    prev_hash: str,
    at: dt.datetime,
    actor_id: str,
    roles: Sequence[str],
    action: EventKind | str,
    trigger: str | None = None,
    from_stage: str | None = None,
    to_stage: str | None = None,
    reason: str | None = None,
    detail: Mapping[str, Any] | None = None,
    prior_state: Mapping[str, str] | None = None,
    state: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An entry's stored fields with its hash, decided in memory (``seq`` still unknown)."""
    # Round-trip the detail through JSON now, so the hash covers exactly what is stored.
    detail_json = json.loads(json.dumps(dict(detail or {}), sort_keys=True, default=str))
    fields: dict[str, Any] = {
        "stream": stream,
        "reference": reference,
        "position": position,
        "at": at,
        "actor_id": _text(actor_id, "actor_id"),
        "roles": sorted(_text(r, "roles") for r in roles),
        "action": _text(action, "action"),
        "trigger": _text(trigger, "trigger"),
        "from_stage": _text(from_stage, "from_stage"),
        "to_stage": _text(to_stage, "to_stage"),
        "reason": _text(reason, "reason"),
        "detail": detail_json,
        "prior_state": dict(prior_state) if prior_state is not None else None,
        "state": dict(state) if state is not None else None,
        "prev_hash": prev_hash,
    }
    fields["hash"] = entry_hash(fields)
    fields["seq"] = None
    return fields


@dataclass(slots=True)
class ChainHead:
    """A chain's head as this transaction moves it: ``stored`` is the length in the database."""

    length: int
    head_hash: str
    stored: int | None

    def advance(self, entry: Mapping[str, Any]) -> None:
        self.length = entry["position"]
        self.head_hash = entry["hash"]


def chain_head(conn: Connection, stream: str, reference: str) -> ChainHead:
    """A chain's head as stored, locked for update on PostgreSQL."""
    locking = conn.dialect.name == "postgresql"
    params = {"stream": stream, "reference": reference}
    head = conn.execute(_CHAIN_HEAD_FOR_UPDATE if locking else _CHAIN_HEAD, params).first()
    if head is None:
        return ChainHead(0, GENESIS_HASH, None)
    return ChainHead(head.length, head.head_hash, head.length)


_INSERT_ENTRIES = audit_events.insert()
_INSERT_ENTRIES_RETURNING = audit_events.insert().returning(
    audit_events.c.id, sort_by_parameter_order=True
)
_ADVANCE_CHAIN = audit_chains.update().where(
    audit_chains.c.stream == sa.bindparam("b_stream"),
    audit_chains.c.reference == sa.bindparam("b_reference"),
    audit_chains.c.length == sa.bindparam("b_length"),
)


class ChainMoved(Exception):
    """A chain's head moved under this transaction (a writer that did not hold the case lock)."""


def write_entries(
    conn: Connection, entries: Sequence[dict[str, Any]], chains: Mapping[tuple[str, str], ChainHead]
) -> list[int]:
    """Write entries decided in memory and move their chains' heads; return the entries' ids.

    On SQLite the writer is the sequencer: it holds the database's write lock, so it gives the
    entries their seqs as it inserts them (after integrating any entry left unsequenced) and
    returns no ids. On PostgreSQL the entries wait for the sequencer, and their ids say which
    seq each is given.
    """
    ids: list[int] = []
    if conn.dialect.name == "sqlite":
        _sequence_inline(conn, entries)
        conn.execute(_INSERT_ENTRIES, list(entries))
    else:
        ids = [row[0] for row in conn.execute(_INSERT_ENTRIES_RETURNING, list(entries))]
    moved = [
        {
            "b_stream": stream,
            "b_reference": reference,
            "b_length": head.stored,
            "length": head.length,
            "head_hash": head.head_hash,
        }
        for (stream, reference), head in chains.items()
        if head.stored is not None and head.length != head.stored
    ]
    if moved and conn.execute(_ADVANCE_CHAIN, moved).rowcount != len(moved):
        raise ChainMoved(", ".join(sorted(str(m["b_reference"]) for m in moved)))
    started = [
        {"stream": stream, "reference": reference, "length": h.length, "head_hash": h.head_hash}
        for (stream, reference), h in chains.items()
        if h.stored is None and h.length > 0
    ]
    if started:
        conn.execute(_INSERT_CHAIN, started)
    for head in chains.values():
        head.stored = head.length
    return ids


_LOG_HEAD_AND_BACKLOG = sa.select(
    audit_log,
    sa.select(sa.func.count())
    .select_from(audit_events)
    .where(audit_events.c.seq.is_(None))
    .scalar_subquery()
    .label("backlog"),
).where(audit_log.c.id == 1)


def _sequence_inline(conn: Connection, entries: Sequence[dict[str, Any]]) -> None:
    """Give entries about to be inserted their seqs and advance the log head (SQLite's writer)."""
    row = conn.execute(_LOG_HEAD_AND_BACKLOG).one()
    if row.backlog:
        # Entries written unsequenced (by an older version, or copied in): integrate them first.
        while sequence(conn):
            pass
        row = conn.execute(_LOG_HEAD_AND_BACKLOG).one()
    frontier = _merkle.Frontier.from_json(row.size, row.frontier)
    for entry in entries:
        frontier.append(leaf(entry["hash"]))
        entry["seq"] = frontier.size
    advanced = conn.execute(
        _ADVANCE_LOG,
        {
            "old_size": row.size,
            "size": frontier.size,
            "frontier": frontier.to_json(),
            "root_hash": frontier.root().hex(),
        },
    ).rowcount
    if advanced != 1:  # pragma: no cover - the write lock is held
        raise RuntimeError("the audit log head moved under the sequencer")


def to_event(row: Mapping[str, Any]) -> AuditEvent:
    """An entry row (or the fields of one being written) as the public value."""
    return AuditEvent(
        seq=row["seq"],
        reference=row["reference"],
        at=row["at"],
        actor_id=row["actor_id"],
        action=row["action"],
        from_stage=row["from_stage"],
        to_stage=row["to_stage"],
        reason=row["reason"],
        detail=row["detail"],
        hash=row["hash"],
        prev_hash=row["prev_hash"],
        roles=tuple(row["roles"]),
        trigger=row["trigger"],
        stream=row["stream"],
        position=row["position"],
    )


# -- the sequencer ---------------------------------------------------------------------------------


def new_log_row() -> dict[str, Any]:
    """The log head of an empty log, with a fresh identity."""
    return {
        "id": 1,
        "log_id": str(uuid.uuid4()),
        "size": 0,
        "frontier": [],
        "root_hash": _merkle.EMPTY_ROOT.hex(),
        "legacy": None,
    }


_LOG_HEAD = sa.select(audit_log).where(audit_log.c.id == 1)
_LOG_HEAD_FOR_UPDATE = _LOG_HEAD.with_for_update()


@dataclass(frozen=True, slots=True)
class LogHead:
    """The sequenced log's identity, size and Merkle root as the head row records them."""

    log_id: str
    size: int
    root_hash: str
    frontier: tuple[str, ...]
    legacy: Mapping[str, Any] | None


def log_head(conn: Connection, *, lock: bool = False) -> LogHead:
    """The log head row (locked for update when ``lock``)."""
    query = _LOG_HEAD_FOR_UPDATE if lock and conn.dialect.name == "postgresql" else _LOG_HEAD
    row = conn.execute(query).one()
    return LogHead(row.log_id, row.size, row.root_hash, tuple(row.frontier), row.legacy)


def try_sequencer_lock(conn: Connection, *, wait: bool) -> bool:
    """Become the sequencer for this transaction (PostgreSQL); SQLite's writer always is."""
    if conn.dialect.name != "postgresql":
        return True
    if wait:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEQUENCER_LOCK})
        return True
    return bool(
        conn.execute(
            sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SEQUENCER_LOCK}
        ).scalar_one()
    )


_ASSIGN = (
    audit_events.update()
    .where(audit_events.c.id == sa.bindparam("entry_id"), audit_events.c.seq.is_(None))
    .values(seq=sa.bindparam("new_seq"))
)


_PENDING = (
    sa.select(audit_events.c.id, audit_events.c.hash)
    .where(audit_events.c.seq.is_(None))
    .order_by(audit_events.c.id)
    .limit(sa.bindparam("limit"))
)
_ADVANCE_LOG = audit_log.update().where(
    audit_log.c.id == 1, audit_log.c.size == sa.bindparam("old_size")
)


def sequence(conn: Connection, limit: int = SEQUENCE_BATCH) -> dict[int, int]:
    """Integrate up to ``limit`` committed, unsequenced entries into the log; ``{id: seq}``.

    The caller holds the sequencer role for this transaction (:func:`try_sequencer_lock`).
    Entries are taken in the order they were written, which keeps every chain in its own order
    (a chain's next entry is only written after the one before it committed). Everything, the
    seqs and the new tree head, commits together or not at all: a sequencer killed mid-batch
    leaves the entries for the next one, and the unique ``seq`` index refuses a seq given twice.
    """
    pending = conn.execute(_PENDING, {"limit": limit}).all()
    if not pending:
        return {}
    head = log_head(conn, lock=True)
    frontier = _merkle.Frontier.from_json(head.size, head.frontier)
    assigned: dict[int, int] = {}
    for entry_id, entry_hash_hex in pending:
        frontier.append(leaf(entry_hash_hex))
        assigned[entry_id] = frontier.size
    conn.execute(_ASSIGN, [{"entry_id": i, "new_seq": s} for i, s in assigned.items()])
    advanced = conn.execute(
        _ADVANCE_LOG,
        {
            "old_size": head.size,
            "size": frontier.size,
            "frontier": frontier.to_json(),
            "root_hash": frontier.root().hex(),
        },
    ).rowcount
    if advanced != 1:  # pragma: no cover - only one sequencer holds the lock
        raise RuntimeError("the audit log head moved under the sequencer")
    return assigned


# -- reads -----------------------------------------------------------------------------------------


def read(
    conn: Connection,
    reference: str | None = None,
    after_seq: int | None = None,
    limit: int | None = None,
    stream: str = "case",
) -> list[AuditEvent]:
    """Sequenced entries in log order, of one chain or of all, strictly after ``after_seq``.

    ``reference`` names a case, or the chain of ``stream`` (a family's: ``"family"``).
    """
    query = (
        sa.select(audit_events).where(audit_events.c.seq.is_not(None)).order_by(audit_events.c.seq)
    )
    if reference is not None:
        query = query.where(audit_events.c.stream == stream, audit_events.c.reference == reference)
    if after_seq is not None:
        query = query.where(audit_events.c.seq > after_seq)
    if limit is not None:
        query = query.limit(limit)
    return [to_event(dict(row._mapping)) for row in conn.execute(query)]


def all_entries(conn: Connection) -> Iterator[Mapping[str, Any]]:
    """Every entry, sequenced or not, in the order written, read in batches."""
    last = 0
    while True:
        rows = conn.execute(
            sa.select(audit_events)
            .where(audit_events.c.id > last)
            .order_by(audit_events.c.id)
            .limit(_READ_BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            yield dict(row._mapping)
        last = rows[-1].id
