"""The CRM's pages: the lead list (filters, saved filters, bulk actions, CSV export), a lead's
page (record, score explained, deals, activities, notes, timeline), "Mis tareas" and the board."""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp_session import get_session

from bot.core.crm import LOGGED, CallResult, lead_filter
from bot.core.errors import InvalidInput
from bot.core.model import Tier
from bot.crm.leads import Records
from bot.web.console.auth import (
    AGENT,
    accounts,
    address,
    admin_page,
    flash,
    pages,
    take_flash,
    wants_json,
)
from bot.web.keys import DUPLICATES, PIPELINES, RECORDS

ID = "{id:[0-9]{1,18}}"


def register(app: web.Application) -> None:
    add = app.router
    add.add_get("/leads", lead_list)
    add.add_get("/leads/export.csv", export)
    add.add_post("/leads/bulk", bulk)
    add.add_get("/leads/duplicates", duplicates)
    add.add_post(f"/leads/{ID}/merge", admin_page(merge))
    add.add_post("/leads/filters", save_filter)
    add.add_post(f"/leads/filters/{ID}/delete", delete_filter)
    add.add_get(f"/leads/{ID}", lead_page)
    add.add_post(f"/leads/{ID}", edit)
    add.add_post(f"/leads/{ID}/stage", move)
    add.add_post(f"/leads/{ID}/activities", log_activity)
    add.add_post(f"/leads/{ID}/deals", add_deal)
    add.add_post(f"/deals/{ID}/win", win_deal)
    add.add_post(f"/deals/{ID}/lose", lose_deal)
    add.add_post(f"/appointments/{ID}/outcome", appointment_outcome)
    add.add_get("/tasks", my_tasks)
    add.add_get("/pipelines", admin_page(pipelines_page))
    add.add_post(f"/stages/{ID}", admin_page(edit_stage))
    add.add_post("/lost-reasons", admin_page(add_lost_reason))
    add.add_post("/custom-fields", admin_page(add_custom_field))
    add.add_post(f"/lost-reasons/{ID}/retire", admin_page(retire_lost_reason))
    add.add_get("/board", board)
    add.add_post("/board/move", board_move)


def _records(request: web.Request) -> Records:
    return request.config_dict[RECORDS]


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {key: str(value) for key, value in form.items() if isinstance(value, str)}


async def lead_list(request: web.Request) -> web.Response:
    f = lead_filter(request.query, tiers=tuple(Tier))
    records = _records(request)
    found = await records.find(f)
    pipelines = await records.pipelines.all()
    return pages(request).render(
        request,
        "leads.html",
        found=found,
        f=f,
        pipelines=pipelines,
        tiers=list(Tier),
        sources=await records.sources(),
        agents=[a for a in await accounts(request).agents() if a.active],
        saved=await records.saved_filters(request[AGENT]),
        flash=await take_flash(request),
    )


async def export(request: web.Request) -> web.Response:
    f = lead_filter(request.query, tiers=tuple(Tier))
    text = await _records(request).export(f, request[AGENT], address(request))
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="prospectos.csv"',
            "Cache-Control": "no-store",
        },
    )


