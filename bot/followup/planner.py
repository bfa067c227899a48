"""Follow-up work in time: appointment reminders, sequences, tasks and the daily sweep.

Everything here is planned as scheduled actions (rows) inside the transaction that caused it,
and carried out by `fire()` inside the transaction that claimed the row, so an action's
messages and its "done" commit together: it fires exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from bot.core.scoring import Scoring
from bot.core.scripts import Renderer
from bot.core.slots import Hours
from bot.followup.actions import (
    HANDOFF_SLA,
    IDLE,
    REMINDER_AGENT,
    REMINDER_LEAD,
    REPORT_SUMMARY,
    SEQUENCE_STEP,
    SWEEP,
    TASK_DUE,
    TASK_OVERDUE,
    Fired,
    skipped,
)
from bot.followup.handoffs import Handoffs
from bot.followup.idle import IdleWatch
from bot.followup.outreach import Outreach
from bot.followup.reminders import Reminders
from bot.followup.sequences import Sequences
from bot.followup.summary import Summary
from bot.followup.sweep import Sweep
from bot.followup.tasks import Tasks
from bot.settings import SequenceSettings, Settings
from storage.models import ScheduledAction
from storage.uow import UnitOfWork


class Followup:
    """The kinds of follow-up work, and `fire()` for whichever comes due."""

    def __init__(
        self,
        settings: Settings,
        renderer: Renderer,
        scoring: Scoring,
        *,
        telegram: bool,
        hours: Hours | None = None,
        sequences: Callable[[], Mapping[str, SequenceSettings]] | None = None,
    ) -> None:
        """`sequences`: the live follow-up sequences (the scripts version's); config.yaml's
        when not given."""
        tz = settings.business.tz
        outreach = Outreach(settings, renderer, telegram=telegram)
        self.outreach = outreach
        self.handoffs = Handoffs(
            outreach, sla=timedelta(minutes=settings.handoff.sla_minutes), hours=hours
        )
        self.tasks = Tasks(outreach, overdue_after_hours=settings.tasks.overdue_after_hours, tz=tz)
        self.reminders = Reminders(settings.reminders, outreach, tz)
        idle = settings.conversation.idle
        self.sequences = Sequences(
            sequences or (lambda: settings.sequences),
            outreach,
            self.tasks,
            idle=idle,
            scoring=scoring,
        )
        self.idle = IdleWatch(self.sequences, idle=idle, won_stages=settings.pipeline.won_stages)
        self.sweep = Sweep(
            scoring,
            outreach,
            self.tasks,
            self.sequences,
            idle_days=settings.tasks.idle_days,
            tz=tz,
            won_stages=settings.pipeline.won_stages,
            pipeline=settings.pipeline.preset,
        )
        self.summary = Summary(settings, outreach)

    async def fire(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        handler = {
            REMINDER_LEAD: self.reminders.to_lead,
            REMINDER_AGENT: self.reminders.to_agent,
            SEQUENCE_STEP: self.sequences.step,
            TASK_DUE: self.tasks.alert,
            TASK_OVERDUE: self.tasks.alert,
            SWEEP: self.sweep.run,
            HANDOFF_SLA: self.handoffs.reassure,
            IDLE: self.idle.check,
            REPORT_SUMMARY: self.summary.run,
        }.get(action.kind)
        if handler is None:
            return skipped(f"unknown kind {action.kind}")
        return await handler(uow, action, now)
