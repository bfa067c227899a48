"""A report in the shapes people take it in: Spanish text (the command line and the daily
summary), JSON, and tables (CSV and Excel, the console's pages)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from bot.reports.texts import Texts

TIERS = {"hot": "Caliente", "warm": "Tibio", "cold": "Frío", "disqualified": "Descartado"}


@dataclass(frozen=True, slots=True)
class Table:
    key: str  # the glossary key, and the export's file name
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, default=_json_default, ensure_ascii=False, indent=2)


def cell(value: Any, texts: Texts) -> str:
    """A value as people read it: None is «sin datos»."""
    if value is None:
        return texts.no_data
    if isinstance(value, bool):
        return "sí" if value else "no"
    return str(value)


def money(value: Decimal | None, currency: str, texts: Texts) -> str:
    return texts.no_data if value is None else f"${value:,.2f} {currency}"


def percent(value: Decimal | None, texts: Texts) -> str:
    return texts.no_data if value is None else f"{value} %"


def tables(report: dict[str, Any], texts: Texts) -> list[Table]:
    """Every table of the report, as the console shows them and as they are exported."""
    term = texts.term
    currency = report["currency"]
    before = report["previous"]
    headline = [
        ("new_leads", report["new_leads"], before["new_leads"]),
        ("conversions", report["conversions"], before["conversions"]),
        ("conversion_rate", report["conversion_rate"], before["conversion_rate"]),
        ("revenue", report["revenue"], before["revenue"]),
        ("average_ticket", report["average_ticket"], before["average_ticket"]),
        ("average_score", report["average_score"], before["average_score"]),
        ("time_to_decision", report["time_to_decision_days"], None),
    ]
    if report["scope"] == "all":  # acquisition spend is the business's, not an agent's
        headline += [
            ("ltv", report["ltv"], None),
            ("cac", report["cac"], None),
            ("ltv_cac", report["ltv_cac"], None),
        ]
    found = [
        Table(
            "summary",
            "Resumen",
            ["Cifra", "Periodo", "Periodo anterior"],
            [[term(key).name, value, previous] for key, value, previous in headline],
        ),
        Table(
            "leads_by_tier",
            term("leads_by_tier").name,
            ["Temperatura", "Prospectos"],
            [[TIERS.get(t, t), n] for t, n in sorted(report["leads_by_tier"].items())],
        ),
        Table(
            "funnel",
            term("funnel").name,
            ["Embudo", "Etapa", "Entraron", "Avanzaron", "Tasa %", "Días en la etapa"],
            [
                [
                    f["pipeline_name"],
                    f["name"],
                    f["entered"],
                    f["converted"],
                    f["rate"],
                    f["average_days"],
                ]
                for f in report["funnel"]
            ],
        ),
        Table(
            "top_objections",
            term("top_objections").name,
            ["Objeción", "Veces", "%", "Compró", "Agendó", "Respondió", "Se quedó callado"],
            [
                [
                    o["label"],
                    o["count"],
                    o["share"],
                    o["bought"],
                    o["booked"],
                    o["replied"],
                    o["quiet"],
                ]
                for o in report["top_objections"]
            ],
        ),
    ]
    for key, label in (
        ("by_source", "Fuente"),
        ("by_channel", "Canal"),
        ("by_weekday", "Día"),
        ("by_hour", "Hora"),
    ):
        found.append(
            Table(
                key,
                term(key).name,
                [label, "Prospectos", "Convertidos", "Tasa %"],
                [[r["key"], r["leads"], r["converted"], r["rate"]] for r in report[key]],
            )
        )
    found += [
        Table(
            "agents",
            "Asesores",
            [
                "Asesor",
                "Actividades",
                "Por semana",
                "Conversaciones",
                "Espera (min)",
                "Primera respuesta (min)",
                "Ganados",
                "Perdidos",
                "Tasa de cierre %",
                "Prospectos fríos",
                "Tareas vencidas",
            ],
            [
                [
                    a["name"],
                    a["activities"],
                    a["activities_per_week"],
                    a["conversations"],
                    a["wait_minutes"],
                    a["first_response_minutes"],
                    a["won"],
                    a["lost"],
                    a["win_rate"],
                    a["cold"],
                    a["overdue_tasks"],
                ]
                for a in report["agents"]
            ],
        ),
        Table(
            "appointments",
            term("appointments").name,
            ["Agendadas", "Realizadas", "No asistió", "Canceladas"],
            [
                [
                    report["appointments"]["booked"],
                    report["appointments"]["held"],
                    report["appointments"]["no_show"],
                    report["appointments"]["cancelled"],
                ]
            ],
        ),
        Table(
            "sequences",
            term("sequences").name,
            ["Secuencia", "Paso", "Enviados", "Respuestas", "Tasa de respuesta %", "Bajas"],
            [
                [s["sequence"], s["step"], s["sent"], s["replies"], s["reply_rate"], s["opt_outs"]]
                for s in report["sequences"]
            ],
        ),
        Table(
            "cac",
            term("cac").name,
            ["Fuente", f"Gasto ({currency})", "Conversiones", f"CAC ({currency})"],
            [
                [c["source"], c["spend"], c["conversions"], c["cac"]]
                for c in report["cac_by_source"]
            ],
        ),
    ]
    return found


def to_csv(table: Table, texts: Texts) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if value is None else cell(value, texts) for value in row])
    return out.getvalue()


def all_csv(report: dict[str, Any], texts: Texts) -> str:
    """Every table, one after another: a title line, the table, a blank line."""
    out = io.StringIO()
    for table in tables(report, texts):
        out.write(f"# {table.title}\n")
        out.write(to_csv(table, texts))
        out.write("\n")
    return out.getvalue()


def to_text(report: dict[str, Any], texts: Texts, zone: str) -> str:
    """The report in Spanish, as the daily summary says it (seed 000's "Reporte diario")."""
    line = texts.line
    currency = report["currency"]
    before = report["previous"]
    kind = report["period"]["kind"]
    lines = [
        line(
            "periodo",
            titulo=texts["titulos"][kind],
            desde=report["period"]["first"],
            hasta=report["period"]["last"],
            zona=zone,
        ),
        "- " + line("new_leads", valor=report["new_leads"], antes=before["new_leads"]),
        "- "
        + line(
            "conversions",
            valor=report["conversions"],
            tasa=percent(report["conversion_rate"], texts),
        ),
        "- "
        + line(
            "revenue",
            valor=money(report["revenue"], currency, texts),
            antes=money(before["revenue"], currency, texts),
        ),
        "- " + line("average_ticket", valor=money(report["average_ticket"], currency, texts)),
        "- " + line("average_score", valor=cell(report["average_score"], texts)),
    ]
    if report["top_source"] is not None:
        top = report["top_source"]
        lines.append(
            "- " + line("top_source", fuente=top["source"], parte=percent(top["share"], texts))
        )
    if report["top_objections"]:
        first = report["top_objections"][0]
        lines.append(
            "- "
            + line("top_objection", objecion=first["label"], parte=percent(first["share"], texts))
        )
    days = report["time_to_decision_days"]
    lines.append(
        "- " + line("time_to_decision", valor=texts.no_data if days is None else f"{days} días")
    )
    appointments = report["appointments"]
    lines.append(
        "- "
        + line(
            "appointments",
            agendadas=appointments["booked"],
            realizadas=appointments["held"],
            faltas=appointments["no_show"],
        )
    )
    verdict = report["ltv_cac_verdict"]
    ratio = (
        texts.no_data
        if report["ltv_cac"] is None
        else f"{report['ltv_cac']}:1, {texts['veredictos'][verdict]}"
    )
    lines.append(
        "- "
        + line(
            "ltv",
            ltv=money(report["ltv"], currency, texts),
            cac=money(report["cac"], currency, texts),
            ratio=ratio,
        )
    )
    lines.append("")
    lines.append(line("acciones"))
    actions = report["recommendations"]
    lines += [f"- {action}" for action in actions] or [line("ninguna")]
    return "\n".join(lines) + "\n"


def to_xlsx(table: Table, texts: Texts) -> bytes:
    """One table as an Excel workbook: a bold header row, numbers kept as numbers."""
    import xlsxwriter  # type: ignore[import-untyped]

    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = book.add_worksheet(table.title[:31])
    bold = book.add_format({"bold": True})
    for column, name in enumerate(table.columns):
        sheet.write_string(0, column, name, bold)
        sheet.set_column(column, column, max(12, len(name) + 2))
    for number, row in enumerate(table.rows, start=1):
        for column, value in enumerate(row):
            if isinstance(value, bool) or value is None:
                sheet.write_string(number, column, cell(value, texts) if value is not None else "")
            elif isinstance(value, int | float | Decimal):
                sheet.write_number(number, column, float(value))
            else:
                sheet.write_string(number, column, str(value))
    book.close()
    return out.getvalue()
