"""The reports page in a real browser (Chromium): the charts render and have a size, on a desk
and at 390 px; screenshots for the README (build/screenshots/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.desk.accounts import hash_password
from bot.web.keys import DATABASE, DESK
from tests.browser import DESKTOP, PHONE, SCREENSHOTS, launched_chromium, screenshot
from tests.integration.test_console_browser import PASSWORD, WAIT, base
from tests.reports_data import build

NOVEMBER = "/console/reports?period=month&date=2026-11-01"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async for launched in launched_chromium():
        yield launched


@pytest.fixture
async def client(service: Any) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service(console={"secret": "pruebas-de-reportes"})
    await build(started.app[DATABASE])
    await started.app[DESK].add_agent(
        "Carla", email="carla@example.com", admin=True, password_hash=hash_password(PASSWORD)
    )
    return started


async def _signed_in(browser: Any, client: TestClient[Any, Any], viewport: dict[str, int]) -> Any:
    page = await (await browser.new_context(viewport=viewport)).new_page()
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.errors = errors
    await page.goto(base(client) + "/console/login")
    await page.fill('input[name="email"]', "carla@example.com")
    await page.fill('input[name="password"]', PASSWORD)
    await page.click('button[type="submit"]')
    await page.wait_for_url(base(client) + "/console/", timeout=WAIT)
    return page


@pytest.mark.parametrize(("viewport", "name"), [(DESKTOP, "desktop"), (PHONE, "390")])
async def test_charts_render_with_a_size(
    browser: Any, client: TestClient[Any, Any], viewport: dict[str, int], name: str
) -> None:
    page = await _signed_in(browser, client, viewport)
    await page.goto(base(client) + NOVEMBER)
    charts = page.locator("[data-testid=chart]")
    await charts.first.wait_for(timeout=WAIT)
    assert await charts.count() == 6
    for index in range(6):
        box = await charts.nth(index).bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 40, box
        assert box["x"] + box["width"] <= viewport["width"]  # nothing wider than the screen
        title = await charts.nth(index).locator("title").text_content()
        assert title
        bars = charts.nth(index).locator("rect")
        assert await bars.count() > 0
    # The page as a whole fits a phone: no sideways scrolling.
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= viewport["width"]
    assert page.errors == []  # the Content-Security-Policy refused nothing
    await screenshot(page, f"reports-{name}")
    await page.screenshot(path=str(SCREENSHOTS / f"reports-{name}-top.png"))  # the README's

    # The tables under a chart open on demand, without any script.
    hours = page.locator("#t-by_hour details")
    assert not await hours.get_attribute("open")
    await hours.locator("summary").click()
    await page.locator("#t-by_hour table").wait_for(state="visible", timeout=WAIT)

    # The period picker: a week, compared with the week before.
    await page.select_option('select[name="period"]', "week")
    await page.fill('input[name="date"]', "2026-12-02")
    await page.click('form.filtros button[type="submit"]')
    await page.wait_for_url("**period=week**", timeout=WAIT)
    assert "Del 2026-11-30 al 2026-12-06" in await page.locator("p.sub").first.text_content()
