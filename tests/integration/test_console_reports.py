"""/console/reports on the real app: who sees what, the period picker, charts, exports, the
glossary and the CAC form, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot.desk.accounts import hash_password
from bot.web.keys import DATABASE
from storage.models import Agent, AuditEvent, CacEntry
from tests.integration.test_console import PASSWORD, Browser, make_agent
from tests.reports_data import History, build

NOVEMBER = "/console/reports?period=month&date=2026-11-14"
MONTH = "period=month&date=2026-11-01"


@pytest.fixture
async def client(service: Any) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service(console={"secret": "pruebas-de-reportes"})
    return started


@pytest.fixture
async def history(client: TestClient[Any, Any]) -> History:
    return await build(client.app[DATABASE])


async def _admin(client: TestClient[Any, Any]) -> Browser:
    await make_agent(client, "Coordinadora", admin=True)
    browser = Browser(client)
    assert (await browser.sign_in("coordinadora@example.com")).status == 303
    return browser


async def _as_ana(client: TestClient[Any, Any], history: History) -> Browser:
    async with client.app[DATABASE].session() as session:
        await session.execute(
            update(Agent)
            .where(Agent.id == history.ana)
            .values(email="ana@example.com", password_hash=hash_password(PASSWORD))
        )
        await session.commit()
    browser = Browser(client)
    assert (await browser.sign_in("ana@example.com")).status == 303
    return browser


async def test_reports_need_a_session(client: TestClient[Any, Any]) -> None:
    response = await client.get("/console/reports", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"].startswith("/console/login?next=/console/reports")


async def test_an_admin_sees_every_figure_with_charts(
    client: TestClient[Any, Any], history: History
) -> None:
    browser = await _admin(client)
    response = await browser.get(NOVEMBER)
    assert response.status == 200
    page = await response.text()
    assert "Del 2026-11-01 al 2026-11-30, comparado con el 2026-10-01 al 2026-10-31" in page
    charts = re.findall(r'<svg data-testid="chart"[^>]*role="img"', page)
    assert len(charts) == 6
    assert page.count('<title id="grafica-') == 6
    assert "1700.50 MXN" in page and "antes: 0.00 MXN" in page  # revenue beside October's
    assert "50.0 %" in page  # the conversion rate
    assert "3.78:1" in page and "sano (3:1)" in page
    assert "Mejorar la respuesta a «Es muy caro»" in page
    assert "Beto" in page and "/console/reports/cac" in page
    assert 'href="/console/reports/export/funnel.xlsx?period=month&amp;date=2026-11-01"' in page


async def test_an_agent_sees_only_their_own_figures(
    client: TestClient[Any, Any], history: History
) -> None:
    browser = await _as_ana(client, history)
    page = await (await browser.get(NOVEMBER)).text()
    assert "Reportes: mis cifras" in page
    new_leads = re.search(r'data-figure="new_leads">.*?cifra-valor">(\d+)<', page, re.S)
    assert new_leads is not None and new_leads.group(1) == "3"
    assert "Beto" not in page and "LTV:CAC" not in page
    assert (await browser.get("/console/reports/cac")).status == 403
    exported = await (
        await browser.get("/console/reports/export/agents.csv?period=month&date=2026-11-01")
    ).text()
    assert "Ana" in exported and "Beto" not in exported


async def test_the_previous_period_and_a_custom_one(
    client: TestClient[Any, Any], history: History
) -> None:
    browser = await _admin(client)
    page = await (await browser.get("/console/reports?period=day&date=2026-11-30")).text()
    assert "comparado con el 2026-11-29 al 2026-11-29" in page
    custom = "/console/reports?period=custom&date=2026-11-28&until=2026-12-02"
    page = await (await browser.get(custom)).text()
    assert "Del 2026-11-28 al 2026-12-02, comparado con el 2026-11-23 al 2026-11-27" in page


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("period=year", "Elige día, semana, mes o personalizado."),
        ("period=day&date=30-11-2026", "Escribe la fecha como AAAA-MM-DD."),
        ("period=custom&date=2026-12-02&until=2026-11-01", "Un periodo personalizado va de 1"),
        ("period=custom&date=2020-01-01&until=2026-11-01", "Un periodo personalizado va de 1"),
    ],
)
async def test_bad_periods_are_refused_in_spanish(
    client: TestClient[Any, Any], query: str, says: str
) -> None:
    browser = await _admin(client)
    response = await browser.get(f"/console/reports?{query}")
    assert response.status == 400
    assert says in await response.text()


async def test_tables_export_to_csv_and_excel(
    client: TestClient[Any, Any], history: History
) -> None:
    browser = await _admin(client)
    response = await browser.get("/console/reports/export/funnel.csv?period=month&date=2026-11-01")
    assert response.status == 200
    assert response.headers["Content-Disposition"].endswith('"funnel-2026-11-01-2026-11-30.csv"')
    body = (await response.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["Embudo", "Etapa", "Entraron", "Avanzaron", "Tasa %", "Días en la etapa"]
    # The stages the CRM seeds on start, by their Spanish names.
    assert rows[1] == ["Embudo de ventas", "Conocimiento", "4", "1", "25.0", "2.0"]

    response = await client.get(  # binary: not read as a page
        "/console/reports/export/top_objections.xlsx?period=month&date=2026-11-01"
    )
    assert response.status == 200
    assert response.content_type.endswith("spreadsheetml.sheet")
    book = zipfile.ZipFile(io.BytesIO(await response.read()))
    strings = book.read("xl/sharedStrings.xml").decode()
    sheet = book.read("xl/worksheets/sheet1.xml").decode()
    assert "Objeción" in strings and "Es muy caro" in strings and "Necesito pensarlo" in strings
    assert "<v>2</v>" in sheet  # counts are numbers, not text
    assert "Objeciones más comunes" in book.read("xl/workbook.xml").decode()

    assert (await browser.get("/console/reports/export/nothing.csv")).status == 404


async def test_the_glossary_defines_every_figure(client: TestClient[Any, Any]) -> None:
    browser = await _admin(client)
    page = await (await browser.get("/console/reports/glossary")).text()
    for name in ("Conversiones", "Tasa de conversión", "Embudo", "LTV:CAC", "Prospectos fríos"):
        assert f">{name}</dt>" in page
    assert "converted" not in page


async def test_admins_enter_and_import_cac(client: TestClient[Any, Any], history: History) -> None:
    browser = await _admin(client)
    await browser.get("/console/reports/cac")
    saved = await browser.post(
        "/console/reports/cac", {"source": "google", "month": "2026-11", "amount": "$1,250.50"}
    )
    assert saved.status == 303
    refused = await browser.post(
        "/console/reports/cac", {"source": "google", "month": "2026-13", "amount": "1"}
    )
    assert refused.status == 400 and "AAAA-MM" in await refused.text()
    refused = await browser.post(
        "/console/reports/cac", {"source": "google", "month": "2026-11", "amount": "-5"}
    )
    assert refused.status == 400

    def upload(text: str) -> Any:
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("csrf", browser.csrf)
        form.add_field("file", text.encode(), filename="cac.csv", content_type="text/csv")
        return client.post("/console/reports/cac/import", data=form, allow_redirects=False)

    bad = await upload("fuente,mes,monto\ntiktok,2026-11,100\nradio,2026-11\n")
    assert bad.status == 400 and "La fila 2 necesita" in await bad.text()
    good = await upload("fuente,mes,monto\ntiktok,2026-11,100\nemail,2026-11,650\n")
    assert good.status == 303

    async with client.app[DATABASE].session() as session:
        entries = {
            (e.source, e.month.isoformat()): e.amount
            for e in (await session.execute(select(CacEntry))).scalars()
        }
        audited = (
            await session.execute(select(AuditEvent).where(AuditEvent.action == "cac.saved"))
        ).scalars()
        assert len(list(audited)) == 3
    assert entries[("google", "2026-11-01")] == Decimal("1250.50")
    assert entries[("tiktok", "2026-11-01")] == Decimal("100.00")
    assert entries[("email", "2026-11-01")] == Decimal("650.00")  # corrected, not doubled
    assert ("radio", "2026-11-01") not in entries
    page = await (await browser.get("/console/reports/cac")).text()
    assert "google" in page and "1250.50 MXN" in page


class _Words(HTMLParser):
    """The text of a page as a person reads it: text nodes and the titles shown on hover."""

    def __init__(self) -> None:
        super().__init__()
        self.read: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.read += [value or "" for name, value in attrs if name in ("title", "aria-label")]

    def handle_data(self, data: str) -> None:
        self.read.append(data)


# The CRM calls a lead «prospecto» and its score «puntuación» (bot/web/console/textos.es.yaml).
ENGLISH = re.compile(r"\b(leads?|score)\b", re.IGNORECASE)


async def test_reports_speak_the_crms_words(client: TestClient[Any, Any], history: History) -> None:
    browser = await _admin(client)
    for path in (NOVEMBER, "/console/reports/glossary"):
        words = _Words()
        words.feed(await (await browser.get(path)).text())
        assert not ENGLISH.findall(" ".join(words.read)), path
    page = await (await browser.get(NOVEMBER)).text()
    assert ">Prospectos nuevos<" in page and ">Puntuación promedio<" in page
    exports = sorted(set(re.findall(r"/console/reports/export/(\w+)\.csv", page)))
    assert len(exports) >= 10  # every table of the page
    for table in exports:
        exported = await (await browser.get(f"/console/reports/export/{table}.csv?{MONTH}")).text()
        assert not ENGLISH.findall(exported), table
    by_source = await (await browser.get(f"/console/reports/export/by_source.csv?{MONTH}")).text()
    assert by_source.lstrip("\ufeff").startswith("Fuente,Prospectos,Convertidos,Tasa %")
