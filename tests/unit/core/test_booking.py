"""The booking dialogue, without I/O: each turn from (context, NLU, calendar answer) to effects."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from bot.core.booking import YES_NO, AppointmentView, SchedulingView, decide_booking, time_request
from bot.core.dialogue import AskingTime, Choosing, Confirming, Dialogue
from bot.core.effects import (
    BookAppointment,
    CancelAppointment,
    EnqueueHandoff,
    MoveAppointment,
    Remember,
    Reply,
)
from bot.core.slots import Availability, Slot
from intents.model import NluResult, TimeMention

MX = ZoneInfo("America/Mexico_City")
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=MX)  # Thursday
FRIDAY_5 = datetime(2026, 11, 27, 17, 0, tzinfo=MX)


def nlu(intent: str, when: datetime | None = None, **parts: Any) -> NluResult:
    mention = TimeMention(parts.get("day"), parts.get("clock"), when)
    if when is not None and not parts:
        mention = TimeMention(when.date(), when.timetz().replace(tzinfo=None), when)
    return NluResult(intent, 0.95, time=mention)


def free(at: datetime, agent: int | None = 7) -> SchedulingView:
    return SchedulingView(MX, Availability(at, Slot(at, agent)))


def busy(at: datetime, *options: datetime) -> SchedulingView:
    return SchedulingView(MX, Availability(at, None, tuple(Slot(o, 7) for o in options)))


def turn(
    dialogue: Dialogue, message: NluResult, view: SchedulingView, choice: str | None = None
) -> list[Any]:
    effects = decide_booking(dialogue, message, choice, view, NOW, default_kind="call")
    assert effects is not None
    return effects


def memory_of(effects: list[Any]) -> Dialogue:
    [remember] = [e for e in effects if isinstance(e, Remember)]
    return remember.dialogue


def test_a_free_time_is_proposed_with_yes_no() -> None:
    effects = turn(Dialogue(), nlu("schedule.book", FRIDAY_5), free(FRIDAY_5))
    reply = effects[-1]
    assert reply == Reply(
        "schedule.confirm",
        {"fecha": "mañana a las 17:00", "tipo": "la llamada"},
        buttons=YES_NO,
    )
    assert isinstance(memory_of(effects).booking, Confirming)


def test_yes_books_it() -> None:
    proposal = turn(Dialogue(), nlu("schedule.book", FRIDAY_5), free(FRIDAY_5))
    effects = turn(memory_of(proposal), NluResult("affirm", 0.9), SchedulingView(MX))
    [book] = [e for e in effects if isinstance(e, BookAppointment)]
    assert (book.at, book.agent_id, book.kind) == (FRIDAY_5, 7, "call")
    assert book.confirmation.script == "schedule.booked"
    assert memory_of(effects).booking is None


def test_no_asks_for_another_time() -> None:
    proposal = turn(Dialogue(), nlu("schedule.book", FRIDAY_5), free(FRIDAY_5))
    effects = turn(memory_of(proposal), NluResult("deny", 0.9), SchedulingView(MX))
    assert effects[-1] == Reply("schedule.ask_other_time")
    assert isinstance(memory_of(effects).booking, AskingTime)


def test_a_day_without_an_hour_asks_for_the_hour_and_the_answer_completes_it() -> None:
    first = turn(Dialogue(), nlu("schedule.book", None, day=date(2026, 11, 27)), SchedulingView(MX))
    assert first[-1] == Reply("schedule.ask_hour", {"dia": "mañana"})
    context = memory_of(first)
    # "a las 5" alone: the remembered day is completed with the new hour.
    answer = nlu("none", None, clock=time(17, 0))
    request = time_request(context, answer, None, NOW, MX)
    assert request is not None
    assert request.mention is not None
    assert request.mention.when == FRIDAY_5
    effects = turn(context, answer, free(FRIDAY_5))
    assert effects[-1].script == "schedule.confirm"


def test_no_time_at_all_asks_when() -> None:
    effects = turn(Dialogue(), NluResult("schedule.book", 0.9), SchedulingView(MX))
    assert effects[-1] == Reply("schedule.ask_time")


def test_a_taken_or_closed_time_offers_the_nearest_free_slots() -> None:
    options = (
        datetime(2026, 11, 27, 16, 30, tzinfo=MX),
        datetime(2026, 11, 27, 17, 30, tzinfo=MX),
    )
    effects = turn(Dialogue(), nlu("schedule.book", FRIDAY_5), busy(FRIDAY_5, *options))
    reply = effects[-1]
    assert reply.script == "schedule.unavailable"
    assert reply.values["opciones"] == "mañana a las 16:30 o mañana a las 17:30"
    assert [b.payload for b in reply.buttons] == [f"slot:{o.isoformat()}" for o in options]
    assert isinstance(memory_of(effects).booking, Choosing)


def test_pressing_an_offered_slot_books_it_directly() -> None:
    slot = datetime(2026, 11, 27, 16, 30, tzinfo=MX)
    offered = turn(Dialogue(), nlu("schedule.book", FRIDAY_5), busy(FRIDAY_5, slot))
    effects = turn(
        memory_of(offered), NluResult("none", 0.0), free(slot), choice=f"slot:{slot.isoformat()}"
    )
    [book] = [e for e in effects if isinstance(e, BookAppointment)]
    assert book.at == slot


def test_naming_the_hour_of_an_offered_slot_picks_it() -> None:
    slot = datetime(2026, 11, 27, 16, 30, tzinfo=MX)
    offered = turn(Dialogue(), nlu("schedule.book", FRIDAY_5), busy(FRIDAY_5, slot))
    answer = nlu("none", None, clock=time(16, 30))
    request = time_request(memory_of(offered), answer, None, NOW, MX)
    assert request is not None
    assert request.mention is not None
    assert request.mention.when == slot


def test_nothing_free_hands_off_to_a_person() -> None:
    effects = turn(Dialogue(), nlu("schedule.book", FRIDAY_5), busy(FRIDAY_5))
    assert EnqueueHandoff("schedule.no_slots") in effects


def test_reschedule_moves_the_next_appointment() -> None:
    upcoming = AppointmentView(3, datetime(2026, 11, 30, 10, 0, tzinfo=MX), "call")
    view = SchedulingView(MX, Availability(FRIDAY_5, Slot(FRIDAY_5, 7)), upcoming)
    proposal = turn(Dialogue(), nlu("schedule.reschedule", FRIDAY_5), view)
    effects = turn(memory_of(proposal), NluResult("affirm", 0.9), view)
    [move] = [e for e in effects if isinstance(e, MoveAppointment)]
    assert (move.appointment_id, move.at) == (3, FRIDAY_5)
    assert move.confirmation.script == "schedule.moved"


def test_reschedule_without_an_appointment_books() -> None:
    proposal = turn(Dialogue(), nlu("schedule.reschedule", FRIDAY_5), free(FRIDAY_5))
    booking = memory_of(proposal).booking
    assert booking is not None and booking.intent == "schedule.book"


def test_cancel_asks_first_then_cancels() -> None:
    upcoming = AppointmentView(3, FRIDAY_5, "call")
    view = SchedulingView(MX, upcoming=upcoming)
    asked = turn(Dialogue(), NluResult("schedule.cancel", 0.9), view)
    assert asked[-1] == Reply(
        "schedule.cancel_confirm", {"fecha": "mañana a las 17:00"}, buttons=YES_NO
    )
    effects = turn(memory_of(asked), NluResult("affirm", 0.9), view)
    assert CancelAppointment(3) in effects
    kept = turn(memory_of(asked), NluResult("deny", 0.9), view)
    assert kept[-1] == Reply("schedule.cancel_kept")


def test_cancel_without_an_appointment_says_so() -> None:
    effects = turn(Dialogue(), NluResult("schedule.cancel", 0.9), SchedulingView(MX))
    assert effects[-1] == Reply("schedule.nothing_booked")


def test_other_messages_are_not_booking() -> None:
    view = SchedulingView(MX)
    assert (
        decide_booking(
            Dialogue(), NluResult("info.pricing", 0.9), None, view, NOW, default_kind="call"
        )
        is None
    )
    # An opt-out outranks a pending question even when it names a time.
    pending = Dialogue(booking=AskingTime("schedule.book", "call"))
    stop = nlu("optout", None, clock=time(17, 0))
    assert decide_booking(pending, stop, None, view, NOW, default_kind="call") is None
