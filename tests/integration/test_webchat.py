"""The web chat end to end: a real server on a loopback port, a client, the database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.core.model import Direction
from bot.web.keys import DATABASE, DESK
from storage.models import Message

SESSION = "sesion-prueba-01-Kq7mZ2xW9p"


async def say(client: TestClient[Any, Any], text: str, **extra: Any) -> dict[str, Any]:
    response = await client.post(
        "/webchat/messages", json={"session_id": SESSION, "text": text, **extra}
    )
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def scripts_sent(client: TestClient[Any, Any]) -> list[str | None]:
    async with client.app[DATABASE].session() as session:
        statement = select(Message.script).where(Message.direction == Direction.OUT)
        return list((await session.execute(statement.order_by(Message.id))).scalars())


async def next_event(response: Any, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            line = (await response.content.readline()).decode()
            if line.startswith("data: "):
                event: dict[str, Any] = json.loads(line[6:])
                return event


async def test_the_page_is_spanish(service: Any) -> None:
    client = await service()
    response = await client.get("/chat")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert '<html lang="es">' in page and "Escribe un mensaje" in page


async def test_hola_gets_a_greeting(service: Any) -> None:
    client = await service()
    body = await say(client, "hola", message_id="m-1")
    assert body["message_id"] == "m-1"
    [reply] = body["replies"]
    assert reply["text"] and isinstance(reply["id"], int)
    assert await scripts_sent(client) == ["greeting"]


async def test_a_retried_message_is_answered_once(service: Any) -> None:
    client = await service()
    first = await say(client, "¿cuánto cuesta?", message_id="m-2")
    again = await say(client, "¿cuánto cuesta?", message_id="m-2")
    assert first["replies"] and again["replies"] == []
    assert await scripts_sent(client) == ["info.pricing"]


async def test_message_ids_are_per_session(service: Any) -> None:
    client = await service()
    await say(client, "hola", message_id="1")
    other = await client.post(
        "/webchat/messages",
        json={"session_id": "otra-sesion-02-Kq7mZ2xW9p", "text": "hola", "message_id": "1"},
    )
    assert (await other.json())["replies"]


async def test_handoff_then_the_agent_reply_arrives_by_events(service: Any) -> None:
    client = await service()
    handed = await say(client, "quiero hablar con un asesor")
    assert len(handed["replies"]) == 1
    posted = await say(client, "¿me escuchan?", message_id="m-escuchan")
    assert posted["replies"] == [] and isinstance(posted["id"], int)

    agent, _ = await client.app[DESK].add_agent("Carla")
    [entry] = await client.app[DESK].queue()
    await client.app[DESK].claim(entry.conversation_id, agent)

    events = await client.get(
        f"/webchat/events?session_id={SESSION}&after={handed['replies'][0]['id']}"
    )
    assert events.headers["Content-Type"] == "text/event-stream"
    # The lead's own message comes too (a second tab shows it), with the id the page gave it.
    own = await next_event(events)
    assert own == {
        "id": own["id"],
        "author": "lead",
        "text": "¿me escuchan?",
        "at": own["at"],
        "client_id": "m-escuchan",
    }
    await client.app[DESK].reply(entry.conversation_id, agent, "Hola, soy Carla. ¿En qué te ayudo?")
    event = await next_event(events)
    assert event == {
        "id": event["id"],
        "author": "agent",
        "text": "Hola, soy Carla. ¿En qué te ayudo?",
        "at": event["at"],
    }
    events.close()

    history = await client.get(f"/webchat/history?session_id={SESSION}")
    messages = (await history.json())["messages"]
    assert [m["author"] for m in messages] == ["lead", "bot", "lead", "agent"]
    # Every message has its time, UTC in ISO 8601, in order.
    times = [datetime.fromisoformat(m["at"]) for m in messages]
    assert all(t.utcoffset() == timedelta(0) for t in times) and times == sorted(times)
    assert abs(times[-1] - datetime.now(UTC)) < timedelta(minutes=1)


async def test_events_replay_after_last_event_id(service: Any) -> None:
    client = await service()
    greeting = (await say(client, "hola"))["replies"][0]
    pricing = (await say(client, "precio?"))["replies"][0]
    events = await client.get(
        f"/webchat/events?session_id={SESSION}", headers={"Last-Event-ID": str(greeting["id"])}
    )
    asked = await next_event(events)
    assert (asked["author"], asked["text"]) == ("lead", "precio?")
    assert (await next_event(events))["id"] == pricing["id"]
    events.close()


async def test_the_page_greets_with_the_business_script_and_has_an_icon(service: Any) -> None:
    client = await service(business={"name": "Inmobiliaria Sol", "product": "tu casa nueva"})
    page = await (await client.get("/chat")).text()
    greeting = page.split('class="saludo"')[1].split("</li>")[0]
    assert "Inmobiliaria Sol" in greeting and "tu casa nueva" in greeting
    icon = await client.get("/favicon.ico")
    assert icon.status == 200 and icon.content_type == "image/x-icon"
    assert (await icon.read())[:4] == b"\x00\x00\x01\x00"  # an ICO file


async def test_bad_requests_are_refused_clearly(service: Any) -> None:
    client = await service()
    cases: list[tuple[dict[str, Any], int, str]] = [
        (
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid JSON",
        ),
        (
            {"data": b"text=hola", "headers": {"Content-Type": "text/plain"}},
            415,
            "application/json",
        ),
        ({"json": {"session_id": "x", "text": "hola"}}, 400, "session_id"),
        ({"json": {"session_id": SESSION, "text": 5}}, 400, "text must be a string"),
        ({"json": [1, 2]}, 400, "JSON object"),
        ({"json": {"session_id": SESSION, "text": "a" * 20_000}}, 400, "longer than"),
        ({"json": {"session_id": SESSION, "text": "hola", "message_id": "a b"}}, 400, "message_id"),
    ]
    for kwargs, status, reason in cases:
        response = await client.post("/webchat/messages", **kwargs)
        assert response.status == status, kwargs
        assert reason in (await response.json())["error"]
    assert await scripts_sent(client) == []


async def test_oversized_body_is_413(service: Any) -> None:
    client = await service()
    response = await client.post(
        "/webchat/messages",
        data=b"{" + b" " * (1024 * 1024 + 10) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 413


async def test_odd_but_valid_texts_never_fail(service: Any) -> None:
    client = await service()
    for text in ["<img src=x onerror=alert(1)>", "a" * 10_000, "🙏🙏", "", "\u0000hola"]:
        await say(client, text)


@pytest.mark.parametrize(
    "weak",
    [
        "sesion-prueba-01",  # short: 16 characters
        "1732900000000012345678901",  # Date.now() + Math.random(), digits only
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "session-0000000000000000001",  # a counter
    ],
)
async def test_session_ids_anyone_could_guess_are_refused(service: Any, weak: str) -> None:
    client = await service()
    response = await client.post("/webchat/messages", json={"session_id": weak, "text": "hola"})
    assert response.status == 400
    assert "crypto.getRandomValues" in (await response.json())["error"]
    for path in ("/webchat/history", "/webchat/events"):
        assert (await client.get(path, params={"session_id": weak})).status == 400


async def test_reading_conversations_is_rate_limited_per_address(service: Any) -> None:
    client = await service(webchat={"reads_per_minute": 20})
    statuses = [
        (await client.get("/webchat/history", params={"session_id": SESSION})).status
        for _ in range(12)
    ]
    # A burst of a quarter of the minute's reads (at least 10), then one every 3 seconds.
    assert statuses[:10] == [200] * 10
    response = await client.get("/webchat/history", params={"session_id": SESSION})
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= 1
    # Sending messages is not a read: a prospect who chats fast is never held back.
    assert (
        await client.post("/webchat/messages", json={"session_id": SESSION, "text": "hola"})
    ).status == 200


async def test_security_headers(service: Any) -> None:
    client = await service()
    page = await client.get("/chat")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in await page.text() and "<style>" not in await page.text()
    for response in (page, await client.get("/healthz"), await client.get("/nope")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
    assert "default-src 'none'" in (await client.get("/healthz")).headers["Content-Security-Policy"]
    script = await client.get("/static/webchat/chat.js")
    assert script.status == 200 and "getRandomValues" in await script.text()


async def test_the_chat_page_may_be_framed_by_the_sites_an_admin_lists(service: Any) -> None:
    client = await service(webchat={"frame_ancestors": ["https://www.example.com"]})
    page = await client.get("/chat")
    assert "frame-ancestors https://www.example.com" in page.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in page.headers
