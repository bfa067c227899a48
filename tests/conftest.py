"""Shared fixtures: databases (SQLite always, PostgreSQL when reachable) and the app.

PostgreSQL: `TEST_POSTGRES_URL` (default postgresql+asyncpg://postgres@127.0.0.1:5432/test)
names a server where a throw-away database is created for the run and dropped after it (in
the background). When the server cannot be reached, every PostgreSQL case is skipped with a
reason that says so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.app import create_app
from bot.core.channel import Channel, Sender
from bot.settings import Settings, load_settings
from storage import migrate
from storage.db import Database
from storage.models import Base

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
T = TypeVar("T")
_TABLES = ", ".join(table.name for table in reversed(Base.metadata.sorted_tables))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: two workers per core, at most 8 (each makes and migrates its own
    PostgreSQL database). The suite waits more than it computes (browsers, subprocesses
    starting, the database): with one worker per core the 2-core machine was 64 % busy and the
    run took 7.5-9.5 minutes, with two per core 6."""
    return min(2 * (os.cpu_count() or 1), 8)


async def _postgres_reachable() -> str | None:
    engine = create_async_engine(POSTGRES_ADMIN_URL, connect_args={"timeout": 3})
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()
    return None


async def _create_database(name: str) -> str:
    engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    url = make_url(POSTGRES_ADMIN_URL).set(database=name)
    return url.render_as_string(hide_password=False)


async def _drop_database(name: str) -> None:
    engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


async def _migrate(url: str) -> None:
    db = Database(url)
    try:
        await migrate.upgrade(db)
    finally:
        await db.dispose()


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running loop's fixture."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated throw-away PostgreSQL database for this test run."""
    problem = run_sync(_postgres_reachable())
    if problem:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({problem})")
    name = f"seguibot_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = run_sync(_create_database(name))
    try:
        run_sync(_migrate(url))
        yield url
    finally:
        _drop_in_the_background(name)


def _drop_in_the_background(name: str) -> None:
    """Drop the run's database without waiting: DROP DATABASE waits for a checkpoint, which
    after a whole run's writes took up to 40 s on a busy machine, all of it after the last
    test. A detached process finishes it (and `DROP ... IF EXISTS` again if it is cut short
    is harmless: the name is never reused)."""
    code = "import asyncio, sys; from tests.conftest import _drop_database as d; "
    code += "asyncio.run(d(sys.argv[1]))"
    subprocess.Popen(
        [sys.executable, "-c", code, name],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is faster)."""
    path = tmp_path_factory.mktemp("template") / "seguibot.db"
    run_sync(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> AsyncIterator[str]:
    """An empty, migrated database: every test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "seguibot.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE"))
    await engine.dispose()
    yield url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """The real defaults (config.yaml) with this test's database and any overrides."""
    settings = load_settings(environ={"DATABASE_URL": database_url})
    # Tests wait for sends with Dispatcher.drain(); the poll is only a safety net.
    settings = settings.with_overrides(outbox={"poll_interval": 0.05, "backoff_base": 0.01})
    # People answer at any hour in tests, so a handoff's reply does not depend on the clock;
    # the tests of business hours turn them on with a frozen clock.
    settings = settings.with_overrides(handoff={"business_hours": False})
    return settings.with_overrides(**overrides)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
def service(
    aiohttp_client: Any, database_url: str
) -> Callable[..., Awaitable[TestClient[Any, Any]]]:
    """Start the real app on a loopback port: `client = await service(senders=..., **settings)`.

    `port` fixes the port, for settings that must know the public URL before start-up.
    """

    async def start(
        senders: dict[Channel, Sender] | None = None, port: int | None = None, **overrides: Any
    ) -> TestClient[Any, Any]:
        app = create_app(make_settings(database_url, **overrides), senders=senders)
        server = ServedAsInProduction(app, port=port)
        client: TestClient[Any, Any] = await aiohttp_client(server)
        return client

    return start


class ServedAsInProduction(TestServer):
    """The app served as `seguibot serve` serves it (`web.run_app`): a request whose client
    went away runs to its end. aiohttp's test server cancels it instead, which can cut a
    database transaction short and, on SQLite, leave its write lock held by a connection
    nobody returns (every other writer then waits out the busy timeout)."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return await super()._make_runner(**{**kwargs, "handler_cancellation": False})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
