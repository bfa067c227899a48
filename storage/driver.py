"""The engine's hot statements run on asyncpg itself, in the session's own transaction.

A statement through SQLAlchemy costs several times what the same statement costs on asyncpg:
the session's execution, the compiled cache's look-up, the parameters' processing and two
greenlet switches come before and after the driver's own work (`python -m bench.driver`: the
statements of a known sender's message, 0.85 ms through SQLAlchemy Core alone, 0.35 ms on
asyncpg). For the few statements every message runs, `rows` does what SQLAlchemy would do,
once per statement instead of once per execution: the statement is compiled for the dialect
and kept with its parameters' order and bind processors (the same processors SQLAlchemy
applies, so an enum, a JSON value or a time goes out as it would), and run on the driver
connection that holds the session's transaction, with asyncpg's prepared-statement cache.
Errors come out as the same SQLAlchemy exceptions (`IntegrityError`, `DBAPIError` with the
SQLSTATE), so a conflict retries and a dead connection answers 503 as before, and SQLAlchemy's
`before_cursor_execute` listeners still see every statement.

Other drivers (SQLite, or PostgreSQL through another driver) run the statement through the
session. Either way the session's pending changes are not flushed first: `rows` is for
statements that write or read rows nothing pending refers to or changes, so that the lead's
and conversation's changes go out together at the end of the turn (`storage.folded`) instead
of before each such statement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

_OPEN = "seguibot.driver"  # the session's `info` key: the connection of its transaction


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A statement as the driver takes it: text, parameters in order, and their processing."""

    sql: str
    names: tuple[str, ...]
    processed: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, bind processor)
    defaults: Mapping[str, Any]  # values bound in the statement itself (a LIMIT's 1)
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, result processor)

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        given = {**self.defaults, **parameters} if self.defaults else parameters
        values = [given[name] for name in self.names]
        for at, process in self.processed:  # most columns need none (text, numbers, times)
            if values[at] is not None:
                values[at] = process(values[at])
        return values


_COMPILED: dict[tuple[Executable, str], _Compiled | None] = {}


def _compiled(statement: Executable, dialect: Dialect) -> _Compiled | None:
    """The statement as the driver takes it; None when SQLAlchemy must fill in something at
    each execution (a column's Python-side default, an expanding IN list, a value rendered
    into the text): such a statement goes through the session."""
    key = (statement, dialect.name)
    if key in _COMPILED:
        return _COMPILED[key]
    compiled = cast(SQLCompiler, cast(ClauseElement, statement).compile(dialect=dialect))
    names = tuple(compiled.positiontup or ())
    binds = compiled.binds
    found = None
    if not (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.post_compile_params
        or compiled.literal_execute_params
    ):
        results = (
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in _columns(statement)
        )
        processors = (
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        )
        found = _Compiled(
            sql=compiled.string,
            names=names,
            processed=tuple((at, p) for at, p in enumerate(processors) if p is not None),
            defaults={name: binds[name].value for name in names if not binds[name].required},
            results=tuple((at, p) for at, p in enumerate(results) if p is not None),
        )
    _COMPILED[key] = found
    return found


def _columns(statement: Executable) -> Sequence[Any]:
    """The columns a statement's rows have (none: it returns no rows)."""
    return cast(Sequence[Any], getattr(statement, "exported_columns", ()))


@dataclass(frozen=True, slots=True)
class _Open:
    """The session's transaction as the driver sees it."""

    connection: AsyncConnection
    adapted: Any  # SQLAlchemy's asyncpg adapter (its transaction and error translation)
    driver: Any  # the asyncpg connection


async def _open(session: AsyncSession) -> _Open:
    """The driver connection of the session's transaction, begun (`BEGIN` sent)."""
    found = cast(_Open | None, session.info.get(_OPEN))
    if found is None:
        connection = await session.connection()
        # The pool's connection, just checked out for this transaction: read without the
        # greenlet `get_raw_connection` runs in case it had to be revalidated (an invalidated
        # one would raise here, not go wrong quietly).
        raw = cast(Connection, connection.sync_connection).connection
        found = _Open(connection, raw.dbapi_connection, raw.driver_connection)
        session.info[_OPEN] = found
    if found.adapted._transaction is None:
        # SQLAlchemy's adapter sends BEGIN before its first statement and COMMIT or ROLLBACK
        # when the session ends the transaction: begun through it, this statement is part
        # of the same transaction. (The adapter has no public call for this; the pin of
        # SQLAlchemy to 2.1 keeps it, and tests/integration/test_driver.py fails without it.)
        await found.adapted._start_transaction()
    return found


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the connection goes back to the pool
        session.info.pop(_OPEN, None)


