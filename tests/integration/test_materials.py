"""Materials end to end: admins manage the library in the console, a reply offers a material,
the lead says "sí" and gets it on their channel (Telegram document or photo, WhatsApp media
through Twilio, a link in the web chat); a fresh install never promises one; publishing refuses
a promise without material."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import event, select, update

from bot.conversation.materials import MaterialForm, Upload
from bot.core.materials import Material
from bot.desk.accounts import Who
from bot.web.keys import DATABASE, DISPATCHER, MATERIALS, SCRIPTS
from intents import editing
from intents.promises import load_promises
from storage.models import Activity, AuditEvent, Conversation, Lead, MaterialRow
from storage.uow import UnitOfWork
from tests.builders import send_due
from tests.conftest import free_port
from tests.fakes.telegram_api import FakeTelegramServer, post_update
from tests.fakes.twilio_api import FakeTwilioServer
from tests.integration.test_console import Browser, make_agent, signed_in_admin
from tests.integration.test_telegram import SECRET, text_update
from tests.integration.test_whatsapp import ANA, post, whatsapp_settings

PDF = b"%PDF-1.4\n% un caso de exito\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
ADMIN = Who(None)
PROMISES = load_promises()


async def add(client: TestClient[Any, Any], **form: Any) -> Material:
    upload = form.pop("upload", None)
    return await client.app[MATERIALS].add(MaterialForm(**form), upload, ADMIN)


async def offered(client: TestClient[Any, Any]) -> list[int]:
    """The materials offered in the (one) conversation, if an offer waits for its answer."""
    async with client.app[DATABASE].session() as session:
        contexts = (await session.execute(select(Conversation.context))).scalars().all()
    return [i for context in contexts for i in context.get("offer", [])]


async def until_offered(
    client: TestClient[Any, Any], say: Callable[[str], Awaitable[Any]], text: str = "es muy caro"
) -> None:
    """The bot picks one of the objection's variants per message: ask until it offers."""
    for _ in range(12):
        await say(text)
        if await offered(client):
            return
    raise AssertionError("no reply offered a material in 12 tries")


# --- the console: admins only ------------------------------------------------------------------


@pytest.fixture
async def client(service: Any) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service(console={"secret": "pruebas-de-materiales"})
    return started


async def admin(client: TestClient[Any, Any]) -> Browser:
    browser = await signed_in_admin(client)
    await browser.get("/console/materiales")
    return browser


def upload_form(browser: Browser, data: bytes, content_type: str, **fields: str) -> FormData:
    form = FormData()
    form.add_field("csrf", browser.csrf)
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", data, filename="archivo", content_type=content_type)
    return form


async def test_agents_get_403_on_the_materials_pages(client: TestClient[Any, Any]) -> None:
    material = await add(client, title="Caso", kind="link", url="https://example.com/caso")
    await make_agent(client, "Pepe")
    agent = Browser(client)
    await agent.sign_in("pepe@example.com")
    for path in ("/console/materiales", f"/console/materiales/{material.id}"):
        response = await agent.get(path)
        assert response.status == 403, path
        assert "solo para coordinadores" in await response.text()
    created = await agent.post(
        "/console/materiales", {"title": "x", "kind": "link", "url": "https://x.mx"}
    )
    assert created.status == 403
    deactivated = await agent.post(f"/console/materiales/{material.id}/activo", {"active": "0"})
    assert deactivated.status == 403
    assert [m.title for m in await client.app[MATERIALS].all()] == ["Caso"]
    page = await (await agent.get("/console/")).text()
    assert "/console/materiales" not in page  # not in an agent's menu


