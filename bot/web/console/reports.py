"""The reports pages: /console/reports (admins see everything, agents their own figures), its
tables as CSV and Excel, the glossary, and the CAC spend admins enter per source and month."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp_session import get_session
from markupsafe import Markup

from bot.core.errors import InvalidInput
from bot.core.model import AgentRole
from bot.core.report import Period, PeriodKind, period
from bot.reports.render import Table, tables, to_csv, to_xlsx
from bot.reports.service import Actor, Reporting
from bot.web.console import charts
from bot.web.console.auth import AGENT, address, admin_page, flash, pages, take_flash
from bot.web.keys import REPORTS

LONGEST = 366  # days a custom period may span
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def register(app: web.Application) -> None:
    add = app.router
    add.add_get("/reports", report_page)
    add.add_get("/reports/glossary", glossary)
    add.add_get("/reports/export/{table:[a-z_]{1,32}}.{format:csv|xlsx}", export)
    add.add_get("/reports/cac", admin_page(cac_page))
    add.add_post("/reports/cac", admin_page(save_cac))
    add.add_post("/reports/cac/import", admin_page(import_cac))


def _service(request: web.Request) -> Reporting:
    return request.config_dict[REPORTS]


def _day(value: str | None, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("date: YYYY-MM-DD", code="report_date") from None


def _period(request: web.Request) -> Period:
    tz = pages(request).tz
    today = datetime.now(tz).date()
    try:
        kind = PeriodKind(request.query.get("period", "day"))
    except ValueError:
        raise InvalidInput("period: day, week, month or custom", code="report_period") from None
    day = _day(request.query.get("date"), today)
    until = _day(request.query.get("until"), day) if kind is PeriodKind.CUSTOM else None
    if until is not None and not timedelta(0) <= until - day < timedelta(days=LONGEST):
        raise InvalidInput("custom period: 1 to 366 days", code="report_span")
    return period(kind, day, tz, until)


def _owner(request: web.Request) -> int | None:
    """Admins see everything; an agent only their own leads and work."""
    agent = request[AGENT]
    return None if agent.role == AgentRole.ADMIN else int(agent.id)


async def _report(request: web.Request) -> tuple[Period, dict[str, Any]]:
    current = _period(request)
    return current, await _service(request).report(current, _owner(request))


def _charts(report: dict[str, Any], goal: int) -> dict[str, Markup]:
    funnel = report["funnel"]
    return {
        "funnel": charts.bars(
            "Embudo: prospectos que entraron a cada etapa",
            [(f"{row['name']}", row["entered"]) for row in funnel],
        ),
        "by_source": charts.bars(
            "Conversión por fuente (%)",
            [(row["key"], row["rate"]) for row in report["by_source"]],
            unit=" %",
        ),
        "by_weekday": charts.columns(
            "Prospectos nuevos por día de la semana",
            [(row["key"][:3], row["leads"]) for row in report["by_weekday"]],
        ),
        "by_hour": charts.columns(
            "Prospectos nuevos por hora del día",
            [(row["key"][:2], row["leads"]) for row in report["by_hour"]],
            every=3,
        ),
        "top_objections": charts.bars(
            "Objeciones más comunes",
            [(row["label"], row["count"]) for row in report["top_objections"]],
        ),
        "agents": charts.bars(
            "Actividades por semana de cada asesor",
            [(row["name"], row["activities_per_week"]) for row in report["agents"]],
            goal=goal,
        ),
    }


def _query(current: Period) -> str:
    query = f"period={current.kind.value}&date={current.first.isoformat()}"
    if current.kind is PeriodKind.CUSTOM:
        query += f"&until={current.last.isoformat()}"
    return query


async def report_page(request: web.Request) -> web.Response:
    current, report = await _report(request)
    service = _service(request)
    texts = service.figures.texts
    goal = service.figures.config.goals.activities_per_week
    return pages(request).render(
        request,
        "reports.html",
        current=current,
        report=report,
        tables={table.key: table for table in tables(report, texts)},
        charts=_charts(report, goal),
        query=_query(current),
        kinds=[("day", "Día"), ("week", "Semana"), ("month", "Mes"), ("custom", "Personalizado")],
        glossary={term.key: term for term in texts.glossary},
        verdicts=texts["veredictos"],
        no_data=texts.no_data,
        goals=service.figures.config.goals,
        admin=_owner(request) is None,
    )


async def export(request: web.Request) -> web.Response:
    current, report = await _report(request)
    texts = _service(request).figures.texts
    found: dict[str, Table] = {table.key: table for table in tables(report, texts)}
    table = found.get(request.match_info["table"])
    if table is None:
        raise web.HTTPNotFound()
    name = f"{table.key}-{current.first.isoformat()}-{current.last.isoformat()}"
    if request.match_info["format"] == "csv":
        return web.Response(
            body=("\ufeff" + to_csv(table, texts)).encode(),  # the BOM: Excel reads UTF-8 then
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return web.Response(
        body=to_xlsx(table, texts),
        content_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
    )


async def glossary(request: web.Request) -> web.Response:
    texts = _service(request).figures.texts
    return pages(request).render(request, "glossary.html", terms=texts.glossary)


async def cac_page(request: web.Request) -> web.Response:
    today = datetime.now(pages(request).tz).date()
    return pages(request).render(
        request,
        "cac.html",
        entries=await _service(request).cac_entries(),
        month=f"{today:%Y-%m}",
        currency=_service(request).currency,
        flash=await take_flash(request),
    )


def _actor(request: web.Request) -> Actor:
    return Actor(int(request[AGENT].id), address(request))


async def save_cac(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    values = {key: str(value) for key, value in form.items() if isinstance(value, str)}
    await _service(request).save_cac(
        values.get("source", ""), values.get("month", ""), values.get("amount", ""), _actor(request)
    )
    flash(await get_session(request), "Gasto guardado.")
    raise web.HTTPSeeOther("/console/reports/cac")


async def import_cac(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    upload = form.get("file")
    if isinstance(upload, web.FileField):
        raw = upload.file.read(1_000_001)
        if len(raw) > 1_000_000:
            raise InvalidInput("file too large", code="cac_file")
        text = raw.decode("utf-8-sig", errors="replace")
    else:
        text = str(form.get("rows", ""))
    count = await _service(request).import_cac(text, _actor(request))
    flash(await get_session(request), f"{count} filas importadas.")
    raise web.HTTPSeeOther("/console/reports/cac")
