"""The report: every figure of one period (and the previous one), from the SQL in
storage/reports.py, shaped as plain data for the command line, the console and the summary.

The figures are independent reads. On PostgreSQL `report_from` runs several at once, each in
its own session (a unit of work that only reads); on SQLite, and in a caller's unit of work,
they run one after another (SQLite has one writer and gains nothing from more connections).
Either way each figure is one statement, as it was: on PostgreSQL (READ COMMITTED) every
statement sees the data committed when it starts, in one session or in several.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from bot.core import ltv as ltv_formulas
from bot.core.report import (
    Period,
    Signals,
    average,
    months,
    previous,
    rate,
    recommend,
    span,
    trend,
)
from bot.reports.texts import Texts
from bot.settings import ReportsSettings, Settings
from storage.db import Database
from storage.reports import Breakdown, FunnelCount, Reports, StageRow
from storage.uow import UnitOfWork

DAY_SECONDS = 86400
TWO = Decimal("0.01")
ONE = Decimal("0.1")

T = TypeVar("T")


class Reader(Protocol):
    """Runs one read of the reports' repository and returns what it read."""

    async def __call__(self, read: Callable[[Reports], Awaitable[T]]) -> T: ...


class InUnit:
    """Every read in the caller's unit of work, one after another (a session runs one
    statement at a time)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self._turn = asyncio.Lock()
        self._tuned = False

    async def __call__(self, read: Callable[[Reports], Awaitable[T]]) -> T:
        async with self._turn:
            if not self._tuned:
                await self.uow.reports.tune()
                self._tuned = True
            return await read(self.uow.reports)


class Concurrent:
    """Each read in its own unit of work, at most `limit` at once (PostgreSQL)."""

    def __init__(self, db: Database, limit: int) -> None:
        self.db = db
        self._slots = asyncio.Semaphore(limit)

    async def __call__(self, read: Callable[[Reports], Awaitable[T]]) -> T:
        async with self._slots, UnitOfWork(self.db) as uow:
            await uow.reports.tune()
            return await read(uow.reports)


@dataclass(frozen=True, slots=True)
class Pipelines:
    """The funnel's shape: per pipeline, its stages in order with their outcome."""

    stages: dict[str, list[StageRow]]
    default: str
    won: tuple[str, ...]
    lost: tuple[str, ...]

    @property
    def decided(self) -> tuple[str, ...]:
        return self.won + self.lost


