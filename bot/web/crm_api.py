"""The CRM's JSON API under /api/ (same bearer tokens and roles as the rest of the API): leads
with the list's filters, a lead's record, changes, activities, deals, pipelines and stages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from bot.core.crm import lead_filter
from bot.core.model import Tier
from bot.core.wire import is_id
from bot.crm.leads import LeadPage, NextAction, Records
from bot.web.api import AGENT, ID, _body, admin_only
from bot.web.keys import PIPELINES, RECORDS
from storage.models import Activity, Deal, Lead


def register(api: web.Application) -> None:
    add = api.router
    add.add_get("/leads", leads)
    add.add_get(f"/leads/{ID}", lead)
    add.add_patch(f"/leads/{ID}", patch_lead)
    add.add_get(f"/leads/{ID}/activities", activities)
    add.add_post(f"/leads/{ID}/activities", add_activity)
    add.add_get(f"/leads/{ID}/deals", deals)
    add.add_post(f"/leads/{ID}/deals", add_deal)
    add.add_post(f"/deals/{ID}/win", win_deal)
    add.add_post(f"/deals/{ID}/lose", lose_deal)
    add.add_get("/pipelines", pipelines)
    add.add_patch(f"/stages/{ID}", admin_only(edit_stage))


def _records(request: web.Request) -> Records:
    return request.config_dict[RECORDS]


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


def _lead(lead: Lead) -> dict[str, Any]:
    return {
        "id": lead.id,
        "name": lead.name,
        "email": lead.email,
        "address": lead.address,
        "source": lead.source,
        "campaign": lead.campaign,
        "pipeline": lead.pipeline,
        "stage": lead.stage,
        "stage_changed_at": lead.stage_changed_at.isoformat() if lead.stage_changed_at else None,
        "lost_reason": lead.lost_reason,
        "score": lead.score,
        "tier": lead.tier,
        "owner_id": lead.owner_id,
        "referred_by_id": lead.referred_by_id,
        "tags": list(lead.tags),
        "custom": dict(lead.custom),
        "opted_out": lead.opted_out_at is not None,
        "first_contact_at": lead.first_contact_at.isoformat(),
        "last_activity_at": lead.last_activity_at.isoformat(),
    }


def _deal(deal: Deal) -> dict[str, Any]:
    return {
        "id": deal.id,
        "lead_id": deal.lead_id,
        "product": deal.product,
        "amount": str(deal.amount),
        "currency": deal.currency,
        "status": deal.status,
        "lost_reason": deal.lost_reason,
        "opened_at": deal.opened_at.isoformat(),
        "closed_at": deal.closed_at.isoformat() if deal.closed_at else None,
    }


def _activity(activity: Activity) -> dict[str, Any]:
    return {
        "id": activity.id,
        "kind": activity.kind,
        "agent_id": activity.agent_id,
        "occurred_at": activity.occurred_at.isoformat(),
        "created_at": activity.created_at.isoformat(),
        "result": activity.result,
        "duration_minutes": activity.duration_minutes,
        "place": activity.place,
        "body": activity.body,
        "details": activity.details,
    }


async def leads(request: web.Request) -> web.Response:
    """`?stage=&tier=&owner=&idle_days=&source=&tag=&created_from=&created_to=&q=&sort=
    &page=&per_page=` (owner=0: nobody's)."""
    f = lead_filter(request.query, tiers=tuple(Tier))
    found = await _records(request).find(f)
    return web.json_response(
        {
            "leads": [_lead(lead) for lead in found.leads],
            "total": found.total,
            "page": f.page,
            "per_page": f.per_page,
            "pages": found.pages,
        }
    )


def _page(page: LeadPage) -> dict[str, Any]:
    stage = page.pipeline.stage(page.lead.stage)
    return {
        **_lead(page.lead),
        "phones": page.phones,
        "stage_name": stage.name if stage else page.lead.stage,
        "editable": page.editable,
        "score_explained": page.score_lines,
        "deals": [_deal(d) for d in page.deals],
        "conversation_ids": page.conversation_ids,
        "duplicates": [d.id for d in page.duplicates],
        "objections": [
            {
                "intent": o.intent,
                "label": o.label,
                "count": o.count,
                "last_at": o.last_at.isoformat(),
            }
            for o in page.objections
        ],
        "next_action": _next(page.next_action),
        "referrals": [r.id for r in page.referrals],
    }


def _next(action: NextAction | None) -> dict[str, Any] | None:
    if action is None:
        return None
    return {
        "kind": action.kind,
        "at": action.at.isoformat(),
        "sequence": action.sequence,
        "step": action.step,
        "appointment_id": action.appointment_id,
        "appointment_kind": action.appointment_kind,
    }


async def lead(request: web.Request) -> web.Response:
    return web.json_response(_page(await _records(request).page(_id(request), request[AGENT])))


_PATCHABLE = (
    "name", "email", "address", "campaign", "source", "tags", "owner_id", "stage", "custom",
    "referred_by_id",
)  # fmt: skip


async def patch_lead(request: web.Request) -> web.Response:
    """Change fields (`name`, `email`, `address`, `campaign`, `source`, `tags`, `owner_id`,
    `custom` — {key: value} of the admins' custom fields —, `stage` with `reason` for lost
    stages, `referred_by_id` — the lead who referred this one, or null): the lead's owner and
    admins only (else 403)."""
    data = await _body(request)
    unknown = sorted(set(data) - {*_PATCHABLE, "reason"})
    if unknown:
        raise web.HTTPBadRequest(text=f"unknown fields: {', '.join(unknown)}")
    if "owner_id" in data and data["owner_id"] is not None and not is_id(data["owner_id"]):
        raise web.HTTPBadRequest(text="owner_id must be an agent id or null")
    referrer = data.get("referred_by_id")
    if referrer is not None and not is_id(referrer):
        raise web.HTTPBadRequest(text="referred_by_id must be a lead id or null")
    if "tags" in data and not (
        isinstance(data["tags"], list) and all(isinstance(t, str) for t in data["tags"])
    ):
        raise web.HTTPBadRequest(text="tags must be a list of strings")
    await _records(request).update(_id(request), request[AGENT], data)
    return await lead(request)


async def activities(request: web.Request) -> web.Response:
    found = await _records(request).activities(_id(request))
    return web.json_response({"activities": [_activity(a) for a in found]})


async def add_activity(request: web.Request) -> web.Response:
    """`{"kind": call|meeting|message|email|note, "body"?, "occurred_at"?, "result"?,
    "duration_minutes"?, "place"?, "next_steps"?}` → 201."""
    data = await _body(request)
    text_fields = ("kind", "body", "result", "place", "next_steps", "occurred_at")
    for name in text_fields:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise web.HTTPBadRequest(text=f"{name} must be a string")
    duration = data.get("duration_minutes")
    if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool)):
        raise web.HTTPBadRequest(text="duration_minutes must be an integer")
    occurred_at = None
    if data.get("occurred_at"):
        try:
            occurred_at = datetime.fromisoformat(data["occurred_at"])
        except ValueError:
            raise web.HTTPBadRequest(text="occurred_at must be ISO 8601 with an offset") from None
        if occurred_at.tzinfo is None:
            raise web.HTTPBadRequest(text="occurred_at must be ISO 8601 with an offset")
    activity_id = await _records(request).log(
        _id(request),
        request[AGENT],
        kind=data.get("kind") or "",
        body=data.get("body") or "",
        occurred_at=occurred_at,
        result=data.get("result"),
        duration_minutes=duration,
        place=data.get("place"),
        next_steps=data.get("next_steps"),
    )
    return web.json_response({"id": activity_id, "lead_id": _id(request)}, status=201)


