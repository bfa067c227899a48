"""Agents' names and e-mails are unique whatever their case.

Agents added before this had no such rule. Among agents sharing a name (in any case) the first
added keeps it and the others become "Name (id)"; among agents sharing an e-mail the first keeps
it and the others are left without one. Nobody loses access (tokens are untouched), and
`seguibot agents list` shows who is who, to rename or deactivate as fits.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

NAME_LENGTH = 120


def upgrade() -> None:
    agents = sa.table("agents", sa.column("id"), sa.column("name"), sa.column("email"))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(agents.c.id, agents.c.name, agents.c.email).order_by(agents.c.id)
    ).all()
    names = {name.casefold() for _, name, _ in rows}
    seen_names: set[str] = set()
    seen_emails: set[str] = set()
    for agent_id, name, email in rows:
        values: dict[str, str | None] = {}
        if name.casefold() in seen_names:
            suffix = f" ({agent_id})"
            renamed = name[: NAME_LENGTH - len(suffix)] + suffix
            while renamed.casefold() in names:
                renamed = renamed[: NAME_LENGTH - 1] + "'"
            values["name"] = renamed
            names.add(renamed.casefold())
            name = renamed
        seen_names.add(name.casefold())
        if email and email.casefold() in seen_emails:
            values["email"] = None
        elif email:
            seen_emails.add(email.casefold())
        if values:
            bind.execute(agents.update().where(agents.c.id == agent_id).values(**values))
            log.warning("agent %s had a duplicate %s: changed", agent_id, " and ".join(values))
    op.create_index("uq_agents_lower_name", "agents", [sa.text("lower(name)")], unique=True)
    op.create_index("uq_agents_lower_email", "agents", [sa.text("lower(email)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_agents_lower_email", table_name="agents")
    op.drop_index("uq_agents_lower_name", table_name="agents")
