"""Outbound webhooks against a real local aiohttp receiver (SQLite and PostgreSQL): events
staged with the change, signed so the README's recipe verifies them, retried with backoff after
a failure and never again after a success; the delivery log in the console."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.web.keys import DATABASE, DISPATCHER, ENDPOINTS, PIPELINES, RECORDS, SCHEDULER, WEBHOOKS
from storage.models import Agent, Lead, WebhookDelivery
from tests.integration.test_console import Browser, make_agent


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The README's recipe, word for word."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = parts["t"]
    signed = timestamp.encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    recent = abs(time.time() - int(timestamp)) <= tolerance
    return recent and hmac.compare_digest(expected, parts["v1"])


class Receiver:
    """A real HTTP endpoint: answers the statuses it is told to, in order, and keeps what came."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[str, bytes]] = []
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.headers.get("Seguibot-Signature", ""), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self.server = TestServer(app)
        await self.server.start_server()
        return str(self.server.make_url("/hooks"))

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


@pytest.fixture
async def client(service: Any) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service(
        console={"secret": "pruebas"}, outbox={"backoff_base": 0.01, "backoff_max": 0.02}
    )
    await started.app[DISPATCHER].stop(timeout=1)
    await started.app[SCHEDULER].pause()
    await started.app[WEBHOOKS].stop()  # the test sends when it says
    return started


async def deliveries(client: TestClient[Any, Any]) -> list[WebhookDelivery]:
    async with client.app[DATABASE].session() as session:
        statement = select(WebhookDelivery).order_by(WebhookDelivery.id)
        return list((await session.execute(statement)).scalars())


async def send_all(client: TestClient[Any, Any]) -> None:
    """Send what is due, waiting out the (tiny) backoff between attempts."""
    import asyncio

    for _ in range(20):
        await client.app[WEBHOOKS].drain()
        if all(d.state != "pending" for d in await deliveries(client)):
            return
        await asyncio.sleep(0.05)


async def test_events_are_signed_retried_after_failure_and_stop_after_success(
    client: TestClient[Any, Any],
) -> None:
    receiver = Receiver([500, 200])
    url = await receiver.start()
    try:
        endpoint = await client.app[ENDPOINTS].add(
            url, ["lead.created", "lead.stage_changed"], None
        )
        response = await client.post(
            "/webchat/messages", json={"session_id": "sesion-de-webhook-000001-abc", "text": "hola"}
        )
        assert response.status == 200
        [staged] = await deliveries(client)
        assert (staged.event, staged.state) == ("lead.created", "pending")
        await send_all(client)
        [delivered] = await deliveries(client)
        assert (delivered.state, delivered.attempts, delivered.last_status) == ("done", 2, 200)
        assert len(receiver.received) == 2  # one failure, one success, then nothing more
        await send_all(client)
        assert len(receiver.received) == 2
        for header, body in receiver.received:
            assert verify(endpoint.secret, header, body)
            assert not verify("whsec_otro", header, body)
            assert not verify(endpoint.secret, header, body + b" ")
        event = json.loads(receiver.received[-1][1])
        async with client.app[DATABASE].session() as session:
            lead = (await session.execute(select(Lead))).scalar_one()
        assert event["type"] == "lead.created" and event["data"]["lead"]["id"] == lead.id
        assert event["id"].startswith("evt_")

        # Only the events it asked for: a stage change yes, a handoff no.
        await client.app[PIPELINES].move(lead.id, "interest")
        await client.post(
            "/webchat/messages",
            json={
                "session_id": "sesion-de-webhook-000001-abc",
                "text": "quiero hablar con un asesor",
            },
        )
        await send_all(client)
        events = [json.loads(body)["type"] for _, body in receiver.received]
        assert events == ["lead.created", "lead.created", "lead.stage_changed"]
        changed = json.loads(receiver.received[-1][1])["data"]
        assert (changed["from"], changed["to"]) == ("awareness", "interest")
    finally:
        await receiver.close()


async def test_an_endpoint_that_never_answers_2xx_fails_after_the_attempts(
    service: Any,
) -> None:
    client = await service(outbox={"backoff_base": 0.01, "backoff_max": 0.02, "max_attempts": 3})
    await client.app[WEBHOOKS].stop()
    await client.app[SCHEDULER].pause()
    receiver = Receiver([503] * 10)
    url = await receiver.start()
    try:
        await client.app[ENDPOINTS].add(url, ["deal.won", "deal.lost", "handoff.requested"], None)
        await client.post(
            "/webchat/messages",
            json={
                "session_id": "sesion-de-webhook-000002-abc",
                "text": "quiero hablar con un asesor",
            },
        )
        await send_all(client)
        [failed] = await deliveries(client)
        assert (failed.event, failed.state, failed.attempts) == ("handoff.requested", "failed", 3)
        assert failed.last_error == "HTTP 503" and len(receiver.received) == 3
    finally:
        await receiver.close()


async def test_deal_events_and_the_console_delivery_log(client: TestClient[Any, Any]) -> None:
    receiver = Receiver([])
    url = await receiver.start()
    try:
        admin = await make_agent(client, "Carla", admin=True)
        browser = Browser(client)
        await browser.sign_in("carla@example.com")
        await browser.get("/console/webhooks")
        bad = await browser.post("/console/webhooks", {"url": "ftp://x", "event": "deal.won"})
        assert bad.status == 400
        form = [("csrf", browser.csrf), ("url", url), ("event", "deal.won"), ("event", "deal.lost")]
        added = await client.post("/console/webhooks", data=form, allow_redirects=False)
        assert added.status == 303
        await client.post(
            "/webchat/messages", json={"session_id": "sesion-de-webhook-000003-abc", "text": "hola"}
        )
        async with client.app[DATABASE].session() as session:
            lead = (await session.execute(select(Lead))).scalar_one()
            carla = (await session.execute(select(Agent))).scalar_one()
        records = client.app[RECORDS]
        deal = await records.add_deal(lead.id, carla, product="Plan", amount="10", currency="MXN")
        await records.close_deal(deal.id, carla, won=True)
        await send_all(client)
        [(_, body)] = receiver.received
        sent = json.loads(body)
        assert sent["type"] == "deal.won" and sent["data"]["deal"]["amount"] == "10.00"
        log = await (await browser.get(added.headers["Location"])).text()
        assert "deal.won" in log and "Entregado" in log and "HTTP 200" in log
        assert admin.id == carla.id
        await make_agent(client, "Beto")
        agent = Browser(client)
        await agent.sign_in("beto@example.com")
        assert (await agent.get("/console/webhooks")).status == 403
    finally:
        await receiver.close()
