"""The CRM's pages in a real browser (Chromium): the lead list, a lead's page with its score
and stage, and the board, where a lead is moved by dragging its card to another column."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot.desk.accounts import hash_password
from bot.web.keys import DATABASE, DESK, DISPATCHER, RECORDS, SCHEDULER
from storage.models import Lead, StageChange
from tests.browser import DESKTOP, PHONE, launched_chromium, screenshot

PASSWORD = "una-clave-larga-1"
WAIT = 10_000  # ms
PEOPLE = [
    ("Ana López", "¿cuánto cuesta y aceptan pagos a meses?"),
    ("Beto Ruiz", "quiero comprar"),
    ("Carla Méndez", "hola"),
    ("Dora Salas", "no me interesa"),
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async for launched in launched_chromium():
        yield launched


@pytest.fixture
async def client(service: Any) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service(console={"secret": "pruebas-de-consola"})
    await started.app[DISPATCHER].stop(timeout=1)
    await started.app[SCHEDULER].pause()
    carla, _ = await started.app[DESK].add_agent(
        "Carla", email="carla@example.com", admin=True, password_hash=hash_password(PASSWORD)
    )
    for n, (_, text) in enumerate(PEOPLE):
        session = f"sesion-navegador-{n:04d}-abcdef"
        response = await started.post(
            "/webchat/messages", json={"session_id": session, "text": text}
        )
        assert response.status == 200
    async with started.app[DATABASE].session() as session:
        leads = list((await session.execute(select(Lead).order_by(Lead.id))).scalars())
        for lead, (name, _) in zip(leads, PEOPLE, strict=True):
            values: dict[str, Any] = {"name": name, "owner_id": carla.id}
            if name.startswith("Ana"):
                values.update(tags=["vip"], email="ana@example.com")
            await session.execute(update(Lead).where(Lead.id == lead.id).values(**values))
        await session.commit()
    ana = leads[0]
    await started.app[RECORDS].log(
        ana.id, carla, kind="call", result="answered_interested", duration_minutes=6,
        body="Quiere ver el depa el sábado",
    )  # fmt: skip
    await started.app[RECORDS].log(ana.id, carla, kind="note", body="Prefiere WhatsApp")
    return started


def base(client: TestClient[Any, Any]) -> str:
    return f"http://127.0.0.1:{client.server.port}"


async def sign_in(browser: Any, client: TestClient[Any, Any]) -> Any:
    page = await (await browser.new_context(viewport=DESKTOP)).new_page()
    await page.goto(base(client) + "/console/login")
    await page.fill('input[name="email"]', "carla@example.com")
    await page.fill('input[name="password"]', PASSWORD)
    await page.click('button[type="submit"]')
    await page.wait_for_url(base(client) + "/console/", timeout=WAIT)
    return page


async def test_the_lead_list_the_lead_page_and_the_board(
    browser: Any, client: TestClient[Any, Any]
) -> None:
    page = await sign_in(browser, client)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    await page.goto(base(client) + "/console/leads?sort=score")
    rows = page.locator('[data-testid="lead-row"]')
    await rows.first.wait_for(timeout=WAIT)
    assert await rows.count() == len(PEOPLE)
    assert "Beto Ruiz" in await rows.first.inner_text()  # hottest first
    await screenshot(page, "crm-leads-desktop")

    async with client.app[DATABASE].session() as session:
        ana = (await session.execute(select(Lead).where(Lead.name == "Ana López"))).scalar_one()
    await page.goto(base(client) + f"/console/leads/{ana.id}")
    assert await page.locator('[data-testid="score"]').inner_text() == str(ana.score)
    assert await page.locator('[data-testid="stage"]').inner_text() == "Conocimiento"
    await page.click("summary:has-text('¿Por qué')")
    rules = await page.locator('[data-testid="score-rules"]').inner_text()
    assert "Preguntó por formas de pago" in rules
    await screenshot(page, "crm-lead-desktop")

    await page.goto(base(client) + "/console/board")
    card = page.locator(f'[data-testid="board-card"][data-lead-id="{ana.id}"]')
    target = page.locator('[data-testid="board-column"][data-stage="consideration"]')
    await card.drag_to(target.locator("h2"))
    await target.locator(f'[data-lead-id="{ana.id}"]').wait_for(timeout=WAIT)
    async with client.app[DATABASE].session() as session:
        moved = (await session.execute(select(Lead).where(Lead.id == ana.id))).scalar_one()
        changes = list(
            (
                await session.execute(select(StageChange).where(StageChange.lead_id == ana.id))
            ).scalars()
        )
    assert moved.stage == "consideration"
    assert [(c.from_stage, c.to_stage) for c in changes] == [
        (None, "awareness"),
        ("awareness", "consideration"),
    ]
    await screenshot(page, "crm-board-desktop")

    # After a reload the card is where it was dropped; the lead page says the new stage.
    await page.reload()
    await target.locator(f'[data-lead-id="{ana.id}"]').wait_for(timeout=WAIT)
    await page.goto(base(client) + f"/console/leads/{ana.id}")
    assert await page.locator('[data-testid="stage"]').inner_text() == "Consideración"

    await page.set_viewport_size(PHONE)
    for path, name in (
        ("/console/leads?sort=score", "crm-leads-390"),
        (f"/console/leads/{ana.id}", "crm-lead-390"),
        ("/console/board", "crm-board-390"),
    ):
        await page.goto(base(client) + path)
        width = await page.evaluate("document.documentElement.scrollWidth")
        if path != "/console/board":  # the board scrolls sideways inside its own box
            assert width <= PHONE["width"], f"{path} is {width}px wide at 390"
        await screenshot(page, name)
    assert errors == []
