"""The agent console: passwords and sessions, availability, transfers, labels, the audit log,
invites, canned replies and the reasons for closing a conversation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("telegram_link_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("telegram_link_expires_at", When, nullable=True))
        batch.add_column(sa.Column("password_hash", sa.String(255), nullable=True))
        batch.add_column(
            sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("available", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(sa.Column("capacity", sa.Integer(), nullable=False, server_default="8"))
        batch.add_column(sa.Column("last_assigned_at", When, nullable=True))
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("labels", Json, nullable=False, server_default="[]"))
    with op.batch_alter_table("handoffs") as batch:
        batch.add_column(sa.Column("assigned_agent_id", Id, nullable=True))
        batch.create_foreign_key(
            batch.f("fk_handoffs_assigned_agent_id_agents"),
            "agents",
            ["assigned_agent_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.add_column(sa.Column("outcome", sa.String(120), nullable=True))
        batch.add_column(sa.Column("reassured_at", When, nullable=True))
        batch.add_column(sa.Column("away_notified_at", When, nullable=True))

    op.create_table(
        "transfers",
        sa.Column("id", Id, primary_key=True),
        sa.Column(
            "conversation_id",
            Id,
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("lead_id", Id, sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("from_agent_id", Id, sa.ForeignKey("agents.id", ondelete="SET NULL")),
        sa.Column("to_agent_id", Id, sa.ForeignKey("agents.id", ondelete="SET NULL")),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", When, nullable=False),
    )
    op.create_index(op.f("ix_transfers_conversation_id"), "transfers", ["conversation_id"])
    op.create_index(op.f("ix_transfers_lead_id"), "transfers", ["lead_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", Id, primary_key=True),
        sa.Column("at", When, nullable=False),
        sa.Column("agent_id", Id, sa.ForeignKey("agents.id", ondelete="SET NULL")),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64)),
        sa.Column("detail", Json, nullable=False),
        sa.Column("address", sa.String(64)),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_table(
        "invites",
        sa.Column("id", Id, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_by", Id, sa.ForeignKey("agents.id", ondelete="SET NULL")),
        sa.Column("created_at", When, nullable=False),
        sa.Column("expires_at", When, nullable=False),
        sa.Column("used_at", When),
    )
    op.create_table(
        "canned_replies",
        sa.Column("id", Id, primary_key=True),
        sa.Column("shortcut", sa.String(32), nullable=False, unique=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", When, nullable=False),
    )
    op.create_table(
        "close_reasons",
        sa.Column("id", Id, primary_key=True),
        sa.Column("label", sa.String(120), nullable=False, unique=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("close_reasons")
    op.drop_table("canned_replies")
    op.drop_table("invites")
    op.drop_index("ix_audit_events_action", "audit_events")
    op.drop_index("ix_audit_events_at", "audit_events")
    op.drop_table("audit_events")
    op.drop_table("transfers")
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_constraint(batch.f("fk_handoffs_assigned_agent_id_agents"), type_="foreignkey")
        for column in ("away_notified_at", "reassured_at", "outcome", "assigned_agent_id"):
            batch.drop_column(column)
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("labels")
    with op.batch_alter_table("agents") as batch:
        for column in (
            "last_assigned_at",
            "capacity",
            "available",
            "session_epoch",
            "password_hash",
            "telegram_link_expires_at",
            "telegram_link_hash",
        ):
            batch.drop_column(column)
