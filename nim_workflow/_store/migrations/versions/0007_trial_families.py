"""the trial's families, their children and research visits

TRIAL.md: families (sibling groups) are what the trial randomises. A family has a trial, a site,
an arm and the portal's allocation id once allocated, and a trial status. Each child is the
reference of a case (opened by the allocation if it does not exist yet) and belongs to at most
one family. Research visits are windows after an anchor date, each with its reminders. New tables
only: nothing existing changes, and no audit entry's digest covers them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nim_workflow._store._schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nimwf_families",
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("trial", sa.String(length=100), nullable=False),
        sa.Column("site", sa.String(length=100), nullable=False),
        sa.Column("arm", sa.String(length=100), nullable=True),
        sa.Column("allocation_id", sa.String(length=100), nullable=True),
        sa.Column("allocated_at", UTCDateTime(), nullable=True),
        sa.Column("randomised_on", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("status_at", UTCDateTime(), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_nimwf_families")),
    )
    op.create_index(
        "ix_nimwf_families_trial_allocation_id",
        "nimwf_families",
        ["trial", "allocation_id"],
        unique=True,
    )
    op.create_index("ix_nimwf_families_site", "nimwf_families", ["site", "reference"])
    op.create_table(
        "nimwf_family_children",
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("family", sa.String(length=100), nullable=False),
        sa.Column("joined_at", UTCDateTime(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["family"],
            ["nimwf_families.reference"],
            name=op.f("fk_nimwf_family_children_family_nimwf_families"),
        ),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_nimwf_family_children")),
    )
    op.create_index(
        "ix_nimwf_family_children_family",
        "nimwf_family_children",
        ["family", "joined_at", "reference"],
    )
    op.create_table(
        "nimwf_visits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("family", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("anchor_on", sa.Date(), nullable=False),
        sa.Column("opens_on", sa.Date(), nullable=False),
        sa.Column("closes_on", sa.Date(), nullable=False),
        sa.Column("target_on", sa.Date(), nullable=True),
        sa.Column("held_on", sa.Date(), nullable=True),
        sa.Column("recorded_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["family"],
            ["nimwf_families.reference"],
            name=op.f("fk_nimwf_visits_family_nimwf_families"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nimwf_visits")),
    )
    op.create_index(
        "ix_nimwf_visits_family_subject_name",
        "nimwf_visits",
        ["family", "subject", "name"],
        unique=True,
    )
    op.create_table(
        "nimwf_visit_alarms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("family", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("fired_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["nimwf_visits.id"],
            name=op.f("fk_nimwf_visit_alarms_visit_id_nimwf_visits"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nimwf_visit_alarms")),
    )
    op.create_index(
        "ix_nimwf_visit_alarms_status_due_at", "nimwf_visit_alarms", ["status", "due_at"]
    )
    op.create_index("ix_nimwf_visit_alarms_visit_id", "nimwf_visit_alarms", ["visit_id"])


def downgrade() -> None:
    op.drop_table("nimwf_visit_alarms")
    op.drop_table("nimwf_visits")
    op.drop_table("nimwf_family_children")
    op.drop_table("nimwf_families")
