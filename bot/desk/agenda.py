"""The agents' organiser: appointments, tasks, notifications, pipeline stages, scheduled jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.core.errors import ConflictError, InvalidInput, NotFound
from bot.core.model import AgentRole, TaskPriority, utcnow
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


class Agenda:
    def __init__(
        self, db: Database, followup: Followup, *, tz: ZoneInfo, stages: list[str]
    ) -> None:
        self.db = db
        self.followup = followup
        self.tz = tz
        self.stages = stages

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

    async def set_stage(self, lead_id: int, stage: str) -> None:
        """Move a lead along the pipeline; its sequence ends, and the new stage's begins."""
        if stage not in self.stages:
            raise InvalidInput(f"stage must be one of: {', '.join(self.stages)}")
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            lead = await uow.leads.get(lead_id)
            if lead is None:
                raise NotFound(f"no lead {lead_id}")
            if lead.stage == stage:
                return
            lead.stage = stage
            await self.followup.sequences.leave(uow, lead, "stage changed", now)
            await self.followup.sequences.enter(uow, lead, now, stage=stage)
            await uow.commit()

    async def jobs(self, limit: int = 20) -> Jobs:
        async with UnitOfWork(self.db) as uow:
            return Jobs(await uow.actions.upcoming(limit), await uow.actions.failed(limit))
