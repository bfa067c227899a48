"""The booking dialogue: propose a time, confirm it, offer free slots, move or cancel.

Pure, like the policy it is part of. What it remembers between messages is the conversation's
`Dialogue` (`bot.core.dialogue`): the booking step waiting for an answer, or the appointment
"¿la cancelo?" asked about. The engine has already checked the calendar for the time the
message asks for (`SchedulingView.availability`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.core.channel import Button
from bot.core.dialogue import AskingTime, Booking, Choosing, Confirming, Dialogue
from bot.core.effects import (
    BookAppointment,
    CancelAppointment,
    Effect,
    EnqueueHandoff,
    MoveAppointment,
    Remember,
    Reply,
)
from bot.core.slots import Availability, Slot, spanish_day, spanish_moment
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


def slot_payload(slot: Slot) -> str:
    return f"{SLOT_PREFIX}{slot.at.isoformat()}"


def offered_slot(dialogue: Dialogue, choice: str | None) -> datetime | None:
    """The moment of a slot button, when it is one of the slots offered in this dialogue.

    Anything else (a button from an older offer, a forged payload) is not a choice of a slot.
    """
    booking = dialogue.booking
    if not choice or not choice.startswith(SLOT_PREFIX) or not isinstance(booking, Choosing):
        return None
    try:
        at = datetime.fromisoformat(choice.removeprefix(SLOT_PREFIX))
    except ValueError:
        return None
    if at.tzinfo is None or all(slot.at != at for slot in booking.options):
        return None
    return at


def time_request(
    dialogue: Dialogue, nlu: NluResult, choice: str | None, now: datetime, tz: ZoneInfo
) -> TimeRequest | None:
    """The moment this message asks to meet at, if it is about booking at all.

    A message that only names an hour ("a las 5") completes the day remembered from the
    previous question; a slot button names its moment exactly.
    """
    booking = dialogue.booking
    pending_intent = booking.intent if booking is not None else BOOK
    if (at := offered_slot(dialogue, choice)) is not None:
        return TimeRequest(pending_intent, TimeMention(at.date(), at.timetz(), at), picked=True)
    mention = nlu.time
    if isinstance(booking, Choosing) and mention is not None and mention.day is None:
        # "la de las 10" after a list of free slots: the offered slot at that hour.
        for slot in booking.options:
            if mention.clock is not None and slot.at.astimezone(tz).time() == mention.clock:
                return TimeRequest(pending_intent, TimeMention(slot.at.date(), None, slot.at))
    if nlu.intent in (BOOK, RESCHEDULE):
        intent = nlu.intent
    elif booking is not None and _names_a_time(mention) and nlu.intent not in _OVERRIDING:
        intent = pending_intent
    else:
        return None
    if isinstance(booking, AskingTime):
        remembered = TimeMention(booking.day, booking.clock)
        mention = complete(remembered, mention or TimeMention(), now, tz)
    return TimeRequest(intent, mention)


def decide_booking(
    dialogue: Dialogue,
    nlu: NluResult,
    choice: str | None,
    schedule: SchedulingView,
    now: datetime,
    default_kind: str,
) -> list[Effect] | None:
    """The effects of a message in the booking dialogue, or None when it is not part of it."""
    done = dialogue.without_question()
    booking = dialogue.booking

    if dialogue.cancelling is not None and nlu.intent in ("affirm", "deny"):
        if nlu.intent == "deny":
            return [Remember(done), Reply("schedule.cancel_kept")]
        return [
            Remember(done),
            CancelAppointment(dialogue.cancelling),
            Reply("schedule.cancelled"),
        ]
    if isinstance(booking, Confirming) and nlu.intent in ("affirm", "deny"):
        if nlu.intent == "deny":
            again = AskingTime(booking.intent, booking.kind)
            return [Remember(replace(done, booking=again)), Reply("schedule.ask_other_time")]
        return _book(done, booking.intent, booking.slot, booking.kind, schedule, now)

    if nlu.intent == CANCEL:
        upcoming = schedule.upcoming
        if upcoming is None:
            return [Remember(done), Reply("schedule.nothing_booked")]
        values = {"fecha": spanish_moment(upcoming.at, schedule.tz, now)}
        return [
            Remember(replace(done, cancelling=upcoming.id)),
            Reply("schedule.cancel_confirm", values, buttons=YES_NO),
        ]

    request = time_request(dialogue, nlu, choice, now, schedule.tz)
    if request is None:
        return None
    intent = request.intent if schedule.upcoming is not None else BOOK
    # What the appointment is, as said now or earlier in the dialogue ("¿nos vemos el
    # viernes?" ... "a las 5").
    kind = schedule.kind or (booking.kind if booking is not None else default_kind)
    mention = request.mention
    if mention is None or mention.when is None:
        return _ask_time(done, AskingTime(intent, kind), mention, schedule, now)

    availability = schedule.availability
    if availability is not None and availability.free is not None:
        slot = availability.free
        if request.picked:
            return _book(done, intent, slot, kind, schedule, now)
        values = {"fecha": spanish_moment(slot.at, schedule.tz, now), "tipo": KIND_WORDS[kind]}
        return [
            Remember(replace(done, booking=Confirming(intent, kind, slot))),
            Reply("schedule.confirm", values, buttons=YES_NO),
        ]
    options = availability.alternatives if availability is not None else ()
    if not options:
        # Nothing free near that time: a person sorts it out.
        return [Remember(done), EnqueueHandoff("schedule.no_slots"), Reply("schedule.no_slots")]
    labels = [spanish_moment(slot.at, schedule.tz, now) for slot in options]
    buttons = tuple(
        Button(label[:1].upper() + label[1:], slot_payload(slot))
        for label, slot in zip(labels, options, strict=True)
    )
    values = {
        "fecha": spanish_moment(mention.when, schedule.tz, now),
        "opciones": _listing(labels),
    }
    return [
        Remember(replace(done, booking=Choosing(intent, kind, options))),
        Reply("schedule.unavailable", values, buttons=buttons),
    ]


def asking_again(booking: Booking | None, default_kind: str) -> AskingTime:
    """What to remember after "that slot was just taken": ask for a time again, for the same
    kind of appointment."""
    if booking is None:
        return AskingTime(BOOK, default_kind)
    return AskingTime(booking.intent, booking.kind)


def _book(
    done: Dialogue, intent: str, slot: Slot, kind: str, schedule: SchedulingView, now: datetime
) -> list[Effect]:
    values = {"fecha": spanish_moment(slot.at, schedule.tz, now), "tipo": KIND_WORDS[kind]}
    if intent == RESCHEDULE and schedule.upcoming is not None:
        moved = Reply("schedule.moved", values)
        return [
            Remember(done),
            MoveAppointment(schedule.upcoming.id, slot.at, slot.agent_id, moved),
        ]
    booked = Reply("schedule.booked", values)
    return [Remember(done), BookAppointment(slot.at, slot.agent_id, kind, booked)]


def _ask_time(
    done: Dialogue,
    waiting: AskingTime,
    mention: TimeMention | None,
    schedule: SchedulingView,
    now: datetime,
) -> list[Effect]:
    day = mention.day if mention else None
    clock = mention.clock if mention else None
    remember = Remember(replace(done, booking=replace(waiting, day=day, clock=clock)))
    if day is not None:
        today = now.astimezone(schedule.tz).date()
        return [remember, Reply("schedule.ask_hour", {"dia": spanish_day(day, today)})]
    return [remember, Reply("schedule.ask_time")]


def _names_a_time(mention: TimeMention | None) -> bool:
    return mention is not None and (mention.day is not None or mention.clock is not None)


def _listing(labels: list[str]) -> str:
    """ "a, b o c" """
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " o " + labels[-1]
