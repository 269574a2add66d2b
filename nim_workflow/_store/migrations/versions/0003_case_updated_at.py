"""when each case last changed

An action dated before a case's newest change (a resume before its pause, a fact recorded
before the last transition) would write history out of order; the case row now says when it
last changed, filled for existing cases from their audit log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nim_workflow._store._schema as schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nimwf_cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated_at", schema.UTCDateTime(), nullable=True))
    # The newest change of each case is its newest audited action other than a refusal or an
    # alarm (those change nothing on the case row).
    op.execute(
        """
        UPDATE nimwf_cases SET updated_at = (
            SELECT MAX(e.at) FROM nimwf_audit_events e
            WHERE e.reference = nimwf_cases.reference
              AND e.action NOT IN ('denied', 'reminder', 'breach', 'escalation')
        )
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("nimwf_cases", schema=None) as batch_op:
        batch_op.drop_column("updated_at")
