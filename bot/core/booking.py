"""The booking dialogue: propose a time, confirm it, offer free slots, move or cancel.

Pure, like the policy it is part of. What it remembers between messages is the conversation's
`Dialogue` (`bot.core.dialogue`): the booking step waiting for an answer, or the appointment
"¿la cancelo?" asked about. The engine has already checked the calendar for the time the
message asks for (`SchedulingView.availability`).

The question pending decides how the next message is read. To "¿Te confirmo...?" and "¿Cancelo
tu cita...?" a yes is "sí", or the request itself said again ("sí, agéndala", "cancélala");
a no is "no"; a message naming another time asks for that time instead. To a list of free
slots the answer may pick one (a button, "la segunda", "la de las 4", "la del lunes"), say
yes (the only one offered is taken; of several, the bot asks which) or no (another time).
Anything else is not an answer: it is answered on its own, and the question asked again.
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
AFFIRM, DENY = "affirm", "deny"
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
    previous question, or the day of the slot just proposed ("no, mejor a las 6"). A choice
    among offered slots (a button, "la segunda", "la de las 4", a yes to the only one) names
    that slot exactly.
    """
    booking = dialogue.booking
    pending_intent = booking.intent if booking is not None else BOOK
    if (at := offered_slot(dialogue, choice)) is not None:
        return TimeRequest(pending_intent, _exactly(at), picked=True)
    if isinstance(booking, Choosing) and nlu.intent not in _OVERRIDING:
        slot = chosen_slot(booking, nlu, tz)
        if slot is not None:
            return TimeRequest(pending_intent, _exactly(slot.at), picked=True)
    mention = nlu.time
    if nlu.intent in (BOOK, RESCHEDULE):
        intent = nlu.intent
    elif booking is not None and _names_a_time(mention) and nlu.intent not in _OVERRIDING:
        intent = pending_intent
    else:
        return None
    if isinstance(booking, AskingTime):
        remembered = TimeMention(booking.day, booking.clock)
        mention = complete(remembered, mention or TimeMention(), now, tz)
    elif isinstance(booking, Confirming) and mention is not None and mention.day is None:
        proposed = TimeMention(booking.slot.at.astimezone(tz).date(), None)
        mention = complete(proposed, mention, now, tz)
    return TimeRequest(intent, mention)


def chosen_slot(booking: Choosing, nlu: NluResult, tz: ZoneInfo) -> Slot | None:
    """The offered slot the message picks, if it picks exactly one.

    By position ("la primera", "la última"), by hour and day ("la de las 4", "la del lunes"),
    or by saying yes when only one was offered.
    """
    matching = _matching(booking, nlu, tz)
    return matching[0] if len(matching) == 1 else None


def _matching(booking: Choosing, nlu: NluResult, tz: ZoneInfo) -> tuple[Slot, ...]:
    """The offered slots the message could mean (none, when it means none of them)."""
    options = booking.options
    if nlu.position is not None:
        index = nlu.position - 1 if nlu.position > 0 else len(options) + nlu.position
        return (options[index],) if 0 <= index < len(options) else ()
    mention = nlu.time
    if mention is not None and _names_a_time(mention):
        return tuple(
            slot
            for slot in options
            if (mention.clock is None or slot.at.astimezone(tz).time() == mention.clock)
            and (mention.day is None or slot.at.astimezone(tz).date() == mention.day)
        )
    if len(options) == 1 and says_yes(nlu, (BOOK, RESCHEDULE)):
        return options
    return ()


