"""The database connection: one async engine per process, made at start-up, never at import."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.core.errors import SeguibotError


class DatabaseUnavailable(SeguibotError):
    """The database cannot be reached; callers answer 503 so the sender retries later."""


# What a dead, unreachable or saturated database looks like from SQLAlchemy and the drivers.
# (PoolTimeout: every connection busy for `pool_timeout`; the caller should come back later.)
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    OSError,
    TimeoutError,
    PoolTimeout,
)


# PostgreSQL aborted the transaction to resolve a conflict with another one; running it again
# succeeds (deadlock_detected, serialization_failure).
CONFLICT_STATES = frozenset({"40P01", "40001"})


def is_conflict(exc: BaseException) -> bool:
    """A transient conflict between transactions: retry the whole unit of work."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in CONFLICT_STATES


def is_unavailable(exc: BaseException) -> bool:
    if is_conflict(exc):
        return False
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, UNAVAILABLE_ERRORS)


class Database:
    """Owns the engine and the session factory."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # hide_parameters: error messages must not carry message text or phone numbers.
        options: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.is_sqlite:
            options["connect_args"] = {"timeout": 30}
        else:
            options.update(
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=10,
                # No pre-ping (a round trip per transaction): a dropped connection fails one
                # request with 503, the channel redelivers, and the pool replaces it.
                pool_recycle=1800,
                # Fail fast when the server is gone instead of hanging the request.
                connect_args={"timeout": 5, "command_timeout": 30},
            )
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.is_sqlite:
            _tune_sqlite(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def ping(self, timeout: float = 3.0) -> None:
        """Raises `DatabaseUnavailable` when a trivial query does not answer in time."""
        try:
            async with asyncio.timeout(timeout), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            if is_unavailable(exc):
                raise DatabaseUnavailable(str(exc)) from exc
            raise

    async def dispose(self) -> None:
        await self.engine.dispose()

    def session(self) -> AsyncSession:
        return self.sessions()


def _tune_sqlite(engine: AsyncEngine) -> None:
    """WAL, foreign keys, and write transactions that wait instead of failing.

    pysqlite's own transaction handling starts transactions lazily (and never for SELECT), so
    two writers can deadlock on the read->write lock upgrade, which SQLite reports at once as
    "database is locked". Taking the write lock at BEGIN (IMMEDIATE) makes them queue on the
    busy timeout instead. This is SQLAlchemy's documented recipe for pysqlite/aiosqlite.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
