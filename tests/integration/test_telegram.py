"""Telegram end to end: recorded-shape updates in, PTB's real Bot out, against a fake Bot API."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot.core.channel import Channel, OutboundMessage
from bot.core.errors import RetryLater
from bot.core.model import OutboxState
from bot.web.keys import DATABASE, DESK, DISPATCHER, SCHEDULER
from handlers.telegram import TelegramSender, make_bot
from storage.models import Appointment, ChannelIdentity, Lead, LeadPhone, Message, OutboxItem
from tests.builders import make_outbox_due, message_of, outbox_rows, send_due
from tests.conftest import free_port
from tests.fakes.telegram_api import FakeTelegramServer, post_update

DATA = Path(__file__).resolve().parents[1] / "data" / "telegram"
SECRET = "s3cret-token_for-tests"
MARIANA = 5839201746


def recorded(name: str, **changes: Any) -> dict[str, Any]:
    update: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    update = copy.deepcopy(update)
    for key, value in changes.items():
        update["message"][key] = value
    return update


def text_update(text: str, message_id: int, chat: int = MARIANA) -> dict[str, Any]:
    update = recorded("message_text_private", text=text, message_id=message_id)
    update["update_id"] = 900_000 + message_id
    update["message"]["chat"]["id"] = update["message"]["from"]["id"] = chat
    return update


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as server:
        yield server


@pytest.fixture
async def client(service: Any, tg: FakeTelegramServer) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service(
        telegram={
            "token": tg.token,
            "webhook_secret": SECRET,
            "api_base_url": tg.base_url,
            "per_chat_interval": 0.0,
        }
    )
    # The tests send with drain(), so the order of events is theirs, not the background loop's.
    await started.app[DISPATCHER].stop(timeout=1)
    return started


async def deliver(
    tg: FakeTelegramServer, client: TestClient[Any, Any], update: dict[str, Any]
) -> int:
    """POST `update` to our webhook as Telegram does. Through the fake, which learns the chat's
    message ids: Telegram numbers a chat's messages in both directions, so a reply never takes
    the id of a message it answers."""
    reply = await tg.deliver(client, update, secret=SECRET, path="/webhooks/telegram")
    return reply.status


async def test_requests_without_the_secret_are_refused(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    update = text_update("hola", 1)
    for secret in (None, "wrong", SECRET + "x"):
        reply = await post_update(client, update, secret=secret, path="/webhooks/telegram")
        assert reply.status == 403
    async with client.app[DATABASE].session() as session:
        assert (await session.execute(select(Message))).first() is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{nope", "invalid JSON"), (b'{"ok": true}', "update_id"), (b"[]", "update_id")],
)
async def test_malformed_updates_are_400(
    client: TestClient[Any, Any], body: bytes, reason: str
) -> None:
    response = await client.post(
        "/webhooks/telegram",
        data=body,
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert reason in (await response.json())["error"]


async def test_text_gets_a_spanish_reply_in_the_right_chat(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    assert await deliver(tg, client, text_update("hola, buenas tardes", 10)) == 200
    await send_due(client)
    [call] = tg.calls_to("sendMessage")
    assert call.params["chat_id"] == MARIANA
    assert call.params["text"]
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.DONE
    assert message_of(row).channel_message_id == f"{MARIANA}:11"  # the chat's next message
    assert message_of(row).script == "greeting"


async def test_duplicate_delivery_gets_one_reply(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    update = text_update("¿cuánto cuesta?", 11)
    assert await deliver(tg, client, update) == 200
    assert await deliver(tg, client, update) == 200
    await send_due(client)
    assert len(tg.calls_to("sendMessage")) == 1


async def test_deep_link_payload_becomes_the_source(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    assert await deliver(tg, client, recorded("message_start_deep_link")) == 200
    await send_due(client)
    async with client.app[DATABASE].session() as session:
        lead = (await session.execute(select(Lead))).scalar_one()
    assert lead.source == "ref_feria-medellin-2026"
    assert len(tg.calls_to("sendMessage")) == 1  # greeted


async def test_own_contact_is_saved_and_someone_elses_is_not(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    assert await deliver(tg, client, recorded("message_contact_other")) == 200
    assert await deliver(tg, client, recorded("message_contact_self")) == 200
    async with client.app[DATABASE].session() as session:
        phones = list((await session.execute(select(LeadPhone.e164))).scalars())
    assert phones == ["+525512345678"]  # Mexico's legacy "+52 1" spelling, stored as today's
    await send_due(client)
    assert len(tg.calls_to("sendMessage")) == 2


async def test_button_press_is_answered_and_understood(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    update = json.loads((DATA / "callback_query.json").read_text(encoding="utf-8"))
    update["callback_query"]["data"] = "handoff.human"
    keyboard = update["callback_query"]["message"]["reply_markup"]["inline_keyboard"]
    keyboard[0][0]["callback_data"] = "handoff.human"
    assert await deliver(tg, client, update) == 200
    [entry] = await client.app[DESK].queue()
    assert entry.reason == "handoff.human"
    for _ in range(50):
        if tg.calls_to("answerCallbackQuery"):
            break
        await asyncio.sleep(0.02)
    [answer] = tg.calls_to("answerCallbackQuery")
    assert answer.params["callback_query_id"] == update["callback_query"]["id"]


@pytest.mark.parametrize("name", ["message_photo_caption", "message_document", "message_voice"])
async def test_media_is_stored_by_reference_and_acknowledged(
    client: TestClient[Any, Any], tg: FakeTelegramServer, name: str
) -> None:
    assert await deliver(tg, client, recorded(name)) == 200
    async with client.app[DATABASE].session() as session:
        message = (await session.execute(select(Message))).scalars().first()
    assert message is not None
    assert message.media and message.media[0]["ref"]
    await send_due(client)
    assert len(tg.calls_to("sendMessage")) == 1


async def test_edit_updates_the_text_without_a_second_reply(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    edited = json.loads((DATA / "edited_message.json").read_text(encoding="utf-8"))
    original = copy.deepcopy(edited)
    original["message"] = original.pop("edited_message")
    original["message"].pop("edit_date")
    original["update_id"] -= 1
    original["message"]["text"] = "hola, quiero info del curso"
    assert await deliver(tg, client, original) == 200
    assert await deliver(tg, client, edited) == 200
    await send_due(client)
    assert len(tg.calls_to("sendMessage")) == 1
    async with client.app[DATABASE].session() as session:
        stored = (await session.execute(select(Message).order_by(Message.id))).scalars().first()
    assert stored is not None
    assert stored.text == edited["edited_message"]["text"]
    assert stored.edited_at is not None


async def test_blocked_then_unblocked(client: TestClient[Any, Any], tg: FakeTelegramServer) -> None:
    kicked = json.loads((DATA / "my_chat_member_kicked.json").read_text(encoding="utf-8"))
    chat = kicked["my_chat_member"]["chat"]["id"]
    assert await deliver(tg, client, text_update("hola", 20, chat=chat)) == 200
    assert await deliver(tg, client, kicked) == 200
    await send_due(client)
    assert tg.calls_to("sendMessage") == []  # the greeting waiting for it is not sent
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.BLOCKED

    member = json.loads((DATA / "my_chat_member_member.json").read_text(encoding="utf-8"))
    member["my_chat_member"]["chat"]["id"] = chat
    assert await deliver(tg, client, member) == 200
    async with client.app[DATABASE].session() as session:
        identity = (await session.execute(select(ChannelIdentity))).scalar_one()
    assert identity.reachable


async def test_group_messages_and_reactions_are_ignored(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    assert await deliver(tg, client, recorded("message_group")) == 200
    assert (
        await deliver(tg, client, json.loads((DATA / "message_reaction.json").read_text())) == 200
    )
    async with client.app[DATABASE].session() as session:
        assert (await session.execute(select(Message))).first() is None


async def test_429_waits_retry_after_then_delivers(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    tg.fail_next("sendMessage", status=429, retry_after=7)
    before = datetime.now(UTC)
    assert await deliver(tg, client, text_update("hola", 30)) == 200
    await send_due(client)
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.PENDING
    assert row.next_attempt_at >= before + timedelta(seconds=6)
    await make_outbox_due(client.app[DATABASE])
    await send_due(client)
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.DONE
    assert len(tg.sent_texts(MARIANA)) == 1


async def test_blocked_user_gets_no_retries(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    tg.block(MARIANA)
    assert await deliver(tg, client, text_update("hola", 40)) == 200
    await send_due(client)
    await make_outbox_due(client.app[DATABASE])
    await send_due(client)
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.BLOCKED
    assert "blocked" in (row.last_error or "")
    assert row.attempts == 1
    assert await deliver(tg, client, text_update("¿cuánto cuesta?", 41)) == 200
    await send_due(client)
    assert len(tg.failures) == 1  # the second reply never reached Telegram


async def test_bad_request_fails_with_the_reason(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    tg.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
    assert await deliver(tg, client, text_update("hola", 50)) == 200
    await send_due(client)
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.FAILED
    assert "chat not found" in (message_of(row).error or "").lower()


async def test_server_error_is_retried(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    tg.fail_next("sendMessage", status=502, body="<html>Bad Gateway</html>")
    assert await deliver(tg, client, text_update("hola", 60)) == 200
    await send_due(client)
    await make_outbox_due(client.app[DATABASE])
    await send_due(client)
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.DONE
    assert row.attempts == 2
    assert len(tg.failures) == 1
    assert len(tg.sent_texts(MARIANA)) == 1


async def test_long_agent_reply_is_split_at_sentences(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    assert await deliver(tg, client, text_update("quiero hablar con un asesor", 70)) == 200
    desk = client.app[DESK]
    agent, _ = await desk.add_agent("Carla")
    [entry] = await desk.queue()
    await desk.claim(entry.conversation_id, agent)
    long_text = "Te cuento los detalles del plan y sus beneficios. " * 120
    await desk.reply(entry.conversation_id, agent, long_text)
    await send_due(client)
    texts = tg.sent_texts(MARIANA)
    assert len(texts) == 3  # the handoff notice, then the reply in two parts
    assert all(len(text) <= 4096 for text in texts)
    assert " ".join(texts[1:]) == long_text.strip()


async def test_one_chat_is_paced_without_holding_up_others(
    service: Any, tg: FakeTelegramServer
) -> None:
    client: TestClient[Any, Any] = await service(
        telegram={"token": tg.token, "webhook_secret": SECRET, "api_base_url": tg.base_url}
    )
    await client.app[DISPATCHER].stop(timeout=1)
    assert await deliver(tg, client, text_update("hola", 80)) == 200
    assert await deliver(tg, client, text_update("¿cuánto cuesta?", 81)) == 200
    assert await deliver(tg, client, text_update("hola", 82, chat=777000111)) == 200
    await send_due(client)
    first, second, other = await outbox_rows(client.app[DATABASE])
    assert first.state == other.state == OutboxState.DONE
    # Within a second of the first: deferred to the chat's pace, with no attempt spent.
    assert second.state == OutboxState.PENDING
    assert second.attempts == 0
    assert second.next_attempt_at <= datetime.now(UTC) + timedelta(seconds=1)


async def agent_headers(client: TestClient[Any, Any]) -> dict[str, str]:
    _, token = await client.app[DESK].add_agent("Carla")
    return {"Authorization": f"Bearer {token}"}


async def test_an_agent_can_open_a_photo_the_lead_sent(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    update = recorded("message_photo_caption")
    file_id = update["message"]["photo"][-1]["file_id"]
    tg.add_file(file_id, b"\xff\xd8\xff photo bytes", file_path="photos/file_7.jpg")
    assert await deliver(tg, client, update) == 200
    async with client.app[DATABASE].session() as session:
        message = (await session.execute(select(Message))).scalars().first()
    assert message is not None
    headers = await agent_headers(client)
    response = await client.get(f"/api/messages/{message.id}/media/0", headers=headers)
    assert response.status == 200
    assert await response.read() == b"\xff\xd8\xff photo bytes"
    assert response.content_type == "image/jpeg"
    assert (await client.get(f"/api/messages/{message.id}/media/1", headers=headers)).status == 404


async def test_a_file_telegram_no_longer_has_is_404(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    assert await deliver(tg, client, recorded("message_document")) == 200
    async with client.app[DATABASE].session() as session:
        message = (await session.execute(select(Message))).scalars().first()
    assert message is not None
    response = await client.get(
        f"/api/messages/{message.id}/media/0", headers=await agent_headers(client)
    )
    assert response.status == 404
    assert tg.failures  # the fake said "invalid file_id"


async def test_booking_with_buttons_and_the_agents_telegram_reminder(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    mx = ZoneInfo("America/Mexico_City")
    thursday = datetime(2026, 11, 26, 10, 0, tzinfo=mx)
    friday_5 = datetime(2026, 11, 27, 17, 0, tzinfo=mx)
    agent_chat = 4242424242
    await client.app[SCHEDULER].pause()
    await client.app[DESK].add_agent("Carla", telegram_chat_id=agent_chat)
    with time_machine.travel(thursday, tick=True) as clock:
        assert await deliver(tg, client, text_update("llámame mañana a las 5", 90)) == 200
        await send_due(client)
        proposal = tg.calls_to("sendMessage")[-1]
        keyboard = proposal.params["reply_markup"]["inline_keyboard"]
        assert [row[0]["callback_data"] for row in keyboard] == ["affirm", "deny"]

        press = json.loads((DATA / "callback_query.json").read_text(encoding="utf-8"))
        query = press["callback_query"]
        query["data"] = "affirm"
        query["message"]["chat"]["id"] = query["from"]["id"] = MARIANA
        query["message"]["reply_markup"] = proposal.params["reply_markup"]
        assert await deliver(tg, client, press) == 200
        async with client.app[DATABASE].session() as session:
            appointment = (await session.execute(select(Appointment))).scalar_one()
        assert appointment.starts_at == friday_5
        await send_due(client)
        assert "mañana a las 17:00" in tg.sent_texts(MARIANA)[-1]

        clock.move_to(friday_5 - timedelta(minutes=15))
        await client.app[SCHEDULER].fire_due()  # the reminder becomes a notification...
        await send_due(client)  # ...which the outbox sends to the agent's Telegram chat
        [to_agent] = tg.sent_texts(agent_chat)
        assert "Mariana" in to_agent
        assert "17:00" in to_agent


def button_press(proposal: Any, data: str, chat: int = MARIANA) -> dict[str, Any]:
    """A press of one of the buttons of a message we sent, as Telegram delivers it."""
    press = json.loads((DATA / "callback_query.json").read_text(encoding="utf-8"))
    query = press["callback_query"]
    query["id"] = f"press-{data}"[:60]
    query["data"] = data
    query["message"]["chat"]["id"] = query["from"]["id"] = chat
    query["message"]["reply_markup"] = proposal.params["reply_markup"]
    return press


async def test_a_slot_button_the_bot_offered_books_that_slot(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    mx = ZoneInfo("America/Mexico_City")
    thursday = datetime(2026, 11, 26, 10, 0, tzinfo=mx)
    with time_machine.travel(thursday, tick=True):
        # Sunday is closed: the bot offers the nearest free slots as buttons.
        assert await deliver(tg, client, text_update("llámame el domingo a las 5", 95)) == 200
        await send_due(client)
        offer = tg.calls_to("sendMessage")[-1]
        slots = [row[0]["callback_data"] for row in offer.params["reply_markup"]["inline_keyboard"]]
        assert slots and all(data.startswith("slot:") for data in slots)

        assert await deliver(tg, client, button_press(offer, slots[0])) == 200
        async with client.app[DATABASE].session() as session:
            appointment = (await session.execute(select(Appointment))).scalar_one()
        assert appointment.starts_at == datetime.fromisoformat(slots[0].removeprefix("slot:"))
        await send_due(client)
        assert tg.calls_to("answerCallbackQuery")


@pytest.mark.parametrize(
    "data", ["slot:2026-11-30T10:00:00-06:00", "slot:not-a-date", "schedule.confirm", "x" * 64]
)
async def test_a_button_payload_the_bot_did_not_offer_is_read_as_its_words(
    client: TestClient[Any, Any], tg: FakeTelegramServer, data: str
) -> None:
    assert await deliver(tg, client, text_update("hola", 96)) == 200
    await send_due(client)
    greeting = tg.calls_to("sendMessage")[-1]
    greeting.params["reply_markup"] = {
        "inline_keyboard": [[{"text": "¿Cuánto cuesta?", "callback_data": data}]]
    }
    assert await deliver(tg, client, button_press(greeting, data)) == 200
    async with client.app[DATABASE].session() as session:
        assert (await session.execute(select(Appointment))).first() is None
        pressed = (await session.execute(select(Message).order_by(Message.id.desc()))).scalars()
        inbound = next(m for m in pressed if m.direction == "in")
    assert inbound.text == "¿Cuánto cuesta?"
    assert inbound.intent == "info.pricing"


async def crash_mid_send(client: TestClient[Any, Any]) -> None:
    """A dispatcher claimed the pending rows and died before settling them: leases ran out."""
    async with client.app[DATABASE].session() as session:
        await session.execute(
            update(OutboxItem)
            .where(OutboxItem.state == OutboxState.PENDING)
            .values(state=OutboxState.SENDING, lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()


async def test_a_reply_a_crash_left_uncertain_is_held_for_an_agent(
    client: TestClient[Any, Any], tg: FakeTelegramServer
) -> None:
    assert await deliver(tg, client, text_update("¿cuánto cuesta?", 120)) == 200
    await crash_mid_send(client)
    await send_due(client)
    assert tg.calls_to("sendMessage") == []  # it may already be in the chat: not sent again
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.BLOCKED
    assert (message_of(row).error or "").startswith("uncertain")

    headers = await agent_headers(client)
    assert (await client.get("/api/outbox", headers=headers)).status == 403  # admins only
    _, admin_token = await client.app[DESK].add_agent("Coordinadora", admin=True)
    admin = {"Authorization": f"Bearer {admin_token}"}
    listed = await (await client.get("/api/outbox", headers=admin)).json()
    assert listed["failed"][0]["error"].startswith("uncertain")
    # The agent sees the lead did not get it, and sends it again: once.
    response = await client.post(f"/api/outbox/{row.id}/resend", headers=headers)
    assert response.status == 200
    await send_due(client)
    assert len(tg.calls_to("sendMessage")) == 1
    again = await client.post(f"/api/outbox/{row.id}/resend", headers=headers)
    assert again.status == 409  # delivered: nothing to resend


async def test_resend_uncertain_sends_again_when_configured(
    service: Any, tg: FakeTelegramServer
) -> None:
    client = await service(
        telegram={
            "token": tg.token,
            "webhook_secret": SECRET,
            "api_base_url": tg.base_url,
            "per_chat_interval": 0.0,
            "resend_uncertain": True,
        }
    )
    await client.app[DISPATCHER].stop(timeout=1)
    assert await deliver(tg, client, text_update("¿cuánto cuesta?", 121)) == 200
    await crash_mid_send(client)
    await send_due(client)
    assert len(tg.calls_to("sendMessage")) == 1


async def test_a_base_url_with_a_token_placeholder_reaches_the_api(
    service: Any, tg: FakeTelegramServer
) -> None:
    # Telegram's test environment is written https://api.telegram.org/bot{token}/test; the
    # fake serves the plain form, which the placeholder spells too.
    client = await service(
        telegram={
            "token": tg.token,
            "webhook_secret": SECRET,
            "api_base_url": tg.base_url + "{token}",
            "per_chat_interval": 0.0,
        }
    )
    await client.app[DISPATCHER].stop(timeout=1)
    assert await deliver(tg, client, text_update("hola", 130)) == 200
    await send_due(client)
    assert len(tg.calls_to("sendMessage")) == 1


UNREACHABLE_TOKEN = "123456:the-secret-part"


@pytest.mark.parametrize("form", ["/bot", "/bot{token}/test"])
async def test_a_send_that_cannot_reach_the_api_is_retried_with_the_reason(form: str) -> None:
    port = free_port()  # nothing listens there
    bot = make_bot(UNREACHABLE_TOKEN, api_base_url=f"http://127.0.0.1:{port}" + form)
    called = form.replace("{token}", "<token>") if "{token}" in form else form + "<token>"
    message = OutboundMessage(
        key=1, channel=Channel.TELEGRAM, recipient="42", text="hola", created_at=datetime.now(UTC)
    )
    with pytest.raises(RetryLater) as caught:
        await TelegramSender(bot).send(message)
    assert "the-secret-part" not in caught.value.reason
    assert caught.value.reason == (
        f"telegram: could not reach http://127.0.0.1:{port}{called}/sendMessage: "
        "connection refused (nothing listens there)"
    )
    await bot.shutdown()