async def test_an_admin_uploads_edits_and_deactivates_a_material(
    client: TestClient[Any, Any],
) -> None:
    browser = await admin(client)
    form = upload_form(
        browser,
        PDF,
        "application/pdf",
        title="Caso de éxito: Clínica Sonrisas",
        kind="document",
        tags="Caso, industria:salud",
        text="Recuperaron su inversión en 2 meses.",
    )
    response = await client.post("/console/materiales", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    [material] = await client.app[MATERIALS].all()
    assert (material.key, material.tags) == (
        "caso-de-exito-clinica-sonrisas",
        ("caso", "industria:salud"),
    )
    page = await (await browser.get("/console/materiales")).text()
    assert "Caso de éxito: Clínica Sonrisas" in page and "agregado" in page
    # The file is served at an unguessable address, to whoever the bot sends it.
    path = f"/materiales/{material.token}/{material.file_name}"
    served = await client.get(path)
    assert served.status == 200 and await served.read() == PDF
    assert served.content_type == "application/pdf"
    assert (await client.get(f"/materiales/{'x' * 32}/{material.file_name}")).status == 404

    # A "PDF" that is not one, and a file over the limit, are refused in Spanish.
    fake = upload_form(
        browser, b"MZ\x90\x00 not a pdf", "application/pdf", title="Otro", kind="document"
    )
    refused = await client.post("/console/materiales", data=fake, allow_redirects=False)
    assert refused.status == 400
    assert "no es un PDF" in await refused.text()
    big = b"%PDF-" + b"0" * client.app[MATERIALS].max_bytes
    too_big = upload_form(browser, big, "application/pdf", title="Grande", kind="document")
    refused = await client.post("/console/materiales", data=too_big, allow_redirects=False)
    assert refused.status == 400
    assert "pesa más de 5 MB" in await refused.text()

    edited = await browser.post(
        f"/console/materiales/{material.id}",
        {"title": "Caso Clínica Sonrisas", "kind": "document", "tags": "caso", "text": "Nuevo"},
    )
    assert edited.status == 303
    changed = await client.app[MATERIALS].get(material.id)
    assert (changed.title, changed.tags, changed.file_name) == (
        "Caso Clínica Sonrisas",
        ("caso",),
        material.file_name,
    )
    off = await browser.post(f"/console/materiales/{material.id}/activo", {"active": "0"})
    assert off.status == 303
    assert not (await client.app[MATERIALS].get(material.id)).active
    assert (await client.get(path)).status == 404  # a deactivated material is not served
    async with client.app[DATABASE].session() as session:
        actions = (await session.execute(select(AuditEvent.action))).scalars().all()
    assert {"material_created", "material_changed", "material_deactivated"} <= set(actions)


async def test_the_active_materials_are_read_again_only_after_a_change(
    client: TestClient[Any, Any],
) -> None:
    # The engine asks for them on every reply that may offer one: one read until a commit
    # changes a material, however it was changed.
    db = client.app[DATABASE]
    reads = [0]

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def counted(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        reads[0] += "FROM materials" in statement and "WHERE materials.active" in statement

    async def active() -> list[str]:
        async with UnitOfWork(db) as uow:
            return [material.title for material in await uow.materials.active()]

    first = await add(client, title="Caso A", kind="link", url="https://example.com/a")
    assert await active() == ["Caso A"]
    assert await active() == ["Caso A"]
    assert reads[0] == 1
    await add(client, title="Caso B", kind="link", url="https://example.com/b")
    assert await active() == ["Caso A", "Caso B"]
    async with db.session() as session:  # an attribute set on the row
        row = await session.get(MaterialRow, first.id)
        assert row is not None
        row.title = "Caso A2"
        await session.commit()
    assert await active() == ["Caso A2", "Caso B"]
    async with db.session() as session:  # a bulk UPDATE
        await session.execute(update(MaterialRow).values(active=False))
        await session.commit()
    assert await active() == []
    async with db.session() as session:  # rolled back: nothing to forget
        await session.execute(update(MaterialRow).values(active=True))
        await session.rollback()
    assert await active() == []
    assert reads[0] == 4
    async with UnitOfWork(db) as uow:  # a transaction sees its own change
        await uow.session.execute(update(MaterialRow).values(active=True))
        assert len(await uow.materials.active()) == 2
    assert await active() == []  # and it was rolled back
    async with UnitOfWork(db) as uow:  # a savepoint rolled back after a change: still changed
        await uow.session.execute(update(MaterialRow).values(active=True))
        with contextlib.suppress(LookupError):
            async with uow.savepoint():
                raise LookupError
        await uow.commit()
    assert await active() == ["Caso A2", "Caso B"]


# --- publishing --------------------------------------------------------------------------------


async def test_publishing_refuses_a_promise_without_material(client: TestClient[Any, Any]) -> None:
    browser = await admin(client)
    await browser.get("/console/scripts/info.pricing")
    added = await browser.post(
        "/console/scripts/info.pricing/replies", {"text": "¿Te envío nuestro catálogo en PDF?"}
    )
    assert added.status == 303
    draft = (await client.app[SCRIPTS].draft()).body
    view = editing.intent(draft, "info.pricing")
    assert view is not None
    n = view.replies.index("¿Te envío nuestro catálogo en PDF?") + 1
    page = await (await browser.get("/console/scripts/info.pricing")).text()
    warning = f"La respuesta {n} de info.pricing promete enviar algo («Te envío»)"
    assert warning in page
    refused = await browser.post("/console/scripts/publicar", {"comment": "catálogo"})
    assert refused.status == 400
    assert warning in await refused.text()
    live = client.app[SCRIPTS].loaded

    # Attached to a material that exists: it publishes.
    await add(
        client, title="Catálogo", key="catalogo", kind="link", url="https://example.com/c.pdf"
    )
    await browser.get("/console/scripts/info.pricing")
    attached = await browser.post(
        f"/console/scripts/info.pricing/replies/{n - 1}/materiales", {"materials": "catalogo"}
    )
    assert attached.status == 303
    page = await (await browser.get("/console/scripts/info.pricing")).text()
    assert warning not in page and "<code>catalogo</code>" in page
    published = await browser.post("/console/scripts/publicar", {"comment": "catálogo"})
    assert published.status == 303
    assert client.app[SCRIPTS].loaded == (live or 1) + 1


# --- the web chat: links -----------------------------------------------------------------------


async def test_a_fresh_install_never_promises_a_material(client: TestClient[Any, Any]) -> None:
    for n in range(15):
        session = f"sesion-{uuid.uuid4().hex}"
        for text in ("es muy caro", "necesito pensarlo", "¿funciona para mi industria?"):
            response = await client.post(
                "/webchat/messages", json={"session_id": session, "text": text}
            )
            for reply in (await response.json())["replies"]:
                assert PROMISES.found(reply["text"]) is None, (n, reply["text"])
    assert await offered(client) == []


async def test_yes_to_a_case_sends_the_link_of_the_leads_industry_in_the_web_chat(
    client: TestClient[Any, Any],
) -> None:
    await add(
        client, title="Caso general", kind="link", tags="caso", url="https://example.com/general"
    )
    await add(
        client,
        title="Caso Clínica Sonrisas",
        kind="document",
        tags="caso, industria:salud",
        text="Recuperaron su inversión en 2 meses.",
        upload=Upload("caso.pdf", "application/pdf", PDF),
    )
    session = f"sesion-{uuid.uuid4().hex}"
    replies: list[str] = []

    async def say(text: str) -> None:
        response = await client.post(
            "/webchat/messages", json={"session_id": session, "text": text}
        )
        assert response.status == 200
        replies[:] = [reply["text"] for reply in (await response.json())["replies"]]

    await say("hola")
    async with client.app[DATABASE].session() as db_session:
        await db_session.execute(update(Lead).values(tags=["industria:salud"]))
        await db_session.commit()
    await until_offered(client, say)
    await say("sí")
    [link] = replies
    assert link.startswith("Caso Clínica Sonrisas\nRecuperaron su inversión en 2 meses.\n")
    path = re.search(r"/materiales/\S+", link)
    assert path is not None and (await client.get(path.group(0))).status == 200
    async with client.app[DATABASE].session() as db_session:
        sent = (
            await db_session.execute(select(Activity).where(Activity.kind == "material"))
        ).scalar_one()
    assert (sent.body, sent.details) == (
        "Caso Clínica Sonrisas",
        {"materials": ["caso-clinica-sonrisas"]},
    )
    browser = await admin(client)  # the agent reading the conversation sees what went out
    async with client.app[DATABASE].session() as db_session:
        conversation_id = (await db_session.execute(select(Conversation.id))).scalar_one()
    page = await (await browser.get(f"/console/conversations/{conversation_id}")).text()
    assert "Material enviado: caso-clinica-sonrisas" in page
    assert await offered(client) == []  # answered: a second "sí" sends nothing again
    await say("sí")
    assert not any("/materiales/" in reply for reply in replies)


# --- Telegram: sendDocument / sendPhoto -------------------------------------------------------


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as server:
        yield server


async def test_telegram_gets_the_pdf_as_a_document_and_the_image_as_a_photo(
    service: Any, tg: FakeTelegramServer
) -> None:
    client: TestClient[Any, Any] = await service(
        telegram={
            "token": tg.token,
            "webhook_secret": SECRET,
            "api_base_url": tg.base_url,
            "per_chat_interval": 0.0,
        }
    )
    await client.app[DISPATCHER].stop(timeout=1)
    case = await add(
        client,
        title="Caso",
        kind="document",
        tags="caso",
        upload=Upload("c.pdf", "application/pdf", PDF),
    )
    plans = await add(
        client,
        title="Tabla de planes",
        kind="image",
        tags="planes",
        upload=Upload("p.png", "image/png", PNG),
    )
    message_id = 5000  # the lead's ids, apart from those the fake gives the bot's messages

    async def say(text: str) -> None:
        nonlocal message_id
        message_id += 1
        reply = await post_update(
            client, text_update(text, message_id), secret=SECRET, path="/webhooks/telegram"
        )
        assert reply.status == 200
        await send_due(client)

    await until_offered(client, say)
    [offer] = await offered(client)
    last = tg.calls_to("sendMessage")[-1]
    assert [
        b["callback_data"] for row in last.params["reply_markup"]["inline_keyboard"] for b in row
    ] == [
        "affirm",
        "deny",
    ]
    await say("sí")
    method, material, data = (
        ("sendDocument", case, PDF) if offer == case.id else ("sendPhoto", plans, PNG)
    )
    [call] = tg.sent_files(method)
    assert call.encoding == "multipart"  # uploaded: no public URL needed
    field = call.params["document" if method == "sendDocument" else "photo"]
    assert field.data == data
    assert call.params["caption"] == material.title


# --- WhatsApp: MediaUrl ------------------------------------------------------------------------


async def test_whatsapp_gets_the_material_as_media_from_its_public_url(service: Any) -> None:
    async with FakeTwilioServer() as tw:
        port = free_port()
        client: TestClient[Any, Any] = await service(port=port, **whatsapp_settings(tw, port))
        await client.app[DISPATCHER].stop(timeout=1)
        case = await add(
            client,
            title="Caso",
            kind="document",
            tags="caso",
            text="Así les fue.",
            upload=Upload("c.pdf", "application/pdf", PDF),
        )

        async def say(text: str) -> None:
            response = await post(client, tw, tw.inbound_whatsapp_params(ANA, text))
            assert response.status == 200
            await send_due(client)

        await until_offered(client, say, "no creo que funcione para mi industria")
        await say("sí")
        # The reply also offered a call (`books: call`): the case goes, then the day is asked.
        [sent] = [message for message in tw.outbound if message.media_urls]
        assert tw.outbound[-1] is not sent and "hora" in tw.outbound[-1].body
        url = f"http://127.0.0.1:{port}/materiales/{case.token}/{case.file_name}"
        assert sent.media_urls == (url,)
        assert sent.body == "Caso\nAsí les fue."
        assert ("MediaUrl", url) in sent.params
        # Twilio fetches it from there.
        fetched = await client.get(url.removeprefix(f"http://127.0.0.1:{port}"))
        assert await fetched.read() == PDF
