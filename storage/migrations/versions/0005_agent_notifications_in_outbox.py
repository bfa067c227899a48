"""Agents' Telegram notifications travel through the outbox, like messages to leads.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("message_id", existing_type=Id, nullable=True)
        batch.alter_column("lead_id", existing_type=Id, nullable=True)
        batch.add_column(sa.Column("notification_id", Id, nullable=True))
        batch.create_foreign_key(
            batch.f("fk_outbox_notification_id_notifications"),
            "notifications",
            ["notification_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_unique_constraint(batch.f("uq_outbox_notification_id"), ["notification_id"])


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE message_id IS NULL")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint(batch.f("uq_outbox_notification_id"), type_="unique")
        batch.drop_constraint(
            batch.f("fk_outbox_notification_id_notifications"), type_="foreignkey"
        )
        batch.drop_column("notification_id")
        batch.alter_column("lead_id", existing_type=Id, nullable=False)
        batch.alter_column("message_id", existing_type=Id, nullable=False)
