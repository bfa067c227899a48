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
    """The question the bot is waiting for an answer to, if any, and the count of misses.

    A pending question decides how the next message is read: "sí" confirms the slot proposed,
    "la segunda" picks an offered slot, "el precio" says which of two readings was meant.
    """

    misses: int = 0  # messages in a row the bot did not understand
    booking: Booking | None = None
    cancelling: int | None = None  # the appointment "¿la cancelo?" asked about
    # "¿Te refieres a X o a Y?": the two intents the last message could have meant.
    clarifying: tuple[str, str] | None = None
    # "¿Te comparto un caso de tu industria?": the materials offered (ids), sent on "sí".
    offering: tuple[int, ...] | None = None
    # When the bot last asked or kept the question pending; a follow-up sent after that moment
    # changed the subject, and the question is no longer the one a "sí" answers.
    asked_at: datetime | None = None

    @property
    def pending(self) -> bool:
        """A question waits for its answer."""
        return (
            self.booking is not None
            or self.cancelling is not None
            or bool(self.clarifying)
            or bool(self.offering)
        )

    def understood(self) -> Dialogue:
        """The question pending stays; the count of misses starts again."""
        return replace(self, misses=0)

    def without_question(self) -> Dialogue:
        """Nothing pending any more: the question was answered or has lapsed."""
        return replace(
            self, booking=None, cancelling=None, clarifying=None, offering=None, asked_at=None
        )

    @classmethod
    def from_context(cls, data: Mapping[str, Any]) -> Dialogue:
        misses = data.get("misses", 0)
        cancel = data.get("cancel")
        cancelling = cancel.get("appointment") if isinstance(cancel, Mapping) else None
        return cls(
            misses=misses if isinstance(misses, int) else 0,
            booking=_booking(data.get("booking")),
            cancelling=cancelling if isinstance(cancelling, int) else None,
            clarifying=_pair(data.get("clarify")),
            offering=_ids(data.get("offer")),
            asked_at=_moment(data.get("asked_at")),
        )

    def to_context(self) -> dict[str, Any]:
        data: dict[str, Any] = {"misses": self.misses}
        if self.cancelling is not None:
            data["cancel"] = {"appointment": self.cancelling}
        if self.clarifying is not None:
            data["clarify"] = list(self.clarifying)
        if self.offering:
            data["offer"] = list(self.offering)
        if self.asked_at is not None:
            data["asked_at"] = self.asked_at.isoformat()
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


def _pair(data: object) -> tuple[str, str] | None:
    if isinstance(data, list) and len(data) == 2 and all(isinstance(x, str) for x in data):
        return (data[0], data[1])
    return None


def _ids(data: object) -> tuple[int, ...] | None:
    if isinstance(data, list) and data and all(type(x) is int for x in data):
        return tuple(data)
    return None


def _moment(data: object) -> datetime | None:
    if not isinstance(data, str):
        return None
    try:
        moment = datetime.fromisoformat(data)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


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
