"""Alembic environment.

The service runs migrations through `storage.migrate`, which hands a live connection in
`config.attributes["connection"]`. Developers generating a revision use the plain alembic CLI
(`alembic -c storage/alembic.ini revision --autogenerate -m "..."`), which connects to
`DATABASE_URL` or the default SQLite file.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from storage.models import Base

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_cli() -> None:
    url = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///seguibot.db")
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(run_migrations)
    await engine.dispose()


shared = config.attributes.get("connection")
if shared is not None:
    run_migrations(shared)
else:
    asyncio.run(run_from_cli())