async def rows(
    session: AsyncSession, statement: Executable, parameters: Mapping[str, Any]
) -> Sequence[Sequence[Any]]:
    """Run `statement` with `parameters` in the session's transaction; its rows (indexable
    by position; values processed as SQLAlchemy would).

    `statement` is built once (a module's constant, or kept in a cache): each statement object
    is compiled on first use and kept for the life of the process. It names its parameters
    itself: a bare `insert(table)`, whose columns SQLAlchemy takes from each execution's
    parameters, goes through the session (`_unflushed` in `storage.repositories`).

    Raises:
        sqlalchemy.exc.DBAPIError and its subclasses, as `session.execute` would.
    """
    dialect = session.get_bind().dialect
    compiled = _compiled(statement, dialect) if dialect.driver == "asyncpg" else None
    if compiled is None:
        with session.no_autoflush:
            result = await session.execute(statement, dict(parameters))
        return result.all() if _columns(statement) else []
    opened = await _open(session)
    arguments = compiled.arguments(parameters)
    sync = cast(Connection, opened.connection.sync_connection)
    if sync.dispatch.before_cursor_execute:  # (listeners: tests and benches count statements)
        sync.dispatch.before_cursor_execute(sync, None, compiled.sql, arguments, None, False)
    try:
        records = await opened.driver.fetch(compiled.sql, *arguments)
    except Exception as error:
        raise await _translated(opened, dialect, compiled.sql, error) from error
    if not compiled.results:
        return cast(Sequence[Sequence[Any]], records)
    found = []
    for record in records:
        values = list(record)
        for at, process in compiled.results:  # most columns need none (text, numbers, times)
            if values[at] is not None:
                values[at] = process(values[at])
        found.append(values)
    return found


async def commit(session: AsyncSession) -> None:
    """Commit the session's transaction, as `session.commit()` does.

    When the driver began the transaction and nothing is left to flush, the `COMMIT` goes
    out on the driver and the session then ends its transaction with no I/O of its own
    (SQLAlchemy's adapter finds no transaction to commit, nor to roll back when its
    connection goes back to the pool), so without the greenlet `session.commit()` spawns
    for the round trip, unless the pool will close the connection rather than keep it (a
    round trip too). Otherwise (a savepoint, changes left to flush), `session.commit()`.

    Raises:
        sqlalchemy.exc.DBAPIError and its subclasses, as `session.commit()` would.
    """
    opened = cast(_Open | None, session.info.get(_OPEN))
    sync = session.sync_session
    if (
        opened is None
        or opened.adapted._transaction is None
        or sync.in_nested_transaction()
        or sync.new
        or sync.dirty
        or sync.deleted
    ):
        await session.commit()
        return
    adapted = opened.adapted
    try:
        # As the adapter's own commit does: the transaction is done whatever COMMIT says.
        await adapted._call_and_discard(adapted._transaction.commit)
    except Exception as error:
        raise await _translated(opened, session.get_bind().dialect, "COMMIT", error) from error
    # Asked now, not before the round trip: other units of work hand their connections back
    # meanwhile.
    if _kept(session):
        sync.commit()
    else:
        await session.commit()  # (nothing left to commit: only the pool's close is I/O)


def _kept(session: AsyncSession) -> bool:
    """Whether the pool keeps the connection it gets back now, with no I/O. A pool whose
    places are all taken closes it instead (an overflow connection), which is a round trip
    and must run where the session can await it."""
    bind = session.get_bind()
    pool = (bind if isinstance(bind, Engine) else bind.engine).pool
    return isinstance(pool, QueuePool) and pool.checkedin() < pool.size()


async def _translated(opened: _Open, dialect: Dialect, sql: str, error: Exception) -> Exception:
    """The SQLAlchemy exception `session.execute` would have raised for `error`."""
    try:
        opened.adapted._handle_exception(error)  # raises the DB-API form of the error
    except Exception as dbapi_error:
        invalidated = dialect.is_disconnect(cast(Any, dbapi_error), opened.adapted, None)
        if invalidated:  # the pool replaces it, as after any statement that found it dead
            await opened.connection.invalidate(dbapi_error)
        return cast(
            Exception,
            DBAPIError.instance(
                sql,
                None,
                dbapi_error,
                cast(type[Exception], dialect.loaded_dbapi.Error),
                hide_parameters=True,
                connection_invalidated=invalidated,
                dialect=dialect,
            ),
        )
    return error  # (not reached: the adapter always raises)
