"""Transactions that touch one lead at the same moment: no deadlock, nothing lost or doubled.

The engine (a prospect's message stops their follow-up sequence) and the scheduler (firing
that sequence's next step) are made to overlap at the worst moment on PostgreSQL: the
scheduler has claimed the step's row and not yet looked at the run or the lead.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from bot.core.model import ActionState, Direction
from bot.web.keys import DATABASE, DISPATCHER, SCHEDULER
from storage.models import Message, ScheduledAction, SequenceRun

SESSION = "colision-6hW2pQ9rTz4Kx8"


@pytest.fixture
async def client(service: Any, database_url: str) -> TestClient[Any, Any]:
    if database_url.startswith("sqlite"):
        pytest.skip("row locks between transactions are PostgreSQL's (SQLite serialises writers)")
    started: TestClient[Any, Any] = await service()
    await started.app[SCHEDULER].pause()
    await started.app[DISPATCHER].stop(timeout=1)
    return started


async def say(client: TestClient[Any, Any], text: str) -> list[dict[str, Any]]:
    response = await client.post("/webchat/messages", json={"session_id": SESSION, "text": text})
    assert response.status == 200, await response.text()
    replies: list[dict[str, Any]] = (await response.json())["replies"]
    return replies


async def test_a_reply_while_the_scheduler_fires_the_next_step_is_stored_and_answered_once(
    client: TestClient[Any, Any],
) -> None:
    db = client.app[DATABASE]
    assert await say(client, "hola")  # a new lead; it goes quiet (3 h ago, as far as we know)
    async with db.session() as session:
        await session.execute(
            update(Message).values(created_at=datetime.now(UTC) - timedelta(hours=3))
        )
        await session.execute(
            update(ScheduledAction).values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    await client.app[SCHEDULER].fire_due()  # quiet: its tier's follow-up sequence starts
    async with db.session() as session:
        run = (await session.execute(select(SequenceRun))).scalar_one()
        await session.execute(
            update(ScheduledAction)
            .where(ScheduledAction.sequence_run_id == run.id)
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()

    scheduler = client.app[SCHEDULER]
    fire = scheduler.followup.fire
    claimed, release = asyncio.Event(), asyncio.Event()

    async def fire_when_released(uow: Any, action: Any, now: datetime) -> Any:
        # The scheduler holds the claimed rows' locks here, and nothing else yet.
        claimed.set()
        await release.wait()
        return await fire(uow, action, now)

    scheduler.followup.fire = fire_when_released
    firing = asyncio.create_task(scheduler.fire_due())
    await asyncio.wait_for(claimed.wait(), timeout=10)

    # The prospect answers now. The engine must not wait for the claimed rows (that is how
    # the deadlock began); it commits while the scheduler is still holding them.
    replies = await asyncio.wait_for(say(client, "me interesa, ¿qué incluye?"), timeout=10)
    release.set()
    await asyncio.wait_for(firing, timeout=10)

    assert len(replies) == 1
    async with db.session() as session:
        inbound = await session.scalar(
            select(func.count()).select_from(Message).where(Message.direction == Direction.IN)
        )
        steps = list(
            (
                await session.execute(
                    select(ScheduledAction.state, ScheduledAction.last_error).where(
                        ScheduledAction.sequence_run_id == run.id
                    )
                )
            ).all()
        )
        nudges = await session.scalar(
            select(func.count()).select_from(Message).where(Message.script.like("sequence.%"))
        )
    assert inbound == 2
    assert nudges == 0  # the step found its sequence stopped by the reply
    assert all(state != ActionState.PENDING for state, _ in steps)
    assert any(reason == "sequence stopped" for _, reason in steps)
