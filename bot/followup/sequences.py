"""Follow-up sequences: the steps a lead goes through by temperature or stage (seeds 000, 001).

A lead enters the sequence of its tier when its conversation goes idle (`bot.followup.idle`),
or of its new stage; a reply, a booking, an opt-out, a handoff or a stage change stops it. Each
step is a scheduled action, fired in its own turn; a message step never interrupts a live
conversation: it waits until the conversation has been quiet for the idle time.

The sequences are those of the live scripts version (`live()`, read at each use): a lead
entering a sequence gets the delays published then; a step that fires sends the script its
step names in the version live at that moment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.core.model import SequenceState
from bot.core.scoring import Scoring
from bot.crm import record
from bot.followup.actions import DONE, SEQUENCE_STEP, STAGED, Fired, later, skipped
from bot.followup.outreach import Outreach
from bot.followup.tasks import Tasks
from bot.settings import SequenceSettings
from storage.models import Lead, ScheduledAction
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)


class Sequences:
    def __init__(
        self,
        live: Callable[[], Mapping[str, SequenceSettings]],
        outreach: Outreach,
        tasks: Tasks,
        *,
        idle: timedelta,
        scoring: Scoring | None = None,
    ) -> None:
        self.scoring = scoring  # an attempt unanswered counts against the lead's score
        self.live = live
        self.outreach = outreach
        self.tasks = tasks
        self.idle = idle  # a conversation is live this long after its last message

    async def enter(
        self,
        uow: UnitOfWork,
        lead: Lead,
        now: datetime,
        *,
        tier: str | None = None,
        stage: str | None = None,
    ) -> None:
        """Start the sequence for the lead's new tier or stage, ending the one it was in."""
        for name, sequence in self.live().items():
            entry = sequence.enter
            if (tier and entry.tier == tier) or (stage and entry.stage == stage):
                await self.leave(uow, lead, "moved on", now)
                run = await uow.sequences.start(lead.id, name, now)
                lead.sequence_run_id = run.id
                for index, step in enumerate(sequence.steps):
                    await uow.actions.add(
                        kind=SEQUENCE_STEP,
                        due_at=now + step.delay,
                        payload={"sequence": name, "step": index},
                        lead_id=lead.id,
                        sequence_run_id=run.id,
                        created_at=now,
                    )
                log.info("sequence_started", extra={"lead_id": lead.id, "sequence": name})
                return

    async def leave(self, uow: UnitOfWork, lead: Lead, reason: str, now: datetime) -> None:
        """Stop the lead's sequence: its later steps are withdrawn. (A step's message still
        waiting in the outbox when the lead writes back is held back by the outbox itself.)"""
        if lead.sequence_run_id is None:
            return
        run_id, lead.sequence_run_id = lead.sequence_run_id, None
        if await uow.sequences.stop(run_id, reason, now):
            await uow.actions.withdraw(now, f"sequence stopped: {reason}", sequence_run_id=run_id)
            log.info("sequence_stopped", extra={"lead_id": lead.id, "reason": reason})

    async def step(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        if action.sequence_run_id is None or action.lead_id is None:
            return skipped("no sequence run")
        # The lead before its run: the order every transaction takes them in.
        lead = await uow.leads.locked(action.lead_id)
        run = await uow.sequences.locked(action.sequence_run_id)
        if lead is None or run is None or run.state != SequenceState.ACTIVE:
            return skipped("sequence stopped")
        if lead.opted_out_at is not None:
            await self.leave(uow, lead, "opted out", now)
            return skipped("lead opted out")
        sequence = self.live().get(run.sequence)
        index = int(action.payload.get("step", 0))
        if sequence is None or index >= len(sequence.steps):
            return skipped("sequence no longer configured")
        if (earlier := await uow.actions.earlier_step_due(run.id, index)) is not None:
            # An earlier step was held back (quiet hours, a live chat): keep the order.
            return later("earlier step pending", max(earlier, now))
        step = sequence.steps[index]
        values = self.outreach.values(lead, {})
        fired = DONE
        if step.message is not None:
            last = await uow.messages.last_at_for_lead(lead.id)
            if last is not None and now < last + self.idle:
                return later("conversation live", last + self.idle)
            if morning := self.outreach.quiet_until(now, ZoneInfo(lead.timezone)):
                return later("quiet hours", morning)
            conversation = await self.outreach.conversation(uow, lead, None)
            if conversation is None:
                return skipped("lead has no conversation")
            await self.outreach.to_lead(
                uow, conversation, step.message, values, now, seed=f"s{action.id}", nudge=True
            )
            attempted = any(s.message is not None for s in sequence.steps[:index])
            if self.scoring is not None and attempted:
                # A reply stops the sequence: the attempt before this one went unanswered.
                await record.unanswered(uow, lead, self.scoring, now)
            fired = STAGED
        elif step.task is not None:
            title = self.outreach.render(step.task, seed=f"s{action.id}", values=values)
            await self.tasks.create(uow, lead, title, now)
        if index == len(sequence.steps) - 1:
            run.state, run.ended_at = SequenceState.COMPLETED, now
            if lead.sequence_run_id == run.id:
                lead.sequence_run_id = None
        return fired
