"""The agent console in a real browser: an agent's day, from sign-in to handing back.

A prospect writes in the web chat page (one browser context), agents work in the console
(others), and everything is checked where a person would see it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.desk.accounts import hash_password
from bot.web.keys import DESK
from tests.browser import DESKTOP, PHONE, launched_chromium, screenshot

PASSWORD = "una-clave-larga-1"
WAIT = 10_000  # ms


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async for launched in launched_chromium():
        yield launched


@pytest.fixture
async def client(service: Any) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service(console={"secret": "pruebas-de-consola"})
    desk = started.app[DESK]
    await desk.add_agent(
        "Carla", email="carla@example.com", admin=True, password_hash=hash_password(PASSWORD)
    )
    await desk.add_agent("Beto", email="beto@example.com", password_hash=hash_password(PASSWORD))
    return started


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


async def prospect(browser: Any, client: TestClient[Any, Any]) -> Any:
    page = await (await browser.new_context(viewport=PHONE)).new_page()
    await page.goto(base(client) + "/chat")
    return page


async def chat(page: Any, text: str, replies_before: int) -> None:
    await page.fill("#texto", text)
    await page.press("#texto", "Enter")
    await page.locator("li.bot, li.agent").nth(replies_before).wait_for(timeout=WAIT)


async def test_an_agents_day(browser: Any, client: TestClient[Any, Any]) -> None:
    carla = await sign_in(browser, client, "carla@example.com", viewport=DESKTOP)
    lead = await prospect(browser, client)
    await chat(lead, "hola", 0)

    # The prospect asks for a person: the queue shows them without a reload.
    await chat(lead, "quiero hablar con un asesor", 1)
    item = carla.locator('[data-testid="queue-item"]')
    await item.wait_for(timeout=WAIT)
    conversation_id = await item.get_attribute("data-conversation-id")
    await screenshot(carla, "console-queue-desktop")

    # Carla takes it; the bot is silent from now on.
    await item.locator("a").click()
    await carla.wait_for_url(f"**/console/conversations/{conversation_id}", timeout=WAIT)
    await carla.click('[data-testid="claim"]')
    await carla.locator('[data-testid="reply-box"]').wait_for(timeout=WAIT)

    # Her reply arrives in the prospect's chat page, live.
    await carla.fill('[data-testid="reply-box"]', "Hola, soy Carla. ¿En qué te ayudo?")
    await carla.click('[data-testid="send"]')
    agent_line = lead.locator("li.agent")
    await agent_line.wait_for(timeout=WAIT)
    assert "soy Carla" in await agent_line.inner_text()

    # The prospect's answer appears in the console, live; the bot says nothing.
    bot_lines = await lead.locator("li.bot").count()
    await lead.fill("#texto", "quiero saber de los planes")
    await lead.press("#texto", "Enter")
    await carla.locator('[data-testid="message"][data-author="lead"]', has_text="planes").wait_for(
        timeout=WAIT
    )
    authors = await carla.locator('[data-testid="message"]').evaluate_all(
        "items => items.map(i => i.dataset.author)"
    )
    assert authors == ["lead", "bot", "lead", "bot", "agent", "lead"]
    await asyncio.sleep(0.5)
    assert await lead.locator("li.bot").count() == bot_lines
    await screenshot(carla, "console-conversation-desktop")
    await carla.set_viewport_size(PHONE)
    await screenshot(carla, "console-conversation-390")
    await carla.goto(base(client) + "/console/")
    await screenshot(carla, "console-queue-390")

    # A transfer needs a reason, and records both agents and the reason.
    await carla.goto(base(client) + f"/console/conversations/{conversation_id}")
    await carla.click('[data-testid="transfer"]')
    await carla.select_option('[data-testid="transfer-agent"]', label="Beto")
    await carla.fill('[data-testid="transfer-reason"]', "Beto lleva las cuentas de empresa")
    await carla.click('[data-testid="transfer-confirm"]')
    await carla.locator(".ficha", has_text="Beto lleva las cuentas de empresa").wait_for(
        timeout=WAIT
    )

    # Beto hands it back to the bot, and the bot answers the prospect again.
    beto = await sign_in(browser, client, "beto@example.com", viewport=PHONE)
    await beto.goto(base(client) + "/console/mine")
    await beto.locator("a", has_text="Prospecto sin nombre").click()
    await beto.click('[data-testid="handback"]')
    await beto.locator("[data-state]", has_text="Con el bot").wait_for(timeout=WAIT)
    before = await lead.locator("li.bot").count()
    await chat(lead, "¿cuánto cuesta?", before + 1)


async def test_two_agents_claim_at_once_and_one_is_told_who(
    browser: Any, client: TestClient[Any, Any]
) -> None:
    lead = await prospect(browser, client)
    await chat(lead, "quiero hablar con un asesor", 0)
    [entry] = await client.app[DESK].queue()
    url = base(client) + f"/console/conversations/{entry.conversation_id}"
    carla = await sign_in(browser, client, "carla@example.com")
    beto = await sign_in(browser, client, "beto@example.com")
    await carla.goto(url)
    await beto.goto(url)

    async def press_claim(page: Any) -> None:
        async with page.expect_navigation(timeout=WAIT):
            await page.click('[data-testid="claim"]')

    await asyncio.gather(press_claim(carla), press_claim(beto))
    texts = [await page.locator("main").inner_text() for page in (carla, beto)]
    won = [
        "reply-box"
        for page in (carla, beto)
        if await page.locator('[data-testid="reply-box"]').count()
    ]
    assert len(won) == 1
    told = [text for text in texts if "ya atiende esta conversación" in text]
    assert len(told) == 1 and ("Carla" in told[0] or "Beto" in told[0])


async def test_markup_from_a_prospect_is_text_and_agents_cannot_open_admin_pages(
    browser: Any, client: TestClient[Any, Any]
) -> None:
    lead = await prospect(browser, client)
    await chat(lead, "<img src=x onerror=alert(1)> quiero hablar con un asesor", 0)
    beto = await sign_in(browser, client, "beto@example.com")
    dialogs: list[str] = []
    beto.on("dialog", lambda dialog: dialogs.append(dialog.message))
    [entry] = await client.app[DESK].queue()
    await beto.goto(base(client) + f"/console/conversations/{entry.conversation_id}")
    message = beto.locator('[data-testid="message"][data-author="lead"]').first
    assert "<img src=x onerror=alert(1)>" in await message.inner_text()
    assert await message.locator("img").count() == 0
    await asyncio.sleep(0.3)
    assert dialogs == []

    for path in ("/console/agents", "/console/settings", "/console/audit"):
        response = await beto.goto(base(client) + path)
        assert response.status == 403
        assert "solo para coordinadores" in await beto.locator("main").inner_text()
