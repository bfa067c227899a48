"""Follow-up sequences edited like the scripts: in the draft from the console, validated at
publishing (a Spanish error naming the sequence and the step), live at once here and within
seconds in another process; a version without `sequences:` runs config.yaml's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.conversation.scripts import ScriptsInvalid, ScriptVersions
from bot.core.model import ActionState
from bot.desk.accounts import Who
from bot.web.keys import DATABASE, DISPATCHER, ENGINE, SCHEDULER, SCRIPTS, UNDERSTANDING
from intents import editing
from intents.catalogue import DEFAULT_SCRIPTS
from storage.models import Message, ScheduledAction, SequenceRun
from tests.integration.test_console import Browser, make_agent, signed_in_admin

MX = ZoneInfo("America/Mexico_City")
THURSDAY_10 = datetime(2026, 11, 26, 10, 0, tzinfo=MX)  # no quiet hours till night
FACTORY = DEFAULT_SCRIPTS.read_text(encoding="utf-8")
ADMIN = Who(None, "tests")
NEW_TEXT = "{nombre}, te escribo para saber si te quedó alguna duda de {producto}. Aquí sigo."


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(THURSDAY_10, tick=True) as traveller:
        yield traveller


@pytest.fixture
async def client(service: Any, clock: time_machine.Traveller) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service(console={"secret": "pruebas-de-secuencias"})
    # The test fires due actions itself, so each step happens when it says.
    await started.app[SCHEDULER].pause()
    await started.app[DISPATCHER].stop(timeout=1)
    return started


async def admin(client: TestClient[Any, Any]) -> Browser:
    browser = await signed_in_admin(client)
    await browser.get("/console/scripts/sequences")
    return browser


def scripts(client: TestClient[Any, Any]) -> ScriptVersions:
    return client.app[SCRIPTS]


async def say(client: TestClient[Any, Any], text: str) -> None:
    session = "sesion-secuencia-1-Kq7mZ2xW9p"
    response = await client.post("/webchat/messages", json={"session_id": session, "text": text})
    assert response.status == 200, await response.text()


async def rows(client: TestClient[Any, Any], model: Any, *where: Any) -> list[Any]:
    async with client.app[DATABASE].session() as session:
        return list((await session.execute(select(model).where(*where))).scalars())


async def test_a_published_delay_and_text_drive_the_next_step(
    client: TestClient[Any, Any], clock: time_machine.Traveller
) -> None:
    browser = await admin(client)
    page = await (await browser.get("/console/scripts/sequences")).text()
    assert 'data-sequence="warm"' in page and 'data-testid="sequences-factory"' in page
    assert "Secuencia tibia" in page and "a 2 horas del inicio" in page

    # The warm sequence's first nudge half an hour after the chat goes quiet, not two hours.
    edited = await browser.post("/console/scripts/sequences/warm/0", {"after": "30m"})
    assert edited.status == 303, await edited.text()
    assert (await scripts(client).draft()).saved
    assert client.app[UNDERSTANDING].sequences()["warm"].steps[0].after == "2h"  # a draft
    published = await browser.post(
        "/console/scripts/publicar",
        {"comment": "tibios antes", "back": "/console/scripts/sequences"},
    )
    assert published.status == 303 and published.headers["Location"].endswith("/sequences")
    assert client.app[UNDERSTANDING].sequences()["warm"].steps[0].after == "30m"

    await say(client, "hola")
    clock.shift(timedelta(hours=2, seconds=5))  # the clock ticks: from the lead's message
    await client.app[SCHEDULER].fire_due()  # quiet for 2 h: the warm sequence starts
    [run] = await rows(client, SequenceRun)
    assert run.sequence == "warm"
    steps = await rows(
        client,
        ScheduledAction,
        ScheduledAction.kind == "sequence.step",
        ScheduledAction.state == ActionState.PENDING,
    )
    first = min(steps, key=lambda action: action.due_at)
    assert first.payload["step"] == 0
    assert first.due_at - run.started_at == timedelta(minutes=30)
    assert sorted(a.due_at - run.started_at for a in steps)[1] == timedelta(hours=6)

    # Its text, changed and published while the step waits: the step sends the new one.
    variants = client.app[UNDERSTANDING].replies("sequence.warm.1")
    changed = await browser.post("/console/scripts/sequences/warm/0/textos/0", {"text": NEW_TEXT})
    assert changed.status == 303
    for _ in variants[1:]:
        gone = await browser.post("/console/scripts/sequences/warm/0/textos/1/quitar")
        assert gone.status == 303
    page = await (await browser.get("/console/scripts/sequences")).text()
    assert "te escribo para saber si te quedó alguna duda" in page
    assert 'data-testid="sequence-problem"' not in page
    assert (await browser.post("/console/scripts/publicar", {"comment": "texto"})).status == 303
    clock.shift(timedelta(minutes=31))
    await client.app[SCHEDULER].fire_due()
    [nudge] = await rows(client, Message, Message.script == "sequence.warm.1")
    assert "scribo para saber si te quedó alguna duda de nuestro programa" in nudge.text


async def test_an_invalid_sequence_cannot_be_published(client: TestClient[Any, Any]) -> None:
    browser = await admin(client)
    # Step 2 of the warm sequence at 1 h, before step 1 (2 h): refused with where and why.
    assert (await browser.post("/console/scripts/sequences/warm/1", {"after": "1h"})).status == 303
    said = "Secuencia «warm», paso 2: sale a las 1h del inicio, antes que el paso 1 (2h)"
    page = await (await browser.get("/console/scripts/sequences")).text()
    assert 'data-testid="sequence-problem"' in page and said in page
    refused = await browser.post("/console/scripts/publicar", {"comment": "al revés"})
    assert refused.status == 400
    assert f"No se puede publicar: {said}" in await refused.text()
    assert [v.number for v in await scripts(client).versions()] == [1]
    assert client.app[UNDERSTANDING].sequences()["warm"].steps[1].after == "6h"

    bad = await browser.post("/console/scripts/sequences/warm/1", {"after": "pronto"})
    assert bad.status == 400 and "«pronto» no es una espera" in await bad.text()

    # A text the step names that the version lacks, or a bad delay in an imported file.
    data = editing.read(editing.with_sequences(FACTORY, scripts(client).factory_sequences()))
    data["sequences"]["cold"]["steps"][2]["message"] = "sequence.cold.9"
    with pytest.raises(ScriptsInvalid) as unknown:
        await scripts(client).publish(editing.write(data), "sin texto", ADMIN)
    assert unknown.value.reason == "sequence_script"
    assert unknown.value.facts == {"sequence": "cold", "step": "3", "script": "sequence.cold.9"}
    data["sequences"]["cold"]["steps"][2] = {"after": "5 días", "message": "sequence.cold.3"}
    with pytest.raises(ScriptsInvalid, match=r"sequence 'cold' step 3: bad delay '5 días'"):
        await scripts(client).publish(editing.write(data), "espera", ADMIN)
    assert [v.number for v in await scripts(client).versions()] == [1]


async def test_only_admins_edit_sequences(client: TestClient[Any, Any]) -> None:
    await make_agent(client, "Beto")
    browser = Browser(client)
    assert (await browser.sign_in("beto@example.com")).status == 303
    assert (await browser.get("/console/scripts/sequences")).status == 403
    assert (await browser.post("/console/scripts/sequences/warm/0", {"after": "1m"})).status == 403


async def warm_steps(client: TestClient[Any, Any], count: int) -> list[Any]:
    """The warm sequence's steps this process runs, once there are `count` (its poll)."""
    async with asyncio.timeout(15):
        while True:
            steps = list(client.app[UNDERSTANDING].sequences()["warm"].steps)
            if len(steps) == count:
                return steps
            await asyncio.sleep(0.1)


