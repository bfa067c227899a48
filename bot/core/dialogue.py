"""What a conversation remembers between two messages, typed.

Stored as JSON in the conversation's `context`; `Dialogue.from_context` reads what an earlier
version wrote too, and drops what it cannot read rather than failing the conversation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from typing import Any

from bot.core.slots import Slot


@dataclass(frozen=True, slots=True)
class AskingTime:
    """The lead wants to meet; the day or the hour is still missing (the next message may
    complete it: "el viernes" ... "a las 5")."""

    intent: str  # schedule.book or schedule.reschedule
    kind: str  # call | meeting | visit
    day: date | None = None
    clock: time | None = None


@dataclass(frozen=True, slots=True)
class Confirming:
    """A free slot was proposed ("¿te confirmo la llamada mañana a las 17:00?")."""

    intent: str
    kind: str
    slot: Slot


@dataclass(frozen=True, slots=True)
class Choosing:
    """The time asked for was not free; these slots were offered instead."""

    intent: str
    kind: str
    options: tuple[Slot, ...]


Booking = AskingTime | Confirming | Choosing


@dataclass(frozen=True, slots=True)
class Dialogue:
    misses: int = 0  # messages in a row the bot did not understand
    booking: Booking | None = None
    cancelling: int | None = None  # the appointment "¿la cancelo?" asked about

    def understood(self) -> Dialogue:
        """The question pending stays; the count of misses starts again."""
        return replace(self, misses=0)

    def without_question(self) -> Dialogue:
        """Nothing pending any more: the booking or cancelling dialogue ended."""
        return replace(self, booking=None, cancelling=None)

    @classmethod
    def from_context(cls, data: Mapping[str, Any]) -> Dialogue:
        misses = data.get("misses", 0)
        cancel = data.get("cancel")
        cancelling = cancel.get("appointment") if isinstance(cancel, Mapping) else None
        return cls(
            misses=misses if isinstance(misses, int) else 0,
            booking=_booking(data.get("booking")),
            cancelling=cancelling if isinstance(cancelling, int) else None,
        )

    def to_context(self) -> dict[str, Any]:
        data: dict[str, Any] = {"misses": self.misses}
        if self.cancelling is not None:
            data["cancel"] = {"appointment": self.cancelling}
        match self.booking:
            case AskingTime(intent, kind, day, clock):
                data["booking"] = {
                    "stage": "time",
                    "intent": intent,
                    "kind": kind,
                    "day": day.isoformat() if day else None,
                    "clock": clock.isoformat(timespec="minutes") if clock else None,
                }
            case Confirming(intent, kind, slot):
                data["booking"] = {
                    "stage": "confirm",
                    "intent": intent,
                    "kind": kind,
                    "at": slot.at.isoformat(),
                    "agent": slot.agent_id,
                }
            case Choosing(intent, kind, options):
                data["booking"] = {
                    "stage": "choose",
                    "intent": intent,
                    "kind": kind,
                    "options": [[slot.at.isoformat(), slot.agent_id] for slot in options],
                }
        return data


def _booking(data: object, default_kind: str = "call") -> Booking | None:
    if not isinstance(data, Mapping):
        return None
    intent = data.get("intent", "schedule.book")
    kind = data.get("kind") or default_kind
    try:
        match data.get("stage"):
            case "time":
                day, clock = data.get("day"), data.get("clock")
                return AskingTime(
                    intent,
                    kind,
                    date.fromisoformat(day) if day else None,
                    time.fromisoformat(clock) if clock else None,
                )
            case "confirm":
                return Confirming(
                    intent, kind, Slot(datetime.fromisoformat(data["at"]), data.get("agent"))
                )
            case "choose":
                options = tuple(
                    Slot(datetime.fromisoformat(at), agent) for at, agent in data["options"]
                )
                return Choosing(intent, kind, options)
    except (KeyError, TypeError, ValueError):
        return None
    return None
