"""The daily summary to admins: planned once at reports.summary_at (business time zone), sent
to Telegram through the outbox when the admin's chat is linked and always to the console; the
same text as `seguibot report daily`. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
import time_machine
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.followup.actions import REPORT_SUMMARY
from bot.web.keys import DATABASE, DESK, DISPATCHER, SCHEDULER
from storage.models import Notification, ScheduledAction
from tests.builders import send_due
from tests.command import seguibot
from tests.fakes.telegram_api import FakeTelegramServer
from tests.reports_data import MX, build

DORA_CHAT = 5151515151


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as server:
        yield server


@pytest.fixture
async def client(service: Any, tg: FakeTelegramServer) -> TestClient[Any, Any]:
    # Started just after midnight of the tests' day: the sweep and the summary that a process
    # plans at start when their hour has passed (08:00, 08:30) are then not due, whatever the
    # real time is; the tests plan and fire them themselves.
    with time_machine.travel(datetime(2026, 12, 1, 0, 30, tzinfo=MX), tick=True):
        started: TestClient[Any, Any] = await service(
            telegram={
                "token": tg.token,
                "webhook_secret": "s3cret-token_for-tests",
                "api_base_url": tg.base_url,
                "per_chat_interval": 0.0,
            }
        )
        await started.app[DISPATCHER].stop(timeout=1)
        await started.app[SCHEDULER].pause()
    return started


async def _summaries(client: TestClient[Any, Any]) -> list[ScheduledAction]:
    async with client.app[DATABASE].session() as session:
        statement = select(ScheduledAction).where(ScheduledAction.kind == REPORT_SUMMARY)
        return list((await session.execute(statement)).scalars())


async def test_admins_get_yesterdays_figures_at_the_configured_hour(
    client: TestClient[Any, Any], tg: FakeTelegramServer, database_url: str
) -> None:
    await build(client.app[DATABASE])
    desk = client.app[DESK]
    dora, _ = await desk.add_agent("Dora", admin=True, telegram_chat_id=DORA_CHAT)
    eli, _ = await desk.add_agent("Eli", admin=True)  # no Telegram: the console only
    await desk.add_agent("Fer", telegram_chat_id=6161)  # not an admin: nothing
    scheduler = client.app[SCHEDULER]

    with time_machine.travel(datetime(2026, 12, 1, 8, 0, tzinfo=MX), tick=False) as clock:
        await scheduler.plan_summary()
        assert await _summaries(client) == []  # 08:00: not yet (summary_at is 08:30)
        clock.move_to(datetime(2026, 12, 1, 8, 30, tzinfo=MX))
        await scheduler.plan_summary()
        await scheduler.plan_summary()  # a second process, or a restart: still one
        [planned] = await _summaries(client)
        assert planned.payload == {"day": "2026-11-30"}
        await scheduler.fire_due()
        await send_due(client)

    [sent] = tg.sent_texts(DORA_CHAT)
    assert sent.startswith("Reporte diario: 2026-11-30 a 2026-11-30 (America/Mexico_City)")
    assert "Prospectos nuevos: 1" in sent and "Ingresos: $200.00 MXN" in sent
    assert "Acciones recomendadas:" in sent
    assert "Prospectos con puntuación < 30 que nadie ha revisado: 1" in sent
    assert tg.sent_texts(6161) == []
    async with client.app[DATABASE].session() as session:
        notes = (
            await session.execute(select(Notification).where(Notification.kind == REPORT_SUMMARY))
        ).scalars()
        by_agent = {note.agent_id: note.text for note in notes}
    assert set(by_agent) == {dora.id, eli.id}
    assert by_agent[eli.id] == sent

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
    env["DATABASE_URL"] = database_url
    # In a thread: the service keeps running (and finishing its transactions) meanwhile, as a
    # real one does while someone runs the command beside it.
    printed = await asyncio.to_thread(seguibot, "report", "daily", "--date", "2026-11-30", env=env)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == sent


async def test_no_admin_no_summary(client: TestClient[Any, Any], tg: FakeTelegramServer) -> None:
    with time_machine.travel(datetime(2026, 12, 1, 9, 0, tzinfo=MX), tick=False):
        await client.app[SCHEDULER].plan_summary()
        await client.app[SCHEDULER].fire_due()
    [done] = await _summaries(client)
    assert done.state == "done"
    assert tg.calls_to("sendMessage") == []
