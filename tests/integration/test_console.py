"""The console over HTTP: sign-in, sessions, CSRF, roles, and what agents do with conversations
(claim, take over, transfer, close, assignment, the SLA, business hours, Telegram alerts)."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.core.model import ConversationState
from bot.desk.accounts import Accounts, hash_password
from bot.web.console import stream as console_stream
from bot.web.keys import ACCOUNTS, DATABASE, DESK, DISPATCHER, SCHEDULER
from storage.db import Database
from storage.models import (
    Agent,
    AuditEvent,
    Conversation,
    Handoff,
    Lead,
    Message,
    Notification,
    OutboxItem,
    Transfer,
)
from tests.builders import send_due
from tests.command import seguibot
from tests.fakes.telegram_api import FakeTelegramServer, post_update

COMMAND = ("agents", "add", "Eva", "--email", "eva@example.com", "--password-stdin")
PASSWORD = "una-clave-larga-1"
SESSION = "Zk3v9QmT2xLp7RbN4wYc8A"
MX = ZoneInfo("America/Mexico_City")
TG_SECRET = "s3cret-token_for-tests"


async def make_agent(client: TestClient[Any, Any], name: str, *, admin: bool = False) -> Agent:
    agent, _ = await client.app[DESK].add_agent(
        name,
        email=f"{name.lower()}@example.com",
        admin=admin,
        password_hash=hash_password(PASSWORD),
    )
    return agent


class Browser:
    """A cookie jar and the CSRF token of the last page, as a browser would hold them."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.csrf = ""

    async def get(self, path: str, **kwargs: Any) -> Any:
        response = await self.client.get(path, **kwargs)
        text = await response.text()
        if found := re.search(r'name="csrf-token" content="([^"]*)"', text):
            self.csrf = found.group(1)
        return response

    async def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> Any:
        form = {"csrf": self.csrf, **(data or {})}
        return await self.client.post(path, data=form, allow_redirects=False, **kwargs)

    async def sign_in(self, email: str, password: str = PASSWORD) -> Any:
        await self.get("/console/login")
        response = await self.post("/console/login", {"email": email, "password": password})
        if response.status == 303:
            await self.get("/console/me")  # a new session brings a new CSRF token
        return response


async def signed_in_admin(client: TestClient[Any, Any]) -> Browser:
    """Olga, an admin, signed in to the console."""
    await make_agent(client, "Olga", admin=True)
    browser = Browser(client)
    assert (await browser.sign_in("olga@example.com")).status == 303
    return browser


@pytest.fixture
async def client(service: Any) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service(console={"secret": "pruebas-de-consola"})
    await started.app[DISPATCHER].stop(timeout=1)
    return started


async def say(client: TestClient[Any, Any], text: str, session: str = SESSION) -> None:
    response = await client.post("/webchat/messages", json={"session_id": session, "text": text})
    assert response.status == 200, await response.text()


async def rows(client: TestClient[Any, Any], model: Any, *where: Any) -> list[Any]:
    async with client.app[DATABASE].session() as session:
        return list((await session.execute(select(model).where(*where))).scalars())


async def on_the_conversation_page(client: TestClient[Any, Any]) -> tuple[Conversation, str]:
    """A prospect says hello; Carla, an agent, signs in and opens the conversation: it, and
    the page."""
    await make_agent(client, "Carla")
    await say(client, "hola")
    [conversation] = await rows(client, Conversation)
    browser = Browser(client)
    await browser.sign_in("carla@example.com")
    page = await (await browser.get(f"/console/conversations/{conversation.id}")).text()
    return conversation, page


# --- signing in -------------------------------------------------------------------------------


