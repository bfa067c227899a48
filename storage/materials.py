"""Queries of the materials library: the materials, and the bytes of uploaded files."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.materials import Material, MaterialKind
from storage.models import MaterialFile, MaterialRow


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
