"""The database connection: one async engine per process, made at start-up, never at import."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
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

from bot.core.errors import Unreachable
from storage.materials import KEPT, ActiveMaterials, WatchedSession


class DatabaseUnavailable(Unreachable):
    """The database cannot be reached or used; callers answer 503 so the sender retries later.

    `reason` says why in words (never the URL, which may hold the password); `kind` is what
    to check: "network" (host, port, server running), "login" (user, password), "database"
    (its name), "file" (an SQLite file's folder and permissions) or "other".
    """

    def __init__(self, reason: str, kind: str = "other") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


# PostgreSQL's SQLSTATEs for a refused login and a database that does not exist.
_LOGIN_STATES = frozenset({"28000", "28P01"})
_NO_DATABASE_STATES = frozenset({"3D000"})


def connection_problem(exc: BaseException) -> DatabaseUnavailable:
    """Why connecting failed, in words, from the exception and its causes."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for error in chain:
        state = getattr(error, "sqlstate", None)
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        if state in _LOGIN_STATES:
            return DatabaseUnavailable(f"the server refused the login ({first_line})", "login")
        if state in _NO_DATABASE_STATES:
            return DatabaseUnavailable(first_line, "database")
        if isinstance(error, socket.gaierror):
            return DatabaseUnavailable(
                f"the host name does not resolve (DNS: {error.strerror})", "network"
            )
        if isinstance(error, ConnectionRefusedError):
            return DatabaseUnavailable(
                "connection refused (nothing listens on that host and port)", "network"
            )
        if isinstance(error, TimeoutError | PoolTimeout):
            return DatabaseUnavailable("no answer in time (timeout)", "network")
        if isinstance(error, sqlite3.Error):
            return DatabaseUnavailable(first_line, "file")
    for error in chain:
        if isinstance(error, OSError):
            return DatabaseUnavailable(
                error.strerror or str(error) or type(error).__name__, "network"
            )
    last = chain[-1]
    return DatabaseUnavailable(str(last).splitlines()[0] if str(last) else type(last).__name__)


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
        self.pool_size = pool_size
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
        self.active_materials = ActiveMaterials()
        self.sessions = async_sessionmaker(
            self.engine,
            expire_on_commit=False,
            sync_session_class=WatchedSession,
            info={KEPT: self.active_materials},
        )

    async def ping(self, timeout: float = 3.0) -> None:
        """Connect and run a trivial query.

        Raises:
            DatabaseUnavailable: it did not answer in time, or refused (host, login, database
                name, file), with the reason in words.
        """
        try:
            async with asyncio.timeout(timeout), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            # Whatever stops a trivial query stops everything: the database is not usable.
            raise connection_problem(exc) from exc

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
