"""Admission control under a burst: more messages at once than places, on a real server.

Nothing is answered 500, nobody waits past the bound, every message answered 200 is stored,
and a refused one is answered 503 with Retry-After (and stored nowhere, so a retry is new).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.core.model import Direction
from bot.web.keys import DATABASE, ENGINE
from storage.models import Message

BURST = 40


async def burst(client: TestClient[Any, Any]) -> list[tuple[str, int, str | None, float]]:
    """BURST new prospects writing at the same moment: (message key, status, Retry-After, s)."""

    async def one(n: int) -> tuple[str, int, str | None, float]:
        session = secrets.token_urlsafe(16)
        started = time.perf_counter()
        response = await client.post(
            "/webchat/messages",
            json={"session_id": session, "text": "hola, ¿cuánto cuesta?", "message_id": f"b{n}"},
        )
        await response.read()
        elapsed = time.perf_counter() - started
        return f"{session}:b{n}", response.status, response.headers.get("Retry-After"), elapsed

    return list(await asyncio.gather(*(one(n) for n in range(BURST))))


async def stored(client: TestClient[Any, Any]) -> set[str | None]:
    async with client.app[DATABASE].session() as session:
        rows = await session.execute(
            select(Message.channel_message_id).where(Message.direction == Direction.IN)
        )
        return set(rows.scalars())


async def test_a_burst_larger_than_the_places_waits_in_turn_and_is_all_answered(
    service: Any,
) -> None:
    client = await service(database={"in_flight": 2, "queue_timeout": 30})
    gate = client.app[ENGINE].admission
    peak = 0
    receive = client.app[ENGINE]._attempts

    async def watched(event: Any) -> Any:
        nonlocal peak
        peak = max(peak, gate.in_flight)
        return await receive(event)

    client.app[ENGINE]._attempts = watched
    answers = await burst(client)
    assert [status for _, status, _, _ in answers] == [200] * BURST
    assert peak == 2  # never more than the places, and they were all used
    assert {key for key, *_ in answers} <= await stored(client)
    assert gate.in_flight == 0


async def test_past_the_bound_a_burst_is_refused_with_503_never_500_nor_a_long_wait(
    service: Any,
) -> None:
    client = await service(database={"in_flight": 1, "queue_timeout": 0.05})
    answers = await burst(client)
    statuses = [status for _, status, _, _ in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses  # the first is always let in
    assert 503 in statuses  # forty at once cannot all be handled in 50 ms by one place
    assert all(retry == "1" for _, status, retry, _ in answers if status == 503)
    # Nobody waits much past the bound: one message's work plus 50 ms, with a margin.
    refused_waits = [elapsed for _, status, _, elapsed in answers if status == 503]
    assert max(refused_waits) < 3.0
    rows = await stored(client)
    assert {key for key, status, _, _ in answers if status == 200} <= rows
    assert not {key for key, status, _, _ in answers if status == 503} & rows
    assert client.app[ENGINE].admission.in_flight == 0
