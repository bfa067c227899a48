"""Time around a handoff: the prospect who waits longer than the SLA is told once, in words,
that a person is still on the way ("seguimos contigo")."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.core.model import HandoffState
from bot.core.slots import Hours
from bot.followup.actions import HANDOFF_SLA, STAGED, Fired, skipped
from bot.followup.outreach import Outreach
from storage.models import Handoff, ScheduledAction
from storage.uow import UnitOfWork


class Handoffs:
    def __init__(self, outreach: Outreach, *, sla: timedelta, hours: Hours | None) -> None:
        self.outreach = outreach
        self.sla = sla
        self.hours = hours  # business hours: the SLA clock runs only inside them

    async def plan(self, uow: UnitOfWork, handoff: Handoff, now: datetime) -> None:
        due = self.hours.after_business(now, self.sla) if self.hours else now + self.sla
        await uow.actions.add(
            kind=HANDOFF_SLA,
            due_at=due or now + self.sla,
            payload={"handoff": handoff.id},
            lead_id=handoff.lead_id,
            created_at=now,
        )

    async def reassure(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        handoff = await uow.handoffs.get(int(action.payload.get("handoff", 0)))
        if handoff is None or handoff.state != HandoffState.WAITING:
            return skipped("taken or ended")
        if handoff.reassured_at is not None:
            return skipped("already told")
        conversation = handoff.conversation
        lead = conversation.lead
        if lead.opted_out_at is not None:
            return skipped("lead opted out")
        values = self.outreach.values(lead, {})
        await self.outreach.to_lead(
            uow, conversation, "handoff.still_waiting", values, now, seed=f"h{handoff.id}"
        )
        handoff.reassured_at = now
        return STAGED
