"""Every report figure against the hand-computed history of tests/reports_data.py, on SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal as D
from typing import Any, TypeVar

import pytest

from bot.core.report import PeriodKind, period
from bot.reports.figures import Concurrent, Figures, Reader
from bot.settings import Settings
from storage.db import Database
from storage.models import Pipeline, Stage, StageChange
from storage.reports import Reports
from storage.uow import UnitOfWork
from tests.conftest import make_settings
from tests.reports_data import MX, NOW, History, build, local

T = TypeVar("T")


async def _report(
    settings: Settings,
    db: Database,
    kind: PeriodKind,
    day: date,
    owner: int | None = None,
    until: date | None = None,
) -> dict[str, Any]:
    figures = Figures(settings)
    async with UnitOfWork(db) as uow:
        return await figures.report(uow, period(kind, day, MX, until), NOW, owner)


@pytest.fixture
async def history(db: Database) -> History:
    return await build(db)


async def test_headline_figures_of_the_month(
    settings: Settings, db: Database, history: History
) -> None:
    report = await _report(settings, db, PeriodKind.MONTH, date(2026, 11, 14))
    assert report["period"]["first"] == "2026-11-01" and report["period"]["last"] == "2026-11-30"
    assert report["new_leads"] == 4  # L1 (23:30 on the 30th, local), L3, L4, L6
    assert report["conversions"] == 2  # L3 and L5 entered "purchase"
    assert report["conversion_rate"] == D("50.0")
    assert report["revenue"] == D("1700.50")  # 1000 + 500.50 + 200 (won at 23:59 local)
    assert report["won_deals"] == 3
    assert report["average_ticket"] == D("566.83")
    assert report["average_score"] == D("28.8")  # (40 + 35 + 10 + 30) / 4
    assert report["leads_by_tier"] == {"hot": 1, "warm": 2, "disqualified": 1}
    assert report["top_source"] == {"source": "email", "leads": 2, "share": D("50.0")}
    previous = report["previous"]  # October: L5 only, nothing won
    assert previous["new_leads"] == 1 and previous["conversions"] == 0
    assert previous["conversion_rate"] == D("0.0") and previous["average_ticket"] is None
    assert report["trends"]["conversion_rate"] == "up"


async def test_objections_and_what_happened_next(
    settings: Settings, db: Database, history: History
) -> None:
    report = await _report(settings, db, PeriodKind.MONTH, date(2026, 11, 1))
    found = [
        (o["intent"], o["count"], o["bought"], o["booked"], o["replied"], o["quiet"])
        for o in report["top_objections"]
    ]
    assert found == [("objection.price", 2, 1, 0, 0, 1), ("objection.think", 2, 0, 1, 1, 0)]
    assert report["top_objections"][0]["label"] == "Es muy caro"
    assert report["top_objections"][0]["quiet_rate"] == D("50.0")


async def test_the_funnel_time_per_stage_and_time_to_decision(
    settings: Settings, db: Database, history: History
) -> None:
    report = await _report(settings, db, PeriodKind.MONTH, date(2026, 11, 1))
    funnel = [
        (f["stage"], f["entered"], f["converted"], f["rate"], f["average_days"])
        for f in report["funnel"]
    ]
    assert funnel == [
        ("awareness", 4, 1, D("25.0"), D("2.0")),
        ("interest", 1, 1, D("100.0"), D("8.0")),
        ("consideration", 0, 0, None, None),
        ("intent", 1, 1, D("100.0"), D("10.0")),
        ("purchase", 2, None, None, None),
    ]
    assert report["time_to_decision_days"] == D("18.0")  # (10 + 26) / 2
    assert report["decisions"] == 2


async def test_conversion_by_source_channel_weekday_and_hour(
    settings: Settings, db: Database, history: History
) -> None:
    report = await _report(settings, db, PeriodKind.MONTH, date(2026, 11, 1))

    def table(key: str) -> dict[str, tuple[int, int, D | None]]:
        return {
            r["key"]: (r["leads"], r["converted"], r["rate"]) for r in report[key] if r["leads"]
        }

    assert table("by_source") == {
        "email": (2, 0, D("0.0")),
        "facebook": (1, 1, D("100.0")),
        "(sin fuente)": (1, 0, D("0.0")),
    }
    assert table("by_channel") == {
        "webchat": (2, 1, D("50.0")),
        "telegram": (1, 0, D("0.0")),
        "whatsapp": (1, 0, D("0.0")),
    }
    # L1 wrote at 23:30 on a Monday, local time (already Tuesday in UTC).
    assert table("by_weekday") == {
        "lunes": (2, 0, D("0.0")),
        "martes": (1, 1, D("100.0")),
        "domingo": (1, 0, D("0.0")),
    }
    assert table("by_hour") == {
        "09:00": (1, 0, D("0.0")),
        "10:00": (1, 1, D("100.0")),
        "12:00": (1, 0, D("0.0")),
        "23:00": (1, 0, D("0.0")),
    }
    assert len(report["by_hour"]) == 24 and len(report["by_weekday"]) == 7


async def test_agents_appointments_and_sequences(
    settings: Settings, db: Database, history: History
) -> None:
    report = await _report(settings, db, PeriodKind.MONTH, date(2026, 11, 1))
    agents = {a["name"]: a for a in report["agents"]}
    ana, beto = agents["Ana"], agents["Beto"]
    assert ana["activities"] == 3 and ana["activities_per_week"] == D("0.7")  # 3 ÷ 30/7
    assert not ana["activities_goal_met"]
    assert ana["conversations"] == 2 and ana["handoffs"] == 2
    assert ana["wait_minutes"] == D("15.0") and ana["first_response_minutes"] == D("40.0")
    assert ana["win_rate"] == D("100.0") and beto["win_rate"] == D("50.0")
    assert (ana["cold"], beto["cold"]) == (1, 0) and ana["cold_goal_met"]
    assert (ana["overdue_tasks"], beto["overdue_tasks"]) == (1, 0)
    assert beto["activities"] == 1 and beto["conversations"] == 0
    assert beto["wait_minutes"] is None
    assert report["appointments"] == {"booked": 2, "held": 1, "no_show": 1, "cancelled": 1}
    steps = [
        (s["sequence"], s["step"], s["sent"], s["replies"], s["opt_outs"])
        for s in report["sequences"]
    ]
    assert steps == [
        ("cold", 1, 1, 0, 1),
        ("warm", 1, 1, 1, 0),
        ("warm", 2, 1, 0, 0),
        ("warm", 3, 1, 0, 0),
    ]


async def test_ltv_cac_and_the_ratio(settings: Settings, db: Database, history: History) -> None:
    report = await _report(settings, db, PeriodKind.MONTH, date(2026, 11, 1))
    assert report["cac"] == D("450.00")  # (600 + 300) spent ÷ 2 conversions in November
    assert report["ltv"] == D("1700.49")  # retail: 566.83 × 1 a year × 3 years
    assert report["ltv_cac"] == D("3.78") and report["ltv_cac_verdict"] == "healthy"
    by_source = {
        c["source"]: (c["spend"], c["conversions"], c["cac"]) for c in report["cac_by_source"]
    }
    assert by_source == {
        "email": (D("600.00"), 1, D("600.00")),
        "facebook": (D("300.00"), 1, D("300.00")),
    }


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"model": "subscription", "lifetime_periods": 24}, D("720.00")),
        ({"model": "retail", "purchases_per_year": 4, "years": 3}, D("960.00")),
        ({"model": "margin_churn", "gross_margin": "0.6", "churn_rate": "0.04"}, D("225.00")),
    ],
)
def test_ltv_formula_per_business_model(
    database_url: str, model: dict[str, Any], expected: D
) -> None:
    """Seed 004's worked examples through the configuration ($30 ARPU, $80 order, $15 ARPU)."""
    settings = make_settings(database_url, reports={"ltv": model})
    ticket = {"subscription": D(30), "retail": D(80), "margin_churn": D(15)}[model["model"]]
    assert Figures(settings).ltv(ticket, None) == expected


