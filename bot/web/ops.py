"""For the people who run the service: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.core.errors import SchemaOutdated
from bot.web.keys import DATABASE, METRICS
from storage import migrate
from storage.db import DatabaseUnavailable, is_unavailable
from storage.uow import UnitOfWork


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
    metrics = request.app[METRICS]
    try:
        async with UnitOfWork(request.app[DATABASE]) as uow:
            counts = await uow.outbox.count_by_state()
        metrics.outbox_pending.set(counts.get("pending", 0) + counts.get("sending", 0))
    except Exception as exc:
        if not is_unavailable(exc):
            raise
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