async def bulk(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    ids = [int(v) for v in form.getall("lead", []) if isinstance(v, str) and v.isdigit()]
    if not ids:
        raise InvalidInput("choose leads", code="bulk_none")
    owner = str(form.get("owner", ""))
    tag = str(form.get("tag", ""))
    changed = await _records(request).bulk(
        ids,
        request[AGENT],
        owner_id=int(owner) if owner.isdigit() else None,
        tag=tag or None,
    )
    flash(await get_session(request), f"Prospectos actualizados: {changed}.")
    back = str(form.get("back", ""))
    raise web.HTTPSeeOther("/console/leads" + (f"?{back}" if back else ""))


async def save_filter(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    query = form.get("query", "")
    f = lead_filter(dict(parse_qsl(query)), tiers=tuple(Tier))
    await _records(request).save_filter(request[AGENT], form.get("name", ""), f)
    flash(await get_session(request), "Filtro guardado.")
    raise web.HTTPSeeOther("/console/leads?" + f.query())


async def delete_filter(request: web.Request) -> web.StreamResponse:
    await _records(request).delete_filter(request[AGENT], _id(request))
    raise web.HTTPSeeOther("/console/leads")


async def lead_page(request: web.Request) -> web.Response:
    page = await _records(request).page(_id(request), request[AGENT])
    return pages(request).render(
        request,
        "lead.html",
        page=page,
        lead=page.lead,
        agents=[a for a in await accounts(request).agents() if a.active],
        kinds=list(LOGGED),
        call_results=list(CallResult),
        tz=pages(request).tz,
        flash=await take_flash(request),
    )


async def _back(
    request: web.Request, message: str | None = None, back: str = ""
) -> web.StreamResponse:
    """JSON for a script, else back to the lead page (or the conversation the form was on)."""
    if wants_json(request):
        return web.json_response({"ok": True, "message": message})
    if message:
        flash(await get_session(request), message)
    if _CONVERSATION.fullmatch(back):
        raise web.HTTPSeeOther(back)
    raise web.HTTPSeeOther(f"/console/leads/{_id(request)}")


_CONVERSATION = re.compile(r"/console/conversations/[0-9]{1,18}")


async def edit(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    changes: dict[str, object] = {k: form[k] for k in form if k in _FIELDS}
    custom = {k.removeprefix("custom:"): v for k, v in form.items() if k.startswith("custom:")}
    if custom:
        changes["custom"] = custom
    if "owner" in form:
        owner = form["owner"]
        if owner and not owner.isdigit():
            raise InvalidInput("owner", code="owner")
        changes["owner_id"] = int(owner) if owner else None
    if "referred_by" in form:
        referrer = form["referred_by"].strip().removeprefix("#")
        if referrer and not referrer.isdigit():
            raise InvalidInput("referred_by", code="referred_by")
        changes["referred_by_id"] = int(referrer) if referrer else None
    await _records(request).update(_id(request), request[AGENT], changes)
    return await _back(request, "Cambios guardados.")


_FIELDS = ("name", "email", "address", "campaign", "source", "tags")


async def move(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await _records(request).move(
        _id(request), request[AGENT], form.get("stage", ""), form.get("reason") or None
    )
    return await _back(request, "Etapa cambiada.")


def _when(value: str, request: web.Request) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=pages(request).tz)
    except ValueError:
        raise InvalidInput("a day and an hour", code="when") from None


async def log_activity(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    duration = form.get("duration_minutes", "")
    if duration and not duration.isdigit():
        raise InvalidInput("duration", code="duration")
    kind = form.get("kind", "")
    await _records(request).log(
        _id(request),
        request[AGENT],
        kind=kind,
        body=form.get("body", ""),
        occurred_at=_when(form.get("occurred_at", ""), request),
        result=form.get("result") or None,
        duration_minutes=int(duration) if duration else None,
        place=form.get("place") or None,
        next_steps=form.get("next_steps") or None,
    )
    message = "Nota guardada." if kind == "note" else "Actividad registrada."
    return await _back(request, message, form.get("back", ""))


async def add_deal(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await _records(request).add_deal(
        _id(request),
        request[AGENT],
        product=form.get("product", ""),
        amount=form.get("amount", ""),
        currency=form.get("currency", ""),
    )
    return await _back(request, "Negocio agregado.")


async def _closed(request: web.Request, *, won: bool) -> web.StreamResponse:
    form = await _form(request)
    deal = await _records(request).close_deal(
        _id(request), request[AGENT], won=won, reason=form.get("reason") or None
    )
    flash(await get_session(request), "Negocio ganado." if won else "Negocio perdido.")
    raise web.HTTPSeeOther(f"/console/leads/{deal.lead_id}")


async def win_deal(request: web.Request) -> web.StreamResponse:
    return await _closed(request, won=True)


async def lose_deal(request: web.Request) -> web.StreamResponse:
    return await _closed(request, won=False)


async def my_tasks(request: web.Request) -> web.Response:
    tasks = await _records(request).my_tasks(request[AGENT])
    return pages(request).render(request, "tasks.html", tasks=tasks)


async def board(request: web.Request) -> web.Response:
    records = _records(request)
    spec, columns = await records.board(request.query.get("pipeline") or None)
    return pages(request).render(
        request,
        "board.html",
        spec=spec,
        columns=columns,
        pipelines=await records.pipelines.all(),
        reasons=[r.label for r in await records.pipelines.lost_reasons()],
        flash=await take_flash(request),
    )


async def board_move(request: web.Request) -> web.StreamResponse:
    """A card dropped on a column (fetch, JSON answer) or the fallback form (a redirect)."""
    form = await _form(request)
    lead = form.get("lead", "")
    if not lead.isdigit():
        raise InvalidInput("lead", code="no_lead")
    stage = form.get("stage", "")
    await _records(request).move(int(lead), request[AGENT], stage, form.get("reason") or None)
    if wants_json(request):
        return web.json_response({"ok": True, "lead": int(lead), "stage": stage})
    flash(await get_session(request), "Etapa cambiada.")
    pipeline = form.get("pipeline", "")
    raise web.HTTPSeeOther("/console/board" + (f"?pipeline={pipeline}" if pipeline else ""))


async def duplicates(request: web.Request) -> web.Response:
    pairs = await request.config_dict[DUPLICATES].pairs()
    return pages(request).render(
        request, "duplicates.html", pairs=pairs, flash=await take_flash(request)
    )


async def merge(request: web.Request) -> web.StreamResponse:
    """Admins: merge the lead named in the form into this one."""
    form = await _form(request)
    other = form.get("other", "")
    if not other.isdigit():
        raise InvalidInput("other", code="no_lead")
    await request.config_dict[DUPLICATES].merge(
        _id(request), int(other), agent_id=request[AGENT].id
    )
    flash(await get_session(request), f"Prospecto {other} fusionado en este.")
    raise web.HTTPSeeOther(f"/console/leads/{_id(request)}")


async def pipelines_page(request: web.Request) -> web.Response:
    """Admins: the stages' names and cadences, and the reasons for losing."""
    service = request.config_dict[PIPELINES]
    return pages(request).render(
        request,
        "pipelines.html",
        pipelines=await service.all(),
        stage_ids=await service.stage_ids(),
        reasons=await service.lost_reasons(),
        fields=await _records(request).custom_fields(),
        flash=await take_flash(request),
    )


async def edit_stage(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    cadence = form.get("cadence_days", "").strip()
    if cadence and not cadence.isdigit():
        raise InvalidInput("cadence", code="cadence")
    await request.config_dict[PIPELINES].edit_stage(
        _id(request),
        name=form.get("name", ""),
        cadence_days=int(cadence) if cadence else None,
        agent_id=request[AGENT].id,
    )
    flash(await get_session(request), "Etapa guardada.")
    raise web.HTTPSeeOther("/console/pipelines")


async def add_lost_reason(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await request.config_dict[PIPELINES].add_lost_reason(form.get("label", ""), request[AGENT].id)
    raise web.HTTPSeeOther("/console/pipelines")


async def retire_lost_reason(request: web.Request) -> web.StreamResponse:
    await request.config_dict[PIPELINES].retire_lost_reason(_id(request), request[AGENT].id)
    raise web.HTTPSeeOther("/console/pipelines")


async def appointment_outcome(request: web.Request) -> web.StreamResponse:
    """The lead came (form attended=1) or did not (attended=0)."""
    form = await _form(request)
    attended = form.get("attended") == "1"
    appointment = await _records(request).appointment_outcome(
        _id(request), request[AGENT], attended=attended
    )
    flash(await get_session(request), "Asistió a la cita." if attended else "No asistió.")
    raise web.HTTPSeeOther(f"/console/leads/{appointment.lead_id}")


async def add_custom_field(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    await _records(request).add_custom_field(
        request[AGENT],
        label=form.get("label", ""),
        kind=form.get("kind", ""),
        choices=form.get("choices", "").split(","),
    )
    flash(await get_session(request), "Campo agregado.")
    raise web.HTTPSeeOther("/console/pipelines")
