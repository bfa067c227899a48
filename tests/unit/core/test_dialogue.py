"""What a conversation remembers, to and from its stored JSON."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from bot.core.dialogue import AskingTime, Choosing, Confirming, Dialogue
from bot.core.slots import Slot

MX = ZoneInfo("America/Mexico_City")
AT = datetime(2026, 11, 27, 17, 0, tzinfo=MX)


@pytest.mark.parametrize(
    "dialogue",
    [
        Dialogue(),
        Dialogue(misses=1),
        Dialogue(cancelling=7),
        Dialogue(booking=AskingTime("schedule.book", "visit", date(2026, 11, 27), None)),
        Dialogue(booking=AskingTime("schedule.reschedule", "call", None, time(17, 0))),
        Dialogue(booking=Confirming("schedule.book", "meeting", Slot(AT, 3))),
        Dialogue(booking=Choosing("schedule.book", "call", (Slot(AT, None), Slot(AT, 2)))),
        Dialogue(clarifying=("info.pricing", "info.payment_options")),
        Dialogue(booking=Confirming("schedule.book", "call", Slot(AT, 3)), asked_at=AT),
    ],
)
def test_round_trip(dialogue: Dialogue) -> None:
    assert Dialogue.from_context(dialogue.to_context()) == dialogue


def test_what_an_earlier_version_stored_is_read() -> None:
    # Before the kind was remembered, a pending question had none: it is a call.
    stored = {"misses": 0, "booking": {"stage": "time", "intent": "schedule.book", "day": None}}
    assert Dialogue.from_context(stored).booking == AskingTime("schedule.book", "call")


@pytest.mark.parametrize(
    "stored",
    [
        {"booking": {"stage": "confirm", "at": "not a date"}},
        {"booking": {"stage": "choose", "options": [["2026-11-27T17:00:00-06:00"]]}},
        {"booking": "confirm"},
        {"misses": "two", "cancel": {"appointment": "7"}},
        {"clarify": ["info.pricing"]},
        {"clarify": "info.pricing", "asked_at": "yesterday"},
        {"asked_at": "2026-11-27T17:00:00"},  # no time zone: not a moment
    ],
)
def test_what_cannot_be_read_is_forgotten_not_fatal(stored: dict[str, object]) -> None:
    assert Dialogue.from_context(stored) == Dialogue()


def test_a_question_is_pending_until_answered() -> None:
    asking = Dialogue(misses=1, clarifying=("info.pricing", "info.payment_options"), asked_at=AT)
    assert asking.pending
    assert not asking.without_question().pending
    assert asking.without_question() == Dialogue(misses=1)
