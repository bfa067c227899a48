"""A published version carries what its training computed; another process loading it reuses
that record (half a big catalogue's training) and answers exactly as the publisher."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.conversation import scripts as versions_module
from bot.desk.accounts import Who
from bot.web.keys import DATABASE, SCRIPTS, UNDERSTANDING
from intents.matcher import Training
from storage.models import ScriptVersion
from tests.integration.test_script_versions import FACTORY, say, with_price_reply

ADMIN = Who(None, "tests")


async def stored(client: TestClient[Any, Any], number: int) -> str | None:
    async with client.app[DATABASE].session() as session:
        version = await session.get(ScriptVersion, number)
        assert version is not None
        return version.trained


async def loaded(client: TestClient[Any, Any], number: int) -> None:
    async with asyncio.timeout(30):
        while client.app[SCRIPTS].loaded != number:  # noqa: ASYNC110 (its poll loads it)
            await asyncio.sleep(0.05)


async def test_other_processes_reuse_the_publishers_training(
    service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    first = await service(nlu={"reload_seconds": 0.2})
    # The second looks for the new version only when told (below), after the shared cache is
    # cleared: a poll between the publication and the clearing would find the first's matcher.
    second = await service(nlu={"reload_seconds": 60})
    await loaded(second, 1)
    assert await stored(first, 1) is None  # the factory version: every process trains it
    await first.app[SCRIPTS].publish(with_price_reply(FACTORY), "precio", ADMIN)
    # The processes of this test share one matcher cache; separate processes would not.
    versions_module._TRAINED.clear()
    record = Training.from_json(await stored(first, 2))
    published = first.app[UNDERSTANDING].current.matcher
    assert record is not None and record == published.training

    with caplog.at_level(logging.INFO, logger="bot.conversation.scripts"):
        second.app[SCRIPTS].nudge()
        await loaded(second, 2)
    [trained] = [r for r in caplog.records if r.msg == "nlu_trained"]
    assert trained.__dict__["reused"] is True
    reloaded = second.app[UNDERSTANDING].current.matcher
    assert reloaded is not published
    assert (reloaded.temperature, reloaded.model) == (published.temperature, published.model)
    replies = await say(second, "es muy caro")
    assert any("se paga solo en tres meses" in reply for reply in replies)


async def test_a_publication_wakes_the_other_processes_at_once(
    service: Any, database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("processes signal each other through PostgreSQL's LISTEN/NOTIFY")
    # A poll of a minute: only the signal can bring the new version within the wait.
    first = await service(nlu={"reload_seconds": 60})
    second = await service(nlu={"reload_seconds": 60})
    await loaded(second, 1)
    await first.app[SCRIPTS].publish(with_price_reply(FACTORY), "precio", ADMIN)
    await loaded(second, 2)
    replies = await say(second, "es muy caro")
    assert any("se paga solo en tres meses" in reply for reply in replies)
