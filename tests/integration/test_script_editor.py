"""The script editor over HTTP: admins only, the draft (kept in the database), try it, publish
with validation, versions with diff and rollback, and the messages the bot did not understand."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.desk.accounts import Who
from bot.web.keys import DATABASE, SCRIPTS, UNDERSTANDING
from intents import editing
from storage.models import AuditEvent
from tests.integration.test_console import Browser, make_agent, signed_in_admin


@pytest.fixture
async def client(service: Any) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service(console={"secret": "pruebas-de-guiones"})
    return started


async def say(client: TestClient[Any, Any], text: str) -> list[str]:
    session = f"sesion-{uuid.uuid4().hex}"
    response = await client.post("/webchat/messages", json={"session_id": session, "text": text})
    assert response.status == 200, await response.text()
    return [reply["text"] for reply in (await response.json())["replies"]]


async def test_only_admins_reach_the_editor(client: TestClient[Any, Any]) -> None:
    response = await client.get("/console/scripts/objection.price", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/console/login?next=/console/scripts/objection.price"
    await make_agent(client, "Pepe")
    agent = Browser(client)
    await agent.sign_in("pepe@example.com")
    for path in (
        "/console/scripts",
        "/console/scripts/objection.price",
        "/console/scripts/versiones",
    ):
        response = await agent.get(path)
        assert response.status == 403, path
        assert "solo para coordinadores" in await response.text()
    refused = await agent.post("/console/scripts/objection.price/examples", {"text": "x"})
    assert refused.status == 403
    refused = await agent.post("/console/scripts/publicar", {"comment": "x"})
    assert refused.status == 403
    assert not (await client.app[SCRIPTS].draft()).saved


async def test_the_list_shows_examples_and_last_weeks_matches(client: TestClient[Any, Any]) -> None:
    await say(client, "es muy caro")
    await say(client, "está carísimo, no lo vale")
    browser = await signed_in_admin(client)
    page = await (await browser.get("/console/scripts")).text()
    row = re.search(r'data-intent="objection.price">(.*?)</tr>', page, re.S)
    assert row is not None
    examples = len(client.app[UNDERSTANDING].current.catalogue.examples("objection.price"))
    assert f'data-label="Ejemplos">{examples}' in row.group(1)
    assert 'data-label="Veces en 7 días">2<' in row.group(1)
    assert "del sistema" in re.search(r'data-intent="optout">(.*?)</tr>', page, re.S).group(1)  # type: ignore[union-attr]


async def test_edit_try_publish_and_roll_back(client: TestClient[Any, Any]) -> None:
    browser = await signed_in_admin(client)
    page = await (await browser.get("/console/scripts/objection.price")).text()
    for testid in ("example-new", "reply-new", "try-input", "publish", "version", "rollback"):
        assert f'data-testid="{testid}"' in page, testid

    added = await browser.post(
        "/console/scripts/objection.price/examples", {"text": "  me sale muy salado  "}
    )
    assert added.status == 303
    reply = "Vale cada peso, {nombre}: se paga solo en tres meses."
    await browser.post("/console/scripts/objection.price/replies", {"text": reply})
    # Only the new variant remains, so every prospect gets it.
    before = client.app[UNDERSTANDING].current.catalogue.replies("objection.price")
    for _ in before:
        removed = await browser.post("/console/scripts/objection.price/replies/0/quitar")
        assert removed.status == 303
    draft = await client.app[SCRIPTS].draft()
    assert draft.saved
    view = editing.intent(draft.body, "objection.price")
    assert view is not None and "me sale muy salado" in view.examples
    assert view.replies == (reply,)
    # Not live yet.
    assert not any("se paga solo" in r for r in await say(client, "es muy caro"))

    tried = await browser.get("/console/scripts/probar?probar=es+muy+caro")
    fragment = await tried.text()
    assert 'data-testid="try-result"' in fragment and "objection.price" in fragment
    assert "Con el borrador" in fragment and "Segunda opción" in fragment
    whole = await (await browser.get("/console/scripts/objection.price?probar=es+muy+caro")).text()
    assert 'data-testid="try-result"' in whole

    published = await browser.post("/console/scripts/publicar", {"comment": "precio"})
    assert published.status == 303
    assert any("se paga solo en tres meses" in r for r in await say(client, "es muy caro"))
    async with client.app[DATABASE].session() as session:
        [event] = (
            await session.execute(
                select(AuditEvent).where(AuditEvent.action == "scripts_published")
            )
        ).scalars()
    assert event.agent_id is not None and event.subject == "scripts:2"

    versions = await (await browser.get("/console/scripts/versiones?a=1&b=2")).text()
    assert versions.count('data-testid="version"') == 2
    added_lines = re.findall(r'<span class="mas">([^<]*)</span>', versions)
    assert any("Vale cada peso, {nombre}: se paga solo en tres meses." in x for x in added_lines)
    assert any("me sale muy salado" in x for x in added_lines)
    assert len(added_lines) < 10  # only what changed, not the whole file re-written

    back = await browser.post("/console/scripts/versiones/1/volver")
    assert back.status == 303
    assert not any("se paga solo" in r for r in await say(client, "es muy caro"))
    assert [v.number for v in await client.app[SCRIPTS].versions()] == [3, 2, 1]


async def test_an_invalid_draft_cannot_be_published(client: TestClient[Any, Any]) -> None:
    browser = await signed_in_admin(client)
    await browser.post("/console/scripts/objection.price/replies", {"text": "Hola {nombe}"})
    page = await (await browser.get("/console/scripts/objection.price")).text()
    assert 'data-testid="placeholder-warning"' in page and "{nombe}" in page
    refused = await browser.post("/console/scripts/publicar", {"comment": "roto"})
    assert refused.status == 400
    text = await refused.text()
    assert "«{nombe}» no es un dato que el bot sepa llenar" in text and "objection.price" in text
    assert [v.number for v in await client.app[SCRIPTS].versions()] == [1]

    await client.app[SCRIPTS].discard_draft()
    made = await browser.post(
        "/console/scripts/nueva",
        {"id": "info.horario", "label": "el horario", "examples": "", "replies": "Abrimos a las 9"},
    )
    assert made.status == 303 and made.headers["Location"] == "/console/scripts/info.horario"
    refused = await browser.post("/console/scripts/publicar", {"comment": "vacía"})
    assert refused.status == 400
    assert "info.horario no tiene ejemplos" in await refused.text()
    assert [v.number for v in await client.app[SCRIPTS].versions()] == [1]


async def test_a_draft_older_than_the_live_version_says_so(client: TestClient[Any, Any]) -> None:
    browser = await signed_in_admin(client)
    await browser.post("/console/scripts/greeting/examples", {"text": "buenas buenas"})
    page = await (await browser.get("/console/scripts/greeting")).text()
    assert 'data-testid="draft-stale"' not in page
    live = await client.app[SCRIPTS].live()
    data = editing.read(live.body)
    data["intents"]["thanks"]["examples"].append("mil gracias de verdad")
    await client.app[SCRIPTS].publish(editing.write(data), "otra mano", Who(None, "cli"))
    page = await (await browser.get("/console/scripts/greeting")).text()
    assert 'data-testid="draft-stale"' in page and "parte de la versión 1" in page
    assert "buenas buenas" in page  # the draft is still there


async def test_new_intents_and_system_intents(client: TestClient[Any, Any]) -> None:
    browser = await signed_in_admin(client)
    bad = await browser.post("/console/scripts/nueva", {"id": "Horario!", "label": "x"})
    assert bad.status == 400 and "no sirve como identificador" in await bad.text()
    reserved = await browser.post("/console/scripts/nueva", {"id": "versiones", "label": "x"})
    assert reserved.status == 400
    refused = await browser.post("/console/scripts/optout/quitar")
    assert refused.status == 400 and "intención del sistema" in await refused.text()
    page = await (await browser.get("/console/scripts/optout")).text()
    assert 'data-testid="intent-remove"' not in page and 'data-testid="reply-new"' in page
    missing = await browser.get("/console/scripts/no.existe")
    assert missing.status == 404
    exists = await browser.post("/console/scripts/nueva", {"id": "greeting", "label": "x"})
    assert exists.status == 400 and "Ya existe" in await exists.text()
    removed = await browser.post("/console/scripts/objection.partner/quitar")
    assert removed.status == 303
    assert editing.intent((await client.app[SCRIPTS].draft()).body, "objection.partner") is None


async def test_not_understood_messages_become_examples(client: TestClient[Any, Any]) -> None:
    odd = "el cielo es azul hoy"
    await say(client, odd)
    browser = await signed_in_admin(client)
    page = await (await browser.get("/console/scripts/no-entendidos")).text()
    assert odd in page and 'data-testid="unknown-add"' in page
    added = await browser.post(
        "/console/scripts/no-entendidos", {"text": odd, "intent": "info.product"}
    )
    assert added.status == 303
    view = editing.intent((await client.app[SCRIPTS].draft()).body, "info.product")
    assert view is not None and odd in view.examples


async def test_impact_and_warnings_of_the_draft(client: TestClient[Any, Any]) -> None:
    await say(client, "es muy caro")
    await say(client, "quiero agendar una llamada mañana")
    browser = await signed_in_admin(client)
    # Without objection.price, "es muy caro" would be understood as something else; the new
    # intent has too few examples, two of them a greeting's (one alone moved the draft's
    # precision by less than the 0.1 % the page shows).
    assert (await browser.post("/console/scripts/objection.price/quitar")).status == 303
    await browser.post(
        "/console/scripts/nueva",
        {
            "id": "info.horario",
            "label": "el horario",
            "examples": "a qué hora abren\nbuenas tardes\nhola",
            "replies": "De 9 a 6",
        },
    )
    page = await (await browser.get("/console/scripts/impacto")).text()
    summary = re.search(r'data-testid="impact-summary">(.*?)</p>', page, re.S)
    assert summary is not None and "de 2 mensajes cambiarían" in summary.group(1)
    rows = re.findall(r'data-testid="impact-row">(.*?)</tr>', page, re.S)
    assert any("es muy caro" in row and "objection.price" in row for row in rows)
    assert not any("agendar" in row for row in rows)
    assert 'data-testid="warning-thin"' in page and "info.horario" in page
    assert 'data-testid="warning-crossed"' in page
    assert 'data-testid="warning-duplicate"' in page and "conflicting example" in page
    precision = await (await browser.get("/console/scripts/impacto?precision=1")).text()
    found = re.search(r"publicada ([0-9.]+) % · borrador ([0-9.]+) %", precision)
    assert found is not None and 50 < float(found.group(1)) <= 100
    assert float(found.group(1)) != float(found.group(2))


async def test_business_texts_are_edited_in_the_same_versions(client: TestClient[Any, Any]) -> None:
    browser = await signed_in_admin(client)
    page = await (await browser.get("/console/scripts/textos")).text()
    assert 'data-script="handoff.waiting"' in page and 'data-testid="text-new"' in page
    waiting = client.app[UNDERSTANDING].current.catalogue.replies("handoff.waiting")
    for _ in waiting:  # a text the bot needs, left without variants: refused at publishing
        assert (
            await browser.post("/console/scripts/textos/handoff.waiting/0/quitar")
        ).status == 303
    refused = await browser.post("/console/scripts/publicar", {"comment": "sin textos"})
    assert refused.status == 400
    assert "El bot necesita el texto «handoff.waiting»" in await refused.text()
    new = "Ya le avisé a alguien del equipo, {nombre}; te escribe en unos minutos."
    added = await browser.post("/console/scripts/textos/handoff.waiting", {"text": new})
    assert added.status == 303
    assert (await browser.post("/console/scripts/publicar", {"comment": "espera"})).status == 303
    assert any("alguien del equipo" in r for r in await say(client, "quiero hablar con un asesor"))
    missing = await browser.post("/console/scripts/textos/no.existe", {"text": "x"})
    assert missing.status == 400 and "No existe el texto no.existe" in await missing.text()


async def test_what_a_yes_to_a_reply_books_is_edited_and_published(
    client: TestClient[Any, Any],
) -> None:
    browser = await signed_in_admin(client)
    await browser.get("/console/scripts/objection.price")
    saved = await browser.post(
        "/console/scripts/objection.price/replies/0/agenda", {"books": "visit"}
    )
    assert saved.status == 303
    page = await (await browser.get("/console/scripts/objection.price")).text()
    assert 'data-testid="reply-books"' in page and "una visita" in page
    draft = editing.intent((await client.app[SCRIPTS].draft()).body, "objection.price")
    assert draft is not None and draft.books[0] == "visit"
    refused = await browser.post(
        "/console/scripts/objection.price/replies/0/agenda", {"books": "x"}
    )
    assert "no se puede agendar" in await refused.text()
    await browser.post("/console/scripts/publicar", {"comment": "el precio ofrece una visita"})
    live = client.app[UNDERSTANDING].current.catalogue
    assert live.booked("objection.price")[0] == "visit"
