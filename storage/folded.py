"""One statement for what a turn leaves in the session (PostgreSQL).

The ORM's flush writes each changed row in a statement of its own: on the engine's hot path
an UPDATE of the lead, an UPDATE of the conversation and an INSERT per CRM row (score event,
activity, stage change), each a round trip. PostgreSQL runs them all in one statement as
data-modifying CTEs, together with the writes deferred to it (`defer`: staging a webhook
event for its subscribers, the idle check of a lead). What this module does not know (another
kind of row, a relationship changed, a row deleted) it leaves to the ORM's flush, which then
runs as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, cast

from sqlalchemy import (
    MetaData,
    Table,
    bindparam,
    insert,
    inspect,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ColumnProperty, Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.sql.expression import Executable
from sqlalchemy.sql.selectable import HasCTE

from storage import driver
from storage.models import (
    Activity,
    Agent,
    Base,
    Conversation,
    Lead,
    ScheduledAction,
    ScoreEvent,
    StageChange,
)

# Rows whose changes are plain column values: updated in place, in the engine's lock order
# (the conversation, then its lead; an agent assigned a hand-off last), whatever order the
# session keeps them in.
_UPDATED: tuple[type[Base], ...] = (Conversation, Lead, Agent)
# Rows written once and never read back in the same unit of work: inserted without their id.
# (A scheduled action is added through `Actions.add`, which hands no row back.)
_INSERTED: tuple[type[Base], ...] = (ScoreEvent, Activity, StageChange, ScheduledAction)

# A write that nothing in the unit of work reads back, built with every bind parameter's name
# behind a prefix (so several can share one statement): see `defer`.
Factory = Callable[[str], Executable]
_DEFERRED = "seguibot.deferred_writes"  # the session's `info` key
_IN_ANY_ORDER: set[Factory] = set()

# (table, "update" | "insert", columns) or ("", "deferred", factory) for each part, in order:
# the statement's shape.
_Shape = tuple[tuple[str, str, Hashable], ...]
_STATEMENTS: dict[_Shape, Executable] = {}
_NO_TABLE = Table("deferred", MetaData())  # a deferred write's place in the list of tables


def in_any_order(factory: Factory) -> Factory:
    """Mark a deferred write whose executions do not depend on each other: two of them may
    share a statement, where they run in no set order and see the same snapshot. (Not so an
    INSERT ... WHERE NOT EXISTS: two in one statement would both insert.)"""
    _IN_ANY_ORDER.add(factory)
    return factory


@functools.cache
def _built(factory: Factory, prefix: str) -> Executable:
    return factory(prefix)


async def defer(
    session: AsyncSession, factory: Factory, parameters: dict[str, Any]
) -> tuple[Factory, dict[str, Any]]:
    """Run a write nothing in this unit of work reads back (an INSERT ... SELECT): on
    PostgreSQL with the unit of work's other changes (`write_changes`, or at the commit),
    elsewhere now. The write, for `forget`."""
    write = (factory, parameters)
    if session.get_bind().dialect.name != "postgresql":
        with session.no_autoflush:  # nothing pending refers to what it writes
            await session.execute(_built(factory, ""), parameters)
        return write
    session.info.setdefault(_DEFERRED, []).append(write)
    return write


def forget(session: AsyncSession, write: tuple[Factory, dict[str, Any]]) -> bool:
    """Drop a deferred write not yet run; False when it already ran (undo it otherwise)."""
    pending = session.info.get(_DEFERRED, [])
    for n, candidate in enumerate(pending):
        if candidate is write:
            del pending[n]
            return True
    return False


async def write_deferred(session: AsyncSession) -> None:
    """Run the deferred writes now, each on its own, after the session's pending rows."""
    for factory, parameters in session.info.pop(_DEFERRED, []):
        await driver.rows(session, _built(factory, ""), parameters)


def discard_deferred(session: AsyncSession) -> None:
    """Forget the deferred writes (the savepoint they were made in rolled back)."""
    session.info.pop(_DEFERRED, None)


def holds(session: Session | AsyncSession, *models: type) -> bool:
    """Whether the session holds pending changes (new, changed or deleted rows) of `models`."""
    pending = chain(session.new, session.dirty, session.deleted)
    return any(isinstance(row, models) for row in pending)


def _table(row: Base) -> Table:
    return cast(Table, type(row).__table__)


@functools.cache
def _columns(model: type[Base]) -> frozenset[str]:
    """The attributes of `model` that are one column of the same name: what `_changes` may
    write (not a relationship, a composite, a column under another name)."""
    return frozenset(
        prop.key
        for prop in inspect(model).attrs
        if isinstance(prop, ColumnProperty)
        and len(prop.columns) == 1
        and prop.columns[0].key == prop.key
    )