async def test_another_process_follows_and_config_is_the_factory_default(service: Any) -> None:
    # config.yaml (here an override) says the warm sequence is one step at 5 h.
    warm = {"enter": {"tier": "warm"}, "steps": [{"after": "5h", "message": "sequence.warm.1"}]}
    settings = {"nlu": {"reload_seconds": 0.2}, "sequences": {"warm": warm}}
    first, second = await service(**settings), await service(**settings)
    for app in (first.app, second.app):
        assert [s.after for s in app[UNDERSTANDING].sequences()["warm"].steps] == ["5h"]

    own = editing.add_step(FACTORY, scripts(first).factory_sequences(), "warm", "1d", "¿Y bien?")
    await scripts(first).publish(own, "dos pasos", ADMIN)
    await warm_steps(second, 2)
    live = second.app[ENGINE].followup.sequences.live()  # what the scheduler plans with
    assert [s.after for s in live["warm"].steps] == ["5h", "1d"]
    added = live["warm"].steps[1].message
    assert added == "sequence.warm.5"  # the first id free
    assert second.app[UNDERSTANDING].replies(added) == ("¿Y bien?",)

    await scripts(first).rollback(1, ADMIN)  # version 1 has none of its own: config's again
    assert [s.after for s in (await warm_steps(second, 1))] == ["5h"]
