"""`seguibot report`, run as users run it (a separate process), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from pathlib import Path

from storage.db import Database
from tests.command import seguibot
from tests.reports_data import build


def _env(database_url: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
    clean["DATABASE_URL"] = database_url
    return clean


async def test_json_has_the_contracted_keys(database_url: str, db: Database) -> None:
    await build(db)
    done = await asyncio.to_thread(
        seguibot,
        "report",
        "monthly",
        "--date",
        "2026-11-14",
        "--format",
        "json",
        env=_env(database_url),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["new_leads"] == 4 and report["conversions"] == 2
    assert report["conversion_rate"] == 50.0
    assert report["revenue"] == 1700.5
    assert report["funnel"][0] == {
        **report["funnel"][0],
        "stage": "awareness",
        "entered": 4,
        "converted": 1,
        "rate": 25.0,
    }
    assert {"stage", "entered", "converted", "rate"} <= set(report["funnel"][-1])
    assert [(o["intent"], o["count"]) for o in report["top_objections"]] == [
        ("objection.price", 2),
        ("objection.think", 2),
    ]
    assert report["ltv"] == 1700.49 and report["cac"] == 450.0 and report["ltv_cac"] == 3.78


async def test_text_is_the_spanish_summary(database_url: str, db: Database) -> None:
    await build(db)
    done = await asyncio.to_thread(
        seguibot, "report", "daily", "--date", "2026-11-30", env=_env(database_url)
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "Reporte diario: 2026-11-30 a 2026-11-30 (America/Mexico_City)" in text
    assert "Prospectos nuevos: 1 (0 el periodo anterior)" in text
    assert "Ingresos: $200.00 MXN" in text
    assert "Objeción más común: Necesito pensarlo (100.0 %)" in text
    assert "Acciones recomendadas:" in text


async def test_csv_lists_every_table(database_url: str, db: Database) -> None:
    await build(db)
    done = await asyncio.to_thread(
        seguibot,
        "report",
        "weekly",
        "--date",
        "2026-12-02",
        "--format",
        "csv",
        env=_env(database_url),
    )
    assert done.returncode == 0, done.stderr
    blocks = done.stdout.strip().split("\n\n")
    titles = [block.splitlines()[0] for block in blocks]
    assert titles[:3] == ["# Resumen", "# Prospectos por temperatura", "# Embudo"]
    summary = list(csv.reader(io.StringIO("\n".join(blocks[0].splitlines()[1:]))))
    assert summary[0] == ["Cifra", "Periodo", "Periodo anterior"]
    assert summary[1] == ["Prospectos nuevos", "2", "0"]


def test_a_bad_date_is_refused_plainly(tmp_path: Path) -> None:
    env = _env(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    done = seguibot("report", "daily", "--date", "30/11/2026", env=env)
    assert done.returncode == 2
    assert "is not a date like 2026-11-30" in done.stderr
    assert "Traceback" not in done.stderr
