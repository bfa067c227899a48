"""The CRM: the lead record's fields, pipelines as data, stage history, activities, deals,
the reasons for losing, custom fields, the score explained, saved filters and CAC per source.

Every existing lead gets its first stage change (entering its current stage at its first
contact), so the funnel counts leads created before this too.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
When = sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", Id, primary_key=True)


def _lead() -> sa.Column[int]:
    return sa.Column("lead_id", Id, sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False)


def _agent() -> sa.Column[int]:
    return sa.Column("agent_id", Id, sa.ForeignKey("agents.id", ondelete="SET NULL"))


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("address", sa.String(300)))
        batch.add_column(sa.Column("campaign", sa.String(120)))
        batch.add_column(sa.Column("referred_by_id", Id))
        batch.create_foreign_key(
            batch.f("fk_leads_referred_by_id_leads"),
            "leads",
            ["referred_by_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.add_column(sa.Column("pipeline", sa.String(64)))
        batch.add_column(sa.Column("stage_changed_at", When))
        batch.add_column(sa.Column("lost_reason", sa.String(200)))
        batch.add_column(sa.Column("tags", Json, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("custom", Json, nullable=False, server_default="{}"))
    op.create_index("ix_leads_first_contact_at", "leads", ["first_contact_at"])
    op.create_index("ix_leads_stage", "leads", ["stage"])
    op.create_index("ix_leads_owner_id", "leads", ["owner_id"])

    op.create_table(
        "pipelines",
        _id(),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
    )
    op.create_table(
        "stages",
        _id(),
        sa.Column(
            "pipeline_id", Id, sa.ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("cadence_days", sa.Integer()),
        sa.Column("reason_required", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("pipeline_id", "key", name="uq_stages_pipeline_id_key"),
    )
    op.create_table(
        "stage_changes",
        _id(),
        _lead(),
        sa.Column("pipeline", sa.String(64)),
        sa.Column("from_stage", sa.String(64)),
        sa.Column("to_stage", sa.String(64), nullable=False),
        _agent(),
        sa.Column("reason", sa.String(200)),
        sa.Column("at", When, nullable=False),
    )
    op.create_index("ix_stage_changes_lead_id_at", "stage_changes", ["lead_id", "at"])
    op.create_index("ix_stage_changes_to_stage_at", "stage_changes", ["to_stage", "at"])
    op.create_table(
        "activities",
        _id(),
        _lead(),
        _agent(),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("occurred_at", When, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("result", sa.String(40)),
        sa.Column("duration_minutes", sa.Integer()),
        sa.Column("place", sa.String(200)),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("details", Json, nullable=False),
    )
    op.create_index("ix_activities_lead_id_occurred_at", "activities", ["lead_id", "occurred_at"])
    op.create_index("ix_activities_agent_id_occurred_at", "activities", ["agent_id", "occurred_at"])
    op.create_index("ix_activities_occurred_at", "activities", ["occurred_at"])
    op.create_table(
        "deals",
        _id(),
        _lead(),
        _agent(),
        sa.Column("product", sa.String(200), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("lost_reason", sa.String(200)),
        sa.Column("opened_at", When, nullable=False),
        sa.Column("closed_at", When),
    )
    op.create_index("ix_deals_lead_id", "deals", ["lead_id"])
    op.create_index("ix_deals_status_closed_at", "deals", ["status", "closed_at"])
    op.create_table(
        "lost_reasons",
        _id(),
        sa.Column("label", sa.String(120), nullable=False, unique=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "custom_fields",
        _id(),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("choices", Json, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
    )
    op.create_table(
        "score_events",
        _id(),
        _lead(),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("at", When, nullable=False),
    )
    op.create_index("ix_score_events_lead_id_at", "score_events", ["lead_id", "at"])
    op.create_table(
        "saved_filters",
        _id(),
        sa.Column("agent_id", Id, sa.ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("query", sa.String(1000), nullable=False),
        sa.Column("created_at", When, nullable=False),
    )
    op.create_table(
        "cac_entries",
        _id(),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        _agent(),
        sa.Column("created_at", When, nullable=False),
        sa.UniqueConstraint("source", "month", name="uq_cac_entries_source_month"),
    )
    # Leads that existed before the CRM entered their stage when they first wrote.
    op.execute(
        "INSERT INTO stage_changes (lead_id, from_stage, to_stage, at) "
        "SELECT id, NULL, stage, first_contact_at FROM leads"
    )


def downgrade() -> None:
    for table in (
        "cac_entries",
        "saved_filters",
        "score_events",
        "custom_fields",
        "lost_reasons",
        "deals",
        "activities",
        "stage_changes",
        "stages",
        "pipelines",
    ):
        op.drop_table(table)
    op.drop_index("ix_leads_owner_id", "leads")
    op.drop_index("ix_leads_stage", "leads")
    op.drop_index("ix_leads_first_contact_at", "leads")
    with op.batch_alter_table("leads") as batch:
        batch.drop_constraint("fk_leads_referred_by_id_leads", type_="foreignkey")
        for column in (
            "custom",
            "tags",
            "lost_reason",
            "stage_changed_at",
            "pipeline",
            "referred_by_id",
            "campaign",
            "address",
        ):
            batch.drop_column(column)
