"""per-case audit chains, the sequenced log, and the staff roster

The single global hash chain, whose head row every writer locked until it committed, becomes one
chain per case (ordered by the case lock) and a global log that a sequencer fills after commit,
with a Merkle tree over it for signed checkpoints. Existing events are first re-verified the old
way: what was found is kept in the log's head row, and verification repeats it from then on, so
a log already broken before the migration (edited, or hit by the old defect that hashed a
non-text reason as a number but stored it as text) says so plainly instead of being re-hashed
clean. The case rows' copies of their newest event go: each chain has its own head row now.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import nim_workflow._store._schema as schema
from nim_workflow import _audit, _merkle

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_GENESIS = "0" * 64
_OLD_CASE_ACTIONS = {"opened", "transition", "fact_recorded", "paused", "resumed", "extended"}
_log = logging.getLogger("nim_workflow")

_legacy_meta = sa.MetaData()
_legacy_events = sa.Table(
    "nimwf_audit_events",
    _legacy_meta,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("reference", sa.String(100), nullable=False),
    sa.Column("at", schema.UTCDateTime(), nullable=False),
    sa.Column("actor_id", sa.String(100), nullable=False),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("trigger", sa.String(100), nullable=True),
    sa.Column("from_stage", sa.String(100), nullable=True),
    sa.Column("to_stage", sa.String(100), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
_LEGACY_FIELDS = (
    "seq",
    "reference",
    "at",
    "actor_id",
    "roles",
    "action",
    "trigger",
    "from_stage",
    "to_stage",
    "reason",
    "detail",
    "prev_hash",
)


def _legacy_hash(row: Mapping[str, Any]) -> str:
    """The first release's event hash, reproduced exactly (it must never change)."""
    body = [
        row["seq"],
        row["reference"],
        _audit.instant(row["at"]),
        row["actor_id"],
        sorted(row["roles"]),
        row["action"],
        row["trigger"],
        row["from_stage"],
        row["to_stage"],
        row["reason"],
        row["detail"],
        row["prev_hash"],
    ]
    encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def _as_number(value: Any) -> Any:
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                continue
    return value


def _defect(row: Mapping[str, Any]) -> bool:
    """Whether the hash matches once a numeric-looking text field is read back as the number.

    That is the old defect: ``pause(reason=42)`` hashed the number 42 and stored the text "42".
    """
    for name in ("reason", "trigger"):
        if row[name] is not None and _as_number(row[name]) is not row[name]:
            changed = {**row, name: _as_number(row[name])}
            if _legacy_hash(changed) == row["hash"]:
                return True
    return False


def legacy_verdict(rows: Sequence[Mapping[str, Any]], head: Any) -> dict[str, Any]:
    """The old chain re-verified the old way: ``ok``, whether only the defect broke it, details."""
    problems: list[str] = []
    defects: list[int] = []
    prev = _GENESIS
    for expected, row in enumerate(rows, start=1):
        if row["seq"] != expected:
            problems.append(f"seq {expected} missing")
        if row["prev_hash"] != prev:
            problems.append(f"seq {row['seq']} does not follow the event before it")
        if _legacy_hash(row) != row["hash"]:
            if _defect(row):
                defects.append(row["seq"])
            else:
                problems.append(f"seq {row['seq']} was edited")
        prev = row["hash"]
    last = rows[-1]["seq"] if rows else 0
    if head is not None and (head.last_seq, head.last_hash) != (last, prev):
        problems.append(f"the chain head says seq {head.last_seq}, the log ends at seq {last}")
    parts = []
    if defects:
        parts.append(
            f"events seq {', '.join(map(str, defects))} were hashed with a non-text reason or "
            "trigger stored as text (the old defect, fixed since): their contents are as written"
        )
    if problems:
        parts.append("; ".join(problems[:20]) + (" ..." if len(problems) > 20 else ""))
    return {
        "events": len(rows),
        "ok": not problems and not defects,
        "defect_only": bool(defects) and not problems,
        "summary": (
            f"the log of {len(rows)} events was already broken: " + "; ".join(parts)
            if parts
            else f"the log of {len(rows)} events verified"
        ),
    }


