"""An index of the messages that went to the lead, by conversation and time.

Every message reads when a message last went to its lead (the engine's lapse of the question
pending). On (conversation_id, created_at) with the direction as a filter, a prepared
statement's generic plan read every message of the conversation and sorted them: 0.17 ms of a
0.29 ms statement in a conversation of 650 messages, growing with it. This index answers from
the conversation's newest outgoing message.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SENT = "direction = 'out'"  # as Direction.OUT (a migration does not import the models)


def upgrade() -> None:
    op.create_index(
        "ix_messages_sent",
        "messages",
        ["conversation_id", "created_at"],
        postgresql_where=sa.text(SENT),
        sqlite_where=sa.text(SENT),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_sent", "messages")
