"""The booking dialogue: propose a time, confirm it, offer free slots, move or cancel.

Pure, like the policy it is part of. What it remembers between messages lives in the
conversation's context:

- `booking`: {"stage": "time", "intent", "day", "clock"} while the day or hour is missing;
  {"stage": "confirm", "intent", "at", "agent"} while a proposal waits for yes or no;
  {"stage": "choose", "intent", "options": [[at, agent], ...]} after offering free slots.
- `cancel`: {"appointment": id} while "¿la cancelo?" waits for an answer.

Times in the context are ISO 8601 strings; the engine has already checked the calendar for
the time the message asks for (`SchedulingView.availability`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from bot.calendar import Availability, Slot, spanish_day, spanish_moment
from bot.channel import Button
from bot.effects import (
    BookAppointment,
    CancelAppointment,
    Effect,
    EnqueueHandoff,
    MoveAppointment,
    Remember,
    Reply,
)
from intents.model import NluResult, TimeMention
from intents.timeexpr import complete

BOOK, RESCHEDULE, CANCEL = "schedule.book", "schedule.reschedule", "schedule.cancel"
SLOT_PREFIX = "slot:"
YES_NO = (Button("Sí", "affirm"), Button("No", "deny"))
# Intents that outrank a pending booking question (intents.md's priority order).
_OVERRIDING = frozenset({"optout", "handoff.human", CANCEL})
KIND_WORDS = {"call": "la llamada", "meeting": "la reunión", "visit": "la visita"}


@dataclass(frozen=True, slots=True)
class AppointmentView:
    id: int
    at: datetime
    kind: str


@dataclass(frozen=True, slots=True)
class SchedulingView:
    """What the engine looked up for this message."""

    tz: ZoneInfo
    availability: Availability | None = None
    upcoming: AppointmentView | None = None
    kind: str | None = None  # call, meeting or visit, when the message says which


@dataclass(frozen=True, slots=True)
class TimeRequest:
    intent: str  # schedule.book or schedule.reschedule
    mention: TimeMention | None
    picked: bool = False  # chosen with a slot button: no need to confirm again


def time_request(
    context: Mapping[str, Any], nlu: NluResult, choice: str | None, now: datetime, tz: ZoneInfo
) -> TimeRequest | None:
    """The moment this message asks to meet at, if it is about booking at all.

    A message that only names an hour ("a las 5") completes the day remembered from the
    previous question; a slot button names its moment exactly.
    """
    booking = context.get("booking") or {}
    if (at := offered_slot(context, choice)) is not None:
        intent = booking.get("intent", BOOK)
        return TimeRequest(intent, TimeMention(at.date(), at.timetz(), at), picked=True)
    mention = nlu.time
    if booking.get("stage") == "choose" and mention is not None and mention.day is None:
        # "la de las 10" after a list of free slots: the offered slot at that hour.
        for at_text, _ in booking.get("options", []):
            at = datetime.fromisoformat(at_text)
            if mention.clock is not None and at.astimezone(tz).time() == mention.clock:
                return TimeRequest(booking.get("intent", BOOK), TimeMention(at.date(), None, at))
    if nlu.intent in (BOOK, RESCHEDULE):
        intent = nlu.intent
    elif booking and _names_a_time(mention) and nlu.intent not in _OVERRIDING:
        intent = booking.get("intent", BOOK)
    else:
        return None
    if booking.get("stage") == "time":
        mention = complete(_remembered(booking), mention or TimeMention(), now, tz)
    return TimeRequest(intent, mention)


def offered_slot(context: Mapping[str, Any], choice: str | None) -> datetime | None:
    """The moment of a slot button, when it is one of the slots offered in this dialogue.

    Anything else (a button from an older offer, a forged payload) is not a choice of a slot.
    """
    if not choice or not choice.startswith(SLOT_PREFIX):
        return None
    booking = context.get("booking") or {}
    if booking.get("stage") != "choose":
        return None
    try:
        at = datetime.fromisoformat(choice.removeprefix(SLOT_PREFIX))
        offered = [datetime.fromisoformat(option[0]) for option in booking.get("options", [])]
    except (TypeError, ValueError, IndexError):
        return None
    if at.tzinfo is None or at not in offered:
        return None
    return at


def decide_booking(
    context: Mapping[str, Any],
    nlu: NluResult,
    choice: str | None,
    schedule: SchedulingView,
    now: datetime,
    default_kind: str,
) -> list[Effect] | None:
    """The effects of a message in the booking dialogue, or None when it is not part of it."""
    memory = {key: value for key, value in context.items() if key not in ("booking", "cancel")}
    cancel = context.get("cancel")
    booking = context.get("booking") or {}

    if cancel and nlu.intent in ("affirm", "deny"):
        if nlu.intent == "deny":
            return [Remember(memory), Reply("schedule.cancel_kept")]
        return [
            Remember(memory),
            CancelAppointment(int(cancel["appointment"])),
            Reply("schedule.cancelled"),
        ]
    if booking.get("stage") == "confirm" and nlu.intent in ("affirm", "deny"):
        if nlu.intent == "deny":
            again = {
                "stage": "time",
                "intent": booking["intent"],
                "kind": booking.get("kind", default_kind),
                "day": None,
                "clock": None,
            }
            return [Remember({**memory, "booking": again}), Reply("schedule.ask_other_time")]
        slot = Slot(datetime.fromisoformat(booking["at"]), booking.get("agent"))
        return _book(
            memory, booking["intent"], slot, booking.get("kind", default_kind), schedule, now
        )

    if nlu.intent == CANCEL:
        upcoming = schedule.upcoming
        if upcoming is None:
            return [Remember(memory), Reply("schedule.nothing_booked")]
        values = {"fecha": spanish_moment(upcoming.at, schedule.tz, now)}
        return [
            Remember({**memory, "cancel": {"appointment": upcoming.id}}),
            Reply("schedule.cancel_confirm", values, buttons=YES_NO),
        ]

    request = time_request(context, nlu, choice, now, schedule.tz)
    if request is None:
        return None
    intent = request.intent if schedule.upcoming is not None else BOOK
    # What the appointment is, as said now or earlier in the dialogue ("¿nos vemos el
    # viernes?" ... "a las 5").
    kind = schedule.kind or booking.get("kind") or default_kind
    mention = request.mention
    if mention is None or mention.when is None:
        return _ask_time(memory, intent, kind, mention, schedule, now)

    availability = schedule.availability
    if availability is not None and availability.free is not None:
        slot = availability.free
        if request.picked:
            return _book(memory, intent, slot, kind, schedule, now)
        proposal = {
            "stage": "confirm",
            "intent": intent,
            "at": slot.at.isoformat(),
            "agent": slot.agent_id,
            "kind": kind,
        }
        values = {"fecha": spanish_moment(slot.at, schedule.tz, now), "tipo": KIND_WORDS[kind]}
        return [
            Remember({**memory, "booking": proposal}),
            Reply("schedule.confirm", values, buttons=YES_NO),
        ]
    options = availability.alternatives if availability is not None else ()
    if not options:
        # Nothing free near that time: a person sorts it out.
        return [Remember(memory), EnqueueHandoff("schedule.no_slots"), Reply("schedule.no_slots")]
    choose = {
        "stage": "choose",
        "intent": intent,
        "kind": kind,
        "options": [[slot.at.isoformat(), slot.agent_id] for slot in options],
    }
    labels = [spanish_moment(slot.at, schedule.tz, now) for slot in options]
    buttons = tuple(
        Button(label[:1].upper() + label[1:], f"{SLOT_PREFIX}{slot.at.isoformat()}")
        for label, slot in zip(labels, options, strict=True)
    )
    values = {
        "fecha": spanish_moment(mention.when, schedule.tz, now),
        "opciones": _listing(labels),
    }
    return [
        Remember({**memory, "booking": choose}),
        Reply("schedule.unavailable", values, buttons=buttons),
    ]


def _book(
    memory: dict[str, Any],
    intent: str,
    slot: Slot,
    kind: str,
    schedule: SchedulingView,
    now: datetime,
) -> list[Effect]:
    values = {"fecha": spanish_moment(slot.at, schedule.tz, now), "tipo": KIND_WORDS[kind]}
    if intent == RESCHEDULE and schedule.upcoming is not None:
        moved = Reply("schedule.moved", values)
        return [
            Remember(memory),
            MoveAppointment(schedule.upcoming.id, slot.at, slot.agent_id, moved),
        ]
    booked = Reply("schedule.booked", values)
    return [Remember(memory), BookAppointment(slot.at, slot.agent_id, kind, booked)]


def _ask_time(
    memory: dict[str, Any],
    intent: str,
    kind: str,
    mention: TimeMention | None,
    schedule: SchedulingView,
    now: datetime,
) -> list[Effect]:
    day = mention.day if mention else None
    clock = mention.clock if mention else None
    waiting = {
        "stage": "time",
        "intent": intent,
        "kind": kind,
        "day": day.isoformat() if day else None,
        "clock": clock.isoformat(timespec="minutes") if clock else None,
    }
    if day is not None:
        today = now.astimezone(schedule.tz).date()
        values = {"dia": spanish_day(day, today)}
        return [Remember({**memory, "booking": waiting}), Reply("schedule.ask_hour", values)]
    return [Remember({**memory, "booking": waiting}), Reply("schedule.ask_time")]


def _remembered(booking: Mapping[str, Any]) -> TimeMention:
    day = date.fromisoformat(booking["day"]) if booking.get("day") else None
    clock = time.fromisoformat(booking["clock"]) if booking.get("clock") else None
    return TimeMention(day, clock)


def _names_a_time(mention: TimeMention | None) -> bool:
    return mention is not None and (mention.day is not None or mention.clock is not None)


def _listing(labels: list[str]) -> str:
    """ "a, b o c" """
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " o " + labels[-1]
