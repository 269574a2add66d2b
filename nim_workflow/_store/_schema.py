"""The library's tables, as SQLAlchemy Core metadata.

Every table name starts with ``nimwf_`` so the schema sits beside a host's own tables without
collisions. Instants are stored in UTC (``UTCDateTime`` makes SQLite behave like PostgreSQL's
``timestamptz`` and hands back aware datetimes); local dates are plain ``Date`` columns.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An aware datetime stored as UTC; naive values are refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise ValueError(f"refusing to store a naive datetime: {value!r}")
        value = value.astimezone(dt.UTC)
        # SQLite has no time zone type: store naive UTC, re-attach UTC on the way out.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


pathways = Table(
    "nimwf_pathways",
    metadata,
    Column("pathway_id", String(100), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("title", String(300), nullable=False),
    # The exact definition, so a case stays on the version it started with even after the
    # file on disk moves on.
    Column("source_text", Text, nullable=False),
    Column("registered_at", UTCDateTime, nullable=False),
)

cases = Table(
    "nimwf_cases",
    metadata,
    Column("reference", String(100), primary_key=True),
    Column("pathway_id", String(100), nullable=False),
    Column("pathway_version", Integer, nullable=False),
    Column("site", String(100), nullable=False),
    Column("stage", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("stage_entered_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime, nullable=True),
    Column("outcome", String(100), nullable=True),
    Column("paused_at", UTCDateTime, nullable=True),
    Column("facts", JSON, nullable=False),
    # When the case last changed: an action dated before it would rewrite history out of order.
    Column("updated_at", UTCDateTime, nullable=True),
    # The staff member who holds the case (``Engine.assign``), for caseloads; None: unassigned.
    Column("worker", String(100), nullable=True),
    ForeignKeyConstraint(
        ["pathway_id", "pathway_version"],
        ["nimwf_pathways.pathway_id", "nimwf_pathways.version"],
    ),
    Index("ix_nimwf_cases_site_stage", "site", "stage"),
    Index("ix_nimwf_cases_closed_at", "closed_at"),
    # A site's cases, open ones first, oldest opened first: ``cases(site)`` reads its open cases
    # in order straight from the index, and the report's whole-site read has them together.
    Index("ix_nimwf_cases_site_closed_at", "site", "closed_at", "opened_at", "reference"),
    # One worker's cases, open ones first: ``cases(worker=)`` and a caseload read the index.
    Index("ix_nimwf_cases_worker_closed_at", "worker", "closed_at", "opened_at", "reference"),
)

stage_intervals = Table(
    "nimwf_stage_intervals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reference", ForeignKey("nimwf_cases.reference"), nullable=False),
    Column("stage", String(100), nullable=False),
    Column("entered_at", UTCDateTime, nullable=False),
    Column("left_at", UTCDateTime, nullable=True),
    Column("entered_by", String(100), nullable=True),
    Column("left_by", String(100), nullable=True),
    Index("ix_nimwf_stage_intervals_reference", "reference", "id"),
)

pauses = Table(
    "nimwf_pauses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reference", ForeignKey("nimwf_cases.reference"), nullable=False),
    Column("paused_at", UTCDateTime, nullable=False),
    Column("resumed_at", UTCDateTime, nullable=True),
    Column("paused_on", Date, nullable=False),
    Column("resumed_on", Date, nullable=True),
    Index("ix_nimwf_pauses_reference", "reference", "id"),
)

#: The partial indexes' predicate. A query must spell the same condition with the literal (not a
#: bound parameter) for the planner to prove it may use them: see ``_reads.OPEN``.
OPEN_DEADLINE = text("status = 'open'")

deadlines = Table(
    "nimwf_deadlines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reference", ForeignKey("nimwf_cases.reference"), nullable=False),
    Column("site", String(100), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("stage", String(100), nullable=True),
    Column("occurrence", Integer, nullable=False),
    Column("start_on", Date, nullable=False),
    Column("base_due_on", Date, nullable=False),
    Column("due_on", Date, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("status", String(10), nullable=False),
    Column("settled_at", UTCDateTime, nullable=True),
    Column("extensions", Integer, nullable=False),
    # Pauses and extensions applied, oldest first: what Deadline.explain() reports.
    Column("adjustments", JSON, nullable=False),
    # A window's first day (null for deadlines that are not windows).
    Column("opens_on", Date, nullable=True),
    # What the due date was computed from beyond start_on: the governing earliest_of candidate,
    # or a cumulative clock's periods in its condition. Null for plain rules.
    Column("basis", JSON, nullable=True),
    Index("ix_nimwf_deadlines_reference", "reference"),
    # Open deadlines by due instant, in the order ``due`` and ``overdue`` list them (everywhere,
    # and at one site). Partial: only open rows are in them, so settled history costs nothing.
    Index(
        "ix_nimwf_deadlines_open_due_at",
        "due_at",
        "reference",
        "id",
        sqlite_where=OPEN_DEADLINE,
        postgresql_where=OPEN_DEADLINE,
    ),
    Index(
        "ix_nimwf_deadlines_open_site_due_at",
        "site",
        "due_at",
        "reference",
        "id",
        sqlite_where=OPEN_DEADLINE,
        postgresql_where=OPEN_DEADLINE,
    ),
)

alarms = Table(
    "nimwf_alarms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deadline_id", ForeignKey("nimwf_deadlines.id"), nullable=False),
    Column("reference", String(100), nullable=False),
    Column("kind", String(12), nullable=False),
    Column("label", String(100), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("status", String(10), nullable=False),
    Column("fired_at", UTCDateTime, nullable=True),
    Index("ix_nimwf_alarms_status_due_at", "status", "due_at"),
    Index("ix_nimwf_alarms_deadline_id", "deadline_id"),
    # A command reads its case's alarms whole (the state its audit entry digests), in id order.
    Index("ix_nimwf_alarms_reference", "reference", "id"),
)

audit_events = Table(
    "nimwf_audit_events",
    metadata,
    # The entry's identity as written; ``seq`` is its place in the global log, given by the
    # sequencer once the writer has committed (null until then).
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", Integer, nullable=True),
    # Which chain the entry belongs to: a case's ("case", reference) or a staff member's
    # ("staff", id). ``position`` counts from 1 within the chain; ``prev_hash`` links to the
    # chain's entry before it.
    Column("stream", String(10), nullable=False),
    Column("reference", String(100), nullable=False),
    Column("position", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor_id", String(100), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("action", String(20), nullable=False),
    Column("trigger", String(100), nullable=True),
    Column("from_stage", String(100), nullable=True),
    Column("to_stage", String(100), nullable=True),
    Column("reason", Text, nullable=True),
    Column("detail", JSON, nullable=False),
    # Digests of the case's rows (per table) before and after the entry's change: a deep verify
    # finds a row edited outside the engine, and between which two entries it happened.
    Column("prior_state", JSON, nullable=True),
    Column("state", JSON, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_nimwf_audit_events_seq", "seq", unique=True),
    Index("ix_nimwf_audit_events_chain", "stream", "reference", "position", unique=True),
)

# The newest entry of each chain. A writer locks its chain's row (its case is locked already), so
# writers on different cases never wait on each other.
audit_chains = Table(
    "nimwf_audit_chains",
    metadata,
    Column("stream", String(10), primary_key=True),
    Column("reference", String(100), primary_key=True),
    Column("length", Integer, nullable=False),
    Column("head_hash", String(64), nullable=False),
)

# One row: the sequenced log's size, its Merkle tree's compact range and root, and the log's
# identity (named in every signed checkpoint). Only the sequencer writes it.
audit_log = Table(
    "nimwf_audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("log_id", String(36), nullable=False),
    Column("size", Integer, nullable=False),
    Column("frontier", JSON, nullable=False),
    Column("root_hash", String(64), nullable=False),
    # What migration 0004 found when it re-verified the log written before per-case chains.
    Column("legacy", JSON, nullable=True),
)

# Who may act through the command line, with which roles, at which sites. Rows are never
# deleted: a removed member keeps their row with ``removed_at`` set.
staff = Table(
    "nimwf_staff",
    metadata,
    Column("staff_id", String(100), primary_key=True),
    Column("roles", JSON, nullable=False),
    Column("sites", JSON, nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("removed_at", UTCDateTime, nullable=True),
)

# A trial's families (TRIAL.md): the sibling group the trial randomises, its arm once the trial's
# portal has allocated it, and its trial status (not its children's service status).
families = Table(
    "nimwf_families",
    metadata,
    Column("reference", String(100), primary_key=True),
    Column("trial", String(100), nullable=False),
    Column("site", String(100), nullable=False),
    Column("arm", String(100), nullable=True),
    # The portal's allocation id, recorded once; unique within a trial.
    Column("allocation_id", String(100), nullable=True),
    Column("allocated_at", UTCDateTime, nullable=True),
    # The site's local date of the allocation: the anchor of visits "after randomisation".
    Column("randomised_on", Date, nullable=True),
    Column("status", String(30), nullable=False),
    Column("status_at", UTCDateTime, nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_nimwf_families_trial_allocation_id", "trial", "allocation_id", unique=True),
    Index("ix_nimwf_families_site", "site", "reference"),
)

# Each child of a family, by the reference of the child's case (opened by the allocation when it
# does not exist yet). The reference is the key: a child belongs to at most one family.
family_children = Table(
    "nimwf_family_children",
    metadata,
    Column("reference", String(100), primary_key=True),
    Column("family", ForeignKey("nimwf_families.reference"), nullable=False),
    Column("joined_at", UTCDateTime, nullable=False),
    # The facts the child's case opens with when the allocation opens it.
    Column("facts", JSON, nullable=False),
    Index("ix_nimwf_family_children_family", "family", "joined_at", "reference"),
)

# Research visits, each a window after its anchor date (TRIAL.md). ``subject`` is the child's
# reference for a visit per child, the family's reference for a visit per family.
visits = Table(
    "nimwf_visits",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("family", ForeignKey("nimwf_families.reference"), nullable=False),
    Column("subject", String(100), nullable=False),
    Column("name", String(100), nullable=False),
    Column("anchor_on", Date, nullable=False),
    Column("opens_on", Date, nullable=False),
    Column("closes_on", Date, nullable=False),
    Column("target_on", Date, nullable=True),
    Column("held_on", Date, nullable=True),
    Column("recorded_at", UTCDateTime, nullable=True),
    Index("ix_nimwf_visits_family_subject_name", "family", "subject", "name", unique=True),
)

# A research visit's reminders: when its window opens, and before it closes. Fired exactly once
# by the deadline processor, like a deadline's alarms.
visit_alarms = Table(
    "nimwf_visit_alarms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("visit_id", ForeignKey("nimwf_visits.id"), nullable=False),
    Column("family", String(100), nullable=False),
    Column("kind", String(12), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("status", String(10), nullable=False),
    Column("fired_at", UTCDateTime, nullable=True),
    Index("ix_nimwf_visit_alarms_status_due_at", "status", "due_at"),
    Index("ix_nimwf_visit_alarms_visit_id", "visit_id"),
)

GENESIS_HASH = "0" * 64
