"""Scripts in the database: published versions (the live one is the highest number) and the
admins' shared draft of the next one.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "script_versions",
        sa.Column("number", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("comment", sa.String(500), nullable=False),
        sa.Column("author_id", Id, sa.ForeignKey("agents.id", ondelete="SET NULL")),
        sa.Column("restores", sa.Integer()),
        sa.Column("created_at", When, nullable=False),
    )
    op.create_table(
        "script_drafts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("base", sa.Integer(), nullable=False),
        sa.Column("updated_by", Id, sa.ForeignKey("agents.id", ondelete="SET NULL")),
        sa.Column("updated_at", When, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("script_drafts")
    op.drop_table("script_versions")
