"""Small builders for test data."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from bot.channel import InboundMessage
from storage.models import Channel

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
