"""WhatsApp over capacity: a message is stored before it is acknowledged, and handled once.

Twilio never delivers a webhook again. When no place is free the webhook stores the message
(`deferred_inbound`), answers 200, and a worker handles it when it can. These tests stop the
service at the worst moments (after the store, before any handling; after a worker claimed the
row; after the engine committed but before the row was deleted) and start another one on the
same database: each message ends up stored once and answered once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, text, update

from bot.app import DEFERRING
from bot.conversation.deferred import from_record
from bot.core.model import Direction, utcnow
from bot.web.keys import DATABASE, ENGINE
from storage.db import Database
from storage.models import ChannelIdentity, Conversation, DeferredInbound, Message
from tests.command import ROOT
from tests.conftest import free_port
from tests.fakes.twilio_api import WHATSAPP_SANDBOX, FakeTwilioServer
from tests.integration.test_whatsapp import ANA, whatsapp_settings


@pytest.fixture
async def tw() -> AsyncIterator[FakeTwilioServer]:
    async with FakeTwilioServer() as server:
        yield server


async def start(service: Any, tw: FakeTwilioServer, *, lease: float = 15.0) -> TestClient[Any, Any]:
    port = free_port()
    client: TestClient[Any, Any] = await service(
        port=port,
        database={"in_flight": 1, "queue_timeout": 0.05, "deferred_lease": lease},
        **whatsapp_settings(tw, port),
    )
    return client


async def post(client: TestClient[Any, Any], tw: FakeTwilioServer, params: dict[str, str]) -> Any:
    path = "/webhooks/whatsapp"
    form, headers = tw.sign(f"http://127.0.0.1:{client.server.port}{path}", params)
    return await client.post(path, data=form, headers=headers)


async def counts(client: TestClient[Any, Any], sid: str) -> tuple[int, int, int]:
    """(inbound rows with this id, bot replies, deferred rows)."""
    async with client.app[DATABASE].session() as session:
        inbound = await session.scalar(
            select(func.count()).where(Message.channel_message_id == sid)
        )
        replies = await session.scalar(
            select(func.count()).where(Message.direction == Direction.OUT)
        )
        deferred = await session.scalar(select(func.count()).select_from(DeferredInbound))
    return int(inbound or 0), int(replies or 0), int(deferred or 0)


async def handled(client: TestClient[Any, Any], sid: str) -> tuple[int, int, int]:
    """Wait (up to 30 s: a loaded machine starts the worker late) for the worker of `client`
    to empty the deferred rows."""
    for _ in range(600):
        found = await counts(client, sid)
        if found[2] == 0 and found[0]:
            return found
        await asyncio.sleep(0.05)
    return await counts(client, sid)


async def stored_while_full(
    service: Any, tw: FakeTwilioServer, params: dict[str, str]
) -> TestClient[Any, Any]:
    """A service with its one place taken answers the webhook 200 and stores the message;
    then it stops before any worker could handle it (the place is never freed)."""
    # Whatever its worker claims before the end is held for a short lease only.
    first = await start(service, tw, lease=0.5)
    assert first.app[DEFERRING].lease == timedelta(seconds=0.5)
    await first.app[ENGINE].admission._acquire()  # the one place, never released: it dies full
    response = await post(first, tw, params)
    assert response.status == 200
    assert (await response.text()).endswith("<Response/>")
    # Twilio's retry of the same message (or a duplicate post) stores nothing twice.
    assert (await post(first, tw, params)).status == 200
    assert await counts(first, params["MessageSid"]) == (0, 0, 1)
    await first.close()  # the process ends here: nothing handled, the 200 already sent
    return first


async def test_a_message_stored_over_capacity_is_handled_after_a_restart_exactly_once(
    service: Any, tw: FakeTwilioServer
) -> None:
    params = tw.inbound_whatsapp_params(ANA, "hola, ¿cuánto cuesta?")
    sid = params["MessageSid"]
    await stored_while_full(service, tw, params)

    second = await start(service, tw)  # the restart: its worker finds the row
    inbound, replies, deferred = await handled(second, sid)
    assert (inbound, deferred) == (1, 0)
    assert replies >= 1
    # Delivered again after it was handled: a duplicate, nothing more. (On a loaded machine the
    # one place may not come within 0.05 s: then the duplicate is stored, and the worker finds
    # it a duplicate.)
    assert (await post(second, tw, params)).status == 200
    assert await handled(second, sid) == (1, replies, 0)


async def test_a_worker_that_died_holding_a_claim_is_relieved_when_its_lease_ends(
    service: Any, tw: FakeTwilioServer
) -> None:
    params = tw.inbound_whatsapp_params(ANA, "hola")
    sid = params["MessageSid"]
    first = await stored_while_full(service, tw, params)
    async with first.app[DATABASE].session() as session:
        # A worker claimed it and died before handling it. (The lease outlasts the next
        # start, which took over half a second on a loaded machine.)
        await session.execute(
            update(DeferredInbound).values(lease_until=utcnow() + timedelta(seconds=5))
        )
        await session.commit()

    second = await start(service, tw)
    assert await counts(second, sid) == (0, 0, 1)  # held by the dead worker's lease
    inbound, replies, deferred = await handled(second, sid)
    assert (inbound, deferred) == (1, 0)
    assert replies >= 1


async def test_a_message_handled_just_before_the_crash_is_not_handled_twice(
    service: Any, tw: FakeTwilioServer
) -> None:
    params = tw.inbound_whatsapp_params(ANA, "hola, ¿cuánto cuesta?")
    sid = params["MessageSid"]
    first = await stored_while_full(service, tw, params)
    # The worker handled it (the engine committed) and died before deleting the row.
    async with first.app[DATABASE].session() as session:
        record = (await session.execute(select(DeferredInbound.event))).scalar_one()
    second = await start(service, tw)
    await second.app[DEFERRING].engine._attempts(from_record(record))
    _, replies_once, _ = await counts(second, sid)

    second.app[DEFERRING].wake()
    inbound, replies, deferred = await handled(second, sid)
    assert (inbound, deferred) == (1, 0)
    assert replies == replies_once  # the second run found the message and did nothing


# --- a real process, killed with SIGKILL -------------------------------------------------------


async def _serve(database_url: str, tw: FakeTwilioServer, port: int) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
    env.update(
        DATABASE_URL=database_url,
        SEGUIBOT_DATABASE_IN_FLIGHT="1",
        SEGUIBOT_DATABASE_QUEUE_TIMEOUT="0.2",
        SEGUIBOT_DATABASE_DEFERRED_LEASE="3",
        TWILIO_ACCOUNT_SID=tw.account_sid,
        TWILIO_AUTH_TOKEN=tw.auth_token,
        SEGUIBOT_TWILIO_API_BASE_URL=tw.base_url,
        SEGUIBOT_WHATSAPP_FROM=WHATSAPP_SANDBOX,
        SEGUIBOT_PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        "--port",
        str(port),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with aiohttp.ClientSession() as session:
        for _ in range(1200):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return process
            await asyncio.sleep(0.1)
    process.kill()
    raise AssertionError("seguibot serve did not come up")


async def _post_to(
    session: aiohttp.ClientSession, port: int, tw: FakeTwilioServer, params: dict[str, str]
) -> int:
    url = f"http://127.0.0.1:{port}/webhooks/whatsapp"
    form, headers = tw.sign(url, params)
    async with session.post(url, data=form, headers=headers) as response:
        await response.read()
        return response.status


async def test_seguibot_killed_after_storing_handles_the_message_after_restart_once(
    database_url: str, tw: FakeTwilioServer
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("a row lock held from outside the process is PostgreSQL's")
    port = free_port()
    db = Database(database_url)
    server = await _serve(database_url, tw, port)
    try:
        async with aiohttp.ClientSession() as session:
            first = tw.inbound_whatsapp_params(ANA, "hola")
            assert await _post_to(session, port, tw, first) == 200
            # Ana's conversation is held by another transaction: her next message takes the
            # service's one place and waits there.
            async with db.engine.connect() as holder:
                await holder.execute(text("SELECT id FROM conversations FOR UPDATE"))
                stuck = asyncio.create_task(
                    _post_to(session, port, tw, tw.inbound_whatsapp_params(ANA, "¿sigues?"))
                )
                await asyncio.sleep(1.0)
                # Beto writes meanwhile: no place within 0.2 s, so he is stored and answered 200.
                beto = tw.inbound_whatsapp_params("whatsapp:+5215598765432", "hola, ¿precios?")
                assert await _post_to(session, port, tw, beto) == 200
                async with db.session() as check:
                    stored = await check.scalar(select(func.count()).select_from(DeferredInbound))
                assert stored == 1
                server.kill()  # SIGKILL: no shutdown, nothing flushed
                await server.wait()
                stuck.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                    await stuck
                await holder.rollback()
        server = await _serve(database_url, tw, port)  # the restart
        # The killed process may have held Beto's row under its claim (it waits 0.2 s for a
        # place each time it tries): the row comes back when that lease runs out.
        for _ in range(600):
            async with db.session() as check:
                left = await check.scalar(select(func.count()).select_from(DeferredInbound))
                handled = await check.scalar(
                    select(func.count()).where(Message.channel_message_id == beto["MessageSid"])
                )
            if left == 0 and handled:
                break
            await asyncio.sleep(0.1)
        assert (left, handled) == (0, 1)
        async with db.session() as check:
            replies = await check.scalar(
                select(func.count())
                .select_from(Message)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
                .where(
                    ChannelIdentity.external_id == "whatsapp:+5215598765432",
                    Message.direction == Direction.OUT,
                )
            )
        assert replies and replies >= 1
    finally:
        server.kill()
        await server.wait()
        await db.dispose()
