"""The JSON API under /api/ for agents and tools. Every call carries `Authorization: Bearer`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bot.channel import MediaRef
from bot.errors import MediaUnavailable, NotFound
from bot.handoff import Desk
from bot.keys import DATABASE, DESK, MEDIA
from storage.models import Agent, Message, OutboxItem
from storage.uow import UnitOfWork

AGENT: web.RequestKey[Agent] = web.RequestKey("agent", Agent)


@web.middleware
async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    agent = await request.app[DESK].authenticate(token.strip()) if scheme == "Bearer" else None
    if agent is None:
        return web.json_response(
            {"error": "missing or unknown bearer token"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="seguibot"'},
        )
    request[AGENT] = agent
    return await handler(request)


def register(app: web.Application) -> None:
    app.router.add_get("/api/queue", queue)
    app.router.add_get("/api/conversations/{id:\\d+}", conversation)
    app.router.add_post("/api/conversations/{id:\\d+}/claim", claim)
    app.router.add_post("/api/conversations/{id:\\d+}/messages", reply)
    app.router.add_post("/api/conversations/{id:\\d+}/handback", hand_back)
    app.router.add_post("/api/conversations/{id:\\d+}/close", close)
    app.router.add_get("/api/outbox", outbox_rows)
    app.router.add_get("/api/messages/{id:\\d+}/media/{n:\\d+}", media)


def _desk(request: web.Request) -> Desk:
    return request.app[DESK]


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def queue(request: web.Request) -> web.Response:
    entries = await _desk(request).queue()
    return web.json_response(
        {
            "queue": [
                {
                    "conversation_id": e.conversation_id,
                    "handoff_id": e.handoff_id,
                    "lead": {"id": e.lead_id, "name": e.lead_name, "tier": e.tier},
                    "channel": e.channel,
                    "reason": e.reason,
                    "priority": e.priority,
                    "requested_at": e.requested_at.isoformat(),
                    "waiting_seconds": e.waiting_seconds,
                }
                for e in entries
            ]
        }
    )


def _message(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "direction": message.direction,
        "author": message.author,
        "text": message.text,
        "media": message.media,
        "intent": message.intent,
        "confidence": message.confidence,
        "status": message.status,
        "error": message.error,
        "created_at": message.created_at.isoformat(),
        "edited_at": message.edited_at.isoformat() if message.edited_at else None,
    }


async def conversation(request: web.Request) -> web.Response:
    found, messages = await _desk(request).conversation(_id(request))
    lead = found.lead
    return web.json_response(
        {
            "id": found.id,
            "channel": found.channel,
            "state": found.state,
            "agent_id": found.agent_id,
            "last_inbound_at": found.last_inbound_at.isoformat() if found.last_inbound_at else None,
            "lead": {
                "id": lead.id,
                "name": lead.name,
                "stage": lead.stage,
                "score": lead.score,
                "tier": lead.tier,
                "opted_out": lead.opted_out_at is not None,
            },
            "messages": [_message(m) for m in messages],
        }
    )


async def claim(request: web.Request) -> web.Response:
    await _desk(request).claim(_id(request), request[AGENT])
    return web.json_response({"conversation_id": _id(request), "state": "agent"})


async def reply(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="expected application/json")
    try:
        data = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from None
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise web.HTTPBadRequest(text="text must be a non-empty string")
    message_id = await _desk(request).reply(_id(request), request[AGENT], text)
    return web.json_response({"message_id": message_id, "status": "pending"}, status=201)


async def hand_back(request: web.Request) -> web.Response:
    await _desk(request).hand_back(_id(request), request[AGENT])
    return web.json_response({"conversation_id": _id(request), "state": "bot"})


async def close(request: web.Request) -> web.Response:
    await _desk(request).close(_id(request), request[AGENT])
    return web.json_response({"conversation_id": _id(request), "state": "closed"})


async def media(request: web.Request) -> web.Response:
    """A photo, document or voice note a lead sent, fetched from its channel on demand."""
    async with UnitOfWork(request.app[DATABASE]) as uow:
        message = await uow.session.get(Message, _id(request))
    n = int(request.match_info["n"])
    if message is None or n >= len(message.media):
        raise NotFound("no such media")
    stored = message.media[n]
    source = request.app[MEDIA].get(message.channel)
    if source is None:
        raise NotFound(f"{message.channel} media cannot be fetched here")
    ref = MediaRef(stored["kind"], stored["ref"], stored.get("content_type"))
    try:
        content = await source.fetch(ref)
    except MediaUnavailable as exc:
        return web.json_response({"error": exc.reason}, status=exc.status)
    return web.Response(
        body=content.data,
        content_type=content.content_type.split(";")[0],
        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


async def outbox_rows(request: web.Request) -> web.Response:
    """Outbox rows by state (default: failed and blocked), newest first."""
    async with UnitOfWork(request.app[DATABASE]) as uow:
        rows: list[OutboxItem] = await uow.outbox.failed(limit=200)
        counts = await uow.outbox.count_by_state()
        return web.json_response(
            {
                "counts": counts,
                "failed": [
                    {
                        "id": row.id,
                        "message_id": row.message_id,
                        "conversation_id": row.message.conversation_id,
                        "channel": row.channel,
                        "state": row.state,
                        "attempts": row.attempts,
                        "error": row.last_error,
                        "created_at": row.created_at.isoformat(),
                    }
                    for row in rows
                ],
            }
        )