def test_discounted_ltv_subtracts_cac(database_url: str) -> None:
    model = {"model": "discounted", "gross_margin": "0.5", "discount_rate": "0.10", "years": 1}
    settings = make_settings(database_url, reports={"ltv": model})
    # 200 × 0.5 ÷ 1.1 = 90.91, minus 100 of CAC.
    assert Figures(settings).ltv(D(200), D(100)) == D("-9.09")
    assert Figures(settings).ltv(D(200), None) is None


async def test_a_day_ends_at_the_business_midnight(
    settings: Settings, db: Database, history: History
) -> None:
    monday = await _report(settings, db, PeriodKind.DAY, date(2026, 11, 30))
    assert monday["new_leads"] == 1  # L1 at 23:30 local = 05:30 UTC on Dec 1
    assert monday["revenue"] == D("200.00")  # won at 23:59 local
    assert [o["intent"] for o in monday["top_objections"]] == ["objection.think"]
    tuesday = await _report(settings, db, PeriodKind.DAY, date(2026, 12, 1))
    assert tuesday["new_leads"] == 1  # L2 at 00:10 local
    assert tuesday["revenue"] == D("0.00") and tuesday["average_ticket"] is None
    assert tuesday["previous"]["new_leads"] == 1  # Monday's L1


async def test_a_week_across_the_month_end(
    settings: Settings, db: Database, history: History
) -> None:
    week = await _report(settings, db, PeriodKind.WEEK, date(2026, 12, 2))
    assert (week["period"]["first"], week["period"]["last"]) == ("2026-11-30", "2026-12-06")
    assert week["new_leads"] == 2
    # CAC counts the months the week touches: November's 900 ÷ November's 2 conversions.
    assert week["cac"] == D("450.00")


