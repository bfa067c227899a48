"""The agents' pages: the queue, a conversation, their own, search, and their profile."""

from __future__ import annotations

import json
from datetime import datetime

from aiohttp import web
from aiohttp_session import get_session

from bot.core.errors import InvalidInput, MediaUnavailable, NotFound
from bot.core.model import AppointmentKind, ConversationState
from bot.desk.agenda import Agenda
from bot.desk.handoff import ConversationPage, Desk
from bot.web.console.auth import AGENT, accounts, address, flash, pages, take_flash, who
from bot.web.keys import (
    AGENDA,
    DESK,
    MEDIA,
    PIPELINES,
    RECORDS,
    SETTINGS,
    TELEGRAM_BOT,
    UNDERSTANDING,
)

ID = "{id:[0-9]{1,18}}"


def register(app: web.Application) -> None:
    add = app.router
    add.add_get("/", queue)
    add.add_get("/queue/rows", queue_rows)
    add.add_get(f"/conversations/{ID}", conversation)
    add.add_get(f"/conversations/{ID}/messages", messages)
    add.add_post(f"/conversations/{ID}/claim", claim)
    add.add_post(f"/conversations/{ID}/reply", reply)
    add.add_post(f"/conversations/{ID}/handback", hand_back)
    add.add_post(f"/conversations/{ID}/close", close)
    add.add_post(f"/conversations/{ID}/transfer", transfer)
    add.add_post(f"/conversations/{ID}/labels", labels)
    add.add_post(f"/conversations/{ID}/appointments", book)
    add.add_post(f"/conversations/{ID}/appointments/{{appointment:[0-9]{{1,18}}}}/cancel", cancel)
    add.add_post(f"/conversations/{ID}/appointments/{{appointment:[0-9]{{1,18}}}}/move", move)
    add.add_post(f"/messages/{ID}/resend", resend)
    add.add_get(f"/messages/{ID}/media/{{n:[0-9]{{1,3}}}}", media)
    add.add_get("/mine", mine)
    add.add_get("/search", search)
    add.add_get("/me", me)
    add.add_post("/me/available", set_available)
    add.add_post("/me/telegram", link_telegram)
    add.add_post("/me/password", change_password)


def _desk(request: web.Request) -> Desk:
    return request.config_dict[DESK]


def _agenda(request: web.Request) -> Agenda:
    return request.config_dict[AGENDA]


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


def _reason_label(request: web.Request, reason: str) -> str:
    """Why a conversation was handed off, in words (the scripts' handoff.reason.* texts)."""
    understanding = request.config_dict[UNDERSTANDING]
    try:
        return understanding.replies(f"handoff.reason.{reason}")[0]
    except (KeyError, IndexError):
        return reason


async def queue(request: web.Request) -> web.Response:
    entries = await _desk(request).queue()
    return pages(request).render(
        request,
        "queue.html",
        entries=entries,
        reason=lambda r: _reason_label(request, r),
        flash=await take_flash(request),
    )


async def queue_rows(request: web.Request) -> web.Response:
    """The queue's rows alone: what the page swaps in when the queue changes."""
    entries = await _desk(request).queue()
    return pages(request).render(
        request, "_queue_rows.html", entries=entries, reason=lambda r: _reason_label(request, r)
    )


async def conversation(request: web.Request) -> web.Response:
    desk = _desk(request)
    # Taken before the page is read: the live stream starts from it, so a message that
    # arrives while the page loads (before its stream connects) still refreshes it.
    seen = await desk.fingerprint(_id(request))
    page = await desk.page(_id(request))
    agents = [a for a in await accounts(request).agents() if a.active]
    canned = await desk.canned_replies()
    values = {
        "nombre": (page.lead.name or "").split(" ")[0],
        "asesor": request[AGENT].name,
        **{k: v for k, v in desk.business.items() if k != "asesor"},
    }
    suggestions = [
        {"shortcut": reply.shortcut, "text": _fill(reply.text, values)} for reply in canned
    ]
    return pages(request).render(
        request,
        "conversation.html",
        page=page,
        stage=await request.config_dict[PIPELINES].stage_name(page.lead),
        seen=seen,
        mine=_mine(request, page),
        agents=agents,
        reasons=await desk.close_reasons(),
        kinds=list(AppointmentKind),
        canned=json.dumps(suggestions, ensure_ascii=False),
        notes=await request.config_dict[RECORDS].notes(page.lead.id),
        reason=lambda r: _reason_label(request, r),
        flash=await take_flash(request),
        tz=pages(request).tz,
        now=datetime.now(pages(request).tz),
    )


async def messages(request: web.Request) -> web.Response:
    """The history alone: what the page swaps in when something in it changes."""
    page = await _desk(request).page(_id(request))
    return pages(request).render(request, "_messages.html", page=page)


def _mine(request: web.Request, page: ConversationPage) -> bool:
    return (
        page.conversation.state == ConversationState.AGENT
        and page.conversation.agent_id == request[AGENT].id
    )


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {key: str(value) for key, value in form.items()}


def _back(request: web.Request, message: str | None = None) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/console/conversations/{_id(request)}")


async def _done(request: web.Request, message: str | None = None) -> web.StreamResponse:
    """After an action: JSON for the page's script, else back to the conversation."""
    if request.headers.get("X-CSRF-Token"):
        return web.json_response({"ok": True, "message": message})
    if message:
        flash(await get_session(request), message)
    raise _back(request)