def upgrade() -> None:
    bind = op.get_bind()
    rows = [
        dict(r._mapping) for r in bind.execute(sa.select(_legacy_events).order_by(_legacy_events.c.seq))
    ]
    head = bind.execute(sa.text("SELECT last_seq, last_hash FROM nimwf_audit_head WHERE id = 1")).first()
    verdict = legacy_verdict(rows, head)
    if not verdict["ok"]:
        _log.warning("audit log before migration 0004: %s", verdict["summary"])

    with op.batch_alter_table("nimwf_audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_audit_events_reference")
    op.drop_table("nimwf_audit_events")
    op.drop_table("nimwf_audit_head")
    with op.batch_alter_table("nimwf_cases", schema=None) as batch_op:
        batch_op.drop_column("audit_head_seq")
        batch_op.drop_column("audit_head_hash")

    events = op.create_table(
        "nimwf_audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("stream", sa.String(length=10), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("at", schema.UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.String(length=100), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=100), nullable=True),
        sa.Column("from_stage", sa.String(length=100), nullable=True),
        sa.Column("to_stage", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prior_state", sa.JSON(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nimwf_audit_events")),
    )
    with op.batch_alter_table("nimwf_audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_nimwf_audit_events_seq", ["seq"], unique=True)
        batch_op.create_index(
            "ix_nimwf_audit_events_chain", ["stream", "reference", "position"], unique=True
        )
    chains = op.create_table(
        "nimwf_audit_chains",
        sa.Column("stream", sa.String(length=10), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("stream", "reference", name=op.f("pk_nimwf_audit_chains")),
    )
    log = op.create_table(
        "nimwf_audit_log",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("log_id", sa.String(length=36), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("frontier", sa.JSON(), nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("legacy", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nimwf_audit_log")),
    )
    op.create_table(
        "nimwf_staff",
        sa.Column("staff_id", sa.String(length=100), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("sites", sa.JSON(), nullable=False),
        sa.Column("added_at", schema.UTCDateTime(), nullable=False),
        sa.Column("updated_at", schema.UTCDateTime(), nullable=False),
        sa.Column("removed_at", schema.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("staff_id", name=op.f("pk_nimwf_staff")),
    )

    # The old events, in their old order, become the first entries of their cases' chains and
    # the first stretch of the sequenced log.
    heads: dict[str, tuple[int, str]] = {}
    frontier = _merkle.Frontier()
    converted = []
    for seq, row in enumerate(rows, start=1):
        position, prev = heads.get(row["reference"], (0, _GENESIS))
        fields = {
            "stream": "case",
            "reference": row["reference"],
            "position": position + 1,
            "at": row["at"],
            "actor_id": row["actor_id"],
            "roles": sorted(row["roles"]),
            "action": row["action"],
            "trigger": row["trigger"],
            "from_stage": row["from_stage"],
            "to_stage": row["to_stage"],
            "reason": row["reason"],
            "detail": row["detail"],
            "prior_state": None,
            "state": None,
            "prev_hash": prev,
        }
        digest = _audit.entry_hash(fields)
        heads[row["reference"]] = (position + 1, digest)
        frontier.append(_audit.leaf(digest))
        converted.append({**fields, "id": seq, "seq": seq, "hash": digest})
    if converted:
        op.bulk_insert(events, converted)
        if bind.dialect.name == "postgresql":
            # Explicit ids leave the id sequence behind; move it past them.
            bind.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence('nimwf_audit_events', 'id'), "
                    ":n)"
                ),
                {"n": len(converted)},
            )
    if heads:
        op.bulk_insert(
            chains,
            [
                {"stream": "case", "reference": ref, "length": n, "head_hash": h}
                for ref, (n, h) in heads.items()
            ],
        )
    row = _audit.new_log_row()
    row.update(
        size=frontier.size,
        frontier=frontier.to_json(),
        root_hash=frontier.root().hex(),
        legacy=verdict if rows else None,
    )
    op.bulk_insert(log, [row])


def downgrade() -> None:
    bind = op.get_bind()
    current = sa.table(
        "nimwf_audit_events",
        *(sa.column(c.name, c.type) for c in _legacy_events.columns if c.name != "prev_hash"),
    )
    query = (
        sa.select(*(current.c[n] for n in _LEGACY_FIELDS if n != "prev_hash"))
        .where(current.c.seq.is_not(None))
        .order_by(current.c.seq)
    )
    entries = [dict(r._mapping) for r in bind.execute(query)]
    op.drop_table("nimwf_staff")
    op.drop_table("nimwf_audit_log")
    op.drop_table("nimwf_audit_chains")
    with op.batch_alter_table("nimwf_audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_audit_events_chain")
        batch_op.drop_index("ix_nimwf_audit_events_seq")
    op.drop_table("nimwf_audit_events")
    with op.batch_alter_table("nimwf_cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audit_head_seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("audit_head_hash", sa.String(length=64), nullable=True))
    old = op.create_table(
        "nimwf_audit_events",
        *[sa.Column(c.name, c.type, primary_key=c.primary_key, autoincrement=False, nullable=c.nullable) for c in _legacy_events.columns],
    )
    with op.batch_alter_table("nimwf_audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_nimwf_audit_events_reference", ["reference", "seq"], unique=False)
    head = op.create_table(
        "nimwf_audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nimwf_audit_head")),
    )
    # Rebuild the single chain the old release verifies.
    prev = _GENESIS
    rebuilt = []
    for seq, entry in enumerate(entries, start=1):
        row = {**entry, "seq": seq, "prev_hash": prev}
        row["hash"] = _legacy_hash({k: row[k] for k in _LEGACY_FIELDS})
        prev = row["hash"]
        rebuilt.append(row)
    if rebuilt:
        op.bulk_insert(old, rebuilt)
    op.bulk_insert(head, [{"id": 1, "last_seq": len(rebuilt), "last_hash": prev}])
    newest: dict[str, tuple[int, str]] = {}
    for row in rebuilt:
        if row["action"] in _OLD_CASE_ACTIONS:
            newest[row["reference"]] = (row["seq"], row["hash"])
    for reference, (seq, digest) in newest.items():
        bind.execute(
            sa.text(
                "UPDATE nimwf_cases SET audit_head_seq = :s, audit_head_hash = :h "
                "WHERE reference = :r"
            ),
            {"s": seq, "h": digest, "r": reference},
        )