def says_yes(nlu: NluResult, request: tuple[str, ...]) -> bool:
    """A yes to a question about `request`: "sí", or the request said again ("sí, agéndala",
    "cancélala"). Either way, no other time than the one asked about."""
    return nlu.intent == AFFIRM or nlu.intent in request


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
    tz = schedule.tz
    new_time = _names_a_time(nlu.time)

    if dialogue.cancelling is not None:
        upcoming = schedule.upcoming
        # "sí, cancela la de mañana": about the appointment asked about, not another time.
        about_it = not new_time or (
            upcoming is not None and _same_moment(nlu.time, upcoming.at, tz)
        )
        if about_it and nlu.intent == DENY:
            return [Remember(done), Reply("schedule.cancel_kept")]
        if about_it and says_yes(nlu, (CANCEL,)):
            return [
                Remember(done),
                CancelAppointment(dialogue.cancelling),
                Reply("schedule.cancelled"),
            ]
    if isinstance(booking, Confirming):
        family = (BOOK, RESCHEDULE) if booking.intent == RESCHEDULE else (BOOK,)
        same_time = not new_time or _same_moment(nlu.time, booking.slot.at, tz)
        if says_yes(nlu, family) and same_time:
            if booking.slot.at <= now:
                # Proposed a while ago, and the moment has passed meanwhile.
                again = AskingTime(booking.intent, booking.kind)
                return [Remember(replace(done, booking=again)), Reply("schedule.passed")]
            return _book(done, booking.intent, booking.slot, booking.kind, schedule, now)
        if nlu.intent == DENY and not new_time:
            again = AskingTime(booking.intent, booking.kind)
            return [Remember(replace(done, booking=again)), Reply("schedule.ask_other_time")]
    if isinstance(booking, Choosing) and nlu.intent not in _OVERRIDING:
        button = offered_slot(dialogue, choice) is not None
        matching = () if button else _matching(booking, nlu, tz)
        picked = button or len(matching) == 1
        if not picked and nlu.intent == DENY and not new_time:
            again = AskingTime(booking.intent, booking.kind)
            return [Remember(replace(done, booking=again)), Reply("schedule.ask_other_time")]
        # "sí" to several slots, "la cuarta" of three, "la de las 13:00" of two: which one?
        unclear = (says_yes(nlu, (BOOK, RESCHEDULE)) and not new_time) or len(matching) > 1
        if not picked and (unclear or nlu.position is not None):
            return [Remember(dialogue), which_slot(booking, tz, now)]
    if isinstance(booking, AskingTime) and not new_time and nlu.intent in (AFFIRM, DENY):
        if nlu.intent == DENY:
            return [Remember(done), Reply("schedule.not_now")]
        return _ask_time(done, booking, TimeMention(booking.day, booking.clock), schedule, now)

    if nlu.intent == CANCEL:
        upcoming = schedule.upcoming
        if upcoming is None:
            return [Remember(done), Reply("schedule.nothing_booked")]
        values = {"fecha": spanish_moment(upcoming.at, tz, now)}
        return [
            Remember(replace(done, cancelling=upcoming.id)),
            Reply("schedule.cancel_confirm", values, buttons=YES_NO),
        ]

    request = time_request(dialogue, nlu, choice, now, tz)
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
        values = {"fecha": spanish_moment(slot.at, tz, now), "tipo": KIND_WORDS[kind]}
        return [
            Remember(replace(done, booking=Confirming(intent, kind, slot))),
            Reply("schedule.confirm", values, buttons=YES_NO),
        ]
    options = availability.alternatives if availability is not None else ()
    if not options:
        # Nothing free near that time: a person sorts it out.
        return [Remember(done), EnqueueHandoff("schedule.no_slots"), Reply("schedule.no_slots")]
    choosing = Choosing(intent, kind, options)
    values = {
        "fecha": spanish_moment(mention.when, tz, now),
        "opciones": _listing([spanish_moment(slot.at, tz, now) for slot in options]),
    }
    return [
        Remember(replace(done, booking=choosing)),
        Reply("schedule.unavailable", values, buttons=slot_buttons(choosing, tz, now)),
    ]


def repeat_question(dialogue: Dialogue, schedule: SchedulingView, now: datetime) -> list[Effect]:
    """The yes/no or which-one question still pending, asked again after the bot answered
    something else in between ("¿y cuánto cuesta?"), so that the next "sí" answers it."""
    tz = schedule.tz
    booking = dialogue.booking
    if isinstance(booking, Confirming):
        values = {
            "fecha": spanish_moment(booking.slot.at, tz, now),
            "tipo": KIND_WORDS[booking.kind],
        }
        return [Reply("schedule.confirm_again", values, buttons=YES_NO)]
    if isinstance(booking, Choosing):
        return [which_slot(booking, tz, now)]
    upcoming = schedule.upcoming
    if dialogue.cancelling is not None and upcoming is not None:
        values = {"fecha": spanish_moment(upcoming.at, tz, now)}
        return [Reply("schedule.cancel_again", values, buttons=YES_NO)]
    return []


def which_slot(booking: Choosing, tz: ZoneInfo, now: datetime) -> Reply:
    """ "¿Cuál prefieres: ...?", with a button for each slot offered."""
    labels = [spanish_moment(slot.at, tz, now) for slot in booking.options]
    return Reply(
        "schedule.which", {"opciones": _listing(labels)}, buttons=slot_buttons(booking, tz, now)
    )


def slot_buttons(booking: Choosing, tz: ZoneInfo, now: datetime) -> tuple[Button, ...]:
    labels = (spanish_moment(slot.at, tz, now) for slot in booking.options)
    return tuple(
        Button(label[:1].upper() + label[1:], slot_payload(slot))
        for label, slot in zip(labels, booking.options, strict=True)
    )


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


def _same_moment(mention: TimeMention | None, at: datetime, tz: ZoneInfo) -> bool:
    """The message names `at` again ("sí, mañana a las 5"), as far as it names anything."""
    if mention is None:
        return True
    local = at.astimezone(tz)
    return (mention.day is None or mention.day == local.date()) and (
        mention.clock is None or mention.clock == local.time()
    )


def _exactly(at: datetime) -> TimeMention:
    return TimeMention(at.date(), at.timetz(), at)


def _listing(labels: list[str]) -> str:
    """ "a, b o c" """
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " o " + labels[-1]
