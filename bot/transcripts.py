"""Reading a conversation back, as a chat page shows it."""

from __future__ import annotations

from sqlalchemy import Select, select

from bot.channel import ChatLine
from storage.db import Database
from storage.models import (
    Author,
    Channel,
    ChannelIdentity,
    Conversation,
    DeliveryStatus,
    Direction,
    Message,
)

_WENT_OUT = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ)


class Transcripts:
    """`bot.channel.Transcript` on the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def lines(
        self, channel: Channel, sender_id: str, *, after_id: int, limit: int
    ) -> list[ChatLine]:
        statement = self._of(channel, sender_id, after_id)
        if after_id:
            return await self._fetch(statement.order_by(Message.id).limit(limit))
        latest = await self._fetch(statement.order_by(Message.id.desc()).limit(limit))
        return latest[::-1]

    async def sent_to_lead(
        self, channel: Channel, sender_id: str, *, after_id: int, limit: int
    ) -> list[ChatLine]:
        statement = self._of(channel, sender_id, after_id).where(
            Message.direction == Direction.OUT, Message.status.in_(_WENT_OUT)
        )
        return await self._fetch(statement.order_by(Message.id).limit(limit))

    @staticmethod
    def _of(channel: Channel, sender_id: str, after_id: int) -> Select[int, Author, str]:
        return (
            select(Message.id, Message.author, Message.text)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
            .where(
                ChannelIdentity.channel == channel,
                ChannelIdentity.external_id == sender_id,
                Message.id > after_id,
            )
        )

    async def _fetch(self, statement: Select[int, Author, str]) -> list[ChatLine]:
        async with self.db.session() as session:
            rows = (await session.execute(statement)).all()
        return [ChatLine(id=row[0], author=str(row[1]), text=row[2]) for row in rows]
