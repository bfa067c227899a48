"""The daily summary (seed 000's "Reporte diario"): yesterday's figures and the recommended
actions, to every active admin at `reports.summary_at` in the business time zone, in the
console and, when their Telegram chat is linked, there too (through the outbox).
`seguibot report daily` prints the same text."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from bot.core.model import ActionState, AgentRole
from bot.core.report import PeriodKind, period
from bot.followup.actions import DONE, REPORT_SUMMARY, STAGED, Fired
from bot.followup.outreach import Outreach
from bot.reports.figures import Figures
from bot.reports.render import to_text
from bot.settings import Settings
from storage.models import ScheduledAction
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)


class Summary:
    def __init__(self, settings: Settings, outreach: Outreach) -> None:
        self.figures = Figures(settings)
        self.outreach = outreach
        self.tz = settings.business.tz
        self.zone = settings.business.timezone

    async def plan(self, uow: UnitOfWork, due: datetime, now: datetime) -> bool:
        """Today's summary (of yesterday), once across every process (the day is the key)."""
        today = due.astimezone(self.tz).date()
        return await uow.actions.add_once(
            {
                "kind": REPORT_SUMMARY,
                "due_at": max(due, now),
                "payload": {"day": (today - timedelta(days=1)).isoformat()},
                "state": ActionState.PENDING,
                "dedupe_key": f"{REPORT_SUMMARY}:{today.isoformat()}",
                "attempts": 0,
                "created_at": now,
            }
        )

    async def text(self, uow: UnitOfWork, day: date, now: datetime) -> str:
        report = await self.figures.report(uow, period(PeriodKind.DAY, day, self.tz), now)
        return to_text(report, self.figures.texts, self.zone)

    async def run(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        day = date.fromisoformat(str(action.payload["day"]))
        admins = [
            agent
            for agent in await uow.agents.all()
            if agent.active and agent.role == AgentRole.ADMIN
        ]
        if not admins:
            return DONE
        text = await self.text(uow, day, now)
        staged = False
        for admin in admins:
            staged |= await self.outreach.to_agent(uow, admin.id, REPORT_SUMMARY, text, None, now)
        log.info("summary_sent", extra={"admins": len(admins), "day": day.isoformat()})
        return STAGED if staged else DONE
