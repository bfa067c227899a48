"""The JSON API under /api/ for agents and tools. Every call carries `Authorization: Bearer`;
routes for admins only say so (`admin_only`)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from bot.core.channel import clean
from bot.core.errors import MediaUnavailable, NotFound
from bot.core.model import AgentRole
from bot.core.wire import is_id, parse_json
from bot.desk.agenda import Agenda
from bot.desk.handoff import Desk
from bot.web.keys import AGENDA, DESK, MEDIA
from storage.models import Agent, Message, ScheduledAction, Task

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

AGENT: web.RequestKey[Agent] = web.RequestKey("agent", Agent)
ID = "{id:[0-9]{1,18}}"  # a database id that fits in 64 bits; anything else is not a route


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    desk = request.config_dict[DESK]
    agent = await desk.authenticate(token.strip()) if scheme == "Bearer" else None
    if agent is None:
        return web.json_response(
            {"error": "missing or unknown bearer token"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="seguibot"'},
        )
    request[AGENT] = agent
    return await handler(request)


def admin_only(handler: Handler) -> Handler:
    """For routes only admins (coordinadores) may use: 403 for everyone else."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if request[AGENT].role != AgentRole.ADMIN:
            raise web.HTTPForbidden(text="only admins may do this")
        return await handler(request)

    return guarded


def create_api() -> web.Application:
    """The JSON API, mounted at /api/: its own authentication, and roles per route."""
    api = web.Application(middlewares=[authenticate])
    add = api.router
    add.add_get("/queue", queue)
    add.add_get(f"/conversations/{ID}", conversation)
    add.add_post(f"/conversations/{ID}/claim", claim)
    add.add_post(f"/conversations/{ID}/messages", reply)
    add.add_post(f"/conversations/{ID}/handback", hand_back)
    add.add_post(f"/conversations/{ID}/close", close)
    add.add_get("/outbox", admin_only(outbox_rows))
    add.add_post(f"/outbox/{ID}/resend", resend)
    add.add_get(f"/messages/{ID}/media/{{n:[0-9]{{1,3}}}}", media)
    add.add_get("/appointments", appointments)
    add.add_get("/tasks", tasks)
    add.add_post("/tasks", add_task)
    add.add_post(f"/tasks/{ID}/done", complete_task)
    add.add_get("/notifications", notifications)
    add.add_post(f"/notifications/{ID}/read", read_notification)
    add.add_post(f"/leads/{ID}/stage", set_stage)
    add.add_get("/jobs", admin_only(jobs))
    from bot.web import crm_api  # the CRM's routes need this module's auth and helpers

    crm_api.register(api)
    return api


def _desk(request: web.Request) -> Desk:
    return request.config_dict[DESK]


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


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="expected application/json")
    data = parse_json(await request.read())
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return data


async def reply(request: web.Request) -> web.Response:
    data = await _body(request)
    text = data.get("text")
    if not isinstance(text, str) or not clean(text).strip():
        raise web.HTTPBadRequest(text="text must be a non-empty string")
    text = clean(text)
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
    channel, ref = await _desk(request).media(_id(request), int(request.match_info["n"]))
    source = request.config_dict[MEDIA].get(channel)
    if source is None:
        raise NotFound(f"{channel} media cannot be fetched here")
    try:
        content = await source.fetch(ref)
    except MediaUnavailable as exc:
        return web.json_response({"error": exc.reason}, status=exc.status)
    return web.Response(
        body=content.data,
        content_type=content.content_type.split(";")[0],
        headers={"Cache-Control": "private, max-age=300"},
    )


async def outbox_rows(request: web.Request) -> web.Response:
    """Counts by state, and the failed and held messages with their reasons, newest first."""
    report = await _desk(request).outbox()
    return web.json_response(
        {
            "counts": report.counts,
            "failed": [
                {
                    "id": row.id,
                    "message_id": row.message_id,
                    "conversation_id": row.message.conversation_id if row.message else None,
                    "channel": row.channel,
                    "state": row.state,
                    "attempts": row.attempts,
                    "error": row.last_error,
                    "created_at": row.created_at.isoformat(),
                }
                for row in report.failed
            ],
        }
    )


async def resend(request: web.Request) -> web.Response:
    """Send again a message that failed or was held for a person to decide."""
    conversation_id = await _desk(request).resend(_id(request), request[AGENT])
    return web.json_response(
        {"id": _id(request), "conversation_id": conversation_id, "state": "pending"}
    )


