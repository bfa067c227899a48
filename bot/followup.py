"""Follow-up work in time: appointment reminders, sequences, tasks and the daily sweep.

Everything here is planned as scheduled actions (rows) inside the transaction that caused it,
and carried out by `fire()` inside the transaction that claimed the row, so an action's
messages and its "done" commit together: it fires exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot import outbox
from bot.booking import KIND_WORDS
from bot.calendar import quiet_until, spanish_moment
from bot.scripts import Renderer
from bot.settings import SequenceSettings, Settings, TemplateSettings
from storage.models import (
    Appointment,
    AppointmentState,
    Author,
    Conversation,
    Lead,
    Notification,
    ScheduledAction,
    SequenceState,
    Task,
)
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

REMINDER_LEAD = "reminder.lead"
REMINDER_AGENT = "reminder.agent"
SEQUENCE_STEP = "sequence.step"
TASK_DUE = "task.due"
TASK_OVERDUE = "task.overdue"
SWEEP = "sweep.idle"
NOTIFY_TELEGRAM = "notify.telegram"
# A reminder this close to its appointment goes out even in quiet hours.
URGENT = timedelta(hours=1)
SWEEP_BATCH = 500


class Result(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"
    LATER = "later"


@dataclass(frozen=True, slots=True)
class Fired:
    result: Result
    reason: str | None = None
    later: datetime | None = None
    staged: bool = False  # messages were put in the outbox


DONE = Fired(Result.DONE)


def skipped(reason: str) -> Fired:
    return Fired(Result.SKIPPED, reason)


class Followup:
    """Plans and fires time-driven work. One per process; stateless between calls."""

    def __init__(
        self,
        settings: Settings,
        renderer: Renderer,
        *,
        notify_telegram: Callable[[int, str], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.renderer = renderer
        self.sequences: Mapping[str, SequenceSettings] = settings.sequences
        self.templates: Mapping[str, TemplateSettings] = settings.whatsapp.templates
        self.notify_telegram = notify_telegram
        self.slot = timedelta(minutes=settings.scheduling.slot_minutes)

    # --- planning ---------------------------------------------------------------------------

    async def plan_reminders(
        self, uow: UnitOfWork, appointment: Appointment, now: datetime
    ) -> None:
        """Reminders before an appointment; those whose moment has already gone are left out."""
        reminders = self.settings.reminders
        for kind, minutes_list in (
            (REMINDER_LEAD, reminders.lead_minutes),
            (REMINDER_AGENT, reminders.agent_minutes),
        ):
            for minutes in minutes_list:
                due = appointment.starts_at - timedelta(minutes=minutes)
                if due > now:
                    await uow.actions.add(
                        kind=kind,
                        due_at=due,
                        payload={"minutes": minutes},
                        lead_id=appointment.lead_id,
                        appointment_id=appointment.id,
                        created_at=now,
                    )

    async def withdraw_reminders(self, uow: UnitOfWork, appointment_id: int, now: datetime) -> None:
        await uow.actions.withdraw(now, "appointment changed", appointment_id=appointment_id)

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
        for name, sequence in self.sequences.items():
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

    async def plan_task_alerts(self, uow: UnitOfWork, task: Task, now: datetime) -> None:
        overdue = task.due_at + timedelta(hours=self.settings.tasks.overdue_after_hours)
        for kind, due in ((TASK_DUE, task.due_at), (TASK_OVERDUE, overdue)):
            await uow.actions.add(
                kind=kind,
                due_at=max(due, now),
                payload={"task": task.id},
                lead_id=task.lead_id,
                created_at=now,
            )

    async def plan_sweep(self, uow: UnitOfWork, day_start: datetime, now: datetime) -> bool:
        """Today's sweep, once across every process (the day is the dedupe key)."""
        day = day_start.astimezone(self.settings.business.tz).date()
        return await uow.actions.add_once(
            {
                "kind": SWEEP,
                "due_at": max(day_start, now),
                "payload": {},
                "state": "pending",
                "dedupe_key": f"{SWEEP}:{day.isoformat()}",
                "attempts": 0,
                "created_at": now,
            }
        )

    # --- firing -----------------------------------------------------------------------------

    async def fire(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        handler = {
            REMINDER_LEAD: self._remind_lead,
            REMINDER_AGENT: self._remind_agent,
            SEQUENCE_STEP: self._sequence_step,
            TASK_DUE: self._task_alert,
            TASK_OVERDUE: self._task_alert,
            SWEEP: self._sweep,
            NOTIFY_TELEGRAM: self._notify_telegram,
        }.get(action.kind)
        if handler is None:
            return skipped(f"unknown kind {action.kind}")
        return await handler(uow, action, now)

    async def _remind_lead(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        appointment = await self._live_appointment(uow, action, now)
        if isinstance(appointment, Fired):
            return appointment
        lead = await uow.leads.get(appointment.lead_id)
        assert lead is not None
        if lead.opted_out_at is not None:
            return skipped("lead opted out")
        tz = ZoneInfo(lead.timezone)
        if appointment.starts_at - now > URGENT and (morning := self._quiet_until(now, tz)):
            return Fired(Result.LATER, "quiet hours", later=morning)
        conversation = await self._conversation(uow, lead, appointment.conversation_id)
        if conversation is None:
            return skipped("lead has no conversation")
        script = f"{REMINDER_LEAD}.{'day' if action.payload.get('minutes', 0) >= 720 else 'soon'}"
        values = self._values(lead, {"fecha": spanish_moment(appointment.starts_at, tz, now)})
        await self._send(uow, conversation, script, values, now, seed=f"r{action.id}")
        return Fired(Result.DONE, staged=True)

    async def _remind_agent(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        appointment = await self._live_appointment(uow, action, now)
        if isinstance(appointment, Fired):
            return appointment
        lead = await uow.leads.get(appointment.lead_id)
        assert lead is not None
        tz = self.settings.business.tz
        values = self._values(
            lead,
            {
                "fecha": spanish_moment(appointment.starts_at, tz, now),
                "tipo": KIND_WORDS.get(appointment.kind, appointment.kind),
            },
        )
        text = self.renderer.render(REMINDER_AGENT, seed=f"r{action.id}", values=values).text
        await self._notify(uow, appointment.agent_id, "reminder", text, lead.id, now)
        return DONE

    async def _sequence_step(
        self, uow: UnitOfWork, action: ScheduledAction, now: datetime
    ) -> Fired:
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
        sequence = self.sequences.get(run.sequence)
        index = int(action.payload.get("step", 0))
        if sequence is None or index >= len(sequence.steps):
            return skipped("sequence no longer configured")
        step = sequence.steps[index]
        tz = ZoneInfo(lead.timezone)
        staged = False
        if step.message is not None:
            if morning := self._quiet_until(now, tz):
                return Fired(Result.LATER, "quiet hours", later=morning)
            conversation = await self._conversation(uow, lead, None)
            if conversation is None:
                return skipped("lead has no conversation")
            await self._send(
                uow,
                conversation,
                step.message,
                self._values(lead, {}),
                now,
                seed=f"s{action.id}",
                nudge=True,
            )
            staged = True
        elif step.task is not None:
            title = self.renderer.render(
                step.task, seed=f"s{action.id}", values=self._values(lead, {})
            )
            await self._create_task(uow, lead, title.text, now)
        if index == len(sequence.steps) - 1:
            run.state, run.ended_at = SequenceState.COMPLETED, now
            if lead.sequence_run_id == run.id:
                lead.sequence_run_id = None
        return Fired(Result.DONE, staged=staged)

    async def _task_alert(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        task = await uow.tasks.get(int(action.payload["task"]))
        if task is None or task.done_at is not None:
            return skipped("task done")
        overdue = action.kind == TASK_OVERDUE
        tz = self.settings.business.tz
        values = {"tarea": task.title, "fecha": spanish_moment(task.due_at, tz, now)}
        script = "task.overdue_alert" if overdue else "task.due_alert"
        text = self.renderer.render(script, seed=f"t{action.id}", values=values).text
        await self._notify(uow, task.owner_id, "task", text, task.lead_id, now)
        return DONE

    async def _sweep(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        """Leads idle for `tasks.idle_days` become cold and get a follow-up task (seed 002)."""
        cutoff = now - timedelta(days=self.settings.tasks.idle_days)
        tiers = self.settings.scoring.tiers
        statement = (
            select(Lead)
            .where(
                Lead.last_activity_at < cutoff,
                Lead.opted_out_at.is_(None),
                Lead.tier.in_(["hot", "warm"]),
            )
            .order_by(Lead.id)
            .limit(SWEEP_BATCH)
            .with_for_update(skip_locked=True)
        )
        idle = list((await uow.session.execute(statement)).scalars())
        for lead in idle:
            lead.score = min(lead.score, tiers.warm - 1)
            lead.tier = "cold"
            title = self.renderer.render(
                "task.follow_up_idle",
                seed=f"w{lead.id}",
                values=self._values(lead, {"dias": str(self.settings.tasks.idle_days)}),
            )
            await self._create_task(uow, lead, title.text, now)
            await self.enter(uow, lead, now, tier="cold")
        if len(idle) == SWEEP_BATCH:
            # More than one batch: carry on in a fresh action (and transaction) right away.
            await uow.actions.add(kind=SWEEP, due_at=now, payload={}, created_at=now)
        log.info("sweep_done", extra={"leads_marked_cold": len(idle)})
        return DONE

    async def _notify_telegram(
        self, uow: UnitOfWork, action: ScheduledAction, now: datetime
    ) -> Fired:
        if self.notify_telegram is None:
            return skipped("telegram is off")
        notification = await uow.session.get(Notification, int(action.payload["notification"]))
        if notification is None or notification.agent_id is None:
            return skipped("notification gone")
        agent = await uow.agents.get(notification.agent_id)
        if agent is None or agent.telegram_chat_id is None:
            return skipped("agent has no telegram chat")
        # Sent within the claim: a failure raises, and the action is retried with backoff.
        await self.notify_telegram(agent.telegram_chat_id, notification.text)
        return DONE

    # --- helpers ----------------------------------------------------------------------------

    async def _live_appointment(
        self, uow: UnitOfWork, action: ScheduledAction, now: datetime
    ) -> Appointment | Fired:
        appointment = (
            await uow.appointments.get(action.appointment_id) if action.appointment_id else None
        )
        if appointment is None or appointment.state != AppointmentState.CONFIRMED:
            return skipped("appointment cancelled")
        if appointment.starts_at <= now:
            # Came due while the service was down: reminding of the past helps nobody.
            return skipped("appointment already passed")
        return appointment

    def _quiet_until(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        return quiet_until(now, tz, self.settings.scheduling.quiet)

    async def _conversation(
        self, uow: UnitOfWork, lead: Lead, conversation_id: int | None
    ) -> Conversation | None:
        if conversation_id is not None:
            conversation = await uow.conversations.get(conversation_id)
            if conversation is not None:
                return conversation
        return await uow.conversations.latest_for_lead(lead.id)

    def _values(self, lead: Lead, extra: Mapping[str, str]) -> dict[str, str]:
        return {"nombre": (lead.name or "").split(" ")[0], **extra}

    async def _send(
        self,
        uow: UnitOfWork,
        conversation: Conversation,
        script: str,
        values: Mapping[str, str],
        now: datetime,
        *,
        seed: str,
        nudge: bool = False,
    ) -> None:
        rendered = self.renderer.render(script, seed=seed, values=values)
        all_values = {**self.renderer.defaults, **values}
        await outbox.stage(
            uow,
            conversation,
            rendered.text,
            author=Author.BOT,
            now=now,
            script=rendered.script,
            variant=rendered.variant,
            template=outbox.template_for(self.templates, script, all_values),
            cancel_on_reply=nudge,
        )

    async def _create_task(self, uow: UnitOfWork, lead: Lead, title: str, now: datetime) -> None:
        task = await uow.tasks.add(
            Task(lead_id=lead.id, owner_id=lead.owner_id, title=title[:200], due_at=now)
        )
        await self.plan_task_alerts(uow, task, now)

    async def _notify(
        self,
        uow: UnitOfWork,
        agent_id: int | None,
        kind: str,
        text: str,
        lead_id: int | None,
        now: datetime,
    ) -> None:
        notification = await uow.notifications.add(
            Notification(agent_id=agent_id, kind=kind, text=text, lead_id=lead_id, created_at=now)
        )
        agent = await uow.agents.get(agent_id) if agent_id is not None else None
        if agent is not None and agent.telegram_chat_id is not None and self.notify_telegram:
            await uow.actions.add(
                kind=NOTIFY_TELEGRAM,
                due_at=now,
                payload={"notification": notification.id},
                created_at=now,
            )
