"""Scripts in the database: version 1 from the packaged file, publishing (validated, audited),
rolling back, two processes following the live version without a restart, and the command line."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.app import script_versions
from bot.conversation.scripts import PUBLISHED, ScriptsInvalid, ScriptVersions
from bot.desk.accounts import Who
from bot.settings import load_settings
from bot.web.keys import DATABASE, SCRIPTS, UNDERSTANDING
from intents import editing
from intents.catalogue import DEFAULT_SCRIPTS
from storage.db import Database
from storage.models import AuditEvent, ScriptVersion
from tests.command import seguibot
from tests.conftest import make_settings

FACTORY = DEFAULT_SCRIPTS.read_text(encoding="utf-8")
NEW_REPLY = "Entiendo lo del precio, {nombre}: te cuento cómo se paga solo en tres meses."
ADMIN = Who(None, "tests")
WITH_SEQUENCES = editing.with_sequences(
    FACTORY,
    {name: sequence.dump() for name, sequence in load_settings(environ={}).sequences.items()},
)


def with_price_reply(text: str, reply: str = NEW_REPLY) -> str:
    """The scripts with objection.price answering only `reply`."""
    data = editing.read(text)
    data["intents"]["objection.price"]["replies"] = [reply]
    return editing.write(data)


async def say(client: TestClient[Any, Any], text: str) -> list[str]:
    session = f"sesion-{uuid.uuid4().hex}"
    response = await client.post("/webchat/messages", json={"session_id": session, "text": text})
    assert response.status == 200, await response.text()
    return [reply["text"] for reply in (await response.json())["replies"]]


async def eventually_says(
    client: TestClient[Any, Any], text: str, part: str, *, present: bool = True
) -> list[str]:
    """The replies to `text` once they contain `part` (or, `present=False`, no longer do)."""
    async with asyncio.timeout(15):
        while True:
            replies = await say(client, text)
            if any(part in reply for reply in replies) == present:
                return replies
            await asyncio.sleep(0.2)


def scripts(client: TestClient[Any, Any]) -> ScriptVersions:
    return client.app[SCRIPTS]


async def test_the_packaged_scripts_become_version_1(service: Any) -> None:
    client = await service()
    [version] = await scripts(client).versions()
    assert version.number == 1 and version.restores is None
    assert (await scripts(client).live()).body == FACTORY
    assert client.app[UNDERSTANDING].current.version == "versión 1"
    assert scripts(client).loaded == 1


async def test_publishing_goes_live_at_once_and_is_audited(service: Any) -> None:
    client = await service()
    before = await say(client, "es muy caro")
    assert not any("se paga solo" in r for r in before)
    version = await scripts(client).publish(
        with_price_reply(FACTORY), "  respuesta de precio  ", Who(None, "127.0.0.1")
    )
    assert version.number == 2 and version.comment == "respuesta de precio"
    assert client.app[UNDERSTANDING].current.version == "versión 2"
    replies = await say(client, "es muy caro")
    assert any("se paga solo en tres meses" in r for r in replies)
    async with client.app[DATABASE].session() as session:
        [event] = (
            await session.execute(select(AuditEvent).where(AuditEvent.action == PUBLISHED))
        ).scalars()
    assert event.subject == "scripts:2" and event.address == "127.0.0.1"
    assert event.detail == {"comment": "respuesta de precio", "restores": None}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda text: with_price_reply(text, "Hola {nombe}, ¿te cuento?"),
            "unknown placeholder {nombe} in objection.price.replies",
        ),
        (
            lambda text: editing.add_intent(text, "info.horario", "el horario", [], ["Abrimos"]),
            "info.horario.examples must be a non-empty list",
        ),
        (
            lambda text: editing.write(
                {
                    **editing.read(text),
                    "scripts": {**editing.read(text)["scripts"], "optout.confirm": []},
                }
            ),
            "scripts.optout.confirm must be a non-empty list",
        ),
        (lambda text: text.replace("intents:", "intents: [", 1), "invalid YAML"),
    ],
)
async def test_a_version_that_fails_never_goes_live(
    service: Any, change: Any, problem: str
) -> None:
    client = await service()
    with pytest.raises(ScriptsInvalid) as refused:
        await scripts(client).publish(change(FACTORY), "roto", ADMIN)
    assert problem in refused.value.problem
    assert refused.value.code == "scripts_invalid"
    assert [v.number for v in await scripts(client).versions()] == [1]
    assert client.app[UNDERSTANDING].current.version == "versión 1"


async def test_a_script_the_bot_needs_cannot_be_removed(service: Any) -> None:
    client = await service()
    data = editing.read(FACTORY)
    del data["scripts"]["handoff.waiting"]
    with pytest.raises(ScriptsInvalid, match=r"'handoff\.waiting' has no replies"):
        await scripts(client).publish(editing.write(data), "sin espera", ADMIN)


async def test_two_processes_follow_publications_and_rollbacks_without_restart(
    service: Any,
) -> None:
    first = await service(nlu={"reload_seconds": 0.2})
    second = await service(nlu={"reload_seconds": 0.2})
    old = await say(second, "es muy caro")
    assert not any("se paga solo" in r for r in old)

    await scripts(first).publish(with_price_reply(FACTORY), "precio", ADMIN)
    await eventually_says(second, "es muy caro", "se paga solo en tres meses")
    assert second.app[UNDERSTANDING].current.version == "versión 2"

    rolled = await scripts(first).rollback(1, ADMIN)
    assert rolled.number == 3 and rolled.restores == 1
    assert rolled.comment == "Vuelta a la versión 1"
    await eventually_says(second, "es muy caro", "se paga solo", present=False)
    assert second.app[UNDERSTANDING].current.version == "versión 3"
    assert [v.number for v in await scripts(second).versions()] == [3, 2, 1]


async def test_an_empty_database_gets_version_1_once_from_two_processes(
    database_url: str,
) -> None:
    settings = make_settings(database_url)
    dbs = [Database(database_url), Database(database_url)]
    try:
        both = [script_versions(settings, db, None) for db in dbs]
        await asyncio.gather(*(versions.start() for versions in both))
        assert [v.number for v in await both[0].versions()] == [1]
        assert [v.number for v in await both[1].versions()] == [1]
    finally:
        for db in dbs:
            await db.dispose()


async def test_the_draft_is_kept_until_published(service: Any) -> None:
    client = await service()
    draft = await scripts(client).draft()
    assert not draft.saved and draft.base == 1 and draft.body == FACTORY
    await scripts(client).save_draft(with_price_reply(draft.body), draft.base, ADMIN)
    kept = await scripts(client).draft()
    assert kept.saved and "se paga solo" in kept.body
    # Another publication (an import) leaves the draft alone; publishing the draft ends it.
    await scripts(client).publish(with_price_reply(FACTORY, "Otra {nombre}"), "import", ADMIN)
    assert (await scripts(client).draft()).saved
    await scripts(client).publish(kept.body, "del borrador", ADMIN, from_draft=True)
    assert not (await scripts(client).draft()).saved


# --- the command line ---------------------------------------------------------------------------


def test_export_import_versions_rollback(database_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
    env["DATABASE_URL"] = database_url
    exported = tmp_path / "guiones.yaml"
    done = seguibot("scripts", "export", str(exported), env=env)
    assert done.returncode == 0, done.stderr
    # The packaged file as it is, and the sequences it runs (config.yaml's) after it.
    assert exported.read_text(encoding="utf-8") == WITH_SEQUENCES
    assert "version 1 written" in done.stdout

    broken = tmp_path / "roto.yaml"
    broken.write_text(with_price_reply(FACTORY, "Hola {nombe}"), encoding="utf-8")
    refused = seguibot("scripts", "import", str(broken), env=env)
    assert refused.returncode == 1
    assert "unknown placeholder {nombe} in objection.price.replies" in refused.stderr

    changed = tmp_path / "nuevo.yaml"
    changed.write_text(with_price_reply(FACTORY), encoding="utf-8")
    imported = seguibot("scripts", "import", str(changed), "--comment", "precio nuevo", env=env)
    assert imported.returncode == 0, imported.stderr
    assert "version 2 is live" in imported.stdout

    back = seguibot("scripts", "rollback", "1", env=env)
    assert back.returncode == 0, back.stderr
    listed = seguibot("scripts", "versions", env=env).stdout.splitlines()
    assert [line.split()[0] for line in listed] == ["3", "2", "1"]
    assert "live" in listed[0] and "restores 1" in listed[0] and "precio nuevo" in listed[1]
    again = seguibot("scripts", "export", "-", env=env)
    assert again.stdout == WITH_SEQUENCES

    # The sequences go round the file too: a changed delay imported is the live version's.
    data = editing.read(again.stdout)
    data["sequences"]["warm"]["steps"][0]["after"] = "45m"
    sooner = tmp_path / "secuencias.yaml"
    sooner.write_text(editing.write(data), encoding="utf-8")
    imported = seguibot("scripts", "import", str(sooner), env=env)
    assert imported.returncode == 0, imported.stderr
    live = editing.read(seguibot("scripts", "export", "-", env=env).stdout)
    assert live["sequences"]["warm"]["steps"][0] == {"after": "45m", "message": "sequence.warm.1"}
    data["sequences"]["warm"]["steps"][0]["after"] = "9h"  # after step 2 (6h)
    sooner.write_text(editing.write(data), encoding="utf-8")
    refused = seguibot("scripts", "import", str(sooner), env=env)
    assert refused.returncode == 1
    assert "sequence 'warm' step 2 (6h) comes before step 1 (9h)" in refused.stderr
    missing = seguibot("scripts", "rollback", "9", env=env)
    assert missing.returncode == 1 and "no script version 9" in missing.stderr


async def test_versions_are_rows(service: Any) -> None:
    client = await service()
    await scripts(client).publish(with_price_reply(FACTORY), "uno", ADMIN)
    async with client.app[DATABASE].session() as session:
        numbers = list((await session.execute(select(ScriptVersion.number))).scalars())
    assert sorted(numbers) == [1, 2]