def _agenda(request: web.Request) -> Agenda:
    return request.config_dict[AGENDA]


async def appointments(request: web.Request) -> web.Response:
    """Confirmed appointments for today (`?range=today`, the default) or the next 7 days."""
    span = request.query.get("range", "today")
    if span not in ("today", "week"):
        raise web.HTTPBadRequest(text="range must be today or week")
    found = await _agenda(request).appointments(span)
    return web.json_response(
        {
            "appointments": [
                {
                    "id": a.id,
                    "lead_id": a.lead_id,
                    "agent_id": a.agent_id,
                    "kind": a.kind,
                    "starts_at": a.starts_at.isoformat(),
                    "ends_at": a.ends_at.isoformat(),
                    "conversation_id": a.conversation_id,
                }
                for a in found
            ]
        }
    )


def _task(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "title": task.title,
        "lead_id": task.lead_id,
        "owner_id": task.owner_id,
        "priority": task.priority,
        "due_at": task.due_at.isoformat(),
        "done_at": task.done_at.isoformat() if task.done_at else None,
    }


async def tasks(request: web.Request) -> web.Response:
    """The agent's open tasks (`?done=1` for finished ones), soonest first."""
    done = request.query.get("done") in ("1", "true")
    found = await _agenda(request).tasks(request[AGENT], done=done)
    return web.json_response({"tasks": [_task(t) for t in found]})


async def add_task(request: web.Request) -> web.Response:
    data = await _body(request)
    title = data.get("title")
    if not isinstance(title, str) or not clean(title).strip():
        raise web.HTTPBadRequest(text="title must be a non-empty string")
    title = clean(title)
    try:
        due_at = datetime.fromisoformat(str(data.get("due_at")))
    except ValueError:
        raise web.HTTPBadRequest(text="due_at must be ISO 8601 with an offset") from None
    if due_at.tzinfo is None:
        raise web.HTTPBadRequest(text="due_at must be ISO 8601 with an offset")
    lead_id, owner_id = data.get("lead_id"), data.get("owner_id", request[AGENT].id)
    if not all(v is None or is_id(v) for v in (lead_id, owner_id)):
        raise web.HTTPBadRequest(text="lead_id and owner_id must be ids (positive integers)")
    task = await _agenda(request).add_task(
        title=title.strip(),
        due_at=due_at,
        owner_id=owner_id,
        lead_id=lead_id,
        priority=str(data.get("priority", "normal")),
    )
    return web.json_response(_task(task), status=201)


async def complete_task(request: web.Request) -> web.Response:
    task = await _agenda(request).complete_task(_id(request), request[AGENT])
    return web.json_response(_task(task))


async def notifications(request: web.Request) -> web.Response:
    unread = request.query.get("unread") in ("1", "true")
    found = await _agenda(request).notifications(request[AGENT], unread=unread)
    return web.json_response(
        {
            "notifications": [
                {
                    "id": n.id,
                    "kind": n.kind,
                    "text": n.text,
                    "lead_id": n.lead_id,
                    "created_at": n.created_at.isoformat(),
                    "read": n.read_at is not None,
                }
                for n in found
            ]
        }
    )


async def read_notification(request: web.Request) -> web.Response:
    await _agenda(request).mark_read(_id(request), request[AGENT])
    return web.json_response({"id": _id(request), "read": True})


async def set_stage(request: web.Request) -> web.Response:
    data = await _body(request)
    stage = data.get("stage")
    if not isinstance(stage, str):
        raise web.HTTPBadRequest(text="stage must be a string")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise web.HTTPBadRequest(text="reason must be a string")
    await _agenda(request).set_stage(_id(request), stage, agent_id=request[AGENT].id, reason=reason)
    return web.json_response({"lead_id": _id(request), "stage": stage})


def _action(action: ScheduledAction) -> dict[str, Any]:
    return {
        "id": action.id,
        "kind": action.kind,
        "due_at": action.due_at.isoformat(),
        "state": action.state,
        "lead_id": action.lead_id,
        "attempts": action.attempts,
        "error": action.last_error,
    }


async def jobs(request: web.Request) -> web.Response:
    """Scheduled actions: what is due next, and what failed."""
    found = await _agenda(request).jobs()
    return web.json_response(
        {
            "upcoming": [_action(a) for a in found.upcoming],
            "failed": [_action(a) for a in found.failed],
        }
    )
