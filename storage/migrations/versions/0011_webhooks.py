"""Outbound webhooks: the endpoints admins add, and each delivery (staged in the transaction
that caused the event, sent with retries and backoff like the outbox). And indexes for the lead
list's filters: tags (GIN on PostgreSQL), and name / e-mail search (trigram GIN when the
pg_trgm extension can be created; a plain index otherwise, and on SQLite).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", Id, primary_key=True),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("secret", sa.String(80), nullable=False),
        sa.Column("events", Json, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", When, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", Id, primary_key=True),
        sa.Column(
            "endpoint_id",
            Id,
            sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", When, nullable=False),
        sa.Column("lease_until", When),
        sa.Column("last_status", sa.Integer()),
        sa.Column("last_error", sa.String(500)),
        sa.Column("created_at", When, nullable=False),
        sa.Column("delivered_at", When),
    )
    op.create_index(
        "ix_webhook_deliveries_state_next_attempt_at",
        "webhook_deliveries",
        ["state", "next_attempt_at"],
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_id", "webhook_deliveries", ["endpoint_id", "id"]
    )

    _lead_list_indexes()


def _lead_list_indexes() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.create_index(
        "ix_leads_tags",
        "leads",
        ["tags"],
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
    )
    trigrams = postgres and bool(
        bind.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') "
                "AND (EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') "
                "OR has_database_privilege(current_database(), 'CREATE'))"
            )
        ).scalar()
    )
    if trigrams:
        # pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may add it.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in ("name", "email"):
        if trigrams:
            op.create_index(
                f"ix_leads_{column}_search",
                "leads",
                [column],
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
            )
        else:
            op.create_index(f"ix_leads_{column}_search", "leads", [column])


def downgrade() -> None:
    for index in ("ix_leads_email_search", "ix_leads_name_search", "ix_leads_tags"):
        op.drop_index(index, "leads")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
