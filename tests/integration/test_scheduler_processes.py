"""Scheduled actions fire exactly once: two processes on one PostgreSQL, and a crash mid-batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import func, insert, select

from bot.app import create_app
from bot.core.model import ActionState, utcnow
from bot.followup.planner import TASK_DUE
from bot.web.keys import DATABASE, SCHEDULER
from storage.db import Database
from storage.models import Notification, ScheduledAction, Task
from tests.conftest import make_settings

DUE = 1000


@pytest.fixture
async def apps(database_url: str) -> AsyncIterator[list[web.Application]]:
    """Two independent services on one database, as two `serve` processes would be."""
    if not database_url.startswith("postgresql"):
        pytest.skip("several processes sharing the work is a PostgreSQL deployment")
    made = [create_app(make_settings(database_url, scheduling={"batch_size": 50})) for _ in "ab"]
    yield made
    for app in made:
        await app[DATABASE].dispose()


async def seed_due_actions(db: Database, count: int) -> None:
    """`count` task alerts that came due while nothing was running."""
    now = utcnow()
    async with db.session() as session:
        await session.execute(
            insert(Task),
            [
                {
                    "title": f"Llamar al prospecto {n}",
                    "due_at": now,
                    "created_at": now,
                    "priority": "normal",
                }
                for n in range(count)
            ],
        )
        ids = list((await session.execute(select(Task.id).order_by(Task.id))).scalars())
        await session.execute(
            insert(ScheduledAction),
            [
                {
                    "kind": TASK_DUE,
                    "due_at": now - timedelta(minutes=5),
                    "payload": {"task": i},
                    "state": ActionState.PENDING,
                    "attempts": 0,
                    "created_at": now,
                }
                for i in ids
            ],
        )
        await session.commit()


async def totals(db: Database) -> tuple[int, dict[str, int]]:
    async with db.session() as session:
        notified = (
            await session.execute(select(func.count()).select_from(Notification))
        ).scalar_one()
        states = dict(
            (
                await session.execute(
                    select(ScheduledAction.state, func.count()).group_by(ScheduledAction.state)
                )
            ).all()
        )
    return int(notified), {str(k): int(v) for k, v in states.items()}


@pytest.mark.postgres
async def test_two_processes_fire_each_action_once(apps: list[web.Application]) -> None:
    db = apps[0][DATABASE]
    await seed_due_actions(db, DUE)
    fired = await asyncio.gather(*(app[SCHEDULER].fire_due() for app in apps))
    notified, states = await totals(db)
    assert notified == DUE
    assert states == {"done": DUE}
    assert sum(fired) == DUE
    assert all(fired), f"both processes should have taken a share: {fired}"


@pytest.mark.postgres
async def test_a_crash_mid_batch_loses_and_repeats_nothing(
    apps: list[web.Application], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = apps
    db = first[DATABASE]
    await seed_due_actions(db, 120)
    followup = first[SCHEDULER].followup
    real_fire = followup.fire
    calls = 0

    async def dies_after_a_few(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > 70:
            raise asyncio.CancelledError  # killed in the middle of its second batch of 50
        return await real_fire(*args)

    monkeypatch.setattr(followup, "fire", dies_after_a_few)
    with pytest.raises(asyncio.CancelledError):
        await first[SCHEDULER].fire_due()
    # The first batch of 50 committed; the second died with its transaction, so its 20
    # notifications are gone with it and its actions are still due.
    assert await second[SCHEDULER].fire_due() == 70
    notified, states = await totals(db)
    assert notified == 120
    assert states == {"done": 120}
