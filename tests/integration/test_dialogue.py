"""Conversations through the web chat: answers to the bot's questions, what a lead tells about
themselves, customers, and follow-ups that wait for a chat to go quiet (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot.core.model import ActionState, AppointmentState, SequenceState
from bot.web.keys import AGENDA, DATABASE, DISPATCHER, ENGINE, SCHEDULER
from intents.model import NluResult
from intents.normalize import normalize
from storage.models import (
    Appointment,
    Handoff,
    Lead,
    LeadPhone,
    Message,
    OutboxItem,
    ScheduledAction,
    SequenceRun,
)

MX = ZoneInfo("America/Mexico_City")
THURSDAY_10 = datetime(2026, 11, 26, 10, 0, tzinfo=MX)
FRIDAY_17 = datetime(2026, 11, 27, 17, 0, tzinfo=MX)
SESSION = "dialogo-Zx81qPw3LmT5vB7nY2k"
OTHER = "dialogo-otro-Hs4Jd9Kq2Wm7Xp"


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(THURSDAY_10, tick=True) as traveller:
        yield traveller


async def started(service: Any, **overrides: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await service(**overrides)
    # The tests fire and send themselves, so each step happens when they say.
    await client.app[SCHEDULER].pause()
    await client.app[DISPATCHER].stop(timeout=1)
    return client


@pytest.fixture
async def client(service: Any, clock: time_machine.Traveller) -> TestClient[Any, Any]:
    return await started(service)


async def say(client: TestClient[Any, Any], text: str, session: str = SESSION) -> str:
    response = await client.post("/webchat/messages", json={"session_id": session, "text": text})
    assert response.status == 200, await response.text()
    return " ".join(reply["text"] for reply in (await response.json())["replies"])


async def rows(client: TestClient[Any, Any], model: Any, *where: Any) -> list[Any]:
    async with client.app[DATABASE].session() as session:
        return list((await session.execute(select(model).where(*where))).scalars())


async def scripts(client: TestClient[Any, Any]) -> list[str | None]:
    async with client.app[DATABASE].session() as session:
        statement = select(Message.script).where(Message.direction == "out").order_by(Message.id)
        return list((await session.execute(statement)).scalars())


async def last_buttons(client: TestClient[Any, Any]) -> list[str]:
    async with client.app[DATABASE].session() as session:
        item = (
            await session.execute(select(OutboxItem).order_by(OutboxItem.id.desc()).limit(1))
        ).scalar_one()
    return [payload for _, payload in item.extras.get("buttons", [])]


async def fire(client: TestClient[Any, Any]) -> int:
    return await client.app[SCHEDULER].fire_due()


async def the_lead(client: TestClient[Any, Any]) -> Lead:
    [lead] = await rows(client, Lead)
    return lead


# --- 1. A yes that repeats the request is a yes -------------------------------------------------


@pytest.mark.parametrize("answer", ["sí, cancélala", "sí, cancela porfa"])
async def test_a_yes_that_repeats_the_cancellation_cancels(
    client: TestClient[Any, Any], answer: str
) -> None:
    await say(client, "llámame mañana a las 5")
    await say(client, "sí")
    asked = await say(client, "necesito cancelar la llamada")
    assert "mañana a las 17:00" in asked
    done = await say(client, answer)
    [appointment] = await rows(client, Appointment)
    assert appointment.state == AppointmentState.CANCELLED
    sent = await scripts(client)
    assert sent[-1] == "schedule.cancelled", done
    assert sent.count("schedule.cancel_confirm") == 1  # asked once, never again


async def test_a_yes_that_repeats_the_booking_books(client: TestClient[Any, Any]) -> None:
    assert "mañana a las 17:00" in await say(client, "llámame mañana a las 5")
    await say(client, "sí, agéndala")
    [appointment] = await rows(client, Appointment)
    assert appointment.starts_at == FRIDAY_17
    assert await scripts(client) == ["schedule.confirm", "schedule.booked"]


async def test_a_yes_that_repeats_the_move_moves(client: TestClient[Any, Any]) -> None:
    await say(client, "llámame mañana a las 5")
    await say(client, "sí")
    await say(client, "¿podemos cambiar la cita al lunes a las 10?")
    await say(client, "sí, muévela")
    [appointment] = await rows(client, Appointment)
    assert appointment.starts_at == datetime(2026, 11, 30, 10, 0, tzinfo=MX)
    assert (await scripts(client))[-2:] == ["schedule.confirm", "schedule.moved"]


async def test_a_yes_to_a_reply_that_offers_a_call_books_it(client: TestClient[Any, Any]) -> None:
    """ "¿Te parece si te llamo 10 minutos…?" — "sí": the day and hour are asked, the time
    given is proposed, and a yes books the call the reply offered (`books: call`)."""
    await say(client, "no tengo tiempo")
    assert await scripts(client) == ["objection.time"]  # both of its variants offer a call
    assert await last_buttons(client) == ["affirm", "deny"]
    await say(client, "sí")
    assert (await scripts(client))[-1] == "schedule.ask_time"
    assert "mañana a las 17:00" in await say(client, "mañana a las 5 de la tarde")
    await say(client, "sí")
    [appointment] = await rows(client, Appointment)
    assert (appointment.starts_at, appointment.kind) == (FRIDAY_17, "call")


async def test_a_no_to_a_reply_that_offers_a_call_books_nothing(
    client: TestClient[Any, Any],
) -> None:
    await say(client, "no tengo tiempo")
    await say(client, "no")
    assert (await scripts(client))[-1] == "schedule.not_now"
    await say(client, "sí")  # the offer was answered: a later yes books nothing
    assert await rows(client, Appointment) == []
    assert "schedule.ask_time" not in await scripts(client)


# --- 2. A yes to a choice asks which one, or takes the only one -------------------------------


async def test_a_yes_to_several_slots_asks_which_then_takes_the_pick(
    client: TestClient[Any, Any],
) -> None:
    offered = await say(client, "llámame el domingo a las 11")
    assert (await scripts(client))[-1] == "schedule.unavailable"
    which = await say(client, "sí")
    assert (await scripts(client))[-1] == "schedule.which"
    assert await rows(client, Appointment) == []  # nothing booked on a bare "sí"
    for option in ("sábado 28 de noviembre a las 13:00", "a las 13:30", "lunes 30 de noviembre"):
        assert option in offered and option in which
    buttons = await last_buttons(client)
    assert len(buttons) == 3 and all(b.startswith("slot:") for b in buttons)
    booked = await say(client, "la segunda")
    [appointment] = await rows(client, Appointment)
    assert appointment.starts_at == datetime(2026, 11, 28, 13, 30, tzinfo=MX)
    assert (await scripts(client))[-1] == "schedule.booked"
    assert "13:30" in booked


async def test_a_yes_to_the_only_slot_offered_takes_it(
    service: Any, clock: time_machine.Traveller
) -> None:
    client = await started(service, scheduling={"offer": 1})
    offered = await say(client, "llámame el domingo a las 11")
    await say(client, "ok")
    [appointment] = await rows(client, Appointment)
    assert f"{appointment.starts_at.astimezone(MX):%H:%M}" in offered
    assert (await scripts(client))[-1] == "schedule.booked"


# --- 3. A name given in the chat --------------------------------------------------------------


async def test_a_name_given_fills_the_lead_that_has_none(client: TestClient[Any, Any]) -> None:
    await say(client, "hola, soy Pedro")
    assert (await the_lead(client)).name == "Pedro"
    await say(client, "me llamo Luis")  # the lead already has a name: it stays
    assert (await the_lead(client)).name == "Pedro"


async def test_a_name_alone_is_greeted_by_it(client: TestClient[Any, Any]) -> None:
    greeted = await say(client, "me llamo Ana María")
    assert (await the_lead(client)).name == "Ana María"
    assert await scripts(client) == ["contact.name_saved"]
    assert "Ana" in greeted


@pytest.mark.parametrize("text", ["soy de Monterrey", "soy contador", "soy nuevo"])
async def test_what_follows_soy_is_not_always_a_name(
    client: TestClient[Any, Any], text: str
) -> None:
    await say(client, text)
    assert (await the_lead(client)).name is None


# --- 4. Contact details typed in the chat -----------------------------------------------------


async def test_an_email_typed_is_saved_confirmed_once_and_the_request_answered(
    client: TestClient[Any, Any],
) -> None:
    replies = await say(client, "pásame info por correo a juan@gmail.com")
    assert (await the_lead(client)).email == "juan@gmail.com"
    assert await scripts(client) == ["contact.email_saved", "objection.send_info"]
    assert "juan@gmail.com" in replies
    await say(client, "mi correo es juan@gmail.com")
    await say(client, "mejor a pedro@hotmail.com")  # an e-mail on record is not replaced
    assert (await the_lead(client)).email == "juan@gmail.com"
    assert (await scripts(client)).count("contact.email_saved") == 1


async def test_another_phone_is_added_but_never_taken_from_another_lead(
    client: TestClient[Any, Any],
) -> None:
    saved = await say(client, "mi número es 55 1234 5678", OTHER)
    assert "+52 55 1234 5678" in saved
    await say(client, "mi otro número es 55 1234 5678")  # another lead's number
    added = await say(client, "también al 55 8765 4321")
    assert "+52 55 8765 4321" in added
    owners = {phone.e164: phone.lead_id for phone in await rows(client, LeadPhone)}
    other, me = sorted({lead.id for lead in await rows(client, Lead)})
    assert owners == {"+525512345678": other, "+525587654321": me}
    assert (await scripts(client)).count("contact.phone_saved") == 2


# --- 5. Customers -----------------------------------------------------------------------------


async def test_a_customer_asking_what_comes_next_is_on_the_post_sale_path(
    client: TestClient[Any, Any],
) -> None:
    await say(client, "hola")
    lead = await the_lead(client)
    await client.app[AGENDA].set_stage(lead.id, "purchase")
    await say(client, "ya lo compré, ¿y ahora qué sigue?")
    sent = await scripts(client)
    assert sent[-1] == "post_sale.next"
    assert "buy.intent" not in sent  # no payment request
    [handoff] = await rows(client, Handoff)
    assert handoff.reason == "post_sale"


async def test_which_stages_have_bought_is_the_pipeline_s_data(
    service: Any, clock: time_machine.Traveller
) -> None:
    client = await started(service, pipeline={"preset": "real_estate"})
    await say(client, "hola")
    await client.app[AGENDA].set_stage((await the_lead(client)).id, "escriturado")
    await say(client, "quiero comprar otro depa, ¿cómo pago?")
    assert (await scripts(client))[-1] == "post_sale.next"


async def test_buying_before_being_a_customer_is_still_buying(client: TestClient[Any, Any]) -> None:
    await say(client, "quiero comprar otro depa, ¿cómo pago?")
    assert (await scripts(client))[-1] == "buy.intent"


# --- 6. Follow-ups wait for a chat to go quiet -----------------------------------------------


async def test_a_follow_up_never_interrupts_a_live_chat(
    client: TestClient[Any, Any], clock: time_machine.Traveller
) -> None:
    await say(client, "hola")
    async with client.app[DATABASE].session() as session:
        await session.execute(update(Lead).values(score=39))
        await session.commit()
    proposal = await say(client, "mejor márcame mañana a las 5 de la tarde")  # hot now
    assert "mañana a las 17:00" in proposal
    assert (await the_lead(client)).tier == "hot"
    await fire(client)
    assert await scripts(client) == ["greeting", "schedule.confirm"]  # one question, alone
    clock.move_to(THURSDAY_10 + timedelta(hours=1))
    await say(client, "¿y cuánto cuesta?")
    assert (await scripts(client))[-2:] == ["info.pricing", "schedule.confirm_again"]
    clock.move_to(THURSDAY_10 + timedelta(hours=2, minutes=59))
    await fire(client)
    assert await rows(client, SequenceRun) == []  # still within 2 h of the last message
    clock.move_to(THURSDAY_10 + timedelta(hours=3, seconds=5))
    await fire(client)  # quiet, not booked, not handed off: the hot sequence starts
    await fire(client)
    assert [(r.sequence, r.state) for r in await rows(client, SequenceRun)] == [
        ("hot", SequenceState.ACTIVE)
    ]
    assert (await scripts(client))[-1] == "sequence.hot.1"
    # The nudge changed the subject: "sí" now answers it, and books nothing.
    await say(client, "sí")
    assert await rows(client, Appointment) == []
    assert (await scripts(client))[-1] == "affirm"


async def test_a_step_due_in_a_live_chat_waits_and_is_not_lost(
    service: Any, clock: time_machine.Traveller
) -> None:
    client = await started(
        service,
        sequences={
            "post_sale": {"steps": [{"after": "0h", "message": "sequence.post_sale.checkin"}]}
        },
    )
    await say(client, "hola")
    [last] = await rows(client, Message, Message.direction == "in")
    await client.app[AGENDA].set_stage((await the_lead(client)).id, "purchase")
    await fire(client)
    assert await scripts(client) == ["greeting"]
    [step] = await rows(client, ScheduledAction, ScheduledAction.kind == "sequence.step")
    assert (step.state, step.due_at) == (ActionState.PENDING, last.created_at + timedelta(hours=2))
    clock.move_to(last.created_at + timedelta(hours=2, seconds=1))
    await fire(client)
    assert (await scripts(client))[-1] == "sequence.post_sale.checkin"


async def test_a_booked_or_handed_off_chat_starts_no_sequence(
    client: TestClient[Any, Any], clock: time_machine.Traveller
) -> None:
    await say(client, "llámame mañana a las 5")
    await say(client, "sí")
    await say(client, "hola", OTHER)
    await say(client, "quiero hablar con un asesor", OTHER)
    clock.move_to(THURSDAY_10 + timedelta(hours=2, minutes=1))
    await fire(client)
    assert await rows(client, SequenceRun) == []
    idle = await rows(client, ScheduledAction, ScheduledAction.kind == "conversation.idle")
    assert {(a.state, a.last_error) for a in idle} == {
        (ActionState.SKIPPED, "appointment booked"),
        (ActionState.SKIPPED, "conversation with a person"),
    }


# --- 8. Unsure: "¿Te refieres a X o a Y?", and the answer ---------------------------------------


class Unsure:
    """The real matcher, except for one message it reads two ways."""

    def __init__(self, real: Any, text: str, pair: tuple[str, str]) -> None:
        self.real, self.text, self.pair = real, normalize(text), pair

    def match(self, text: str, now: datetime, tz: str | ZoneInfo) -> NluResult:
        if normalize(text) != self.text:
            result: NluResult = self.real.match(text, now, tz)
            return result
        first, second = self.pair
        return NluResult(first, 0.5, candidates=((first, 0.5), (second, 0.45)), ambiguous=True)


@pytest.mark.parametrize(
    ("answer", "meant"),
    [
        ("la segunda", "info.payment_options"),
        ("lo primero", "info.pricing"),
        ("el precio", "info.pricing"),
    ],
)
async def test_the_answer_to_which_of_two_readings_is_understood(
    client: TestClient[Any, Any], answer: str, meant: str
) -> None:
    engine = client.app[ENGINE]
    engine.understanding = Unsure(
        engine.understanding, "¿y eso cómo es?", ("info.pricing", "info.payment_options")
    )
    asked = await say(client, "¿y eso cómo es?")
    assert "costo" in asked and "las formas de pago" in asked
    assert await last_buttons(client) == ["info.pricing", "info.payment_options"]
    await say(client, answer)
    assert await scripts(client) == ["clarify.which", meant]
