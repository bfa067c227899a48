"""Messages acknowledged before they could be handled (over capacity): stored, handled later.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deferred_inbound",
        sa.Column("id", Id, primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("channel_message_id", sa.String(200), nullable=False),
        sa.Column("event", Json, nullable=False),
        sa.Column("received_at", When, nullable=False),
        sa.Column("lease_until", When, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("failed_at", When, nullable=True),
        sa.UniqueConstraint(
            "channel", "channel_message_id", name="uq_deferred_inbound_channel_channel_message_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("deferred_inbound")
