"""The daily sweep (seed 002): leads idle too long become cold, and their owner gets a task;
those who have not bought yet enter the cold sequence. Leads in a stage with a follow-up
cadence (Prospecto every 2–3 days, Apartado every 1–2, …) and no activity for that long get a
task for their owner too."""

from __future__ import annotations

import logging
from collections.abc import Set
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.core.model import ActionState, Tier
from bot.core.scoring import IDLE_COOLED, Scoring
from bot.crm import record
from bot.followup.actions import DONE, SWEEP, Fired
from bot.followup.outreach import Outreach
from bot.followup.sequences import Sequences
from bot.followup.tasks import Tasks
from storage.models import ScheduledAction
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

BATCH = 500


class Sweep:
    def __init__(
        self,
        scoring: Scoring,
        outreach: Outreach,
        tasks: Tasks,
        sequences: Sequences,
        *,
        idle_days: int,
        tz: ZoneInfo,
        won_stages: Set[str] = frozenset(),
        pipeline: str = "",
    ) -> None:
        self.scoring = scoring
        self.outreach = outreach
        self.tasks = tasks
        self.sequences = sequences
        self.idle_days = idle_days
        self.tz = tz
        self.won_stages = won_stages  # customers get the post-sale sequence, not a sales one
        self.pipeline = pipeline  # the configured pipeline: leads with none belong to it

    async def plan(self, uow: UnitOfWork, day_start: datetime, now: datetime) -> bool:
        """Today's sweep, once across every process (the day is the dedupe key)."""
        day = day_start.astimezone(self.tz).date()
        return await uow.actions.add_once(
            {
                "kind": SWEEP,
                "due_at": max(day_start, now),
                "payload": {},
                "state": ActionState.PENDING,
                "dedupe_key": f"{SWEEP}:{day.isoformat()}",
                "attempts": 0,
                "created_at": now,
            }
        )

    async def run(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        """Hot and warm leads idle for `idle_days` become cold and get a follow-up task; leads
        past their stage's cadence get one too (never a second while one is open)."""
        idle = await uow.leads.idle(
            now - timedelta(days=self.idle_days), (Tier.HOT, Tier.WARM), BATCH
        )
        for lead in idle:
            record.cool(uow, lead, self.scoring, IDLE_COOLED, now)
            title = self.outreach.render(
                "task.follow_up_idle",
                seed=f"w{lead.id}",
                values=self.outreach.values(lead, {"dias": str(self.idle_days)}),
            )
            await self.tasks.create(uow, lead, title, now)
            if lead.stage not in self.won_stages:
                await self.sequences.enter(uow, lead, now, tier=lead.tier)
        due = await uow.crm.due_by_cadence(self.pipeline, now, BATCH)
        for lead, days in due:
            title = self.outreach.render(
                "task.follow_up_idle",
                seed=f"c{lead.id}",
                values=self.outreach.values(lead, {"dias": str(days)}),
            )
            await self.tasks.create(uow, lead, title, now)
        if len(idle) == BATCH or len(due) == BATCH:
            # More than one batch: carry on in a fresh action (and transaction) right away.
            await uow.actions.add(kind=SWEEP, due_at=now, payload={}, created_at=now)
        log.info("sweep_done", extra={"leads_marked_cold": len(idle), "cadence_tasks": len(due)})
        return DONE