async def claim(request: web.Request) -> web.StreamResponse:
    await _desk(request).claim(_id(request), request[AGENT], address(request))
    return await _done(request)


async def reply(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await _desk(request).reply(_id(request), request[AGENT], form.get("text", ""))
    return await _done(request)


async def hand_back(request: web.Request) -> web.StreamResponse:
    await _desk(request).hand_back(_id(request), request[AGENT], address(request))
    return await _done(request, "La conversación volvió al bot.")


async def close(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await _desk(request).close(
        _id(request), request[AGENT], form.get("reason", ""), address(request)
    )
    return await _done(request, "Conversación cerrada.")


async def transfer(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    target = form.get("agent", "")
    if not target.isdigit():
        raise InvalidInput("choose an agent", code="transfer_target")
    await _desk(request).transfer(
        _id(request), request[AGENT], int(target), form.get("reason", ""), address(request)
    )
    return await _done(request, "Conversación transferida.")


async def labels(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await _desk(request).set_labels(_id(request), request[AGENT], form.get("labels", "").split(","))
    return await _done(request)


async def book(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    tz = pages(request).tz
    try:
        at = datetime.fromisoformat(form.get("when", "")).replace(tzinfo=tz)
    except ValueError:
        raise InvalidInput("a day and an hour", code="when") from None
    booked = await _agenda(request).book(_id(request), at, form.get("kind", "call"), request[AGENT])
    if booked.appointment is None:
        options = ", ".join(pages(request).moment(slot) for slot in booked.alternatives)
        message = "Ese horario no está libre." + (f" Libres cerca: {options}." if options else "")
        return await _done(request, message)
    return await _done(
        request, f"Cita agendada: {pages(request).moment(booked.appointment.starts_at)}."
    )


def _when(request: web.Request, form: dict[str, str]) -> datetime:
    try:
        return datetime.fromisoformat(form.get("when", "")).replace(tzinfo=pages(request).tz)
    except ValueError:
        raise InvalidInput("a day and an hour", code="when") from None


async def move(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    moved = await _agenda(request).move(
        int(request.match_info["appointment"]), _when(request, form), request[AGENT]
    )
    if moved.appointment is None:
        options = ", ".join(pages(request).moment(slot) for slot in moved.alternatives)
        return await _done(
            request,
            "Ese horario no está libre." + (f" Libres cerca: {options}." if options else ""),
        )
    return await _done(
        request, f"Cita movida a {pages(request).moment(moved.appointment.starts_at)}."
    )


async def cancel(request: web.Request) -> web.StreamResponse:
    await _agenda(request).cancel(int(request.match_info["appointment"]), request[AGENT])
    return await _done(request, "Cita cancelada.")


async def resend(request: web.Request) -> web.StreamResponse:
    conversation_id = await _desk(request).resend_message(_id(request), request[AGENT])
    if request.headers.get("X-CSRF-Token"):
        return web.json_response({"ok": True})
    raise web.HTTPSeeOther(
        f"/console/conversations/{conversation_id}" if conversation_id else "/console/"
    )


async def media(request: web.Request) -> web.StreamResponse:
    channel, ref = await _desk(request).media(_id(request), int(request.match_info["n"]))
    source = request.config_dict[MEDIA].get(channel)
    if source is None:
        raise NotFound("media cannot be fetched here", code="generic")
    try:
        content = await source.fetch(ref)
    except MediaUnavailable as exc:
        return web.Response(status=exc.status, text=exc.reason)
    return web.Response(
        body=content.data,
        content_type=content.content_type.split(";")[0],
        headers={
            "Cache-Control": "private, max-age=300",
            # A file a stranger sent is shown, never run as a page of this site.
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'",
            "Content-Disposition": "inline",
        },
    )


async def mine(request: web.Request) -> web.Response:
    held = await _desk(request).mine(request[AGENT])
    return pages(request).render(request, "mine.html", conversations=held)


async def search(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()[:200]
    hits = await _desk(request).search(query) if query else []
    return pages(request).render(request, "search.html", query=query, hits=hits)


async def me(request: web.Request) -> web.Response:
    session = await get_session(request)
    code = session.pop("telegram_code", None)
    settings = request.config_dict[SETTINGS]
    return pages(request).render(
        request,
        "me.html",
        code=code,
        telegram=settings.telegram.enabled,
        bot=_bot_username(request),
        flash=await take_flash(request),
    )


def _bot_username(request: web.Request) -> str | None:
    """The bot's @username, for the t.me link (known once the bot said getMe)."""
    bot = request.config_dict.get(TELEGRAM_BOT)
    try:
        return bot.username if bot is not None else None
    except RuntimeError:  # PTB: not initialised (Telegram was unreachable at start)
        return None


async def set_available(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await accounts(request).set_available(request[AGENT].id, form.get("available") == "1")
    back = form.get("back", "")
    raise web.HTTPSeeOther(back if back.startswith("/console/") else "/console/me")


async def link_telegram(request: web.Request) -> web.StreamResponse:
    code = await accounts(request).telegram_code(request[AGENT].id)
    session = await get_session(request)
    session["telegram_code"] = code
    raise web.HTTPSeeOther("/console/me")


async def change_password(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    password = form.get("password", "")
    if password != form.get("password2") or len(password) < 10:
        raise InvalidInput("password", code="password")
    await accounts(request).set_password(request[AGENT].id, password, who(request))
    # The old sessions ended with the new password; this one starts again.
    session = await get_session(request)
    session.invalidate()
    raise web.HTTPSeeOther("/console/login")
