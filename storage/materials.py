"""Queries of the materials library: the materials, and the bytes of uploaded files.

The active materials are read on every reply that may offer one, and change a few times a
month: each process keeps them (`ActiveMaterials`) until a commit changes a material. Sessions
made by `storage.db.Database` are `WatchedSession`s, which notice such a commit whatever made
it (a repository method, an attribute set on a row, a bulk UPDATE), so no caller has to
remember to say so.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from bot.core.materials import Material, MaterialKind
from storage import folded
from storage.models import MaterialFile, MaterialRow

KEPT = "active_materials"  # session.info: the process's ActiveMaterials
_CHANGED = "materials_changed"  # session.info: this transaction wrote a material


class ActiveMaterials:
    """The active materials, kept between transactions.

    A commit that changed a material forgets them in this process at once and calls
    `on_change`, which the app sends to the other processes (live signals: they call
    `forget`). Whatever happens they are read again after `max_age` seconds, so a signal lost
    while the relay reconnects, or an edit made outside the service, shows within that time.
    """

    def __init__(self, max_age: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.on_change: Callable[[], None] | None = None
        self._clock = clock
        self._kept: tuple[Material, ...] | None = None
        self._read_at = 0.0
        self._generation = 0  # moves on each `forget`: a read that overlapped one is not kept

    async def get(self, read: Callable[[], Awaitable[list[Material]]]) -> list[Material]:
        if self._kept is not None and self._clock() - self._read_at < self.max_age:
            return list(self._kept)
        generation = self._generation
        materials = await read()
        if generation == self._generation:
            self._kept, self._read_at = tuple(materials), self._clock()
        return materials

    def forget(self) -> None:
        """Read them again next time (a material changed here or in another process)."""
        self._generation += 1
        self._kept = None

    def changed(self) -> None:
        self.forget()
        if self.on_change is not None:
            self.on_change()


class WatchedSession(Session):
    """The service's sessions: a commit that wrote a material forgets the kept ones."""


@event.listens_for(WatchedSession, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    # Still the state before the flush here: what it wrote.
    if folded.holds(session, MaterialRow):
        session.info[_CHANGED] = True


@event.listens_for(WatchedSession, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    if (state.is_update or state.is_delete or state.is_insert) and any(
        mapper.class_ is MaterialRow for mapper in state.all_mappers
    ):
        state.session.info[_CHANGED] = True


@event.listens_for(WatchedSession, "after_commit")
def _committed(session: Session) -> None:
    kept = session.info.get(KEPT)
    if session.info.pop(_CHANGED, False) and kept is not None:
        kept.changed()


@event.listens_for(WatchedSession, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    # The whole transaction, not a savepoint: rolled back, nothing changed (after a commit,
    # `_committed` has taken the mark already). A savepoint rolled back keeps it: forgetting
    # once too often costs one read.
    if transaction.parent is None:
        session.info.pop(_CHANGED, None)


def as_material(row: MaterialRow) -> Material:
    return Material(
        id=row.id,
        key=row.key,
        title=row.title,
        kind=MaterialKind(row.kind),
        text=row.text,
        tags=tuple(str(tag) for tag in row.tags or ()),
        active=row.active,
        token=row.token,
        url=row.url,
        file_name=row.file_name,
        content_type=row.content_type,
    )


class Materials:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> list[Material]:
        """Every material, active first, then by title."""
        rows = await self.session.scalars(
            select(MaterialRow).order_by(MaterialRow.active.desc(), MaterialRow.title)
        )
        return [as_material(row) for row in rows]

    async def active(self) -> list[Material]:
        """The active materials, by id: those the process keeps, unless this transaction
        has changed one (it sees its own writes)."""
        kept = self.session.info.get(KEPT)
        if kept is None or self.session.info.get(_CHANGED):
            return await self._read_active()
        return await kept.get(self._read_active)

    async def _read_active(self) -> list[Material]:
        # Nothing pending in the session changes materials: no autoflush (see `storage.folded`).
        rows = await self.session.scalars(
            select(MaterialRow).where(MaterialRow.active).order_by(MaterialRow.id),
            execution_options={"autoflush": False},
        )
        return [as_material(row) for row in rows]

    async def get(self, material_id: int) -> MaterialRow | None:
        return await self.session.get(MaterialRow, material_id)

    async def by_key(self, key: str) -> MaterialRow | None:
        return await self.session.scalar(select(MaterialRow).where(MaterialRow.key == key))

    async def by_ids(self, ids: Sequence[int]) -> list[Material]:
        """The materials with these ids, in the order given (missing ones left out)."""
        if not ids:
            return []
        rows = await self.session.scalars(select(MaterialRow).where(MaterialRow.id.in_(ids)))
        found = {row.id: as_material(row) for row in rows}
        return [found[i] for i in ids if i in found]

    async def by_token(self, token: str) -> MaterialRow | None:
        return await self.session.scalar(select(MaterialRow).where(MaterialRow.token == token))

    async def add(self, row: MaterialRow) -> MaterialRow:
        self.session.add(row)
        await self.session.flush()
        return row

    async def store_file(self, material_id: int, data: bytes) -> None:
        """Keep `data` as the material's file, replacing the one it had."""
        stored = await self.session.get(MaterialFile, material_id)
        if stored is None:
            self.session.add(MaterialFile(material_id=material_id, data=data))
        else:
            stored.data = data
        await self.session.flush()

    async def file(self, material_id: int) -> bytes | None:
        return await self.session.scalar(
            select(MaterialFile.data).where(MaterialFile.material_id == material_id)
        )
