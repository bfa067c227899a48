"""Reports, the pure part: periods in the business's time zone, safe rates, trends and the
"acciones recomendadas" a daily summary derives from the figures (seed 000).

A period is half-open, [start, end), in UTC, built from local calendar days: a day is midnight to
midnight where the business is, a week starts on Monday, a month on its first day. Each period is
compared with the one just before it, of the same length (a month with the previous month).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo


class PeriodKind(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    CUSTOM = "custom"


@dataclass(frozen=True, slots=True)
class Period:
    """Local days `first` to `last` (both included), and the same span as UTC instants."""

    kind: PeriodKind
    first: date
    last: date
    start: datetime  # UTC, included
    end: datetime  # UTC, excluded

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def weeks(self) -> Decimal:
        return Decimal(self.days) / 7


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def span(kind: PeriodKind, first: date, last: date, tz: ZoneInfo) -> Period:
    """The local days first..last as a period (ValueError when last is before first)."""
    if last < first:
        raise ValueError("the period ends before it starts")
    return Period(kind, first, last, _midnight(first, tz), _midnight(last + timedelta(days=1), tz))


def period(kind: PeriodKind, day: date, tz: ZoneInfo, until: date | None = None) -> Period:
    """The day, week (Monday to Sunday) or month holding `day`; custom: `day` to `until`."""
    if kind is PeriodKind.DAY:
        return span(kind, day, day, tz)
    if kind is PeriodKind.WEEK:
        monday = day - timedelta(days=day.weekday())
        return span(kind, monday, monday + timedelta(days=6), tz)
    if kind is PeriodKind.MONTH:
        first = day.replace(day=1)
        return span(kind, first, _next_month(first) - timedelta(days=1), tz)
    return span(kind, day, until if until is not None else day, tz)


def previous(current: Period, tz: ZoneInfo) -> Period:
    """The period just before, of the same length (the previous calendar month for a month)."""
    if current.kind is PeriodKind.MONTH:
        last = current.first - timedelta(days=1)
        return period(PeriodKind.MONTH, last, tz)
    length = timedelta(days=current.days)
    return span(current.kind, current.first - length, current.last - length, tz)


def months(current: Period) -> list[date]:
    """The first days of the calendar months the period touches (CAC is entered per month)."""
    found, month = [], current.first.replace(day=1)
    while month <= current.last:
        found.append(month)
        month = _next_month(month)
    return found


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


# --- arithmetic that never divides by zero ---------------------------------------------------


def rate(part: int, whole: int) -> Decimal | None:
    """part ÷ whole × 100, to one decimal; None when there is nothing to divide by."""
    if whole <= 0:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"))


def average(
    total: Decimal | float | int | None, count: int, places: str = "0.01"
) -> Decimal | None:
    if total is None or count <= 0:
        return None
    return (Decimal(str(total)) / count).quantize(Decimal(places))


class Trend(StrEnum):
    UP = "up"
    DOWN = "down"
    SAME = "same"


def trend(now: Decimal | int | None, before: Decimal | int | None) -> Trend | None:
    """How a figure moved against the previous period; None when either has no data."""
    if now is None or before is None:
        return None
    if now > before:
        return Trend.UP
    return Trend.DOWN if now < before else Trend.SAME


# --- recommended actions (seed 000) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signals:
    """What the recommendations are read from: a few figures of the report."""

    low_score_unreviewed: int  # open leads with a score under the threshold and no owner action
    low_score_threshold: int
    worst_objection: str | None  # the objection whose leads most often went quiet
    worst_objection_quiet_rate: Decimal | None
    overdue_tasks: Sequence[tuple[str, int]]  # (agent name, open tasks past due), worst first
    cold_clients: Sequence[tuple[str, int]]  # (agent name, leads idle 7+ days), worst first
    cold_goal: int  # seed 003: fewer than this many cold clients per agent
    top_source: str | None
    conversion_rate: Decimal | None
    previous_conversion_rate: Decimal | None


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One action, as a key of the Spanish texts and the values that fill it."""

    key: str
    values: dict[str, str]


def recommend(signals: Signals) -> list[Recommendation]:
    """Seed 000's "acciones recomendadas", most useful first; only what the figures support."""
    found: list[Recommendation] = []
    if signals.low_score_unreviewed > 0:
        found.append(
            Recommendation(
                "low_score",
                {
                    "cantidad": str(signals.low_score_unreviewed),
                    "umbral": str(signals.low_score_threshold),
                },
            )
        )
    if signals.worst_objection is not None and signals.worst_objection_quiet_rate is not None:
        found.append(
            Recommendation(
                "objection",
                {
                    "objecion": signals.worst_objection,
                    "silencio": f"{signals.worst_objection_quiet_rate}",
                },
            )
        )
    for name, count in signals.overdue_tasks[:3]:
        if count > 0:
            found.append(Recommendation("overdue_tasks", {"asesor": name, "cantidad": str(count)}))
    for name, count in signals.cold_clients:
        if count >= signals.cold_goal:
            found.append(
                Recommendation(
                    "cold_clients",
                    {"asesor": name, "cantidad": str(count), "meta": str(signals.cold_goal)},
                )
            )
    before, now = signals.previous_conversion_rate, signals.conversion_rate
    if now is not None and before is not None and now < before:
        found.append(Recommendation("conversion_down", {"ahora": f"{now}", "antes": f"{before}"}))
    if signals.top_source is not None:
        found.append(Recommendation("top_source", {"fuente": signals.top_source}))
    return found
