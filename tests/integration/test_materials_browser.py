"""The materials library in a real browser at 390 px: an admin uploads a PDF, attaches it to a
reply variant in the script editor and publishes; a prospect who says "sí" gets its link."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.desk.accounts import hash_password
from bot.web.keys import DESK, MATERIALS, SCRIPTS
from tests.browser import PHONE, launched_chromium, screenshot

PASSWORD = "una-clave-larga-1"
WAIT = 30_000  # ms: publishing trains the matcher, seconds on a busy machine
PDF = b"%PDF-1.4\n% caso de exito de una clinica\n"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async for launched in launched_chromium():
        yield launched


async def test_an_admin_creates_a_material_and_attaches_it(browser: Any, service: Any) -> None:
    client: TestClient[Any, Any] = await service(console={"secret": "pruebas-de-materiales"})
    await client.app[DESK].add_agent(
        "Olga", email="olga@example.com", admin=True, password_hash=hash_password(PASSWORD)
    )
    base = f"http://127.0.0.1:{client.server.port}"
    page = await (await browser.new_context(viewport=PHONE)).new_page()
    await page.goto(base + "/console/login")
    await page.fill('input[name="email"]', "olga@example.com")
    await page.fill('input[name="password"]', PASSWORD)
    await page.click('button[type="submit"]')
    await page.wait_for_url(base + "/console/", timeout=WAIT)

    await page.goto(base + "/console/materiales")
    await page.fill('[data-testid="material-title"]', "Caso de éxito: Clínica Sonrisas")
    await page.fill('[data-testid="material-key"]', "caso-clinica")
    await page.select_option('[data-testid="material-kind"]', "document")
    await page.set_input_files(
        '[data-testid="material-file"]',
        {"name": "caso.pdf", "mimeType": "application/pdf", "buffer": PDF},
    )
    await page.fill('[data-testid="material-tags"]', "caso, industria:salud")
    await page.fill('[data-testid="material-text"]', "Recuperaron su inversión en 2 meses.")
    await page.click('[data-testid="material-save"]')
    await page.wait_for_selector('[data-testid="material"]', timeout=WAIT)
    assert "caso-clinica" in await page.locator('[data-testid="materials"]').inner_text()
    await screenshot(page, "materials-390")

    # The editor: the first variant of "necesito pensarlo" offers it; then publish.
    await page.goto(base + "/console/scripts/objection.think")
    first = page.locator('[data-testid="reply"]').first
    await first.locator('[data-testid="reply-materials"]').fill("caso-clinica")
    await first.locator('[data-testid="reply-materials-save"]').click()
    await page.wait_for_selector('[data-testid="reply-offers"]', timeout=WAIT)
    offers = (
        await page.locator('[data-testid="reply"]')
        .first.locator('[data-testid="reply-offers"]')
        .inner_text()
    )
    assert "caso-clinica" in offers
    await screenshot(page, "materials-script-390")
    await page.fill('input[name="comment"]', "Caso de la clínica")
    await page.click('[data-testid="publish"]')
    await page.wait_for_selector("text=publicada", timeout=WAIT)
    published = client.app[SCRIPTS].loaded

    # A prospect (lead of the health industry or not: the material is the variant's own).
    session = f"sesion-{uuid.uuid4().hex}"
    [material] = await client.app[MATERIALS].all()
    for _ in range(12):
        response = await client.post(
            "/webchat/messages", json={"session_id": session, "text": "necesito pensarlo"}
        )
        texts = [reply["text"] for reply in (await response.json())["replies"]]
        if any("clientes de tu industria" in text for text in texts):
            break
    else:
        raise AssertionError(f"version {published}: the variant with the material never came")
    response = await client.post("/webchat/messages", json={"session_id": session, "text": "sí"})
    [link] = [reply["text"] for reply in (await response.json())["replies"]]
    assert f"/materiales/{material.token}/caso-clinica.pdf" in link
