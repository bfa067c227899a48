"""Fires scheduled actions when they come due; APScheduler is the alarm clock.

Every future action is a row first. APScheduler wakes this process every `poll_seconds` (and
once a day for the sweep); each wake-up claims the due rows (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, so several `serve` processes share the work and none fires a row twice), fires each
inside a savepoint, and commits the results together with the claim. After a restart or
downtime, whatever came due meanwhile is simply due now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.core.errors import SeguibotError
from bot.core.model import ActionState, utcnow
from bot.followup.actions import Result
from bot.followup.planner import Followup
from bot.metrics import Metrics
from bot.settings import Settings
from storage.db import Database, is_conflict, is_unavailable
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


# Set while a wake-up of the alarm clock runs (each runs in its own task).
_RINGING: ContextVar[bool] = ContextVar("ringing", default=False)


def _report_failure(task: asyncio.Future[object]) -> None:
    """What a wake-up nobody waits for any more (the alarm clock stopped) raised."""
    if not task.cancelled() and task.exception() is not None:
        log.error("scheduler_wakeup_failed", exc_info=task.exception())


class Scheduler:
    """One per process."""

    def __init__(
        self,
        db: Database,
        followup: Followup,
        settings: Settings,
        metrics: Metrics,
        *,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.followup = followup
        self.settings = settings
        self.metrics = metrics
        self.on_commit = on_commit
        self.clock = clock
        self._aps: AsyncIOScheduler | None = None
        self._busy = asyncio.Lock()
        self._stopped = False

    def start(self) -> None:
        scheduling, tasks = self.settings.scheduling, self.settings.tasks
        hour, minute = (int(part) for part in tasks.sweep_at.split(":"))
        aps = AsyncIOScheduler(timezone="UTC")
        aps.add_job(
            self._alarm(self.fire_due),
            IntervalTrigger(seconds=scheduling.poll_seconds),
            id="fire-due",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        aps.add_job(
            self._alarm(self.plan_sweep),
            CronTrigger(hour=hour, minute=minute, timezone=self.settings.business.tz),
            id="daily-sweep",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        # Today's sweep, if the process starts after its hour (or it was missed while down).
        aps.add_job(self._alarm(self.plan_sweep), id="sweep-at-start")
        hour, minute = (int(part) for part in self.settings.reports.summary_at.split(":"))
        aps.add_job(
            self._alarm(self.plan_summary),
            CronTrigger(hour=hour, minute=minute, timezone=self.settings.business.tz),
            id="daily-summary",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        aps.add_job(self._alarm(self.plan_summary), id="summary-at-start")
        aps.start()
        self._aps = aps

    def _alarm(self, work: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        """What APScheduler calls: nothing once the alarm clock is paused or stopped (a wake-up
        already queued must not start work that the end of the process would cut short)."""

        async def ring() -> None:
            if self._aps is None:
                return
            ringing = _RINGING.set(True)
            # The work runs in a task of its own: APScheduler's shutdown (`pause`, `stop`)
            # cancels the jobs it runs, and a firing cut there ends mid-transaction (logged as
            # an error, and on SQLite the connection keeps its write lock until collected).
            # Shielded, it goes on to its commit, and `pause` waits for it on the lock.
            working = asyncio.ensure_future(work())
            _RINGING.reset(ringing)
            try:
                await asyncio.shield(working)
            except asyncio.CancelledError:
                working.add_done_callback(_report_failure)

        ring.__name__ = getattr(work, "__name__", "alarm")
        return ring

    def _silenced(self) -> bool:
        """Checked holding the lock: stopped for good, or this is a wake-up of the alarm clock
        that began before a pause (it passed the alarm's check, then waited for the lock)."""
        return self._stopped or (_RINGING.get() and self._aps is None)

    async def stop(self) -> None:
        """For good (shutdown): a wake-up APScheduler started just before must not reach the
        database after it is closed; it finds the flag and returns."""
        self._stopped = True
        await self.pause()

    async def pause(self) -> None:
        """Stop the alarm clock; `fire_due()` still works when called (tests drive it)."""
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
        async with self._busy:  # let a firing in progress commit
            pass

    async def plan_sweep(self) -> None:
        await self._plan_daily(self.settings.tasks.sweep_at, self.followup.sweep.plan, "sweep")

    async def plan_summary(self) -> None:
        """Today's summary to the admins (yesterday's figures), once its hour has come."""
        await self._plan_daily(
            self.settings.reports.summary_at, self.followup.summary.plan, "summary"
        )

    async def _plan_daily(
        self,
        at: str,
        plan: Callable[[UnitOfWork, datetime, datetime], Awaitable[bool]],
        name: str,
    ) -> None:
        now = self.clock()
        tz = self.settings.business.tz
        hour, minute = (int(part) for part in at.split(":"))
        local = now.astimezone(tz)
        due = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if due > local:
            return  # the cron job plans it when the hour comes
        # Under the same lock as firing, so stopping waits for it too.
        async with self._busy:
            if self._silenced():
                return
            try:
                async with UnitOfWork(self.db) as uow:
                    if await plan(uow, due, now):
                        await uow.commit()
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                log.warning(f"{name}_not_planned", extra={"error": type(exc).__name__})

    async def fire_due(self) -> int:
        """Fire everything due now, batch by batch; returns how many actions were handled."""
        total = 0
        async with self._busy:
            while not self._silenced():
                try:
                    fired = await self._fire_batch()
                except Exception as exc:
                    if is_conflict(exc):
                        # Rolled back whole; its actions are still due, and the next tick
                        # (a second away) fires them.
                        log.info("scheduler_conflict", extra={"error": type(exc).__name__})
                    elif is_unavailable(exc):
                        log.warning("scheduler_database_unavailable")
                    else:
                        log.exception("scheduler_batch_failed")
                    return total
                total += fired
                if fired < self.settings.scheduling.batch_size:
                    return total
        return total

    async def _fire_batch(self) -> int:
        now = self.clock()
        staged = False
        async with UnitOfWork(self.db) as uow:
            actions = await uow.actions.claim_due(now, self.settings.scheduling.batch_size)
            for action in actions:
                try:
                    # A savepoint per action: one that fails leaves the others' work intact.
                    async with uow.savepoint():
                        outcome = await self.followup.fire(uow, action, now)
                except Exception as exc:
                    # The savepoint's rollback expired the row; read it again before changing it.
                    await uow.refresh(action)
                    action.attempts += 1
                    action.last_error = failure_reason(exc)
                    if action.attempts >= MAX_ATTEMPTS:
                        action.state, action.fired_at = ActionState.FAILED, now
                        log.exception("action_failed", extra={"action_id": action.id})
                    else:
                        action.due_at = now + timedelta(seconds=30 * 2**action.attempts)
                        log.warning(
                            "action_retry",
                            extra={"action_id": action.id, "error": type(exc).__name__},
                        )
                    self.metrics.actions.labels(action.kind, "error").inc()
                    continue
                if outcome.result == Result.LATER and outcome.later is not None:
                    action.due_at = outcome.later
                else:
                    action.state = (
                        ActionState.DONE if outcome.result == Result.DONE else ActionState.SKIPPED
                    )
                    action.fired_at = now
                    action.last_error = outcome.reason
                    self.metrics.action_lateness.observe(
                        max(0.0, (now - action.due_at).total_seconds())
                    )
                self.metrics.actions.labels(action.kind, outcome.result).inc()
                staged = staged or outcome.staged
            await uow.commit()
        if staged:
            self.on_commit()
        return len(actions)


def failure_reason(exc: BaseException) -> str:
    """What is stored and shown about a failure: the error's class, and our own message only.

    A library's message can carry anything (python-telegram-bot puts the bot token in some), so
    it is logged with the traceback at most, never stored or served.
    """
    if isinstance(exc, SeguibotError):
        return f"{type(exc).__name__}: {exc}"[:200]
    return type(exc).__name__