@functools.cache
def _on_update(table: Table) -> tuple[tuple[str, Any], ...]:
    """The table's columns with a Python-side `onupdate`, and it."""
    return tuple((c.key, c.onupdate) for c in table.columns if c.onupdate is not None)


def _changes(row: Base) -> dict[str, Any] | None:
    """The columns the session changed on `row` and their new values; None when something
    other than a column changed (left to the ORM's flush).

    Read from the row's state as the ORM's own history of a scalar attribute reads it: the
    value before (`committed_state`) against the value now.
    """
    state = instance_state(row)
    columns = _columns(type(row))
    now = state.dict
    changed: dict[str, Any] = {}
    for key, before in state.committed_state.items():
        if key not in columns:
            return None
        value = now.get(key, NO_VALUE)
        if value is NO_VALUE:
            return None  # the value was deleted, not set: as the ORM would do it
        if before is not NO_VALUE and before == value:
            continue  # set to the value it had: the ORM would not write it either
        changed[key] = value
    if changed:
        for key, onupdate in _on_update(_table(row)):
            if key not in changed:
                if not onupdate.is_callable:
                    return None
                changed[key] = onupdate.arg(None)
    return changed


def column_values(row: Base) -> dict[str, Any] | None:
    """Every column of a new row but its id, with the model's defaults; None when a column
    has only a server default (left to the ORM's flush)."""
    values: dict[str, Any] = {}
    given = row.__dict__
    for key, default, server_default in _insertable(type(row)):
        value = given.get(key)
        if value is None and default is not None:
            if default.is_callable:
                value = default.arg(None)
            elif default.is_scalar:
                value = default.arg
            else:
                return None  # computed in SQL or by the flush (a sequence, a clause)
        elif server_default and key not in given:
            return None
        values[key] = value
    return values


@functools.cache
def _insertable(model: type[Base]) -> tuple[tuple[str, Any, bool], ...]:
    """Per column but the id: its key, its default (None: it has none) and whether it has a
    server default. Read off the table once, not per row: a new lead's three rows walk 45
    columns."""
    return tuple(
        (column.key, column.default, column.server_default is not None)
        for column in cast(Table, model.__table__).columns
        if not column.primary_key
    )


def _parts(shape: _Shape, tables: Sequence[Table]) -> list[Any]:
    parts: list[Any] = []
    for n, ((_, kind, columns), table) in enumerate(zip(shape, tables, strict=True)):
        if kind == "deferred":
            parts.append(cast(Factory, columns)(f"p{n}_"))
            continue
        if kind == "update":
            names = cast(tuple[str, ...], columns)
            values = {c: bindparam(f"p{n}_{c}", type_=table.c[c].type) for c in names}
            key = bindparam(f"p{n}_id", type_=table.c.id.type)
            parts.append(update(table).where(table.c.id == key).values(values))
        else:
            # One INSERT per table, its rows in the order they were added (their ids too).
            names, count = cast(tuple[tuple[str, ...], int], columns)
            # (A multi-row VALUES would not be cached by SQLAlchemy: compiled every time.)
            rows = [
                [bindparam(f"p{n}_{i}_{c}", type_=table.c[c].type) for c in names]
                for i in range(count)
            ]
            if count == 1:
                parts.append(insert(table).values(dict(zip(names, rows[0], strict=True))))
            else:
                selects = union_all(*(select(*row) for row in rows))
                parts.append(insert(table).from_select(list(names), selects))
    return parts


def _statement(shape: _Shape, tables: Sequence[Table]) -> Executable:
    statement = _STATEMENTS.get(shape)
    if statement is None:
        parts = _parts(shape, tables)
        if len(parts) == 1:
            statement = parts[0]
        else:
            ctes = (part.cte(f"w{n}") for n, part in enumerate(parts))
            statement = select(literal(1)).add_cte(*ctes)
        _STATEMENTS[shape] = statement
    return statement


_WITH: dict[tuple[Factory, _Shape], Executable] = {}


def _with(factory: Factory, shape: _Shape, tables: Sequence[Table]) -> Executable:
    statement = _WITH.get((factory, shape))
    if statement is None:
        parts = _parts(shape, tables)
        main = cast(HasCTE, factory(""))
        ctes = (part.cte(f"w{n}") for n, part in enumerate(parts))
        statement = cast(Executable, main.add_cte(*ctes))
        _WITH[(factory, shape)] = statement
    return statement


