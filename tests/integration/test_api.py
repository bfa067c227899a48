"""The handoff API: queue, claim (atomic), reply, hand back, close."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from bot.web.keys import DESK, DISPATCHER

SESSION = "sesion-api-0001-Kq7mZ2xW9p"


async def agent_token(
    client: TestClient[Any, Any], name: str, *, admin: bool = False
) -> dict[str, str]:
    _, token = await client.app[DESK].add_agent(name, admin=admin)
    return {"Authorization": f"Bearer {token}"}


async def hand_off(client: TestClient[Any, Any], session: str = SESSION) -> int:
    await client.post(
        "/webchat/messages", json={"session_id": session, "text": "pásame con un asesor por favor"}
    )
    queue = await (await client.get("/api/queue", headers=await agent_token(client, "q"))).json()
    ids = [e["conversation_id"] for e in queue["queue"]]
    assert ids, queue
    return int(ids[-1])


async def test_api_needs_a_token(service: Any) -> None:
    client = await service()
    assert (await client.get("/api/queue")).status == 401
    wrong = await client.get("/api/queue", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")


async def test_queue_shows_priority_and_wait(service: Any) -> None:
    client = await service()
    await client.post(
        "/webchat/messages",
        json={"session_id": "sess-buyer-1-Kq7mZ2xW9p", "text": "quiero comprar, ¿cómo pago?"},
    )
    await client.post(
        "/webchat/messages",
        json={"session_id": "sess-human-1-Kq7mZ2xW9p", "text": "quiero hablar con un asesor"},
    )
    body = await (await client.get("/api/queue", headers=await agent_token(client, "Ana"))).json()
    reasons = [e["reason"] for e in body["queue"]]
    assert reasons == ["buy.intent", "handoff.human"]  # buyers first
    assert all(e["waiting_seconds"] >= 0 for e in body["queue"])


async def test_two_agents_claiming_at_once_one_wins(service: Any) -> None:
    client = await service()
    conversation = await hand_off(client)
    ana, beto = await agent_token(client, "Ana"), await agent_token(client, "Beto")
    responses = await asyncio.gather(
        client.post(f"/api/conversations/{conversation}/claim", headers=ana),
        client.post(f"/api/conversations/{conversation}/claim", headers=beto),
    )
    assert sorted(r.status for r in responses) == [200, 409]
    assert (await (await client.get("/api/queue", headers=ana)).json())["queue"] == []


async def test_agent_reply_goes_out_and_bot_stays_quiet(service: Any) -> None:
    client = await service()
    conversation = await hand_off(client)
    ana = await agent_token(client, "Ana")
    assert (
        await client.post(f"/api/conversations/{conversation}/claim", headers=ana)
    ).status == 200
    sent = await client.post(
        f"/api/conversations/{conversation}/messages", json={"text": "Hola, soy Ana"}, headers=ana
    )
    assert sent.status == 201
    await client.app[DISPATCHER].drain()
    lead_says = await client.post(
        "/webchat/messages", json={"session_id": SESSION, "text": "hola Ana, gracias"}
    )
    assert (await lead_says.json())["replies"] == []
    detail = await (await client.get(f"/api/conversations/{conversation}", headers=ana)).json()
    assert detail["state"] == "agent"
    assert [(m["author"], m["status"]) for m in detail["messages"]][-2:] == [
        ("agent", "sent"),
        ("lead", "received"),
    ]


async def test_only_the_owner_replies(service: Any) -> None:
    client = await service()
    conversation = await hand_off(client)
    ana, beto = await agent_token(client, "Ana"), await agent_token(client, "Beto")
    await client.post(f"/api/conversations/{conversation}/claim", headers=ana)
    other = await client.post(
        f"/api/conversations/{conversation}/messages", json={"text": "yo también"}, headers=beto
    )
    assert other.status == 409


async def test_hand_back_returns_the_bot(service: Any) -> None:
    client = await service()
    conversation = await hand_off(client)
    ana = await agent_token(client, "Ana")
    await client.post(f"/api/conversations/{conversation}/claim", headers=ana)
    back = await client.post(f"/api/conversations/{conversation}/handback", headers=ana)
    assert back.status == 200
    reply = await client.post(
        "/webchat/messages", json={"session_id": SESSION, "text": "¿cuánto cuesta?"}
    )
    assert (await reply.json())["replies"]


async def test_closed_conversation_reopens_with_the_bot(service: Any) -> None:
    client = await service()
    conversation = await hand_off(client)
    ana = await agent_token(client, "Ana")
    await client.post(f"/api/conversations/{conversation}/claim", headers=ana)
    assert (
        await client.post(f"/api/conversations/{conversation}/close", headers=ana)
    ).status == 200
    detail = await (await client.get(f"/api/conversations/{conversation}", headers=ana)).json()
    assert detail["state"] == "closed"
    reply = await client.post(
        "/webchat/messages", json={"session_id": SESSION, "text": "hola de nuevo"}
    )
    assert (await reply.json())["replies"]


async def test_unknown_conversation_is_404(service: Any) -> None:
    client = await service()
    ana = await agent_token(client, "Ana")
    assert (await client.post("/api/conversations/999/claim", headers=ana)).status == 404


async def test_reply_validation(service: Any) -> None:
    client = await service()
    conversation = await hand_off(client)
    ana = await agent_token(client, "Ana")
    await client.post(f"/api/conversations/{conversation}/claim", headers=ana)
    url = f"/api/conversations/{conversation}/messages"
    assert (await client.post(url, data="hola", headers=ana)).status == 415
    assert (await client.post(url, json={"text": "  "}, headers=ana)).status == 400