class Figures:
    """Builds reports. One instance per app; each `report()` reads in the caller's unit of work."""

    def __init__(self, settings: Settings, texts: Texts | None = None) -> None:
        self.config: ReportsSettings = settings.reports
        self.tz: ZoneInfo = settings.business.tz
        self.pipeline = settings.pipeline
        self.idle_days = settings.tasks.idle_days
        self.texts = texts or Texts.load()

    async def pipelines(self, reports: Reports) -> Pipelines:
        """The pipelines as the CRM stores them; the configured preset when it stores none."""
        rows = await reports.stages()
        if not rows:
            preset, won = self.pipeline.preset, self.pipeline.won_stages
            rows = [
                StageRow(preset, preset, key, key, index, "won" if key in won else "open")
                for index, key in enumerate(self.pipeline.stages)
            ]
        grouped: dict[str, list[StageRow]] = {}
        for row in rows:
            grouped.setdefault(row.pipeline, []).append(row)
        won_keys = {row.key for row in rows if row.outcome == "won"} | set(self.pipeline.won_stages)
        lost_keys = {row.key for row in rows if row.outcome == "lost"}
        default = self.pipeline.preset if self.pipeline.preset in grouped else next(iter(grouped))
        return Pipelines(grouped, default, tuple(sorted(won_keys)), tuple(sorted(lost_keys)))

    async def report(
        self, uow: UnitOfWork, current: Period, now: datetime, owner: int | None = None
    ) -> dict[str, Any]:
        """Every figure of `current` beside the previous period's headline figures, read in the
        caller's unit of work one after another. `owner`: an agent's id, to count only that
        agent's leads and work."""
        return await self.compute(InUnit(uow), current, now, owner)

    async def report_from(
        self, db: Database, current: Period, now: datetime, owner: int | None = None
    ) -> dict[str, Any]:
        """The same report read from `db`: on PostgreSQL several figures at once, each in its
        own unit of work (`reports.parallel_queries` at most); on SQLite in one unit of work."""
        if db.is_sqlite:
            async with UnitOfWork(db) as uow:
                return await self.report(uow, current, now, owner)
        reads = Concurrent(db, self.config.parallel_queries)
        return await self.compute(reads, current, now, owner)

    async def compute(
        self, reads: Reader, current: Period, now: datetime, owner: int | None = None
    ) -> dict[str, Any]:
        """Every figure of `current`, each read through `reads`."""
        shape = await reads(self.pipelines)
        before = previous(current, self.tz)
        horizon = current.end + timedelta(days=self.config.outcome_days)
        start, end = current.start, current.end
        # The slowest reads first (docs/benchmarks.md): with a few at once, a free slot takes
        # the next one in this order, so the longest do not start last.
        async with asyncio.TaskGroup() as group:
            funnel = group.create_task(self._funnel(reads, current, shape, owner))
            steps = group.create_task(reads(lambda r: r.sequence_steps(start, end, horizon, owner)))
            objections = group.create_task(self._objections(reads, current, horizon, shape, owner))
            headline = group.create_task(self._headline(reads, current, shape, owner))
            channels = group.create_task(
                reads(lambda r: r.breakdown(start, end, shape.won, "channel", owner))
            )
            hours = group.create_task(
                reads(lambda r: r.breakdown(start, end, shape.won, "hour", owner))
            )
            agents = group.create_task(self._agents(reads, current, now, shape, owner))
            low_score = group.create_task(
                reads(lambda r: r.low_score_unreviewed(self.config.low_score, shape.decided, owner))
            )
            earlier = group.create_task(self._headline(reads, before, shape, owner, full=False))
            decision = group.create_task(
                reads(lambda r: r.time_to_decision(start, end, shape.decided, owner))
            )
            appointments = group.create_task(reads(lambda r: r.appointments(start, end, owner)))
            spend = group.create_task(self._spend(reads, current, shape, owner))
        figures, previous_figures = headline.result(), earlier.result()
        report: dict[str, Any] = {
            "scope": "all" if owner is None else "agent",
            "period": _period(current),
            "previous_period": _period(before),
            **figures,
            "previous": previous_figures,
            "trends": {
                key: trend(figures[key], previous_figures[key])
                for key in ("new_leads", "conversions", "conversion_rate", "revenue")
            },
        }
        report["top_objections"] = objections.result()
        report["funnel"] = funnel.result()
        seconds, decided = decision.result()
        report["time_to_decision_days"] = _days(seconds)
        report["decisions"] = decided
        # by_source came with the headline figures (the top source is its first row).
        report["by_channel"] = [
            _share(row.key, row.leads, row.converted) for row in channels.result()
        ]
        report["by_weekday"], report["by_hour"] = self._local(hours.result())
        report["agents"] = agents.result()
        report["appointments"] = appointments.result()
        report["sequences"] = [
            {
                "sequence": step.sequence,
                "step": step.step + 1,
                "sent": step.sent,
                "replies": step.replies,
                "reply_rate": rate(step.replies, step.sent),
                "opt_outs": step.opt_outs,
            }
            for step in steps.result()
        ]
        report.update(self._value(figures["average_ticket"], *spend.result()))
        report["low_score_unreviewed"] = low_score.result()
        report["recommendations"] = self.recommendations(report)
        return report

    # --- pieces -------------------------------------------------------------------------------

    async def _headline(
        self,
        reads: Reader,
        current: Period,
        shape: Pipelines,
        owner: int | None,
        *,
        full: bool = True,
    ) -> dict[str, Any]:
        """The figures compared with the previous period (`full`: and the source and tiers,
        which are not)."""
        start, end = current.start, current.end
        by_source: asyncio.Task[list[Breakdown]] | None = None
        tiers: asyncio.Task[dict[str, int]] | None = None
        async with asyncio.TaskGroup() as group:
            new_leads = group.create_task(reads(lambda r: r.new_leads(start, end, owner)))
            won = group.create_task(reads(lambda r: r.conversions(start, end, shape.won, owner)))
            money = group.create_task(reads(lambda r: r.revenue(start, end, owner)))
            scores = group.create_task(reads(lambda r: r.score_total(start, end, owner)))
            if full:
                by_source = group.create_task(
                    reads(lambda r: r.breakdown(start, end, shape.won, "source", owner))
                )
                tiers = group.create_task(reads(lambda r: r.by_tier(start, end, owner)))
        new, conversions = new_leads.result(), won.result()
        revenue, deals = money.result()
        score_sum, scored = scores.result()
        sources = by_source.result() if by_source is not None else []
        top = sources[0] if sources else None
        return {
            "new_leads": new,
            "conversions": conversions,
            "conversion_rate": rate(conversions, new),
            "revenue": revenue,
            "won_deals": deals,
            "average_ticket": average(revenue, deals),
            "average_score": average(score_sum, scored, "0.1"),
            "leads_by_tier": tiers.result() if tiers is not None else {},
            "by_source": [_share(row.key, row.leads, row.converted) for row in sources],
            "top_source": (
                {"source": top.key, "leads": top.leads, "share": rate(top.leads, new)}
                if top is not None
                else None
            ),
        }

    async def _objections(
        self,
        reads: Reader,
        current: Period,
        horizon: datetime,
        shape: Pipelines,
        owner: int | None,
    ) -> list[dict[str, Any]]:
        rows = await reads(
            lambda r: r.objections(current.start, current.end, horizon, shape.won, owner)
        )
        found: dict[str, dict[str, Any]] = {}
        for intent, outcome, count in rows:
            entry = found.setdefault(
                intent,
                {
                    "intent": intent,
                    "label": self.texts.objection(intent),
                    "count": 0,
                    "bought": 0,
                    "booked": 0,
                    "replied": 0,
                    "quiet": 0,
                },
            )
            entry["count"] += count
            entry[outcome] += count
        total = sum(entry["count"] for entry in found.values())
        for entry in found.values():
            entry["share"] = rate(entry["count"], total)
            entry["quiet_rate"] = rate(entry["quiet"], entry["count"])
        return sorted(found.values(), key=lambda entry: (-entry["count"], entry["intent"]))

    async def _funnel(
        self, reads: Reader, current: Period, shape: Pipelines, owner: int | None
    ) -> list[dict[str, Any]]:
        async def counts(pipeline: str, stages: list[StageRow]) -> list[FunnelCount]:
            positions = {row.key: row.position for row in stages}
            onward = [row.key for row in stages if row.outcome != "lost"]
            return await reads(
                lambda r: r.funnel(
                    current.start, current.end, pipeline, shape.default, positions, onward, owner
                )
            )

        async with asyncio.TaskGroup() as group:
            found = [
                (stages, group.create_task(counts(pipeline, stages)))
                for pipeline, stages in shape.stages.items()
            ]
        funnel: list[dict[str, Any]] = []
        for stages, task in found:
            names = {row.key: row for row in stages}
            onward = [row.key for row in stages if row.outcome != "lost"]
            last_open = onward[-1] if onward else None
            for count in task.result():
                row = names[count.stage]
                final = row.outcome != "open" or count.stage == last_open
                funnel.append(
                    {
                        "pipeline": row.pipeline,
                        "pipeline_name": row.pipeline_name,
                        "stage": count.stage,
                        "name": row.name,
                        "outcome": row.outcome,
                        "entered": count.entered,
                        # A won or lost stage is an end: nobody moves on from it.
                        "converted": None if final else count.converted,
                        "rate": None if final else rate(count.converted, count.entered),
                        "average_days": _days(count.average_seconds),
                    }
                )
        return funnel

    def _local(
        self, hours: Sequence[Breakdown]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """UTC hour buckets → the business's weekday and hour (DST included)."""
        weekdays = [[0, 0] for _ in range(7)]
        clock = [[0, 0] for _ in range(24)]
        for row in hours:
            # "YYYY-MM-DD HH" + ":00" is ISO 8601: fromisoformat reads the 2 000 hours of 90 days
            # in under a millisecond, strptime took 23 ms.
            local = datetime.fromisoformat(f"{row.key}:00").replace(tzinfo=UTC).astimezone(self.tz)
            for bucket in (weekdays[local.weekday()], clock[local.hour]):
                bucket[0] += row.leads
                bucket[1] += row.converted
        names = self.texts.weekdays
        return (
            [_share(names[day], n, c) for day, (n, c) in enumerate(weekdays)],
            [_share(f"{hour:02d}:00", n, c) for hour, (n, c) in enumerate(clock)],
        )

    async def _agents(
        self,
        reads: Reader,
        current: Period,
        now: datetime,
        shape: Pipelines,
        owner: int | None,
    ) -> list[dict[str, Any]]:
        horizon = min(now, current.end)
        rows = await reads(
            lambda r: r.agents(
                current.start,
                current.end,
                horizon - timedelta(days=self.idle_days),
                now,
                shape.decided,
                owner,
            )
        )
        goals = self.config.goals
        agents = []
        for row in rows:
            per_week = (Decimal(row.activities) / current.weeks).quantize(ONE)
            agents.append(
                {
                    "agent_id": row.agent_id,
                    "name": row.name,
                    "activities": row.activities,
                    "activities_per_week": per_week,
                    "activities_goal_met": per_week > goals.activities_per_week,
                    "conversations": row.conversations,
                    "handoffs": row.handoffs,
                    "wait_minutes": _minutes(row.wait_seconds),
                    "first_response_minutes": _minutes(row.first_response_seconds),
                    "won": row.won,
                    "lost": row.lost,
                    "win_rate": rate(row.won, row.won + row.lost),
                    "cold": row.cold,
                    "cold_goal_met": row.cold < goals.cold_clients,
                    "overdue_tasks": row.overdue_tasks,
                }
            )
        return agents

    async def _spend(
        self, reads: Reader, current: Period, shape: Pipelines, owner: int | None
    ) -> tuple[Decimal | None, list[dict[str, Any]]]:
        """CAC over the calendar months the period touches, and per source (seed 004). It is
        the whole business's: agents see none."""
        if owner is not None:
            return None, []
        touched = months(current)
        whole = span(current.kind, touched[0], _month_end(touched[-1]), self.tz)
        async with asyncio.TaskGroup() as group:
            spent = group.create_task(reads(lambda r: r.spend(touched)))
            won = group.create_task(
                reads(lambda r: r.conversions(whole.start, whole.end, shape.won))
            )
            converted = group.create_task(
                reads(lambda r: r.conversions_by_source(whole.start, whole.end, shape.won))
            )
        spend, by_source = spent.result(), converted.result()
        cac = average(sum(spend.values(), Decimal(0)), won.result()) if spend else None
        return cac, [
            {
                "source": source,
                "spend": amount,
                "conversions": by_source.get(source, 0),
                "cac": average(amount, by_source.get(source, 0)),
            }
            for source, amount in sorted(spend.items())
        ]

    def _value(
        self, ticket: Decimal | None, cac: Decimal | None, by_source: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """LTV, CAC and their ratio (seed 004)."""
        value = self.ltv(ticket, cac)
        ratio = (
            ltv_formulas.ratio(value, cac, self.config.ltv.sector)
            if value is not None and cac is not None
            else None
        )
        return {
            "ltv": value,
            "ltv_model": self.config.ltv.model,
            "cac": cac,
            "cac_by_source": by_source,
            "ltv_cac": ratio.value if ratio is not None else None,
            "ltv_cac_verdict": ratio.verdict.value if ratio is not None else None,
            "ltv_cac_reference": ratio.reference if ratio is not None else None,
            "currency": self.config.currency,
        }

    def ltv(self, ticket: Decimal | None, cac: Decimal | None) -> Decimal | None:
        """The configured formula, with the period's average ticket as ARPU / order value."""
        if ticket is None:
            return None
        config = self.config.ltv
        model = ltv_formulas.Model(config.model)
        if model is ltv_formulas.Model.SUBSCRIPTION:
            return ltv_formulas.subscription(ticket, config.lifetime_periods)
        if model is ltv_formulas.Model.RETAIL:
            return ltv_formulas.retail(ticket, config.purchases_per_year, Decimal(config.years))
        if model is ltv_formulas.Model.MARGIN_CHURN:
            return ltv_formulas.margin_churn(ticket, config.gross_margin, config.churn_rate)
        if cac is None:
            return None  # the discounted formula subtracts CAC: without it there is no LTV
        yearly = [ticket * config.purchases_per_year] * config.years
        return ltv_formulas.discounted(yearly, config.gross_margin, config.discount_rate, cac)

    def recommendations(self, report: dict[str, Any]) -> list[str]:
        objections = [o for o in report["top_objections"] if o["quiet_rate"] is not None]
        worst = max(objections, key=lambda o: (o["quiet_rate"], o["count"]), default=None)
        agents = report["agents"]
        signals = Signals(
            low_score_unreviewed=report["low_score_unreviewed"],
            low_score_threshold=self.config.low_score,
            worst_objection=worst["label"] if worst and worst["quiet"] else None,
            worst_objection_quiet_rate=worst["quiet_rate"] if worst and worst["quiet"] else None,
            overdue_tasks=sorted(
                ((a["name"], a["overdue_tasks"]) for a in agents), key=lambda item: -item[1]
            ),
            cold_clients=sorted(((a["name"], a["cold"]) for a in agents), key=lambda i: -i[1]),
            cold_goal=self.config.goals.cold_clients,
            top_source=report["top_source"]["source"] if report["top_source"] else None,
            conversion_rate=report["conversion_rate"],
            previous_conversion_rate=report["previous"]["conversion_rate"],
        )
        return [self.texts.action(item) for item in recommend(signals)]


def _month_end(first: Any) -> Any:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def _period(current: Period) -> dict[str, Any]:
    return {
        "kind": current.kind.value,
        "first": current.first.isoformat(),
        "last": current.last.isoformat(),
        "start": current.start.isoformat(),
        "end": current.end.isoformat(),
    }


def _share(key: str, leads: int, converted: int) -> dict[str, Any]:
    return {"key": key, "leads": leads, "converted": converted, "rate": rate(converted, leads)}


def _days(seconds: float | None) -> Decimal | None:
    return None if seconds is None else (Decimal(seconds) / DAY_SECONDS).quantize(ONE)


def _minutes(seconds: float | None) -> Decimal | None:
    return None if seconds is None else (Decimal(seconds) / 60).quantize(ONE)
