"""The report: every figure of one period (and the previous one), from the SQL in
storage/reports.py, shaped as plain data for the command line, the console and the summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
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
from storage.reports import Breakdown, StageRow
from storage.uow import UnitOfWork

DAY_SECONDS = 86400
TWO = Decimal("0.01")
ONE = Decimal("0.1")


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

    async def pipelines(self, uow: UnitOfWork) -> Pipelines:
        """The pipelines as the CRM stores them; the configured preset when it stores none."""
        rows = await uow.reports.stages()
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
        """Every figure of `current` beside the previous period's headline figures.
        `owner`: an agent's id, to count only that agent's leads and work."""
        shape = await self.pipelines(uow)
        before = previous(current, self.tz)
        figures = await self._headline(uow, current, shape, owner)
        earlier = await self._headline(uow, before, shape, owner, full=False)
        horizon = current.end + timedelta(days=self.config.outcome_days)
        report: dict[str, Any] = {
            "scope": "all" if owner is None else "agent",
            "period": _period(current),
            "previous_period": _period(before),
            **figures,
            "previous": earlier,
            "trends": {
                key: trend(figures[key], earlier[key])
                for key in ("new_leads", "conversions", "conversion_rate", "revenue")
            },
        }
        report["top_objections"] = await self._objections(uow, current, horizon, shape, owner)
        report["funnel"] = await self._funnel(uow, current, shape, owner)
        seconds, decided = await uow.reports.time_to_decision(
            current.start, current.end, shape.decided, owner
        )
        report["time_to_decision_days"] = _days(seconds)
        report["decisions"] = decided
        # by_source came with the headline figures (the top source is its first row).
        rows = await uow.reports.breakdown(current.start, current.end, shape.won, "channel", owner)
        report["by_channel"] = [_share(row.key, row.leads, row.converted) for row in rows]
        hours = await uow.reports.breakdown(current.start, current.end, shape.won, "hour", owner)
        report["by_weekday"], report["by_hour"] = self._local(hours)
        report["agents"] = await self._agents(uow, current, now, shape, owner)
        report["appointments"] = await uow.reports.appointments(current.start, current.end, owner)
        report["sequences"] = [
            {
                "sequence": step.sequence,
                "step": step.step + 1,
                "sent": step.sent,
                "replies": step.replies,
                "reply_rate": rate(step.replies, step.sent),
                "opt_outs": step.opt_outs,
            }
            for step in await uow.reports.sequence_steps(current.start, current.end, horizon, owner)
        ]
        report.update(await self._value(uow, current, figures["average_ticket"], shape, owner))
        report["low_score_unreviewed"] = await uow.reports.low_score_unreviewed(
            self.config.low_score, shape.decided, owner
        )
        report["recommendations"] = self.recommendations(report)
        return report

    # --- pieces -------------------------------------------------------------------------------

    async def _headline(
        self,
        uow: UnitOfWork,
        current: Period,
        shape: Pipelines,
        owner: int | None,
        *,
        full: bool = True,
    ) -> dict[str, Any]:
        """The figures compared with the previous period (`full`: and the source and tiers,
        which are not)."""
        reports = uow.reports
        start, end = current.start, current.end
        new = await reports.new_leads(start, end, owner)
        conversions = await reports.conversions(start, end, shape.won, owner)
        revenue, deals = await reports.revenue(start, end, owner)
        score_sum, scored = await reports.score_total(start, end, owner)
        sources = await reports.breakdown(start, end, shape.won, "source", owner) if full else []
        top = sources[0] if sources else None
        return {
            "new_leads": new,
            "conversions": conversions,
            "conversion_rate": rate(conversions, new),
            "revenue": revenue,
            "won_deals": deals,
            "average_ticket": average(revenue, deals),
            "average_score": average(score_sum, scored, "0.1"),
            "leads_by_tier": await reports.by_tier(start, end, owner) if full else {},
            "by_source": [_share(row.key, row.leads, row.converted) for row in sources],
            "top_source": (
                {"source": top.key, "leads": top.leads, "share": rate(top.leads, new)}
                if top is not None
                else None
            ),
        }

    async def _objections(
        self,
        uow: UnitOfWork,
        current: Period,
        horizon: datetime,
        shape: Pipelines,
        owner: int | None,
    ) -> list[dict[str, Any]]:
        rows = await uow.reports.objections(current.start, current.end, horizon, shape.won, owner)
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
        self, uow: UnitOfWork, current: Period, shape: Pipelines, owner: int | None
    ) -> list[dict[str, Any]]:
        funnel: list[dict[str, Any]] = []
        for pipeline, stages in shape.stages.items():
            positions = {row.key: row.position for row in stages}
            onward = [row.key for row in stages if row.outcome != "lost"]
            counts = await uow.reports.funnel(
                current.start, current.end, pipeline, shape.default, positions, onward, owner
            )
            names = {row.key: row for row in stages}
            last_open = onward[-1] if onward else None
            for count in counts:
                row = names[count.stage]
                final = row.outcome != "open" or count.stage == last_open
                funnel.append(
                    {
                        "pipeline": pipeline,
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
            local = (
                datetime.strptime(row.key, "%Y-%m-%d %H").replace(tzinfo=UTC).astimezone(self.tz)
            )
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
        uow: UnitOfWork,
        current: Period,
        now: datetime,
        shape: Pipelines,
        owner: int | None,
    ) -> list[dict[str, Any]]:
        horizon = min(now, current.end)
        rows = await uow.reports.agents(
            current.start,
            current.end,
            horizon - timedelta(days=self.idle_days),
            now,
            shape.decided,
            owner,
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

    async def _value(
        self,
        uow: UnitOfWork,
        current: Period,
        ticket: Decimal | None,
        shape: Pipelines,
        owner: int | None,
    ) -> dict[str, Any]:
        """LTV, CAC and their ratio (seed 004). CAC is the whole business's: agents see none."""
        touched = months(current)
        whole = span(current.kind, touched[0], _month_end(touched[-1]), self.tz)
        cac: Decimal | None = None
        by_source: list[dict[str, Any]] = []
        if owner is None:
            spend = await uow.reports.spend(touched)
            won = await uow.reports.conversions(whole.start, whole.end, shape.won)
            if spend:
                cac = average(sum(spend.values(), Decimal(0)), won)
            converted = await uow.reports.conversions_by_source(whole.start, whole.end, shape.won)
            by_source = [
                {
                    "source": source,
                    "spend": amount,
                    "conversions": converted.get(source, 0),
                    "cac": average(amount, converted.get(source, 0)),
                }
                for source, amount in sorted(spend.items())
            ]
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
