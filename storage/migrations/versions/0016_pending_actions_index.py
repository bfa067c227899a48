"""An index of the pending scheduled actions by lead and kind.

Every message asks whether an action of a kind waits for the lead (the idle check: in the
engine's locked read, and in the statement that adds one unless one waits). With only
ix_scheduled_actions_lead_id, a database whose statistics are thin — a young one, or a busy
one between two runs of autovacuum — was read through the kind and state indexes instead:
every pending idle check of every lead (8 900 rows, 1 ms, per message on the benchmark after
~9 000 new leads) to find one lead's. This index answers it from the lead's own entries.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = "state = 'pending'"  # as ActionState.PENDING (a migration does not import the models)


def upgrade() -> None:
    op.create_index(
        "ix_scheduled_actions_pending_lead_id_kind",
        "scheduled_actions",
        ["lead_id", "kind"],
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_scheduled_actions_pending_lead_id_kind", "scheduled_actions")
