"""Periods in the business's time zone, rates that never divide by zero, recommendations."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest

from bot.core.report import (
    PeriodKind,
    Signals,
    Trend,
    average,
    months,
    period,
    previous,
    rate,
    recommend,
    trend,
)

MX = ZoneInfo("America/Mexico_City")
MADRID = ZoneInfo("Europe/Madrid")


def test_a_day_is_local_midnight_to_midnight() -> None:
    day = period(PeriodKind.DAY, date(2026, 11, 30), MX)
    assert day.start == datetime(2026, 11, 30, 6, tzinfo=UTC)
    assert day.end == datetime(2026, 12, 1, 6, tzinfo=UTC)
    before = previous(day, MX)
    assert (before.first, before.last) == (date(2026, 11, 29), date(2026, 11, 29))
    assert before.end == day.start


def test_a_week_starts_on_monday_and_may_cross_a_month_end() -> None:
    week = period(PeriodKind.WEEK, date(2026, 12, 3), MX)
    assert (week.first, week.last) == (date(2026, 11, 30), date(2026, 12, 6))
    assert months(week) == [date(2026, 11, 1), date(2026, 12, 1)]
    before = previous(week, MX)
    assert (before.first, before.last) == (date(2026, 11, 23), date(2026, 11, 29))
    assert week.weeks == 1


def test_a_month_is_compared_with_the_whole_previous_month() -> None:
    march = period(PeriodKind.MONTH, date(2026, 3, 31), MX)
    assert (march.first, march.last, march.days) == (date(2026, 3, 1), date(2026, 3, 31), 31)
    february = previous(march, MX)
    assert (february.first, february.last) == (date(2026, 2, 1), date(2026, 2, 28))
    january = previous(period(PeriodKind.MONTH, date(2026, 1, 15), MX), MX)
    assert (january.first, january.last) == (date(2025, 12, 1), date(2025, 12, 31))


def test_a_day_when_the_clocks_change_is_23_hours_long() -> None:
    day = period(PeriodKind.DAY, date(2026, 3, 29), MADRID)
    assert (day.end - day.start).total_seconds() == 23 * 3600


def test_a_custom_period_is_compared_with_as_many_days_before() -> None:
    custom = period(PeriodKind.CUSTOM, date(2026, 11, 28), MX, until=date(2026, 12, 2))
    assert custom.days == 5
    before = previous(custom, MX)
    assert (before.first, before.last) == (date(2026, 11, 23), date(2026, 11, 27))
    with pytest.raises(ValueError, match="ends before"):
        period(PeriodKind.CUSTOM, date(2026, 12, 2), MX, until=date(2026, 11, 28))


def test_rates_and_averages_never_divide_by_zero() -> None:
    assert rate(8, 45) == D("17.8")
    assert rate(0, 0) is None
    assert average(D("1700.50"), 3) == D("566.83")
    assert average(D(0), 0) is None
    assert average(None, 3) is None
    assert trend(D(2), D(1)) is Trend.UP and trend(1, 1) is Trend.SAME
    assert trend(None, 1) is None


def _signals(**changes: object) -> Signals:
    values: dict[str, object] = {
        "low_score_unreviewed": 12,
        "low_score_threshold": 30,
        "worst_objection": "Necesito pensarlo",
        "worst_objection_quiet_rate": D("40.0"),
        "overdue_tasks": [("Ana", 3), ("Beto", 0)],
        "cold_clients": [("Beto", 6), ("Ana", 1)],
        "cold_goal": 5,
        "top_source": "email",
        "conversion_rate": D("10.0"),
        "previous_conversion_rate": D("12.5"),
    }
    values.update(changes)
    return Signals(**values)  # type: ignore[arg-type]


def test_recommendations_follow_the_figures() -> None:
    found = [(item.key, item.values) for item in recommend(_signals())]
    assert found == [
        ("low_score", {"cantidad": "12", "umbral": "30"}),
        ("objection", {"objecion": "Necesito pensarlo", "silencio": "40.0"}),
        ("overdue_tasks", {"asesor": "Ana", "cantidad": "3"}),
        ("cold_clients", {"asesor": "Beto", "cantidad": "6", "meta": "5"}),
        ("conversion_down", {"ahora": "10.0", "antes": "12.5"}),
        ("top_source", {"fuente": "email"}),
    ]


def test_nothing_to_recommend_when_nothing_is_wrong() -> None:
    quiet = _signals(
        low_score_unreviewed=0,
        worst_objection=None,
        worst_objection_quiet_rate=None,
        overdue_tasks=[],
        cold_clients=[("Ana", 4)],
        top_source=None,
        previous_conversion_rate=None,
    )
    assert recommend(quiet) == []
