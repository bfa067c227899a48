"""Debian's headless Chromium, driven by Playwright, for the tests of the web pages."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
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
# Screenshots the tests take, to look at (and the README shows): build/ is not committed.
SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


async def launched_chromium() -> AsyncIterator[Any]:
    """A fixture body: the browser, or the test skipped with the reason."""
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason="playwright is not installed"
    )
    if not CHROMIUM.exists():  # noqa: ASYNC240 - one stat before any browser starts
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package chromium; make test installs it)")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


async def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
