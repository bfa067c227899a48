"""Two partial indexes for the reports: the objections, and the leads who opted out.

The objections figure went through every message of the period (ix_messages_created_at: 246 000
for 90 days on the benchmark) to keep the 5 % that are objections; ix_messages_objections holds
only those, by when they were written. The statement writes the same predicate into its text
(storage/reports.py OBJECTIONS) so the planner can use it: 0.32 s → 0.15 s for 90 days.

The sequence steps' opt-outs joined every lead to read opted_out_at; ix_leads_opted_out_at
holds only the leads who opted out (2 % on the benchmark). Measured in docs/benchmarks.md.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As storage/models.py OBJECTION_MESSAGES (a migration does not import the models: they change).
OBJECTIONS = "direction = 'in' AND intent LIKE 'objection.%'"


def upgrade() -> None:
    op.create_index(
        "ix_leads_opted_out_at",
        "leads",
        ["opted_out_at"],
        postgresql_where=sa.text("opted_out_at IS NOT NULL"),
        sqlite_where=sa.text("opted_out_at IS NOT NULL"),
    )
    op.create_index(
        "ix_messages_objections",
        "messages",
        ["created_at"],
        postgresql_where=sa.text(OBJECTIONS),
        sqlite_where=sa.text(OBJECTIONS),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_objections", "messages")
    op.drop_index("ix_leads_opted_out_at", "leads")
