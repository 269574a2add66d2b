"""The append-only, hash-chained audit log: appending, reading and verifying.

Every event stores the hash of the event before it (one chain over the whole log, in ``seq``
order) and its own hash over a canonical encoding of every field. A single head row holds the
newest ``seq`` and hash, and each case row holds the newest event that changed it, so an edited,
removed, reordered or truncated event is found by :func:`verify`. Appends lock the head row, which
makes ``seq`` order the commit order: a host tailing ``after_seq`` never misses an event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from nim_workflow._store._schema import GENESIS_HASH, audit_events, audit_head, cases
from nim_workflow._values import AuditEvent, AuditReport, EventKind

#: Actions that change the case row, and so move its ``audit_head``. Denials and the deadline
#: processor's events leave the case row alone.
CASE_ACTIONS: frozenset[str] = frozenset(
    {"opened", "transition", "fact_recorded", "paused", "resumed", "extended"}
)
_BATCH = 2000


def _instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def canonical(
    *,
    seq: int,
    reference: str,
    at: dt.datetime,
    actor_id: str,
    roles: Sequence[str],
    action: str,
    trigger: str | None,
    from_stage: str | None,
    to_stage: str | None,
    reason: str | None,
    detail: Mapping[str, Any],
    prev_hash: str,
) -> bytes:
    """The exact bytes an event's hash covers: every field, in a fixed order, as compact JSON."""
    body = [
        seq,
        reference,
        _instant(at),
        actor_id,
        sorted(roles),
        action,
        trigger,
        from_stage,
        to_stage,
        reason,
        detail,
        prev_hash,
    ]
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(**fields: Any) -> str:
    """SHA-256 of the canonical encoding of an event."""
    return hashlib.sha256(canonical(**fields)).hexdigest()


@dataclass(slots=True)
class ChainHead:
    """The chain's newest seq and hash, as locked by one transaction.

    A transaction locks the head row once, appends any number of events against this copy and
    writes it back once before it commits (:func:`flush`).
    """

    seq: int
    hash: str
    dirty: bool = False


def lock_head(conn: Connection) -> ChainHead:
    """Lock the head row until the transaction ends and return its value."""
    row = conn.execute(
        sa.select(audit_head.c.last_seq, audit_head.c.last_hash)
        .where(audit_head.c.id == 1)
        .with_for_update()
    ).one()
    return ChainHead(row.last_seq, row.last_hash)


def flush(conn: Connection, head: ChainHead | None) -> None:
    """Write the head back if events were appended against it."""
    if head is not None and head.dirty:
        conn.execute(
            audit_head.update()
            .where(audit_head.c.id == 1)
            .values(last_seq=head.seq, last_hash=head.hash)
        )
        head.dirty = False


def append(
    conn: Connection,
    head: ChainHead,
    *,
    reference: str,
    at: dt.datetime,
    actor_id: str,
    roles: Sequence[str],
    action: EventKind,
    trigger: str | None = None,
    from_stage: str | None = None,
    to_stage: str | None = None,
    reason: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain inside the caller's transaction and return it.

    ``head`` must come from :func:`lock_head` in the same transaction, and be flushed before
    it commits. When the action changes the case, the case row's chain head moves too.
    """
    seq = head.seq + 1
    # Round-trip the detail through JSON now, so the hash covers exactly what is stored.
    detail_json = json.loads(json.dumps(dict(detail or {}), sort_keys=True, default=str))
    fields: dict[str, Any] = {
        "seq": seq,
        "reference": reference,
        "at": at,
        "actor_id": actor_id,
        "roles": sorted(roles),
        "action": action,
        "trigger": trigger,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "reason": reason,
        "detail": detail_json,
        "prev_hash": head.hash,
    }
    digest = event_hash(**fields)
    conn.execute(audit_events.insert().values(**fields, hash=digest))
    head.seq, head.hash, head.dirty = seq, digest, True
    if action in CASE_ACTIONS:
        conn.execute(
            cases.update()
            .where(cases.c.reference == reference)
            .values(audit_head_seq=seq, audit_head_hash=digest)
        )
    return _to_event({**fields, "hash": digest})


def _to_event(row: Mapping[str, Any]) -> AuditEvent:
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
    )


def read(
    conn: Connection,
    reference: str | None = None,
    after_seq: int | None = None,
    limit: int | None = None,
) -> list[AuditEvent]:
    """Events oldest first, of one case or of all, strictly after ``after_seq``."""
    query = sa.select(audit_events).order_by(audit_events.c.seq)
    if reference is not None:
        query = query.where(audit_events.c.reference == reference)
    if after_seq is not None:
        query = query.where(audit_events.c.seq > after_seq)
    if limit is not None:
        query = query.limit(limit)
    return [_to_event(dict(row._mapping)) for row in conn.execute(query)]


def _all_rows(conn: Connection) -> Iterator[Mapping[str, Any]]:
    last = 0
    while True:
        rows = conn.execute(
            sa.select(audit_events)
            .where(audit_events.c.seq > last)
            .order_by(audit_events.c.seq)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            yield dict(row._mapping)
        last = rows[-1].seq


def verify(conn: Connection) -> AuditReport:
    """Walk the whole chain and report every event that was edited, removed or reordered."""
    problems: list[str] = []
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    newest_case_event: dict[str, tuple[int, str]] = {}
    for row in _all_rows(conn):
        checked += 1
        seq = row["seq"]
        if seq != expected_seq:
            problems.append(f"seq {expected_seq}: missing (next stored event is seq {seq})")
        if row["prev_hash"] != prev_hash:
            problems.append(f"seq {seq}: does not follow the event before it (prev_hash differs)")
        fields = {k: row[k] for k in row if k != "hash"}
        if event_hash(**fields) != row["hash"]:
            problems.append(f"seq {seq}: contents do not match its hash (edited)")
        if row["action"] in CASE_ACTIONS:
            newest_case_event[row["reference"]] = (seq, row["hash"])
        prev_hash = row["hash"]
        expected_seq = seq + 1
    head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).one()
    if head.last_seq != expected_seq - 1 or head.last_hash != prev_hash:
        problems.append(
            f"chain head says seq {head.last_seq} but the log ends at seq {expected_seq - 1}: "
            "events were removed from the end, or the head was altered"
        )
    for case in conn.execute(
        sa.select(cases.c.reference, cases.c.audit_head_seq, cases.c.audit_head_hash)
    ):
        newest = newest_case_event.get(case.reference)
        if newest is None or newest[0] != case.audit_head_seq:
            problems.append(
                f"case {case.reference}: its newest event should be seq {case.audit_head_seq}, "
                f"the log has {newest[0] if newest else 'none'}"
            )
        elif newest[1] != case.audit_head_hash:
            problems.append(
                f"case {case.reference}: its newest event, seq {newest[0]}, has a different hash "
                "from the one the case row recorded"
            )
    return AuditReport(ok=not problems, checked=checked, problems=tuple(problems))