async def deals(request: web.Request) -> web.Response:
    page = await _records(request).page(_id(request), request[AGENT])
    return web.json_response({"deals": [_deal(d) for d in page.deals]})


async def add_deal(request: web.Request) -> web.Response:
    """`{"product", "amount" (number or string), "currency" (3 letters)}` → 201."""
    data = await _body(request)
    amount = data.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float, str)):
        raise web.HTTPBadRequest(text="amount must be a number")
    product, currency = data.get("product"), data.get("currency")
    if not isinstance(product, str) or not isinstance(currency, str):
        raise web.HTTPBadRequest(text="product and currency must be strings")
    deal = await _records(request).add_deal(
        _id(request), request[AGENT], product=product, amount=str(amount), currency=currency
    )
    return web.json_response(_deal(deal), status=201)


async def win_deal(request: web.Request) -> web.Response:
    deal = await _records(request).close_deal(_id(request), request[AGENT], won=True)
    return web.json_response(_deal(deal))


async def lose_deal(request: web.Request) -> web.Response:
    """`{"reason"}`: one of the reasons for losing (else 400)."""
    data = await _body(request)
    reason = data.get("reason")
    if not isinstance(reason, str):
        raise web.HTTPBadRequest(text="reason must be one of the lost reasons")
    deal = await _records(request).close_deal(
        _id(request), request[AGENT], won=False, reason=reason
    )
    return web.json_response(_deal(deal))


async def pipelines(request: web.Request) -> web.Response:
    service = request.config_dict[PIPELINES]
    found = await service.all()
    stage_ids = await service.stage_ids()
    return web.json_response(
        {
            "default": service.default,
            "pipelines": [
                {
                    "key": p.key,
                    "name": p.name,
                    "stages": [
                        {
                            "id": stage_ids.get((p.key, s.key)),
                            "key": s.key,
                            "name": s.name,
                            "position": s.position,
                            "outcome": s.outcome,
                            "cadence_days": s.cadence_days,
                            "reason_required": s.reason_required,
                        }
                        for s in p.stages
                    ],
                }
                for p in found
            ],
            "lost_reasons": [r.label for r in await service.lost_reasons()],
        }
    )


async def edit_stage(request: web.Request) -> web.Response:
    """Admins: `{"name", "cadence_days"}` (null: no cadence)."""
    data = await _body(request)
    name, cadence = data.get("name"), data.get("cadence_days")
    if not isinstance(name, str):
        raise web.HTTPBadRequest(text="name must be a string")
    if cadence is not None and (not isinstance(cadence, int) or isinstance(cadence, bool)):
        raise web.HTTPBadRequest(text="cadence_days must be an integer or null")
    await request.config_dict[PIPELINES].edit_stage(
        _id(request), name=name, cadence_days=cadence, agent_id=request[AGENT].id
    )
    return web.json_response({"id": _id(request), "name": name.strip(), "cadence_days": cadence})
