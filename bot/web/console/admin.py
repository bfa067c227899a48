"""Admins' pages: the team (invite, roles, capacity, deactivate), the lists agents pick from
(canned replies, reasons for closing), and the audit log."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web
from aiohttp_session import get_session

from bot.core.errors import InvalidInput
from bot.core.model import utcnow
from bot.core.webhooks import EVENTS
from bot.desk.handoff import Desk
from bot.web.console.auth import accounts, admin_page, flash, pages, take_flash, who
from bot.web.keys import DESK, ENDPOINTS, SETTINGS

ID = "{id:[0-9]{1,18}}"


def register(app: web.Application) -> None:
    add = app.router
    add.add_get("/agents", admin_page(team))
    add.add_post("/agents/invite", admin_page(invite))
    add.add_post(f"/agents/{ID}/active", admin_page(set_active))
    add.add_post(f"/agents/{ID}/role", admin_page(set_role))
    add.add_post(f"/agents/{ID}/capacity", admin_page(set_capacity))
    add.add_get("/settings", admin_page(lists))
    add.add_post("/settings/canned", admin_page(add_canned))
    add.add_post(f"/settings/canned/{ID}/delete", admin_page(delete_canned))
    add.add_post("/settings/reasons", admin_page(add_reason))
    add.add_post(f"/settings/reasons/{ID}/retire", admin_page(retire_reason))
    add.add_get("/audit", admin_page(audit))
    add.add_get("/webhooks", admin_page(webhooks))
    add.add_post("/webhooks", admin_page(add_webhook))
    add.add_get(f"/webhooks/{ID}", admin_page(webhook_log))
    add.add_post(f"/webhooks/{ID}/active", admin_page(webhook_active))


def _desk(request: web.Request) -> Desk:
    return request.config_dict[DESK]


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {key: str(value) for key, value in form.items()}


async def team(request: web.Request) -> web.Response:
    session = await get_session(request)
    link = session.pop("invite_link", None)
    return pages(request).render(
        request,
        "agents.html",
        agents=await accounts(request).agents(),
        invites=await accounts(request).invites(),
        link=link,
        flash=await take_flash(request),
    )


async def invite(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    _, token = await accounts(request).invite(
        email=form.get("email", ""),
        name=form.get("name", ""),
        admin=form.get("admin") == "1",
        who=who(request),
    )
    base = request.config_dict[SETTINGS].public_url or f"{request.scheme}://{request.host}"
    session = await get_session(request)
    session["invite_link"] = f"{base}/console/invite/{token}"
    raise web.HTTPSeeOther("/console/agents")


async def set_active(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await accounts(request).set_active(_id(request), form.get("active") == "1", who(request))
    raise web.HTTPSeeOther("/console/agents")


async def set_role(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await accounts(request).set_role(_id(request), form.get("admin") == "1", who(request))
    raise web.HTTPSeeOther("/console/agents")


async def set_capacity(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    value = form.get("capacity", "")
    if not value.isdigit():
        raise InvalidInput("capacity", code="capacity")
    await accounts(request).set_capacity(_id(request), int(value), who(request))
    raise web.HTTPSeeOther("/console/agents")


async def lists(request: web.Request) -> web.Response:
    return pages(request).render(
        request,
        "settings.html",
        canned=await _desk(request).canned_replies(),
        reasons=await _desk(request).close_reasons(),
        flash=await take_flash(request),
    )


async def add_canned(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await _desk(request).add_canned_reply(
        form.get("shortcut", ""), form.get("text", ""), who(request)
    )
    flash(await get_session(request), "Respuesta guardada.")
    raise web.HTTPSeeOther("/console/settings")


async def delete_canned(request: web.Request) -> web.StreamResponse:
    await _desk(request).delete_canned_reply(_id(request), who(request))
    raise web.HTTPSeeOther("/console/settings")


async def add_reason(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await _desk(request).add_close_reason(form.get("label", ""), who(request))
    raise web.HTTPSeeOther("/console/settings")


async def retire_reason(request: web.Request) -> web.StreamResponse:
    await _desk(request).retire_close_reason(_id(request), who(request))
    raise web.HTTPSeeOther("/console/settings")


async def audit(request: web.Request) -> web.Response:
    action = request.query.get("action") or None
    agent = request.query.get("agent", "")
    days = request.query.get("days", "7")
    since = utcnow() - timedelta(days=int(days) if days.isdigit() and int(days) <= 366 else 7)
    events, actions = await accounts(request).audit(
        action=action, agent_id=int(agent) if agent.isdigit() else None, since=since
    )
    names = {a.id: a.name for a in await accounts(request).agents()}
    return pages(request).render(
        request,
        "audit.html",
        events=events,
        actions=actions,
        names=names,
        action=action or "",
        agent_filter=agent,
        days=days,
    )


async def webhooks(request: web.Request) -> web.Response:
    return pages(request).render(
        request,
        "webhooks.html",
        endpoints=await request.config_dict[ENDPOINTS].all(),
        events=EVENTS,
        flash=await take_flash(request),
    )


async def add_webhook(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    events = [str(e) for e in form.getall("event", [])]
    endpoint = await request.config_dict[ENDPOINTS].add(
        str(form.get("url", "")), events, who(request).agent_id
    )
    flash(
        await get_session(request),
        "Webhook agregado. Su secreto para verificar la firma está en su registro.",
    )
    raise web.HTTPSeeOther(f"/console/webhooks/{endpoint.id}")


async def webhook_log(request: web.Request) -> web.Response:
    endpoint, deliveries = await request.config_dict[ENDPOINTS].log(_id(request))
    return pages(request).render(
        request,
        "webhook.html",
        endpoint=endpoint,
        deliveries=deliveries,
        flash=await take_flash(request),
    )


async def webhook_active(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await request.config_dict[ENDPOINTS].set_active(
        _id(request), form.get("active") == "1", who(request).agent_id
    )
    raise web.HTTPSeeOther(f"/console/webhooks/{_id(request)}")
