"""who holds each case

``Engine.assign`` gives a case to the staff member who holds it, so a site can see each
worker's caseload. The case row gains the worker's staff id (empty for every existing case:
none was assigned) and an index that reads one worker's cases, open ones first, in the order
``cases`` lists them. Existing audit entries stay valid: a case row's digest covers the worker
only once one is assigned (``_audit.STATE_COLUMNS``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nimwf_cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("worker", sa.String(length=100), nullable=True))
        batch_op.create_index(
            "ix_nimwf_cases_worker_closed_at",
            ["worker", "closed_at", "opened_at", "reference"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("nimwf_cases", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_cases_worker_closed_at")
        batch_op.drop_column("worker")
