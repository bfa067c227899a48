"""What the publisher's training computed, kept with each script version.

A process that loads a published version reuses the normalised examples and the fitted
temperature the publisher recorded (JSON, `intents.matcher.Training`) instead of computing
them again: about half of a big catalogue's training (docs/benchmarks.md, "Publishing the
scripts"). Versions without it (older ones, the factory version 1) train in full.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 04:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("script_versions") as table:
        table.add_column(sa.Column("trained", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("script_versions") as table:
        table.drop_column("trained")
