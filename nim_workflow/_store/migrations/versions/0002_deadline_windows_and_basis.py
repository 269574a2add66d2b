"""deadline windows and the basis of a due date

Windows (research visits) open on a date of their own, and a clock ruled by the earliest of
several anchors, or by the days a case spends in care, keeps what its due date was computed from,
so that explanations and pathway upgrades can recompute it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nimwf_deadlines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("opens_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("basis", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nimwf_deadlines", schema=None) as batch_op:
        batch_op.drop_column("basis")
        batch_op.drop_column("opens_on")
