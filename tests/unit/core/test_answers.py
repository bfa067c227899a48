"""Every question the bot asks, against the answers prospects give to it.

The questions: confirm a booking ("¿Te confirmo la llamada...?"), confirm a move, confirm a
cancellation, choose among free slots (several, or one), a day without an hour ("¿A qué hora?"),
and "¿Te refieres a X o a Y?". The answers: yes, no, yes with the request said again, a choice by
position or by hour, a new time instead, a question back, opt-out, a person. Each row is one turn
through `policy.decide`, with the calendar all free (as the engine would look it up).
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.core.booking import AppointmentView, SchedulingView, time_request
from bot.core.dialogue import AskingTime, Choosing, Confirming, Dialogue
from bot.core.effects import (
    AskWhich,
    BookAppointment,
    CancelAppointment,
    Effect,
    EnqueueHandoff,
    MoveAppointment,
    OptOut,
    Remember,
    Reply,
)
from bot.core.model import ConversationState
from bot.core.policy import ConversationView, InboundView, LeadView, Rules, decide
from bot.core.slots import Availability, Slot
from intents.model import NluResult, TimeMention

MX = ZoneInfo("America/Mexico_City")
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=MX)  # Thursday
FRIDAY = date(2026, 11, 27)
FRIDAY_5 = datetime(2026, 11, 27, 17, 0, tzinfo=MX)
FRIDAY_430 = datetime(2026, 11, 27, 16, 30, tzinfo=MX)
FRIDAY_530 = datetime(2026, 11, 27, 17, 30, tzinfo=MX)
MONDAY = date(2026, 11, 30)
MONDAY_9 = datetime(2026, 11, 30, 9, 0, tzinfo=MX)
MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=MX)
TUESDAY_11 = datetime(2026, 12, 1, 11, 0, tzinfo=MX)
BOOKED = AppointmentView(3, MONDAY_10, "call")
PAIR = ("info.pricing", "info.payment_options")

# The questions, as the conversation remembers them, and the lead's next appointment.
QUESTIONS: dict[str, tuple[Dialogue, AppointmentView | None]] = {
    "confirm": (Dialogue(booking=Confirming("schedule.book", "call", Slot(FRIDAY_5, 7))), None),
    "confirm move": (
        Dialogue(booking=Confirming("schedule.reschedule", "call", Slot(FRIDAY_5, 7))),
        BOOKED,
    ),
    "cancel": (Dialogue(cancelling=3), BOOKED),
    "choose of 3": (
        Dialogue(
            booking=Choosing(
                "schedule.book",
                "call",
                (Slot(FRIDAY_430, 7), Slot(FRIDAY_530, 7), Slot(MONDAY_9, 7)),
            )
        ),
        None,
    ),
    "choose of 1": (
        Dialogue(booking=Choosing("schedule.book", "call", (Slot(FRIDAY_530, 7),))),
        None,
    ),
    "ask hour": (Dialogue(booking=AskingTime("schedule.book", "call", FRIDAY)), None),
    "which of two": (Dialogue(clarifying=PAIR), None),
}


def says(
    intent: str,
    *,
    day: date | None = None,
    clock: time | None = None,
    position: int | None = None,
    candidates: tuple[tuple[str, float], ...] = (),
) -> NluResult:
    """A message as the matcher reads it (times resolved as `nlu/datetime.md` says)."""
    mention = None
    if day is not None or clock is not None:
        when = datetime.combine(day or NOW.date(), clock, MX) if clock is not None else None
        mention = TimeMention(day, clock, when)
    return NluResult(intent, 0.9, time=mention, position=position, candidates=candidates)


YES = says("affirm")
NO = says("deny")
PRICE_BACK = says("info.pricing")  # "¿y cuánto cuesta?"
OPTOUT = says("optout")
PERSON = says("handoff.human")
OPTED_OUT = ["optout", "optout.confirm"]
HANDED_OFF = ["handoff:handoff.human", "handoff.waiting"]

# (question, what the prospect says, how the matcher reads it, what the bot does)
TABLE: list[tuple[str, str, NluResult, list[str]]] = [
    # ¿Te confirmo la llamada mañana a las 17:00?
    ("confirm", "sí", YES, ["book 27 17:00"]),
    ("confirm", "sí, agéndala", YES, ["book 27 17:00"]),
    ("confirm", "agéndala", says("schedule.book"), ["book 27 17:00"]),
    (
        "confirm",
        "sí, mañana a las 5",
        says("affirm", day=FRIDAY, clock=time(17)),
        ["book 27 17:00"],
    ),
    ("confirm", "no", NO, ["schedule.ask_other_time"]),
    ("confirm", "no, mejor a las 6", says("deny", clock=time(18)), ["schedule.confirm 27 18:00"]),
    (
        "confirm",
        "mejor el lunes a las 10",
        says("schedule.reschedule", day=MONDAY, clock=time(10)),
        ["schedule.confirm 30 10:00"],
    ),
    ("confirm", "¿y cuánto cuesta?", PRICE_BACK, ["info.pricing", "schedule.confirm_again"]),
    ("confirm", "ya no me escriban", OPTOUT, OPTED_OUT),
    ("confirm", "quiero hablar con un asesor", PERSON, HANDED_OFF),
    # ¿Te confirmo el cambio? (the lead has an appointment on Monday)
    ("confirm move", "sí", YES, ["move 27 17:00"]),
    ("confirm move", "sí, muévela", says("schedule.reschedule"), ["move 27 17:00"]),
    ("confirm move", "sí, cámbiala para esa hora", says("schedule.book"), ["move 27 17:00"]),
    ("confirm move", "no", NO, ["schedule.ask_other_time"]),
    # ¿Cancelo tu cita del lunes a las 10:00?
    ("cancel", "sí", YES, ["cancel 3", "schedule.cancelled"]),
    ("cancel", "sí, cancélala", says("schedule.cancel"), ["cancel 3", "schedule.cancelled"]),
    ("cancel", "sí, cancela porfa", says("schedule.cancel"), ["cancel 3", "schedule.cancelled"]),
    (
        "cancel",
        "sí, cancela la del lunes",
        says("schedule.cancel", day=MONDAY),
        ["cancel 3", "schedule.cancelled"],
    ),
    ("cancel", "no", NO, ["schedule.cancel_kept"]),
    (
        "cancel",
        "mejor cámbiala al martes a las 11",
        says("schedule.reschedule", day=date(2026, 12, 1), clock=time(11)),
        ["schedule.confirm 1 11:00"],
    ),
    ("cancel", "¿y cuánto cuesta?", PRICE_BACK, ["info.pricing", "schedule.cancel_again"]),
    ("cancel", "ya no me escriban", OPTOUT, OPTED_OUT),
    # Tengo libre mañana a las 16:30, a las 17:30 o el lunes a las 9:00. ¿Cuál te queda mejor?
    ("choose of 3", "sí", YES, ["schedule.which"]),
    ("choose of 3", "ok, agéndala", says("schedule.book"), ["schedule.which"]),
    ("choose of 3", "la primera", says("none", position=1), ["book 27 16:30"]),
    ("choose of 3", "sí, la segunda", says("affirm", position=2), ["book 27 17:30"]),
    ("choose of 3", "la última", says("objection.tech_skills", position=-1), ["book 30 09:00"]),
    ("choose of 3", "la cuarta", says("none", position=4), ["schedule.which"]),
    ("choose of 3", "la de las 5:30", says("schedule.book", clock=time(17, 30)), ["book 27 17:30"]),
    ("choose of 3", "la del lunes", says("none", day=MONDAY), ["book 30 09:00"]),
    ("choose of 3", "mañana", says("none", day=FRIDAY), ["schedule.which"]),  # two that day
    ("choose of 3", "no, ninguna", NO, ["schedule.ask_other_time"]),
    (
        "choose of 3",
        "mejor el martes a las 11",
        says("schedule.book", day=date(2026, 12, 1), clock=time(11)),
        ["schedule.confirm 1 11:00"],
    ),
    ("choose of 3", "¿y cuánto cuesta?", PRICE_BACK, ["info.pricing", "schedule.which"]),
    ("choose of 3", "ya no me escriban", OPTOUT, OPTED_OUT),
    ("choose of 3", "quiero hablar con un asesor", PERSON, HANDED_OFF),
    # Tengo libre mañana a las 17:30. ¿Te sirve?
    ("choose of 1", "sí", YES, ["book 27 17:30"]),
    ("choose of 1", "va, agéndala", says("schedule.book"), ["book 27 17:30"]),
    ("choose of 1", "no", NO, ["schedule.ask_other_time"]),
    # Perfecto, mañana. ¿A qué hora te queda bien?
    ("ask hour", "a las 5", says("none", clock=time(17)), ["schedule.confirm 27 17:00"]),
    ("ask hour", "sí", YES, ["schedule.ask_hour"]),
    ("ask hour", "no", NO, ["schedule.not_now"]),
    ("ask hour", "¿y cuánto cuesta?", PRICE_BACK, ["info.pricing"]),  # an open question waits
    ("ask hour", "ya no me escriban", OPTOUT, OPTED_OUT),
    # ¿Te refieres al costo o a las formas de pago?
    (
        "which of two",
        "el precio",
        says("objection.price", candidates=(("objection.price", 0.65), ("info.pricing", 0.35))),
        ["info.pricing"],
    ),
    ("which of two", "lo primero", says("objection.partner", position=1), ["info.pricing"]),
    ("which of two", "la segunda", says("none", position=2), ["info.payment_options"]),
    ("which of two", "(button)", says("info.payment_options"), ["info.payment_options"]),
    ("which of two", "sí", YES, ["which info.pricing|info.payment_options"]),
    ("which of two", "es muy caro", says("objection.price"), ["objection.price"]),
    ("which of two", "quiero hablar con un asesor", PERSON, HANDED_OFF),
]


def engine_view(dialogue: Dialogue, nlu: NluResult, upcoming: AppointmentView | None) -> Any:
    """What the engine looks up for this message, with every slot free."""
    request = time_request(dialogue, nlu, None, NOW, MX)
    when = request.mention.when if request and request.mention else None
    availability = Availability(when, Slot(when, 7)) if when is not None else None
    return SchedulingView(MX, availability, upcoming)


def outline(effects: list[Effect]) -> list[str]:
    """What the lead sees or the bot does, in a word or two per effect."""

    def moment(at: datetime) -> str:
        return f"{at.astimezone(MX):%-d %H:%M}"

    seen: list[str] = []
    for effect in effects:
        match effect:
            case BookAppointment(at=at):
                seen.append(f"book {moment(at)}")
            case MoveAppointment(at=at):
                seen.append(f"move {moment(at)}")
            case CancelAppointment(appointment_id=appointment_id):
                seen.append(f"cancel {appointment_id}")
            case Reply(script="schedule.confirm"):
                proposed = next(e for e in effects if isinstance(e, Remember)).dialogue.booking
                assert isinstance(proposed, Confirming)
                seen.append(f"schedule.confirm {moment(proposed.slot.at)}")
            case Reply(script=script):
                seen.append(script)
            case AskWhich(intents=(first, second)):
                seen.append(f"which {first}|{second}")
            case OptOut():
                seen.append("optout")
            case EnqueueHandoff(reason=reason):
                seen.append(f"handoff:{reason}")
    return seen


@pytest.mark.parametrize(
    ("question", "text", "nlu", "expected"),
    TABLE,
    ids=[f"{q}: {text}" for q, text, _, _ in TABLE],
)
def test_each_answer_to_each_question(
    question: str, text: str, nlu: NluResult, expected: list[str]
) -> None:
    dialogue, upcoming = QUESTIONS[question]
    view = ConversationView(ConversationState.BOT, dialogue)
    lead = LeadView(1, "Ana", 30, "warm")
    schedule = engine_view(dialogue, nlu, upcoming)
    effects = decide(view, InboundView(has_text=True), nlu, lead, NOW, Rules(), schedule)
    assert outline(effects) == expected


def remembered(question: str, nlu: NluResult) -> Dialogue:
    dialogue, upcoming = QUESTIONS[question]
    view = ConversationView(ConversationState.BOT, dialogue)
    schedule = engine_view(dialogue, nlu, upcoming)
    effects = decide(
        view, InboundView(has_text=True), nlu, LeadView(1, None, 30, "warm"), NOW, Rules(), schedule
    )
    [memory] = [e.dialogue for e in effects if isinstance(e, Remember)]
    return memory


def test_a_question_back_keeps_the_question_pending() -> None:
    for question in ("confirm", "cancel", "choose of 3", "ask hour"):
        assert remembered(question, PRICE_BACK) == QUESTIONS[question][0]


def test_which_one_lists_the_slots_again_with_their_buttons() -> None:
    dialogue, _ = QUESTIONS["choose of 3"]
    view = ConversationView(ConversationState.BOT, dialogue)
    effects = decide(
        view, InboundView(has_text=True), YES, LeadView(1, None, 30, "warm"), NOW, Rules(),
        engine_view(dialogue, YES, None),
    )  # fmt: skip
    [which] = [e for e in effects if isinstance(e, Reply)]
    assert which.values["opciones"] == (
        "mañana a las 16:30, mañana a las 17:30 o el lunes 30 de noviembre a las 09:00"
    )
    assert [b.payload for b in which.buttons] == [
        f"slot:{at.isoformat()}" for at in (FRIDAY_430, FRIDAY_530, MONDAY_9)
    ]
    assert remembered("choose of 3", YES) == dialogue  # still choosing


def test_a_yes_to_which_of_two_asks_again_and_an_answer_ends_it() -> None:
    assert remembered("which of two", YES).clarifying == PAIR
    assert remembered("which of two", says("none", position=2)).clarifying is None


def test_a_proposal_whose_time_has_passed_is_not_booked() -> None:
    dialogue = Dialogue(booking=Confirming("schedule.book", "call", Slot(NOW, 7)))
    view = ConversationView(ConversationState.BOT, dialogue)
    effects = decide(
        view, InboundView(has_text=True), YES, LeadView(1, None, 30, "warm"), NOW, Rules(),
        SchedulingView(MX),
    )  # fmt: skip
    assert outline(effects) == ["schedule.passed"]
