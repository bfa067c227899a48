"""The materials library: links, PDFs and images the bot sends when a reply offers them
("¿Te comparto un caso de tu industria?" ... "sí"). An uploaded file's bytes live in their own
table, read only to serve or send the file, so every process (and every replica on one
PostgreSQL) serves the same file and a backup of the database holds it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "materials",
        sa.Column("id", Id, primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("title", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.String(2000)),
        sa.Column("text", sa.String(1000), nullable=False),
        sa.Column("tags", Json, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(120)),
        sa.Column("content_type", sa.String(64)),
        sa.Column("size", sa.Integer()),
        sa.Column(
            "created_by",
            Id,
            sa.ForeignKey("agents.id", ondelete="SET NULL", name="fk_materials_created_by_agents"),
        ),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.UniqueConstraint("key", name="uq_materials_key"),
        sa.UniqueConstraint("token", name="uq_materials_token"),
    )
    op.create_table(
        "material_files",
        sa.Column(
            "material_id",
            Id,
            sa.ForeignKey(
                "materials.id", ondelete="CASCADE", name="fk_material_files_material_id_materials"
            ),
            primary_key=True,
        ),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("material_files")
    op.drop_table("materials")
