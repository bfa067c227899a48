"""Schema migrations: SQLite migrates itself; a shared PostgreSQL must be migrated on purpose."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from bot.app import create_app
from bot.core.errors import SchemaOutdated
from storage import migrate
from storage.db import Database
from storage.models import Base
from tests.conftest import _create_database, _drop_in_the_background, make_settings


async def test_sqlite_file_is_created_and_migrated_on_start(tmp_path: Path) -> None:
    path = tmp_path / "nuevo.db"
    server = TestServer(create_app(make_settings(f"sqlite+aiosqlite:///{path}")))
    await server.start_server()
    try:
        assert path.exists()
        db = Database(f"sqlite+aiosqlite:///{path}")
        assert await migrate.current_revision(db) == migrate.head_revision()
        await db.dispose()
    finally:
        await server.close()


@pytest.mark.postgres
async def test_postgres_with_an_old_schema_refuses_to_start(postgres_url: str) -> None:
    name = f"seguibot_old_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = await _create_database(name)
    try:
        server = TestServer(create_app(make_settings(url)))
        with pytest.raises(SchemaOutdated, match="seguibot db upgrade"):
            await server.start_server()
        await server.close()

        db = Database(url)
        await migrate.upgrade(db)
        await db.dispose()
        server = TestServer(create_app(make_settings(url)))
        await server.start_server()
        await server.close()
    finally:
        _drop_in_the_background(name)


async def test_migrations_go_down_and_up_again(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate.downgrade(db, "base")
        assert await migrate.current_revision(db) is None
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
    finally:
        await db.dispose()


async def test_duplicate_agents_are_told_apart_when_names_become_unique(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        await migrate.downgrade(db, "0006")
        rows = [
            (1, "Ana", "ana@example.com"),
            (2, "ANA", "Ana@Example.com"),
            (3, "ana", None),
            (4, "Bob", "bob@example.com"),
        ]
        async with db.engine.begin() as conn:
            for agent_id, name, email in rows:
                await conn.execute(
                    text(
                        "INSERT INTO agents (id, name, email, role, token_hash, active, created_at)"
                        " VALUES (:id, :name, :email, 'agent', :token, true, :at)"
                    ),
                    {
                        "id": agent_id,
                        "name": name,
                        "email": email,
                        "token": f"hash{agent_id}",
                        "at": datetime(2026, 1, 1, tzinfo=UTC),
                    },
                )
        await migrate.upgrade(db)
        async with db.engine.connect() as conn:
            result = await conn.execute(text("SELECT id, name, email, token_hash FROM agents"))
            after = sorted(tuple(row) for row in result)
        assert after == [
            (1, "Ana", "ana@example.com", "hash1"),
            (2, "ANA (2)", None, "hash2"),
            (3, "ana (3)", None, "hash3"),
            (4, "Bob", "bob@example.com", "hash4"),
        ]
    finally:
        await db.dispose()


# SQLite cannot reflect expression indexes (the appointment slot index); PostgreSQL checks it.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
async def test_migrations_match_the_models(database_url: str) -> None:
    """A model changed without a migration (or the reverse) fails here, on both databases."""

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    db = Database(database_url)
    try:
        async with db.engine.connect() as conn:
            assert await conn.run_sync(differences) == []
    finally:
        await db.dispose()
