"""Small builders and helpers the tests share."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot.core.channel import InboundMessage
from bot.core.model import Channel
from bot.web.keys import DISPATCHER
from storage.db import Database
from storage.models import Message, OutboxItem

_ids = itertools.count(1)


def incoming(
    text: str,
    *,
    sender: str = "session-0001",
    message_id: str | None = None,
    channel: Channel = Channel.WEBCHAT,
    inline: bool = True,
    **extra: Any,
) -> InboundMessage:
    """A message from a lead; each call gets a fresh channel message id unless one is given."""
    return InboundMessage(
        channel=channel,
        sender_id=sender,
        message_id=message_id or f"{sender}:m{next(_ids)}",
        text=text,
        sent_at=datetime.now(UTC),
        reply_inline=inline,
        **extra,
    )


async def send_due(client: TestClient[Any, Any]) -> None:
    """Send what the outbox has due now, and wait for the sends."""
    await client.app[DISPATCHER].drain()


async def outbox_rows(db: Database) -> list[OutboxItem]:
    async with db.session() as session:
        found = await session.execute(select(OutboxItem).order_by(OutboxItem.id))
        return list(found.scalars())


async def make_outbox_due(db: Database) -> None:
    """Skip every backoff wait: retries are due now (the schedule is tested on its own)."""
    async with db.session() as session:
        await session.execute(
            update(OutboxItem).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()


def message_of(row: OutboxItem) -> Message:
    """The message an outbox row sends to a lead (rows to agents have none)."""
    assert row.message is not None, f"outbox row {row.id} carries no message to a lead"
    return row.message
