"""The web chat page in a real browser (Debian's headless Chromium, driven by Playwright)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.web.keys import DESK
from tests.browser import DESKTOP, PHONE, launched_chromium, screenshot


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async for launched in launched_chromium():
        yield launched


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


@pytest.mark.parametrize(("viewport", "size"), [(PHONE, "390"), (DESKTOP, "desktop")])
async def test_an_empty_page_greets_and_messages_show_their_time(
    service: Any, browser: Any, viewport: dict[str, int], size: str
) -> None:
    client: TestClient[Any, Any] = await service(
        business={"name": "Inmobiliaria Sol", "product": "tu casa nueva"}
    )
    page = await browser.new_page(viewport=viewport)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    await page.goto(f"http://127.0.0.1:{client.server.port}/chat")
    greeting = page.locator("li.saludo")
    assert "Inmobiliaria Sol" in await greeting.inner_text()
    assert await greeting.is_visible()
    await screenshot(page, f"chat-empty-{size}")

    await page.fill("#texto", "hola, ¿cuánto cuesta?")
    await page.press("#texto", "Enter")
    await page.locator("li.bot").first.wait_for(timeout=10_000)
    stamps = await page.locator("li.msg time").evaluate_all(
        "items => items.map(t => [t.textContent, t.dateTime, t.title])"
    )
    assert len(stamps) == 2
    for shown, iso, title in stamps:
        assert re.fullmatch(r"\d{1,2}:\d{2}(\s?[ap]\.?\s?m\.?)?", shown), shown
        assert iso.endswith("Z") and title.endswith(")")
    await screenshot(page, f"chat-{size}")
    # The icon is served: no error response on a page load.
    icon = await page.request.get(f"http://127.0.0.1:{client.server.port}/favicon.ico")
    assert icon.status == 200
    assert failed == []
    await page.close()


async def test_the_page_says_it_is_reconnecting_while_the_stream_is_down(
    service: Any, browser: Any
) -> None:
    client: TestClient[Any, Any] = await service()
    page = await browser.new_page()

    async def refuse(route: Any) -> None:
        await route.fulfill(status=503, body="")

    await page.route("**/webchat/events*", refuse)
    await page.goto(f"http://127.0.0.1:{client.server.port}/chat")
    notice = page.locator("#estado")
    await notice.wait_for(state="visible", timeout=10_000)
    assert (await notice.inner_text()).strip() == "Reconectando…"
    await screenshot(page, "chat-reconnecting")

    await page.unroute("**/webchat/events*")
    await notice.wait_for(state="hidden", timeout=15_000)
    # Connected again: a person's message reaches the page over the stream.
    await page.fill("#texto", "quiero hablar con un asesor")
    await page.press("#texto", "Enter")
    await page.locator("li.bot").first.wait_for(timeout=10_000)
    desk = client.app[DESK]
    agent, _ = await desk.add_agent("Carla")
    [entry] = await desk.queue()
    await desk.claim(entry.conversation_id, agent)
    await desk.reply(entry.conversation_id, agent, "Hola, soy Carla.")
    await page.locator("li.agent").wait_for(timeout=10_000)
    await page.close()


async def test_a_second_tab_shows_both_sides_and_neither_shows_a_message_twice(
    service: Any, browser: Any
) -> None:
    client: TestClient[Any, Any] = await service()
    url = f"http://127.0.0.1:{client.server.port}/chat"
    context = await browser.new_context()  # one browser profile: one session, two tabs
    first, second = await context.new_page(), await context.new_page()
    await first.goto(url)
    await second.goto(url)

    await first.fill("#texto", "hola")
    await first.press("#texto", "Enter")
    await second.locator("li.lead", has_text="hola").wait_for(timeout=10_000)
    await second.locator("li.bot").first.wait_for(timeout=10_000)

    # The second tab writes; once the first shows that, its stream has passed its own message.
    await second.fill("#texto", "¿cuánto cuesta?")
    await second.press("#texto", "Enter")
    await first.locator("li.lead", has_text="cuánto cuesta").wait_for(timeout=10_000)
    await first.locator("li.bot").nth(1).wait_for(timeout=10_000)
    await second.locator("li.bot").nth(1).wait_for(timeout=10_000)
    for tab in (first, second):
        shown = await tab.locator("li.msg").evaluate_all(
            "items => items.map(i => [i.dataset.author, i.querySelector('.texto').textContent])"
        )
        assert [author for author, _ in shown] == ["lead", "bot", "lead", "bot"], shown
        assert [text for _, text in shown][::2] == ["hola", "¿cuánto cuesta?"]
    await context.close()
