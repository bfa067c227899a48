"""The engine's hint of which senders are known: bounded, the oldest forgotten first."""

from __future__ import annotations

from bot.conversation.engine import Senders
from bot.core.model import Channel


def test_senders_keep_the_latest_and_forget_the_first_added() -> None:
    senders = Senders(size=2)
    senders.add((Channel.WEBCHAT, "ana"))
    senders.add((Channel.TELEGRAM, "ana"))
    senders.add((Channel.WEBCHAT, "ana"))  # already held: nothing moves
    assert (Channel.WEBCHAT, "ana") in senders and (Channel.TELEGRAM, "ana") in senders
    senders.add((Channel.WEBCHAT, "beto"))
    assert (Channel.WEBCHAT, "ana") not in senders
    assert (Channel.TELEGRAM, "ana") in senders and (Channel.WEBCHAT, "beto") in senders
