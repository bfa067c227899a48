"""Two services on one PostgreSQL database: a change handled by one reaches pages on the other.

Each app stands for a process (or a replica on another machine behind a load balancer). The
pages' own look-again is set to a minute, so only a signal through PostgreSQL LISTEN/NOTIFY
can bring the change in time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot.app import WEBCHAT
from bot.conversation.materials import MaterialForm
from bot.desk.accounts import Who
from bot.web.console import stream as console_stream
from bot.web.keys import DATABASE, DESK, DISPATCHER, MATERIALS
from storage.models import Conversation, Message
from storage.notify import Relay
from storage.uow import UnitOfWork
from tests.integration.test_console import Browser, make_agent

SESSION = "Vq8mZ2xW9pKq7LtR3nHs5D"
CONSOLE = {"console": {"secret": "pruebas-de-consola"}}


@pytest.fixture
async def two(service: Any, database_url: str) -> tuple[TestClient[Any, Any], TestClient[Any, Any]]:
    if database_url.startswith("sqlite"):
        pytest.skip("one SQLite file belongs to one process; several need PostgreSQL")
    first: TestClient[Any, Any] = await service(**CONSOLE)
    second: TestClient[Any, Any] = await service(**CONSOLE)
    return first, second


async def say(client: TestClient[Any, Any], text: str) -> None:
    response = await client.post("/webchat/messages", json={"session_id": SESSION, "text": text})
    assert response.status == 200, await response.text()


async def next_event(stream: Any) -> tuple[str, dict[str, Any]]:
    name = ""
    while True:
        line = (await stream.content.readline()).decode().strip()
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            return name, json.loads(line[6:])


async def test_an_agent_reply_sent_by_one_process_reaches_the_chat_page_on_the_other(
    two: tuple[TestClient[Any, Any], TestClient[Any, Any]],
) -> None:
    first, second = two
    second.app[WEBCHAT].poll_interval = 60.0  # only a signal wakes its streams in time
    await second.app[DISPATCHER].stop(timeout=1)  # the send happens in the first process
    await say(second, "hola")
    async with second.app[DATABASE].session() as session:
        conversation_id = (await session.execute(select(Conversation.id))).scalar_one()
        last = (await session.execute(select(func.max(Message.id)))).scalar_one()
    carla = await make_agent(first, "Carla")
    async with second.get(f"/webchat/events?session_id={SESSION}&after={last}") as events:
        assert events.status == 200
        assert (await events.content.readline()).startswith(b"retry:")  # connected, quiet
        await first.app[DESK].claim(conversation_id, carla)
        await first.app[DESK].reply(conversation_id, carla, "Hola, soy Carla. ¿En qué te ayudo?")
        name, shown = await asyncio.wait_for(next_event(events), timeout=10)
    assert name == "message"
    assert shown["author"] == "agent"
    assert shown["text"] == "Hola, soy Carla. ¿En qué te ayudo?"


async def test_a_handoff_on_one_process_reaches_the_console_queue_on_the_other(
    two: tuple[TestClient[Any, Any], TestClient[Any, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two
    monkeypatch.setattr(console_stream, "LOOK_AGAIN", 60.0)  # only a signal wakes it in time
    await make_agent(second, "Carla")
    browser = Browser(second)
    await browser.sign_in("carla@example.com")
    async with second.get("/console/events") as stream:
        assert stream.status == 200
        assert await next_event(stream) == ("queue", {"count": 0, "new": [], "mine": []})
        await say(first, "quiero hablar con un asesor")
        name, data = await asyncio.wait_for(next_event(stream), timeout=10)
    assert name == "queue"
    assert data["count"] == 1


def test_several_workers_on_sqlite_are_refused_in_one_line(tmp_path: Any) -> None:
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/s.db"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--port", "0", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "--workers needs PostgreSQL" in done.stderr


async def test_a_burst_of_changes_goes_out_in_few_notifications_each_topic_once(
    postgres_url: str,
) -> None:
    # Under load every web chat message signals its session: one NOTIFY (a round trip) each
    # would add a statement per message; what queued meanwhile goes out together instead.
    heard: list[tuple[str, ...]] = []
    all_heard = asyncio.Event()

    def received(topics: Sequence[str]) -> None:
        heard.append(tuple(topics))
        if sum(map(len, heard)) >= 51:
            all_heard.set()

    listener = Relay(postgres_url, received)
    sender = Relay(postgres_url, lambda topics: None)
    await listener.start()
    await sender.start()
    try:
        for n in range(200):
            sender.publish([f"webchat:s{n % 50}", "queue"])
        await asyncio.wait_for(all_heard.wait(), timeout=10)
        await asyncio.sleep(0.2)  # anything more would have come by now
    finally:
        await sender.close()
        await listener.close()
    topics = [topic for batch in heard for topic in batch]
    assert sorted(topics) == sorted({f"webchat:s{n}" for n in range(50)} | {"queue"})
    assert len(heard) == 1  # all were queued before the relay's next turn


async def test_changes_a_moment_apart_go_out_in_one_notification(postgres_url: str) -> None:
    # A message every few milliseconds signals its session and the queue each time: sent as
    # each came, that was more than one NOTIFY (a round trip and a statement) per message.
    heard: list[tuple[str, ...]] = []
    listener = Relay(postgres_url, lambda topics: heard.append(tuple(topics)))
    sender = Relay(postgres_url, lambda topics: None, linger=0.5)
    await listener.start()
    await sender.start()
    try:
        for n in range(5):
            sender.publish([f"webchat:s{n}", "queue"])
            await asyncio.sleep(0.02)
        for _ in range(100):  # 5 s at most
            if heard:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.6)  # a second notification would have come by now
    finally:
        await sender.close()
        await listener.close()
    assert heard == [
        ("webchat:s0", "queue", "webchat:s1", "webchat:s2", "webchat:s3", "webchat:s4")
    ]


async def test_a_material_deactivated_on_one_process_is_no_longer_offered_by_the_other(
    two: tuple[TestClient[Any, Any], TestClient[Any, Any]],
) -> None:
    first, second = two
    kept = second.app[DATABASE].active_materials
    kept.max_age = 3600.0  # only the signal can make it read them again in time
    form = MaterialForm(title="Caso A", kind="link", url="https://example.com/a")
    material = await first.app[MATERIALS].add(form, None, Who(None))

    async def offered_by_second() -> list[str]:
        async with UnitOfWork(second.app[DATABASE]) as uow:
            return [m.title for m in await uow.materials.active()]

    assert await offered_by_second() == ["Caso A"]  # kept from now on
    await first.app[MATERIALS].set_active(material.id, False, Who(None))
    for _ in range(200):  # 10 s at most; the signal takes milliseconds
        if not await offered_by_second():
            break
        await asyncio.sleep(0.05)
    assert await offered_by_second() == []
