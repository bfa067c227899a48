"""Tasks for agents (seed 002): created by hand or by follow-up work, with due and overdue
alerts."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.core.slots import spanish_moment
from bot.followup.actions import DONE, STAGED, TASK_DUE, TASK_OVERDUE, Fired, skipped
from bot.followup.outreach import Outreach
from storage.models import Lead, ScheduledAction, Task
from storage.uow import UnitOfWork


class Tasks:
    def __init__(self, outreach: Outreach, *, overdue_after_hours: float, tz: ZoneInfo) -> None:
        self.outreach = outreach
        self.overdue_after = timedelta(hours=overdue_after_hours)
        self.tz = tz  # the business's, for agents

    async def create(self, uow: UnitOfWork, lead: Lead, title: str, now: datetime) -> Task:
        """A task for the lead's owner (the team when it has none), due now."""
        task = await uow.tasks.add(
            Task(lead_id=lead.id, owner_id=lead.owner_id, title=title[:200], due_at=now)
        )
        await self.plan_alerts(uow, task, now)
        return task

    async def plan_alerts(self, uow: UnitOfWork, task: Task, now: datetime) -> None:
        for kind, due in (
            (TASK_DUE, task.due_at),
            (TASK_OVERDUE, task.due_at + self.overdue_after),
        ):
            await uow.actions.add(
                kind=kind,
                due_at=max(due, now),
                payload={"task": task.id},
                lead_id=task.lead_id,
                created_at=now,
            )

    async def alert(self, uow: UnitOfWork, action: ScheduledAction, now: datetime) -> Fired:
        task = await uow.tasks.get(int(action.payload["task"]))
        if task is None or task.done_at is not None:
            return skipped("task done")
        values = {"tarea": task.title, "fecha": spanish_moment(task.due_at, self.tz, now)}
        script = "task.overdue_alert" if action.kind == TASK_OVERDUE else "task.due_alert"
        text = self.outreach.render(script, seed=f"t{action.id}", values=values)
        staged = await self.outreach.to_agent(uow, task.owner_id, "task", text, task.lead_id, now)
        return STAGED if staged else DONE
