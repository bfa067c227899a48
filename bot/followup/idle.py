"""When a conversation goes quiet: the follow-up sequence of the lead's tier starts.

Every message a lead writes to the bot makes sure one check is waiting for that lead. When it
comes due it looks at the lead's last message, either way: still live (the lead or an agent
wrote less than `conversation.idle_minutes` ago), it waits until that much time has passed;
quiet, it starts the tier's sequence, unless the conversation ended in a booking, a handoff or
an opt-out, the lead is already in a sequence, or has already bought (the post-sale sequence
belongs to the stage).
"""

from __future__ import annotations

import logging
from collections.abc import Set
from datetime import datetime, timedelta

from bot.core.model import ConversationState
from bot.followup.actions import DONE, IDLE, Fired, later, skipped
from bot.followup.sequences import Sequences
from storage.models import Lead, ScheduledAction
from storage.repositories import Added
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)


class IdleWatch:
    def __init__(self, sequences: Sequences, *, idle: timedelta, won_stages: Set[str]) -> None:
        self.sequences = sequences
        self.idle = idle
        self.won_stages = won_stages

    async def watch(
        self, uow: UnitOfWork, lead: Lead, now: datetime, *, waiting: bool = False
    ) -> Added | None:
        """Make sure a check waits for the lead (one at a time: it reschedules itself while
        the conversation stays live). The caller holds the lead's row, so two messages of one
        lead never both add one. `waiting`: the caller already saw one waiting, in this
        transaction (nothing to do). What was added, for `unwatch`."""
        if waiting:
            return None
        return await uow.actions.add_unless_pending(
            kind=IDLE, due_at=now + self.idle, lead_id=lead.id, created_at=now
        )

    async def unwatch(self, uow: UnitOfWork, added: Added | None) -> None:
        """Take back what `watch` added in this unit of work."""
        if added is not None:
            await uow.actions.take_back(added)

    async def check(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        if action.lead_id is None:
            return skipped("no lead")
        lead = await uow.leads.locked(action.lead_id)
        if lead is None or lead.opted_out_at is not None:
            return skipped("lead opted out")
        # With a person (or waiting for one), the follow-up is theirs: no sequence, however
        # long it stays quiet. (Messages the desk sends, such as "seguimos contigo", must not
        # keep this check alive either.)
        conversation = await uow.conversations.latest_for_lead(lead.id)
        if conversation is None or conversation.state != ConversationState.BOT:
            return skipped("conversation with a person")
        last = await uow.messages.last_at_for_lead(lead.id)
        if last is not None and now < last + self.idle:
            return later("conversation live", last + self.idle)
        if await uow.appointments.next_for(lead.id, now) is not None:
            return skipped("appointment booked")
        if lead.sequence_run_id is not None:
            return skipped("already in a sequence")
        if lead.stage in self.won_stages:
            return skipped("customer")
        await self.sequences.enter(uow, lead, now, tier=lead.tier)
        log.info("conversation_idle", extra={"lead_id": lead.id, "tier": lead.tier})
        return DONE