@dataclass(slots=True)
class _Collected:
    """The session's pending changes, as one statement's parts."""

    shape: list[tuple[str, str, Hashable]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    updated: list[tuple[Base, dict[str, Any]]] = field(default_factory=list)
    inserted: list[Base] = field(default_factory=list)

    def written(self, session: AsyncSession) -> None:
        """The parts ran: the session forgets them as if it had flushed them."""
        identity_map = session.sync_session.identity_map
        for row, changes in self.updated:
            # Every change of the row is written (`_changes` takes all or none), so the row is
            # as if flushed: its values now (the `onupdate` ones `_changes` made added), clean,
            # or every later flush and the commit's would look at it again. (SQLAlchemy has no
            # public call for this; the pin keeps 2.1's.)
            state = instance_state(row)
            state.dict.update(changes)
            state._commit_all(state.dict, identity_map)
        if self.inserted:
            # Inserted without their ids, they leave the session: what `expunge` does row by
            # row, less its walk of each row's relationships for an expunge cascade (these
            # kinds have none: tests/unit/test_folded.py) and its checks, for all of them at
            # once (this method, on a new lead's message: 48-54 -> 24-28 µs). SQLAlchemy's own,
            # not public: the pin keeps 2.1's.
            states = [instance_state(row) for row in self.inserted]
            session.sync_session._expunge_states(states)


def _collect(session: AsyncSession) -> _Collected | None:
    """What the session holds, as parts of one statement; None when some of it is left to
    the ORM's flush (which must then run first). Takes the deferred writes."""
    if session.get_bind().dialect.name != "postgresql" or session.deleted:
        return None
    new = list(session.new)
    deferred = session.info.get(_DEFERRED, [])
    # A new row of another kind may be what these refer to; two deferred writes of one kind
    # in one statement would run in no set order, on one snapshot (unless `in_any_order`).
    if any(not isinstance(row, _INSERTED) for row in new):
        return None
    ordered = [factory for factory, _ in deferred if factory not in _IN_ANY_ORDER]
    if len(set(ordered)) < len(ordered):
        return None
    collected = _Collected()
    shape, parameters = collected.shape, collected.parameters
    dirty = [row for row in session.dirty if isinstance(row, _UPDATED)]
    dirty.sort(key=lambda row: (_UPDATED.index(type(row)), instance_state(row).identity))
    for row in dirty:
        changes = _changes(row)
        if changes is None:
            return None
        if not changes:
            continue
        n = len(shape)
        table = _table(row)
        shape.append((table.name, "update", tuple(changes)))
        collected.tables.append(table)
        parameters[f"p{n}_id"] = instance_state(row).identity[0]  # type: ignore[index]
        parameters.update({f"p{n}_{c}": v for c, v in changes.items()})
        collected.updated.append((row, changes))
    by_table: dict[Table, list[dict[str, Any]]] = {}
    for row in new:
        values = column_values(row)
        if values is None:
            return None
        by_table.setdefault(_table(row), []).append(values)
        collected.inserted.append(row)
    for table, rows in by_table.items():
        n = len(shape)
        shape.append((table.name, "insert", (tuple(rows[0]), len(rows))))
        collected.tables.append(table)
        for i, values in enumerate(rows):
            parameters.update({f"p{n}_{i}_{c}": v for c, v in values.items()})
    for factory, values in session.info.pop(_DEFERRED, []):
        n = len(shape)
        shape.append(("", "deferred", factory))
        collected.tables.append(_NO_TABLE)
        parameters.update({f"p{n}_{key}": value for key, value in values.items()})
    return collected


async def write_changes(session: AsyncSession) -> None:
    """Write the session's pending changes: on PostgreSQL the lead's and conversations'
    column changes, new CRM rows and the deferred writes in one statement, unless something
    there is left to the ORM's flush (then everything goes as before).

    New CRM rows are written without reading their ids back and leave the session.
    """
    collected = _collect(session)
    if collected is None:
        await session.flush()
        await write_deferred(session)
        return
    if collected.shape:
        statement = _statement(tuple(collected.shape), collected.tables)
        await driver.rows(session, statement, collected.parameters)
        collected.written(session)
    if session.new or session.dirty or session.deleted:
        await session.flush()  # whatever else changed (none on the hot path)


async def run_with_changes(
    session: AsyncSession, factory: Factory, parameters: dict[str, Any]
) -> Sequence[Sequence[Any]]:
    """Run the statement `factory("")` (one that writes, and nothing pending refers to what
    it writes) with the session's pending changes as CTEs of it on PostgreSQL: one round
    trip for both (see `write_changes`); its rows. Otherwise: the changes first, by the
    ORM's flush."""
    collected = _collect(session)
    if collected is None:
        await session.flush()
        await write_deferred(session)
        return await driver.rows(session, _built(factory, ""), parameters)
    if not collected.shape:
        return await driver.rows(session, _built(factory, ""), parameters)
    statement = _with(factory, tuple(collected.shape), collected.tables)
    found = await driver.rows(session, statement, {**parameters, **collected.parameters})
    collected.written(session)
    return found