async def test_an_empty_period_says_so(settings: Settings, db: Database, history: History) -> None:
    empty = await _report(settings, db, PeriodKind.DAY, date(2026, 6, 10))
    assert empty["new_leads"] == 0 and empty["conversions"] == 0
    for key in ("conversion_rate", "average_ticket", "average_score", "top_source", "ltv"):
        assert empty[key] is None, key
    assert empty["cac"] is None and empty["ltv_cac"] is None
    assert empty["top_objections"] == [] and empty["sequences"] == []
    assert all(f["entered"] == 0 and f["rate"] is None for f in empty["funnel"])
    assert empty["time_to_decision_days"] is None


async def test_an_agent_sees_only_their_own(
    settings: Settings, db: Database, history: History
) -> None:
    mine = await _report(settings, db, PeriodKind.MONTH, date(2026, 11, 1), owner=history.ana)
    assert mine["new_leads"] == 3  # L1, L3, L6 (L4 has no owner)
    assert mine["conversions"] == 1 and mine["revenue"] == D("1200.00")
    assert [a["name"] for a in mine["agents"]] == ["Ana"]
    assert mine["cac"] is None and mine["cac_by_source"] == []
    assert [(o["intent"], o["count"]) for o in mine["top_objections"]] == [
        ("objection.think", 2),
        ("objection.price", 1),
    ]


async def test_recommended_actions(settings: Settings, db: Database, history: History) -> None:
    report = await _report(settings, db, PeriodKind.MONTH, date(2026, 11, 1))
    assert report["low_score_unreviewed"] == 1  # L2 (L4 opted out)
    assert report["recommendations"] == [
        "Prospectos con puntuación < 30 que nadie ha revisado: 1",
        "Mejorar la respuesta a «Es muy caro»: el 50.0 % de quienes la dijeron se quedó callado",
        "Tareas vencidas de Ana: 1",
        "Aumentar el tráfico de email, la fuente principal",
    ]


async def test_pipelines_stored_by_the_crm_shape_the_funnel(
    settings: Settings, db: Database, history: History
) -> None:
    """A lost stage ends the funnel like a won one, and moving to it is not moving on."""
    async with db.session() as session:
        pipeline = Pipeline(key="ventas", name="Ventas", position=0)
        session.add(pipeline)
        await session.flush()
        for position, (key, outcome) in enumerate(
            [("nuevo", "open"), ("cita", "open"), ("ganado", "won"), ("perdido", "lost")]
        ):
            session.add(
                Stage(
                    pipeline_id=pipeline.id,
                    key=key,
                    name=key.title(),
                    position=position,
                    outcome=outcome,
                )
            )
        for lead, path in (
            (history.leads["L2"], ["nuevo", "perdido"]),
            (history.leads["L1"], ["nuevo", "cita", "ganado"]),
        ):
            for hour, stage in enumerate(path):
                session.add(
                    StageChange(
                        lead_id=lead, pipeline="ventas", to_stage=stage, at=local(12, 2, 9 + hour)
                    )
                )
        await session.commit()
    report = await _report(settings, db, PeriodKind.DAY, date(2026, 12, 2))
    funnel = [
        (f["pipeline"], f["stage"], f["entered"], f["converted"], f["rate"])
        for f in report["funnel"]
    ]
    assert funnel == [
        ("ventas", "nuevo", 2, 1, D("50.0")),
        ("ventas", "cita", 1, 1, D("100.0")),
        ("ventas", "ganado", 1, None, None),
        ("ventas", "perdido", 1, None, None),
    ]
    assert report["conversions"] == 1  # "ganado" is won, "purchase" of the preset too
    assert report["decisions"] == 2  # L2 lost, L1 won: both first decisions


class _Counting:
    """A reader that notes how many reads run at the same time."""

    def __init__(self, inner: Reader) -> None:
        self.inner = inner
        self.running = 0
        self.most = 0

    async def __call__(self, read: Callable[[Reports], Awaitable[T]]) -> T:
        async def counted(reports: Reports) -> T:
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                return await read(reports)
            finally:
                self.running -= 1

        return await self.inner(counted)


@pytest.mark.parametrize("owner", [None, "ana"])
async def test_figures_read_at_once_are_the_figures_read_one_by_one(
    settings: Settings, db: Database, history: History, owner: str | None
) -> None:
    agent = history.ana if owner else None
    current = period(PeriodKind.MONTH, date(2026, 11, 1), MX)
    one_by_one = await _report(settings, db, PeriodKind.MONTH, date(2026, 11, 1), agent)
    figures = Figures(settings)
    assert await figures.report_from(db, current, NOW, agent) == one_by_one
    if db.is_sqlite:
        return  # SQLite reads one after another: report_from used one unit of work
    reads = _Counting(Concurrent(db, 2))
    assert await figures.compute(reads, current, NOW, agent) == one_by_one
    assert reads.most == 2  # never more than the limit, and more than one at a time
