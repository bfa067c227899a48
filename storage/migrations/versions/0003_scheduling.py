"""Scheduling: appointments, scheduled actions, sequence runs, tasks and agent notifications;
agents may link a Telegram chat.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 13:01:59.612017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("read_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_notifications_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_notifications_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index(
        "ix_notifications_agent_id_id", "notifications", ["agent_id", "id"], unique=False
    )
    op.create_table(
        "sequence_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sequence", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_sequence_runs_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sequence_runs")),
    )
    op.create_index(op.f("ix_sequence_runs_lead_id"), "sequence_runs", ["lead_id"], unique=False)
    op.create_table(
        "tasks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("priority", sa.String(length=8), nullable=False),
        sa.Column("due_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("done_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name=op.f("fk_tasks_lead_id_leads"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["agents.id"], name=op.f("fk_tasks_owner_id_agents"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index("ix_tasks_owner_id_due_at", "tasks", ["owner_id", "due_at"], unique=False)
    op.create_table(
        "appointments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("starts_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_appointments_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_appointments_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_appointments_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointments")),
    )
    op.create_index(op.f("ix_appointments_lead_id"), "appointments", ["lead_id"], unique=False)
    op.create_index("ix_appointments_starts_at", "appointments", ["starts_at"], unique=False)
    op.create_index(
        "uq_appointments_agent_slot",
        "appointments",
        [sa.literal_column("coalesce(agent_id, 0)"), "starts_at"],
        unique=True,
        postgresql_where=sa.text("state = 'confirmed'"),
        sqlite_where=sa.text("state = 'confirmed'"),
    )
    op.create_table(
        "scheduled_actions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("due_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("lead_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "appointment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "sequence_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("dedupe_key", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", storage.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("fired_at", storage.models.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointments.id"],
            name=op.f("fk_scheduled_actions_appointment_id_appointments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_scheduled_actions_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sequence_run_id"],
            ["sequence_runs.id"],
            name=op.f("fk_scheduled_actions_sequence_run_id_sequence_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_actions")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_scheduled_actions_dedupe_key")),
    )
    op.create_index(
        "ix_scheduled_actions_appointment_id", "scheduled_actions", ["appointment_id"], unique=False
    )
    op.create_index("ix_scheduled_actions_lead_id", "scheduled_actions", ["lead_id"], unique=False)
    op.create_index(
        "ix_scheduled_actions_state_due_at", "scheduled_actions", ["state", "due_at"], unique=False
    )
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("telegram_chat_id", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("leads") as batch:
        batch.add_column(
            sa.Column(
                "sequence_run_id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
        batch.create_foreign_key(
            "fk_leads_sequence_run_id_sequence_runs",
            "sequence_runs",
            ["sequence_run_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(
            sa.Column("cancel_on_reply", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("cancel_on_reply")
    with op.batch_alter_table("leads") as batch:
        batch.drop_constraint("fk_leads_sequence_run_id_sequence_runs", type_="foreignkey")
        batch.drop_column("sequence_run_id")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("telegram_chat_id")
    op.drop_index("ix_scheduled_actions_state_due_at", table_name="scheduled_actions")
    op.drop_index("ix_scheduled_actions_lead_id", table_name="scheduled_actions")
    op.drop_index("ix_scheduled_actions_appointment_id", table_name="scheduled_actions")
    op.drop_table("scheduled_actions")
    op.drop_index(
        "uq_appointments_agent_slot",
        table_name="appointments",
        postgresql_where=sa.text("state = 'confirmed'"),
        sqlite_where=sa.text("state = 'confirmed'"),
    )
    op.drop_index("ix_appointments_starts_at", table_name="appointments")
    op.drop_index(op.f("ix_appointments_lead_id"), table_name="appointments")
    op.drop_table("appointments")
    op.drop_index("ix_tasks_owner_id_due_at", table_name="tasks")
    op.drop_table("tasks")
    op.drop_index(op.f("ix_sequence_runs_lead_id"), table_name="sequence_runs")
    op.drop_table("sequence_runs")
    op.drop_index("ix_notifications_agent_id_id", table_name="notifications")
    op.drop_table("notifications")
