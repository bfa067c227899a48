"""Reading a conversation back, as a chat page shows it."""

from __future__ import annotations

from bot.core.channel import ChatLine
from bot.core.model import Channel
from storage.db import Database
from storage.uow import UnitOfWork


class Transcripts:
    """`bot.core.channel.Transcript` on the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def lines(
        self, channel: Channel, sender_id: str, *, after_id: int, limit: int
    ) -> list[ChatLine]:
        return await self._read(channel, sender_id, after_id, limit, to_lead=False)

    async def sent_to_lead(
        self, channel: Channel, sender_id: str, *, after_id: int, limit: int
    ) -> list[ChatLine]:
        return await self._read(channel, sender_id, after_id, limit, to_lead=True)

    async def visible_after(
        self, channel: Channel, sender_id: str, *, after_id: int, limit: int
    ) -> list[ChatLine]:
        return await self._read(channel, sender_id, after_id, limit, to_lead=True, with_lead=True)

    async def _read(
        self,
        channel: Channel,
        sender_id: str,
        after_id: int,
        limit: int,
        *,
        to_lead: bool,
        with_lead: bool = False,
    ) -> list[ChatLine]:
        async with UnitOfWork(self.db) as uow:
            rows = await uow.transcripts.lines(
                channel,
                sender_id,
                after_id=after_id,
                limit=limit,
                to_lead=to_lead,
                with_lead=with_lead,
            )
        return [
            ChatLine(id=id_, author=author, text=text, at=at, channel_message_id=key)
            for id_, author, text, at, key in rows
        ]
