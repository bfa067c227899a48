"""The script editor in a real browser: an admin edits, tries, publishes and rolls back, and
prospects on the web chat of another process get the new reply without a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.desk.accounts import hash_password
from bot.web.keys import DESK, SCRIPTS
from tests.browser import DESKTOP, PHONE, launched_chromium, screenshot

PASSWORD = "una-clave-larga-1"
WAIT = 30_000  # ms: training the draft's matcher takes seconds on a busy machine
NEW_REPLY = "Vale cada peso: se paga solo en tres meses, ¿te muestro cómo?"
ODD = "el cielo es azul hoy"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async for launched in launched_chromium():
        yield launched


@pytest.fixture
async def servers(service: Any) -> tuple[TestClient[Any, Any], TestClient[Any, Any]]:
    """Two processes' worth of app on one database: the console on one, the chat on the other."""
    settings = {"console": {"secret": "pruebas-de-guiones"}, "nlu": {"reload_seconds": 0.3}}
    console: TestClient[Any, Any] = await service(**settings)
    chat: TestClient[Any, Any] = await service(**settings)
    desk = console.app[DESK]
    await desk.add_agent(
        "Olga", email="olga@example.com", admin=True, password_hash=hash_password(PASSWORD)
    )
    await desk.add_agent("Beto", email="beto@example.com", password_hash=hash_password(PASSWORD))
    return console, chat


def base(client: TestClient[Any, Any]) -> str:
    return f"http://127.0.0.1:{client.server.port}"


async def sign_in(browser: Any, client: TestClient[Any, Any], email: str, **context: Any) -> Any:
    page = await (await browser.new_context(**context)).new_page()
    await page.goto(base(client) + "/console/login")
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', PASSWORD)
    await page.click('button[type="submit"]')
    await page.wait_for_url(base(client) + "/console/", timeout=WAIT)
    return page


async def ask(browser: Any, client: TestClient[Any, Any], text: str) -> str:
    """A new prospect on the web chat page writes `text`: the bot's reply."""
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    await page.goto(base(client) + "/chat")
    greeted = await page.locator("li.bot").count()
    await page.fill("#texto", text)
    await page.press("#texto", "Enter")
    reply = page.locator("li.bot").nth(greeted)
    await reply.wait_for(timeout=WAIT)
    said: str = await reply.inner_text()
    await context.close()
    return said


async def says_eventually(
    browser: Any, client: TestClient[Any, Any], text: str, part: str, present: bool = True
) -> str:
    for _ in range(20):
        said = await ask(browser, client, text)
        if (part in said) == present:
            return said
    raise AssertionError(f"the bot never {'said' if present else 'stopped saying'} {part!r}")


async def publish(page: Any, comment: str) -> None:
    await page.fill('[data-testid="publish-comment"]', comment)
    await page.click('[data-testid="publish"]')


async def test_an_admin_edits_tries_publishes_and_rolls_back(
    browser: Any, servers: tuple[TestClient[Any, Any], TestClient[Any, Any]]
) -> None:
    console, chat = servers
    before = await ask(browser, chat, "es muy caro")
    assert "se paga solo" not in before

    olga = await sign_in(browser, console, "olga@example.com", viewport=DESKTOP)
    await olga.goto(base(console) + "/console/scripts")
    await olga.click('a[href="/console/scripts/objection.price"]')
    await olga.wait_for_url("**/console/scripts/objection.price", timeout=WAIT)

    # A new example and a new reply variant; the old variants go, so every prospect gets it.
    await olga.fill('[data-testid="example-new"]', "me sale re salado el precio")
    await olga.click('[data-testid="example-add"]')
    await olga.locator('[data-testid="example"]', has_text="me sale re salado").wait_for(
        timeout=WAIT
    )
    await olga.fill('[data-testid="reply-new"]', NEW_REPLY)
    await olga.click('[data-testid="reply-add"]')
    await olga.locator('[data-testid="reply"]', has_text="se paga solo").wait_for(timeout=WAIT)
    while await olga.locator('[data-testid="reply"]').count() > 1:
        old = olga.locator('[data-testid="reply"]').filter(has_not_text="se paga solo").first
        await old.get_by_role("button", name="Quitar la respuesta").click()
        await olga.wait_for_load_state()
    assert "se paga solo" not in await ask(browser, chat, "es muy caro")  # only a draft

    # Try it: in place, live and with the draft.
    await olga.fill('[data-testid="try-input"]', "me sale re salado el precio")
    await olga.press('[data-testid="try-input"]', "Enter")
    result = olga.locator('[data-testid="try-result"]')
    await result.wait_for(timeout=WAIT)
    assert "objection.price" in await result.inner_text()
    assert "/console/scripts/objection.price" in olga.url and "probar=" in olga.url
    await screenshot(olga, "scripts-intent-desktop")
    await olga.set_viewport_size(PHONE)
    await screenshot(olga, "scripts-intent-390")
    await olga.set_viewport_size(DESKTOP)

    await publish(olga, "Precio: el retorno en tres meses")
    await olga.locator(".flash", has_text="Versión 2 publicada").wait_for(timeout=WAIT)
    assert "se paga solo en tres meses" in await says_eventually(
        browser, chat, "es muy caro", "se paga solo"
    )

    # Roll back: the old reply returns, on the other process too.
    await olga.goto(base(console) + "/console/scripts/versiones?a=1&b=2")
    await olga.locator('[data-testid="diff"]').wait_for(timeout=WAIT)
    await screenshot(olga, "scripts-versions-desktop")
    await olga.locator('[data-testid="version"][data-version="1"] [data-testid="rollback"]').click()
    await olga.locator(".flash", has_text="Versión 3 publicada").wait_for(timeout=WAIT)
    assert await olga.locator('[data-testid="version"]').count() == 3
    await says_eventually(browser, chat, "es muy caro", "se paga solo", present=False)


