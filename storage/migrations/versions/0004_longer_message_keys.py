"""Room for the web chat's message keys: a session id (up to 128) plus the client's id (64).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.alter_column(
            "channel_message_id", type_=sa.String(length=200), existing_type=sa.String(length=128)
        )


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.alter_column(
            "channel_message_id", type_=sa.String(length=128), existing_type=sa.String(length=200)
        )
