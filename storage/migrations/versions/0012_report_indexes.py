"""Indexes the reports read by: messages, handoffs and sequence steps by time.

Each report page filters a million messages by when they were written (objections, the
conversations each agent handled), handoffs by when they were claimed, and sequence steps by
when they fired; without these each is a full scan (bench/reports.py, docs/benchmarks.md).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 01:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_messages_created_at", "messages", ["created_at"])
    # "Did the lead write after this?" (objections, sequence steps): a range in one thread.
    op.create_index(
        "ix_messages_conversation_id_created_at", "messages", ["conversation_id", "created_at"]
    )
    op.create_index("ix_handoffs_claimed_at", "handoffs", ["claimed_at"])
    op.create_index("ix_scheduled_actions_kind_fired_at", "scheduled_actions", ["kind", "fired_at"])


def downgrade() -> None:
    op.drop_index("ix_scheduled_actions_kind_fired_at", "scheduled_actions")
    op.drop_index("ix_handoffs_claimed_at", "handoffs")
    op.drop_index("ix_messages_conversation_id_created_at", "messages")
    op.drop_index("ix_messages_created_at", "messages")