async def test_pages_need_a_session(client: TestClient[Any, Any]) -> None:
    response = await client.get("/console/", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/console/login?next=/console/"
    response = await client.get("/console/queue/rows", headers={"Accept": "application/json"})
    assert response.status == 401


async def test_sign_in_sets_a_sealed_cookie_and_sign_out_ends_it(
    client: TestClient[Any, Any],
) -> None:
    await make_agent(client, "Carla")
    browser = Browser(client)
    response = await browser.sign_in("CARLA@example.com ")
    assert response.status == 303 and response.headers["Location"] == "/console/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert (await browser.get("/console/")).status == 200
    await browser.post("/console/logout")
    assert (await client.get("/console/", allow_redirects=False)).status == 302


async def test_a_wrong_password_says_the_same_as_an_unknown_email(
    client: TestClient[Any, Any],
) -> None:
    await make_agent(client, "Carla")
    wrong = await Browser(client).sign_in("carla@example.com", "otra-clave-larga")
    unknown = await Browser(client).sign_in("nadie@example.com")
    assert wrong.status == unknown.status == 401
    for response in (wrong, unknown):
        assert "Correo o contraseña incorrectos" in await response.text()
    events = await rows(client, AuditEvent, AuditEvent.action == "sign_in_refused")
    assert len(events) == 2


async def test_sign_in_attempts_are_limited_per_account(service: Any) -> None:
    client = await service(console={"secret": "x", "sign_ins_per_minute": 3})
    await make_agent(client, "Carla")
    statuses = [
        (await Browser(client).sign_in("carla@example.com", "otra-clave-larga")).status
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    limited = await Browser(client).sign_in("carla@example.com")  # even the right password
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1


async def test_every_post_needs_the_csrf_token_and_this_sites_origin(
    client: TestClient[Any, Any],
) -> None:
    await make_agent(client, "Carla")
    browser = Browser(client)
    await browser.sign_in("carla@example.com")
    await say(client, "quiero hablar con un asesor")
    response = await client.post(
        "/console/conversations/1/claim", data={"csrf": "otro"}, allow_redirects=False
    )
    assert response.status == 403
    foreign = await browser.post(
        "/console/conversations/1/claim", headers={"Origin": "https://evil.example.com"}
    )
    assert foreign.status == 403
    assert (await rows(client, Conversation))[0].state == ConversationState.WAITING
    assert (await browser.post("/console/conversations/1/claim")).status == 303


async def test_deactivating_an_agent_ends_their_session_at_once(
    client: TestClient[Any, Any],
) -> None:
    await make_agent(client, "Carla", admin=True)
    beto = await make_agent(client, "Beto")
    admin = Browser(client)
    await admin.sign_in("carla@example.com")
    other = await _second_client(client)
    agent = Browser(other)
    await agent.sign_in("beto@example.com")
    assert (await agent.get("/console/")).status == 200
    response = await admin.post(f"/console/agents/{beto.id}/active", {"active": "0"})
    assert response.status == 303
    assert (await other.get("/console/", allow_redirects=False)).status == 302
    assert (await Browser(other).sign_in("beto@example.com")).status == 401


async def _second_client(client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """Another browser (its own cookies) against the same server."""
    from aiohttp.test_utils import TestClient as Client

    other: TestClient[Any, Any] = Client(client.server)
    await other.start_server()
    return other


async def test_an_invitation_works_once(client: TestClient[Any, Any]) -> None:
    await make_agent(client, "Carla", admin=True)
    admin = Browser(client)
    await admin.sign_in("carla@example.com")
    await admin.post(
        "/console/agents/invite", {"name": "Dani", "email": "dani@example.com", "admin": ""}
    )
    page = await (await admin.get("/console/agents")).text()
    link = re.search(r'data-testid="invite-link">[^<]*(/console/invite/[^<\s]+)<', page)
    assert link is not None
    other = await _second_client(client)
    invited = Browser(other)
    assert (await invited.get(link.group(1))).status == 200
    weak = await invited.post(link.group(1), {"password": "corta", "password2": "corta"})
    assert weak.status == 400
    accepted = await invited.post(link.group(1), {"password": PASSWORD, "password2": PASSWORD})
    assert accepted.status == 303
    assert (await invited.get("/console/")).status == 200
    assert (await Browser(await _second_client(client)).get(link.group(1))).status == 404
    [dani] = await rows(client, Agent, Agent.email == "dani@example.com")
    assert dani.role == "agent" and dani.password_hash and dani.password_hash != PASSWORD


async def test_agents_get_403_on_admin_pages_and_actions(client: TestClient[Any, Any]) -> None:
    await make_agent(client, "Beto")
    browser = Browser(client)
    await browser.sign_in("beto@example.com")
    for path in ("/console/agents", "/console/settings", "/console/audit"):
        response = await browser.get(path)
        assert response.status == 403
        assert "solo para coordinadores" in await response.text()
    posted = await browser.post("/console/settings/reasons", {"label": "Otro"})
    assert posted.status == 403


# --- conversations ----------------------------------------------------------------------------


async def test_taking_a_conversation_from_the_bot_makes_the_agent_its_owner(
    client: TestClient[Any, Any],
) -> None:
    carla = await make_agent(client, "Carla")
    await say(client, "hola")
    [conversation] = await rows(client, Conversation)
    assert conversation.state == ConversationState.BOT
    browser = Browser(client)
    await browser.sign_in("carla@example.com")
    await browser.get(f"/console/conversations/{conversation.id}")
    assert (await browser.post(f"/console/conversations/{conversation.id}/claim")).status == 303
    [conversation] = await rows(client, Conversation)
    [lead] = await rows(client, Lead)
    assert conversation.state == ConversationState.AGENT and conversation.agent_id == carla.id
    assert lead.owner_id == carla.id
    # The bot is silent now: the lead's next message gets no reply.
    await say(client, "¿sigues ahí?")
    last = (await rows(client, Message))[-1]
    assert last.direction == "in"


async def test_the_lead_card_names_the_stage_as_the_pipeline_does(
    client: TestClient[Any, Any],
) -> None:
    _, page = await on_the_conversation_page(client)
    [lead] = await rows(client, Lead)
    card = re.search(r'data-testid="stage" data-stage="([^"]+)">([^<]+)<', page)
    assert card is not None
    # The key is the pipeline's; an agent reads the stage's name from config.yaml.
    assert card.groups() == (lead.stage, "Conocimiento")


async def test_the_second_agent_is_told_who_took_it(client: TestClient[Any, Any]) -> None:
    await make_agent(client, "Carla")
    beto = await make_agent(client, "Beto")
    await say(client, "quiero hablar con un asesor")
    await client.app[DESK].claim(1, beto)
    browser = Browser(client)
    await browser.sign_in("carla@example.com")
    await browser.get("/console/conversations/1")
    response = await browser.post("/console/conversations/1/claim")
    assert response.status == 409
    assert "Beto ya atiende esta conversación" in await response.text()


async def test_transfer_needs_a_reason_and_is_recorded(client: TestClient[Any, Any]) -> None:
    carla = await make_agent(client, "Carla")
    beto = await make_agent(client, "Beto")
    await say(client, "quiero hablar con un asesor")
    await client.app[DESK].claim(1, carla)
    browser = Browser(client)
    await browser.sign_in("carla@example.com")
    await browser.get("/console/conversations/1")
    empty = await browser.post("/console/conversations/1/transfer", {"agent": str(beto.id)})
    assert empty.status == 400
    done = await browser.post(
        "/console/conversations/1/transfer", {"agent": str(beto.id), "reason": "Es de su zona"}
    )
    assert done.status == 303
    [transfer] = await rows(client, Transfer)
    assert (transfer.from_agent_id, transfer.to_agent_id) == (carla.id, beto.id)
    assert transfer.reason == "Es de su zona"
    [conversation] = await rows(client, Conversation)
    assert conversation.agent_id == beto.id
    audit = await rows(client, AuditEvent, AuditEvent.action == "conversation_transferred")
    assert len(audit) == 1


async def test_close_needs_a_reason_from_the_list(client: TestClient[Any, Any]) -> None:
    carla = await make_agent(client, "Carla")
    await say(client, "quiero hablar con un asesor")
    await client.app[DESK].claim(1, carla)
    browser = Browser(client)
    await browser.sign_in("carla@example.com")
    await browser.get("/console/conversations/1")
    assert (
        await browser.post("/console/conversations/1/close", {"reason": "Porque sí"})
    ).status == 400
    assert (
        await browser.post("/console/conversations/1/close", {"reason": "Venta cerrada"})
    ).status == 303
    [handoff] = await rows(client, Handoff)
    assert handoff.outcome == "Venta cerrada"
    [conversation] = await rows(client, Conversation)
    assert conversation.state == ConversationState.CLOSED


async def test_handoffs_go_round_robin_among_available_agents_under_capacity(
    client: TestClient[Any, Any],
) -> None:
    carla = await make_agent(client, "Carla")
    beto = await make_agent(client, "Beto")
    dani = await make_agent(client, "Dani")
    await client.app[ACCOUNTS].set_available(dani.id, False)  # away: gets nothing
    async with client.app[DATABASE].session() as session:
        full = await session.get(Agent, beto.id)
        assert full is not None
        full.capacity = 1
        await session.commit()
    for n in range(4):
        await say(client, "quiero hablar con un asesor", f"asignacion-{n:02d}-Zk3v9QmT2xLp7")
    handoffs = sorted(await rows(client, Handoff), key=lambda h: h.id)
    # Carla and Beto take turns until Beto holds his one conversation; then it is Carla's.
    assert [h.assigned_agent_id for h in handoffs] == [carla.id, beto.id, carla.id, carla.id]
    notified = await rows(client, Notification, Notification.kind == "handoff")
    assert sorted(n.agent_id or 0 for n in notified) == sorted(
        [carla.id, beto.id, carla.id, carla.id]
    )


async def test_a_leads_owner_gets_their_handoff(client: TestClient[Any, Any]) -> None:
    await make_agent(client, "Carla")
    beto = await make_agent(client, "Beto")
    await say(client, "hola")
    async with client.app[DATABASE].session() as session:
        lead = (await session.execute(select(Lead))).scalar_one()
        lead.owner_id = beto.id
        await session.commit()
    await say(client, "quiero hablar con un asesor")
    [handoff] = await rows(client, Handoff)
    assert handoff.assigned_agent_id == beto.id


async def test_the_assigned_agent_gets_a_telegram_alert_through_the_outbox(
    service: Any,
) -> None:
    async with FakeTelegramServer() as tg:
        client = await service(
            console={"secret": "x"},
            telegram={
                "token": tg.token,
                "webhook_secret": TG_SECRET,
                "api_base_url": tg.base_url,
                "per_chat_interval": 0.0,
            },
        )
        await client.app[DISPATCHER].stop(timeout=1)
        carla = await make_agent(client, "Carla")
        browser = Browser(client)
        await browser.sign_in("carla@example.com")
        await browser.get("/console/me")
        await browser.post("/console/me/telegram")
        page = await (await browser.get("/console/me")).text()
        code = re.search(r'data-testid="telegram-code">/start ([^<]+)<', page)
        assert code is not None
        update = {
            "update_id": 1,
            "message": {
                "message_id": 5,
                "date": 1781546533,
                "chat": {"id": 4242, "type": "private", "first_name": "Carla"},
                "from": {"id": 4242, "is_bot": False, "first_name": "Carla"},
                "text": f"/start {code.group(1)}",
            },
        }
        assert (
            await post_update(client, update, secret=TG_SECRET, path="/webhooks/telegram")
        ).status == 200
        [agent] = await rows(client, Agent, Agent.id == carla.id)
        assert agent.telegram_chat_id == 4242
        assert await rows(client, Lead) == []  # the code made no lead
        await say(client, "quiero hablar con un asesor")
        await send_due(client)
        texts = tg.sent_texts(4242)
        assert len(texts) == 2  # linked, then the alert
        assert "espera" in texts[1] or "esperando" in texts[1]
        assert all(
            row.notification_id
            for row in await rows(client, OutboxItem, OutboxItem.channel == "telegram")
        )


@pytest.fixture
def thursday_evening() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(datetime(2026, 11, 26, 18, 50, tzinfo=MX), tick=True) as clock:
        yield clock


async def test_outside_business_hours_the_prospect_hears_when_people_are_back_and_the_sla_waits(
    service: Any, thursday_evening: time_machine.Traveller
) -> None:
    client = await service(
        console={"secret": "x"}, handoff={"business_hours": True, "sla_minutes": 15}
    )
    await client.app[SCHEDULER].pause()
    await client.app[DISPATCHER].stop(timeout=1)
    await make_agent(client, "Carla")
    thursday_evening.move_to(datetime(2026, 11, 26, 19, 30, tzinfo=MX))  # closed at 19:00
    response = await client.post(
        "/webchat/messages", json={"session_id": SESSION, "text": "quiero hablar con un asesor"}
    )
    [reply] = (await response.json())["replies"]
    assert "mañana a las 09:00" in reply["text"]
    # The SLA counts business time: at 09:10 it has not run out, at 09:16 it has.
    thursday_evening.move_to(datetime(2026, 11, 27, 9, 10, tzinfo=MX))
    await client.app[SCHEDULER].fire_due()
    assert [m.script for m in await rows(client, Message)].count("handoff.still_waiting") == 0
    [entry] = await client.app[DESK].queue()
    assert not entry.overdue
    thursday_evening.move_to(datetime(2026, 11, 27, 9, 16, tzinfo=MX))
    await client.app[SCHEDULER].fire_due()
    await client.app[SCHEDULER].fire_due()
    assert [m.script for m in await rows(client, Message)].count("handoff.still_waiting") == 1
    [entry] = await client.app[DESK].queue()
    assert entry.overdue


async def test_the_queue_event_stream_announces_a_new_handoff(client: TestClient[Any, Any]) -> None:
    await make_agent(client, "Carla")
    browser = Browser(client)
    await browser.sign_in("carla@example.com")
    async with client.get("/console/events") as stream:
        assert stream.status == 200
        assert await _event(stream) == ("queue", {"count": 0, "new": [], "mine": []})
        await say(client, "quiero hablar con un asesor")
        name, data = await asyncio.wait_for(_event(stream), timeout=5)
        assert name == "queue" and data["count"] == 1 and data["new"] == [1]


async def test_a_message_that_arrives_while_the_page_loads_is_sent_when_its_stream_connects(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console_stream, "LOOK_AGAIN", 60.0)  # only what the page said counts
    conversation, page = await on_the_conversation_page(client)
    found = re.search(r'data-seen="([^"]*)"', page)
    assert found is not None
    seen = html.unescape(found.group(1))
    await say(client, "¿me escuchan?")  # after the page was made, before its stream connects
    query = {"conversation": str(conversation.id), "seen": seen}
    async with client.get("/console/events", params=query) as stream:
        assert (await _event(stream))[0] == "queue"
        name, data = await asyncio.wait_for(_event(stream), timeout=5)
    assert (name, data) == ("conversation", {"id": conversation.id})


async def _event(stream: Any) -> tuple[str, dict[str, Any]]:
    name = ""
    while True:
        line = (await stream.content.readline()).decode().strip()
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            return name, json.loads(line[6:])


async def test_agents_add_password_stdin_signs_in(database_url: str) -> None:
    result = await asyncio.to_thread(
        seguibot, *COMMAND, env={**os.environ, "DATABASE_URL": database_url}, stdin=PASSWORD + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    db = Database(database_url)
    try:
        agent = await Accounts(db).sign_in("eva@example.com", PASSWORD, None)
        assert agent.name == "Eva"
    finally:
        await db.dispose()


async def test_an_agent_books_moves_and_cancels_an_appointment_for_the_lead(
    client: TestClient[Any, Any],
) -> None:
    from storage.models import Appointment, ScheduledAction

    carla = await make_agent(client, "Carla")
    await say(client, "quiero hablar con un asesor")
    await client.app[DESK].claim(1, carla)
    browser = Browser(client)
    await browser.sign_in("carla@example.com")
    await browser.get("/console/conversations/1")
    day = datetime.now(MX).date()
    # A weekday at 11:00 two weeks ahead: open, on the grid, within the horizon.
    while True:
        day = day.fromordinal(day.toordinal() + 1)
        if day.weekday() < 5 and (day - datetime.now(MX).date()).days > 7:
            break
    booked = await browser.post(
        "/console/conversations/1/appointments", {"kind": "visit", "when": f"{day}T11:00"}
    )
    assert booked.status == 303
    [appointment] = await rows(client, Appointment)
    assert appointment.kind == "visit"
    assert appointment.starts_at == datetime.combine(day, datetime.min.time(), MX).replace(hour=11)
    reminders = await rows(
        client, ScheduledAction, ScheduledAction.appointment_id == appointment.id
    )
    assert reminders  # the lead is reminded, as for bookings made in the chat
    from storage.models import Activity, ScoreEvent

    # The CRM keeps it as it keeps the bot's bookings: the booked signal and an activity.
    assert [e.rule for e in await rows(client, ScoreEvent, ScoreEvent.rule == "booked")] == [
        "booked"
    ]
    [activity] = await rows(client, Activity, Activity.kind == "appointment")
    assert (activity.agent_id, activity.details["kind"]) == (carla.id, "visit")
    page = await (await browser.get("/console/conversations/1")).text()
    assert "Cita agendada" in page and "Visita" in page

    moved = await browser.post(
        f"/console/conversations/1/appointments/{appointment.id}/move", {"when": f"{day}T12:30"}
    )
    assert moved.status == 303
    [appointment] = await rows(client, Appointment)
    assert appointment.starts_at.astimezone(MX).hour == 12
    cancelled = await browser.post(f"/console/conversations/1/appointments/{appointment.id}/cancel")
    assert cancelled.status == 303
    [appointment] = await rows(client, Appointment)
    assert appointment.state == "cancelled"