async def test_invalid_drafts_agents_and_the_not_understood(
    browser: Any, servers: tuple[TestClient[Any, Any], TestClient[Any, Any]]
) -> None:
    console, chat = servers
    olga = await sign_in(browser, console, "olga@example.com", viewport=DESKTOP)

    # An unknown placeholder: flagged in the editor, refused at publishing.
    await olga.goto(base(console) + "/console/scripts/objection.time")
    await olga.fill('[data-testid="reply-new"]', "Hola {nombe}, ¿cuándo te queda bien?")
    await olga.click('[data-testid="reply-add"]')
    await olga.locator('[data-testid="placeholder-warning"]').wait_for(timeout=WAIT)
    await publish(olga, "con error")
    await olga.locator(".error", has_text="no es un dato que el bot sepa llenar").wait_for(
        timeout=WAIT
    )
    await olga.goto(base(console) + "/console/scripts")
    await olga.click("text=Descartar el borrador")

    # An intent without examples: refused too.
    await olga.fill('[data-testid="intent-new-id"]', "info.horario")
    await olga.fill('[data-testid="intent-new-label"]', "el horario")
    await olga.fill('[data-testid="intent-new-replies"]', "Abrimos de 9 a 6.")
    await olga.click("text=Agregar al borrador")
    await olga.wait_for_url("**/console/scripts/info.horario", timeout=WAIT)
    await publish(olga, "vacía")
    await olga.locator(".error", has_text="info.horario no tiene ejemplos").wait_for(timeout=WAIT)
    assert [v.number for v in await console.app[SCRIPTS].versions()] == [1]
    await olga.goto(base(console) + "/console/scripts")
    await olga.click("text=Descartar el borrador")

    # An agent may not edit the scripts.
    beto = await sign_in(browser, console, "beto@example.com")
    response = await beto.goto(base(console) + "/console/scripts/objection.price")
    assert response.status == 403
    assert "solo para coordinadores" in await beto.inner_text("main")

    # A message nobody understood becomes an example, and is understood once published.
    await ask(browser, chat, ODD)
    await olga.goto(base(console) + "/console/scripts/no-entendidos")
    row = olga.locator('[data-testid="unknown"]', has_text=ODD)
    await row.wait_for(timeout=WAIT)
    await olga.set_viewport_size(PHONE)
    await screenshot(olga, "scripts-unknown-390")
    await olga.set_viewport_size(DESKTOP)
    await row.locator('[data-testid="unknown-intent"]').select_option("info.product")
    await row.locator('[data-testid="unknown-add"]').click()
    await olga.locator(".flash", has_text="info.product").wait_for(timeout=WAIT)
    await olga.goto(base(console) + "/console/scripts")
    await screenshot(olga, "scripts-list-desktop")
    await publish(olga, "Aprendido de no entendidos")
    await olga.locator(".flash", has_text="Versión 2 publicada").wait_for(timeout=WAIT)
    await olga.fill('[data-testid="try-input"]', ODD)
    await olga.press('[data-testid="try-input"]', "Enter")
    result = olga.locator('[data-testid="try-result"] .ficha').first
    await result.wait_for(timeout=WAIT)
    assert "info.product" in await result.inner_text()
