"""The README's five minutes: docs/prod.example.yaml loads with SEGUIBOT_CONFIG, and the bot
then speaks for that business (its name, its plans and prices, its hours)."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Any

from bot.app import create_app
from bot.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "prod.example.yaml"
SESSION = "sesion-negocio-01-Kq7mZ2xW9p"


def example_settings(database_url: str) -> Any:
    return load_settings(environ={"SEGUIBOT_CONFIG": str(EXAMPLE), "DATABASE_URL": database_url})


def test_the_example_loads_over_the_defaults(database_url: str) -> None:
    settings = example_settings(database_url)
    assert settings.business.name == "Inmobiliaria Sol"
    assert settings.business.timezone == "America/Monterrey"
    assert settings.scheduling.opening(6) is None  # closed on Sunday
    assert settings.scheduling.opening(5) == (time(10), time(14))
    assert settings.pipeline.stages[0] == "prospecto"
    assert settings.outbox.max_attempts == 8  # everything else keeps its default


async def test_the_bot_quotes_that_business(aiohttp_client: Any, database_url: str) -> None:
    client = await aiohttp_client(create_app(example_settings(database_url)))
    page = await (await client.get("/chat")).text()
    assert "<title>Chat · Inmobiliaria Sol</title>" in page
    assert "departamentos en preventa" in page  # the greeting names the product
    response = await client.post(
        "/webchat/messages", json={"session_id": SESSION, "text": "¿cuánto cuesta?"}
    )
    [reply] = (await response.json())["replies"]
    assert "Estudio (desde $1,450,000 MXN), 2 recámaras (desde $2,300,000 MXN)" in reply["text"]


def test_the_readme_shows_the_example_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configure your business", 1)[1]
    shown = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert shown is not None
    assert shown[1] == EXAMPLE.read_text(encoding="utf-8")
