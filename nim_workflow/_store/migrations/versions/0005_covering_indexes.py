"""indexes for reading open deadlines and a site's cases at scale

``due`` and ``overdue`` ask for open deadlines before an instant, everywhere or at one site,
ordered by due instant, reference and id. Two partial indexes hold only the open deadlines, in
exactly that order, so the listing is one range scan with no sort, and a deadline leaves them
when it is settled; they replace the index on (status, due_at), which held every deadline ever
set and made each listing sort. A site's cases are indexed by (site, closed_at, opened_at,
reference): a site's open cases come out in listing order, and the report's read of a whole
site stays on the index. A case's alarms are indexed by (reference, id), as its other rows
already were: each command reads them whole.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Spelled exactly as the models' predicate (_schema.OPEN_DEADLINE), which the queries repeat.
_OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    with op.batch_alter_table("nimwf_deadlines", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_deadlines_status_due_at")
        batch_op.create_index(
            "ix_nimwf_deadlines_open_due_at",
            ["due_at", "reference", "id"],
            unique=False,
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        )
        batch_op.create_index(
            "ix_nimwf_deadlines_open_site_due_at",
            ["site", "due_at", "reference", "id"],
            unique=False,
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        )
    with op.batch_alter_table("nimwf_cases", schema=None) as batch_op:
        batch_op.create_index(
            "ix_nimwf_cases_site_closed_at",
            ["site", "closed_at", "opened_at", "reference"],
            unique=False,
        )
    # A write reads its case's alarms whole (the state its audit entry digests): without this,
    # every command scans all alarms.
    with op.batch_alter_table("nimwf_alarms", schema=None) as batch_op:
        batch_op.create_index("ix_nimwf_alarms_reference", ["reference", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("nimwf_alarms", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_alarms_reference")
    with op.batch_alter_table("nimwf_cases", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_cases_site_closed_at")
    with op.batch_alter_table("nimwf_deadlines", schema=None) as batch_op:
        batch_op.drop_index("ix_nimwf_deadlines_open_site_due_at")
        batch_op.drop_index("ix_nimwf_deadlines_open_due_at")
        batch_op.create_index(
            "ix_nimwf_deadlines_status_due_at", ["status", "due_at"], unique=False
        )
