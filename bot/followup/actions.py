"""Scheduled actions: their kinds, and what firing one came to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

REMINDER_LEAD = "reminder.lead"
REMINDER_AGENT = "reminder.agent"
SEQUENCE_STEP = "sequence.step"
TASK_DUE = "task.due"
TASK_OVERDUE = "task.overdue"
SWEEP = "sweep.idle"
HANDOFF_SLA = "handoff.sla"
IDLE = "conversation.idle"
REPORT_SUMMARY = "report.summary"


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
STAGED = Fired(Result.DONE, staged=True)


def skipped(reason: str) -> Fired:
    return Fired(Result.SKIPPED, reason)


def later(reason: str, at: datetime) -> Fired:
    return Fired(Result.LATER, reason, later=at)
