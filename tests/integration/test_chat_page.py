"""The web chat page in a real browser (Debian's headless Chromium, driven by Playwright)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.web.keys import DESK

CHROMIUM = Path(os.environ.get("TEST_CHROMIUM", "/usr/bin/chromium"))
HAVE_CHROMIUM = CHROMIUM.exists()
# As the machine probe runs it: no sandbox as root, and nothing that reaches the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package chromium; make test installs it)")
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


async def test_chatting_in_the_browser(service: Any, browser: Any) -> None:
    client: TestClient[Any, Any] = await service()
    url = f"http://127.0.0.1:{client.server.port}/chat"
    page = await browser.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    await page.goto(url)
    assert await page.title() == "Chat · Seguibot"
    session = await page.evaluate("localStorage.getItem('seguibot.sesion')")
    assert len(session) == 22  # 16 random bytes, base64url

    await page.fill("#texto", "hola")
    await page.press("#texto", "Enter")
    bot_reply = page.locator("li.bot").first
    await bot_reply.wait_for(timeout=10_000)
    assert (await bot_reply.inner_text()).strip()

    # A person takes over and answers: the message arrives over the event stream.
    await page.fill("#texto", "quiero hablar con un asesor")
    await page.click("#enviar")
    await page.locator("li.bot").nth(1).wait_for(timeout=10_000)
    desk = client.app[DESK]
    agent, _ = await desk.add_agent("Carla")
    [entry] = await desk.queue()
    await desk.claim(entry.conversation_id, agent)
    await desk.reply(entry.conversation_id, agent, "Hola, soy Carla. ¿En qué te ayudo?")
    agent_reply = page.locator("li.agent")
    await agent_reply.wait_for(timeout=10_000)
    assert "soy Carla" in await agent_reply.inner_text()

    # Reopening the page shows the conversation so far, once.
    await page.reload()
    await page.locator("li.agent").wait_for(timeout=10_000)
    authors = await page.locator("li.msg").evaluate_all("items => items.map(i => i.dataset.author)")
    assert authors == ["lead", "bot", "lead", "bot", "agent"]
    # Everything ran under the page's Content-Security-Policy without a violation.
    assert not [line for line in console if "Content Security Policy" in line]
    await page.close()


async def test_text_with_markup_is_shown_as_text(service: Any, browser: Any) -> None:
    client: TestClient[Any, Any] = await service()
    page = await browser.new_page()
    await page.goto(f"http://127.0.0.1:{client.server.port}/chat")
    await page.fill("#texto", "<img src=x onerror=\"document.title='pwned'\"> hola")
    await page.press("#texto", "Enter")
    await page.locator("li.bot").first.wait_for(timeout=10_000)
    assert await page.title() == "Chat · Seguibot"
    assert await page.locator("li.lead img").count() == 0
    await page.close()
