"""The follow-up sequences in a real browser: an admin changes a step's message on a phone,
publishes, and the process serving prospects sends the new text without a restart."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from bot.web.keys import UNDERSTANDING
from tests.browser import PHONE, SCREENSHOTS, screenshot
from tests.integration.test_scripts_browser import (  # noqa: F401 (fixtures)
    WAIT,
    base,
    browser,
    publish,
    servers,
    sign_in,
)

NEW_TEXT = "{nombre}, ¿te llamo mañana para resolver tus dudas de {producto}? Dime a qué hora."


async def test_an_admin_changes_a_steps_message_and_publishes(
    browser: Any,  # noqa: F811
    servers: tuple[TestClient[Any, Any], TestClient[Any, Any]],  # noqa: F811
) -> None:
    console, chat = servers
    olga = await sign_in(browser, console, "olga@example.com", viewport=PHONE)
    await olga.goto(base(console) + "/console/scripts")
    await olga.click('a[href="/console/scripts/sequences"]')
    await olga.wait_for_url("**/console/scripts/sequences", timeout=WAIT)

    await olga.screenshot(path=str(SCREENSHOTS / "scripts-sequences-top-390.png"))
    first = olga.locator('[data-sequence="warm"] [data-testid="step"][data-step="1"]')
    assert "Paso 1: a 2 horas del inicio" in await first.locator("summary").inner_text()
    await first.locator("summary").click()  # each step folded: the page stays short
    await first.locator('[data-testid="step-text"]').first.fill(NEW_TEXT)
    await first.locator('[data-testid="step-text-save"]').first.click()
    await olga.locator(".flash", has_text="Texto cambiado en el borrador").wait_for(timeout=WAIT)
    assert await first.locator('[data-testid="step-text"]').first.input_value() == NEW_TEXT
    await screenshot(olga, "scripts-sequences-390")
    await first.locator("summary").click()
    await first.scroll_into_view_if_needed()
    await olga.screenshot(path=str(SCREENSHOTS / "scripts-sequences-step-390.png"))

    await publish(olga, "Tibios: ofrecer la llamada desde el primer mensaje")
    await olga.locator(".flash", has_text="Versión 2 publicada").wait_for(timeout=WAIT)
    assert olga.url.endswith("/console/scripts/sequences")
    await sends(chat, "sequence.warm.1", NEW_TEXT)


async def sends(client: TestClient[Any, Any], script: str, text: str) -> None:
    """Wait until `client`'s process has `text` among `script`'s variants (its poll)."""
    async with asyncio.timeout(WAIT / 1000):
        while True:
            if text in client.app[UNDERSTANDING].replies(script):
                return
            await asyncio.sleep(0.1)
