"""A scriptable `Sender` for outbox tests: records what it was asked to send."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from bot.core.channel import Channel, OutboundMessage, SendReceipt
from bot.core.errors import SendError


class ScriptedSender:
    """Answers each send with the next scripted outcome (an exception to raise, or success).

    Every attempt is recorded in `attempts`; successful ones also in `sent`.
    """

    def __init__(
        self,
        channel: Channel = Channel.WEBCHAT,
        outcomes: Iterable[SendError | None] = (),
        *,
        delay: float = 0.0,
    ) -> None:
        self.channel = channel
        self.outcomes = list(outcomes)
        self.delay = delay
        self.attempts: list[OutboundMessage] = []
        self.sent: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> SendReceipt:
        self.attempts.append(message)
        if self.delay:
            await asyncio.sleep(self.delay)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        self.sent.append(message)
        return SendReceipt(channel_message_id=f"ext-{message.key}-{len(self.attempts)}")
