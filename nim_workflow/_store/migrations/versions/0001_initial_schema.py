"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nim_workflow._store._schema as schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nimwf_audit_events",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("at", schema.UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.String(length=100), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=100), nullable=True),
        sa.Column("from_stage", sa.String(length=100), nullable=True),
        sa.Column("to_stage", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_nimwf_audit_events")),
    )
    with op.batch_alter_table("nimwf_audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_nimwf_audit_events_reference", ["reference", "seq"], unique=False)

    audit_head = op.create_table(
        "nimwf_audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nimwf_audit_head")),
    )
    op.create_table(
        "nimwf_pathways",
        sa.Column("pathway_id", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("source_text", sa.Text(), nullable=False),
        sa.Column("registered_at", schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pathway_id", "version", name=op.f("pk_nimwf_pathways")),
    )
    op.create_table(
        "nimwf_cases",
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("pathway_id", sa.String(length=100), nullable=False),
        sa.Column("pathway_version", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=100), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("opened_at", schema.UTCDateTime(), nullable=False),
        sa.Column("stage_entered_at", schema.UTCDateTime(), nullable=False),
        sa.Column("closed_at", schema.UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=100), nullable=True),
        sa.Column("paused_at", schema.UTCDateTime(), nullable=True),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("audit_head_seq", sa.Integer(), nullable=True),
        sa.Column("audit_head_hash", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["pathway_id", "pathway_version"],
            ["nimwf_pathways.pathway_id", "nimwf_pathways.version"],
            name=op.f("fk_nimwf_cases_pathway_id_nimwf_pathways"),
        ),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_nimwf_cases")),
    )
    with op.batch_alter_table("nimwf_cases", schema=None) as batch_op:
        batch_op.create_index("ix_nimwf_cases_closed_at", ["closed_at"], unique=False)
        batch_op.create_index("ix_nimwf_cases_site_stage", ["site", "stage"], unique=False)

    op.create_table(
        "nimwf_deadlines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("site", sa.String(length=100), nullable=False),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=True),
        sa.Column("occurrence", sa.Integer(), nullable=False),
        sa.Column("start_on", sa.Date(), nullable=False),
        sa.Column("base_due_on", sa.Date(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("due_at", schema.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("settled_at", schema.UTCDateTime(), nullable=True),
        sa.Column("extensions", sa.Integer(), nullable=False),
        sa.Column("adjustments", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reference"],
            ["nimwf_cases.reference"],
            name=op.f("fk_nimwf_deadlines_reference_nimwf_cases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nimwf_deadlines")),
    )
    with op.batch_alter_table("nimwf_deadlines", schema=None) as batch_op:
        batch_op.create_index("ix_nimwf_deadlines_reference", ["reference"], unique=False)
        batch_op.create_index(
            "ix_nimwf_deadlines_status_due_at", ["status", "due_at"], unique=False
        )

    op.create_table(
        "nimwf_pauses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("paused_at", schema.UTCDateTime(), nullable=False),
        sa.Column("resumed_at", schema.UTCDateTime(), nullable=True),
        sa.Column("paused_on", sa.Date(), nullable=False),
        sa.Column("resumed_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["reference"],
            ["nimwf_cases.reference"],
            name=op.f("fk_nimwf_pauses_reference_nimwf_cases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nimwf_pauses")),
    )
    with op.batch_alter_table("nimwf_pauses", schema=None) as batch_op:
        batch_op.create_index("ix_nimwf_pauses_reference", ["reference", "id"], unique=False)

    op.create_table(
        "nimwf_stage_intervals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=False),
        sa.Column("entered_at", schema.UTCDateTime(), nullable=False),
        sa.Column("left_at", schema.UTCDateTime(), nullable=True),
        sa.Column("entered_by", sa.String(length=100), nullable=True),
        sa.Column("left_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["reference"],
            ["nimwf_cases.reference"],
            name=op.f("fk_nimwf_stage_intervals_reference_nimwf_cases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nimwf_stage_intervals")),
    )
    with op.batch_alter_table("nimwf_stage_intervals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_nimwf_stage_intervals_reference", ["reference", "id"], unique=False
        )

    op.create_table(
        "nimwf_alarms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deadline_id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("due_at", schema.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("fired_at", schema.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["deadline_id"],
            ["nimwf_deadlines.id"],
            name=op.f("fk_nimwf_alarms_deadline_id_nimwf_deadlines"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nimwf_alarms")),
    )
    with op.batch_alter_table("nimwf_alarms", schema=None) as batch_op:
        batch_op.create_index("ix_nimwf_alarms_deadline_id", ["deadline_id"], unique=False)
        batch_op.create_index("ix_nimwf_alarms_status_due_at", ["status", "due_at"], unique=False)
    # The chain starts from a fixed genesis hash; appends lock and advance this one row.
    op.bulk_insert(
        audit_head,
        [{"id": 1, "last_seq": 0, "last_hash": "0" * 64}],
    )


def downgrade() -> None:
    with op.batch_alter_table("nimwf_alarms", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_alarms_status_due_at")
        batch_op.drop_index("ix_nimwf_alarms_deadline_id")

    op.drop_table("nimwf_alarms")
    with op.batch_alter_table("nimwf_stage_intervals", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_stage_intervals_reference")

    op.drop_table("nimwf_stage_intervals")
    with op.batch_alter_table("nimwf_pauses", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_pauses_reference")

    op.drop_table("nimwf_pauses")
    with op.batch_alter_table("nimwf_deadlines", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_deadlines_status_due_at")
        batch_op.drop_index("ix_nimwf_deadlines_reference")

    op.drop_table("nimwf_deadlines")
    with op.batch_alter_table("nimwf_cases", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_cases_site_stage")
        batch_op.drop_index("ix_nimwf_cases_closed_at")

    op.drop_table("nimwf_cases")
    op.drop_table("nimwf_pathways")
    op.drop_table("nimwf_audit_head")
    with op.batch_alter_table("nimwf_audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_audit_events_reference")

    op.drop_table("nimwf_audit_events")
