"""For the people who run the service: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.core.errors import SchemaOutdated
from bot.core.model import utcnow
from bot.web.keys import DATABASE, METRICS
from storage import migrate
from storage.db import DatabaseUnavailable, is_unavailable
from storage.uow import UnitOfWork


def _age(since: datetime | None, now: datetime) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0


def register(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)


async def healthz(request: web.Request) -> web.Response:
    """The process is up (no dependencies checked)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready for traffic: the database answers and its schema is current."""
    db = request.app[DATABASE]
    try:
        await db.ping()
        await migrate.ensure_current(db)
    except SchemaOutdated as exc:
        return web.json_response({"status": "unavailable", "reason": str(exc)}, status=503)
    except Exception as exc:
        if not is_unavailable(exc) and not isinstance(exc, DatabaseUnavailable):
            raise
        return web.json_response(
            {"status": "unavailable", "reason": "database unreachable"}, status=503
        )
    return web.json_response({"status": "ready"})


async def prometheus(request: web.Request) -> web.Response:
    """Counters as counted, and the people side read now: the queue, the outbox backlog, the
    scheduler's due backlog (what docs/alerts.yml alerts on)."""
    metrics = request.app[METRICS]
    now = utcnow()
    try:
        async with UnitOfWork(request.app[DATABASE]) as uow:
            waiting, longest = await uow.handoffs.waiting()
            backlog, oldest_row = await uow.outbox.backlog()
            due, oldest_due = await uow.actions.due(now)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        # The gauges keep their last values; /readyz says the database is down.
    else:
        metrics.queue_length.set(waiting)
        metrics.queue_oldest.set(_age(longest, now))
        metrics.outbox_pending.set(backlog)
        metrics.outbox_oldest_pending.set(_age(oldest_row, now))
        metrics.actions_due.set(due)
        metrics.actions_oldest_due.set(_age(oldest_due, now))
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
