"""The agents' organiser: appointments, tasks, notifications, pipeline stages, scheduled jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.core.crm import ActivityKind
from bot.core.errors import ConflictError, InvalidInput, NotFound
from bot.core.model import AgentRole, AppointmentKind, AppointmentState, TaskPriority, utcnow
from bot.core.scoring import BOOKED
from bot.crm import record
from bot.crm.pipelines import Pipelines
from bot.followup.calendar import Calendar
from bot.followup.planner import Followup
from storage.db import Database
from storage.models import Agent, Appointment, Notification, ScheduledAction, Task
from storage.uow import UnitOfWork

PRIORITIES = tuple(TaskPriority)
TITLE_MAX = 200
# Further ahead than any plan a sales team makes, and far from datetime's year 9999 limit.
FURTHEST = timedelta(days=5 * 366)


@dataclass(frozen=True, slots=True)
class Jobs:
    upcoming: list[ScheduledAction]
    failed: list[ScheduledAction]


@dataclass(frozen=True, slots=True)
class Booked:
    """An agent's booking: the appointment, or the nearest free slots when the time was not."""

    appointment: Appointment | None
    alternatives: tuple[datetime, ...] = ()


class Agenda:
    def __init__(
        self,
        db: Database,
        followup: Followup,
        *,
        tz: ZoneInfo,
        stages: list[str],
        calendar: Calendar | None = None,
        pipelines: Pipelines | None = None,
    ) -> None:
        self.pipelines = pipelines
        self.db = db
        self.followup = followup
        self.tz = tz
        self.stages = stages
        self.calendar = calendar

    async def book(self, conversation_id: int, at: datetime, kind: str, agent: Agent) -> Booked:
        """Book a call, meeting or visit for the conversation's lead (with its owner when free
        then, else whoever is); the lead gets the usual reminders.

        Raises:
            NotFound: no such conversation. InvalidInput: an unknown kind.
        """
        if kind not in tuple(AppointmentKind):
            raise InvalidInput(f"kind must be one of {', '.join(AppointmentKind)}", code="kind")
        assert self.calendar is not None
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            conversation = await uow.conversations.get(conversation_id)
            if conversation is None:
                raise NotFound(f"no conversation {conversation_id}", code="no_conversation")
            lead = conversation.lead
            found = await self.calendar.check(uow, lead, at, now)
            if found.free is None:
                return Booked(None, tuple(slot.at for slot in found.alternatives))
            agent_id = found.free.agent_id  # the lead's owner when free, else round robin
            appointment_id = await uow.appointments.book(
                {
                    "lead_id": lead.id,
                    "conversation_id": conversation.id,
                    "agent_id": agent_id,
                    "kind": kind,
                    "starts_at": found.free.at,
                    "ends_at": found.free.at + self.calendar.hours.length,
                    "state": AppointmentState.CONFIRMED,
                    "created_at": now,
                }
            )
            if appointment_id is None:  # taken a moment ago
                return Booked(None, tuple(slot.at for slot in found.alternatives))
            appointment = await uow.appointments.get(appointment_id)
            assert appointment is not None
            await self.followup.reminders.plan(uow, appointment, now)
            await self.followup.sequences.leave(uow, lead, "booked", now)
            if self.pipelines is not None:  # the CRM keeps it, as it does the bot's bookings
                record.rescore(uow, lead, self.pipelines.scoring, BOOKED, now)
                record.activity(
                    uow,
                    lead.id,
                    ActivityKind.APPOINTMENT,
                    now,
                    agent_id=agent.id,
                    details={"appointment_id": appointment_id, "kind": kind},
                )
            appointment_data = {"id": appointment_id, "kind": kind, "starts_at": found.free.at}
            await record.emit(
                uow,
                "appointment.booked",
                {"lead": record.lead_data(lead), "appointment": appointment_data},
                now,
            )
            uow.audit.record(
                "appointment_booked",
                agent_id=agent.id,
                subject=f"appointment:{appointment_id}",
                at=now,
            )
            await uow.commit()
            return Booked(appointment)

    async def cancel(self, appointment_id: int, agent: Agent) -> None:
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            appointment = await uow.appointments.get(appointment_id)
            if appointment is None or appointment.state != AppointmentState.CONFIRMED:
                raise NotFound(f"no appointment {appointment_id} to cancel", code="no_appointment")
            appointment.state = AppointmentState.CANCELLED
            appointment.cancelled_at = now
            await self.followup.reminders.withdraw(uow, appointment.id, now)
            uow.audit.record(
                "appointment_cancelled",
                agent_id=agent.id,
                subject=f"appointment:{appointment_id}",
                at=now,
            )
            await uow.commit()

    async def move(self, appointment_id: int, at: datetime, agent: Agent) -> Booked:
        """Move an appointment to a free slot (reminders follow), or say which slots are free."""
        assert self.calendar is not None
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            appointment = await uow.appointments.get(appointment_id)
            if appointment is None or appointment.state != AppointmentState.CONFIRMED:
                raise NotFound(f"no appointment {appointment_id} to move", code="no_appointment")
            lead = await uow.leads.get(appointment.lead_id)
            assert lead is not None
            found = await self.calendar.check(uow, lead, at, now)
            if found.free is None:
                return Booked(None, tuple(slot.at for slot in found.alternatives))
            ends = found.free.at + self.calendar.hours.length
            if not await uow.appointments.move(
                appointment, found.free.at, ends, found.free.agent_id
            ):
                return Booked(None, tuple(slot.at for slot in found.alternatives))
            await self.followup.reminders.withdraw(uow, appointment.id, now)
            await self.followup.reminders.plan(uow, appointment, now)
            uow.audit.record(
                "appointment_moved",
                agent_id=agent.id,
                subject=f"appointment:{appointment_id}",
                at=now,
            )
            await uow.commit()
            return Booked(appointment)

    def window(self, span: str, now: datetime | None = None) -> tuple[datetime, datetime]:
        """Today, or this week from today, in the business time zone."""
        local = (now or utcnow()).astimezone(self.tz)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=7 if span == "week" else 1)

    async def appointments(self, span: str, now: datetime | None = None) -> list[Appointment]:
        start, end = self.window(span, now)
        async with UnitOfWork(self.db) as uow:
            return await uow.appointments.between(start, end)

    async def add_task(
        self,
        *,
        title: str,
        due_at: datetime,
        owner_id: int | None,
        lead_id: int | None,
        priority: str = "normal",
    ) -> Task:
        """A task for an agent, with its due and overdue alerts planned.

        Raises:
            InvalidInput: an unknown priority, lead or owner; a title too long; a due date
                more than five years away.
        """
        if priority not in PRIORITIES:
            raise InvalidInput(f"priority must be one of {', '.join(PRIORITIES)}")
        if len(title) > TITLE_MAX:
            raise InvalidInput(f"title is longer than {TITLE_MAX} characters")
        now = utcnow()
        if abs(due_at - now) > FURTHEST:
            raise InvalidInput("due_at must be within five years of today")
        async with UnitOfWork(self.db) as uow:
            if lead_id is not None and await uow.leads.get(lead_id) is None:
                raise InvalidInput(f"no lead {lead_id}")
            if owner_id is not None and await uow.agents.get(owner_id) is None:
                raise InvalidInput(f"no agent {owner_id}")
            task = await uow.tasks.add(
                Task(
                    lead_id=lead_id,
                    owner_id=owner_id,
                    title=title,
                    priority=priority,
                    due_at=due_at,
                    created_at=now,
                )
            )
            await self.followup.tasks.plan_alerts(uow, task, now)
            await uow.commit()
            return task

    async def tasks(self, agent: Agent, *, done: bool = False) -> list[Task]:
        owner = None if agent.role == AgentRole.ADMIN else agent.id
        async with UnitOfWork(self.db) as uow:
            return await uow.tasks.of(owner, done=done)

    async def complete_task(self, task_id: int, agent: Agent) -> Task:
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            task = await uow.tasks.get(task_id)
            if task is None:
                raise NotFound(f"no task {task_id}")
            if task.owner_id not in (None, agent.id) and agent.role != AgentRole.ADMIN:
                raise ConflictError("the task belongs to another agent")
            if task.done_at is None:
                task.done_at = now
                await uow.commit()
            return task

    async def notifications(self, agent: Agent, *, unread: bool) -> list[Notification]:
        async with UnitOfWork(self.db) as uow:
            return await uow.notifications.for_agent(agent.id, unread=unread)

    async def mark_read(self, notification_id: int, agent: Agent) -> None:
        async with UnitOfWork(self.db) as uow:
            notification = await uow.notifications.get(notification_id)
            if notification is None or notification.agent_id not in (None, agent.id):
                raise NotFound(f"no notification {notification_id}")
            notification.read_at = notification.read_at or utcnow()
            await uow.commit()

    async def set_stage(
        self, lead_id: int, stage: str, *, agent_id: int | None = None, reason: str | None = None
    ) -> None:
        """Move a lead along the pipeline (the CRM's rules); its sequence ends, and the new
        stage's begins."""
        assert self.pipelines is not None
        await self.pipelines.move(lead_id, stage, agent_id=agent_id, reason=reason)

    async def jobs(self, limit: int = 20) -> Jobs:
        async with UnitOfWork(self.db) as uow:
            return Jobs(await uow.actions.upcoming(limit), await uow.actions.failed(limit))
