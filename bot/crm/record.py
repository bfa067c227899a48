"""What the CRM keeps of everything that happens to a lead, written inside the caller's unit
of work: the stage history, activities, and the score's moves (each rule that moved it).

The engine, the follow-up and the CRM's own services call these, so a lead's record is the same
whichever path changed it.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from bot.core.crm import ActivityKind
from bot.core.scoring import UNANSWERED, UNANSWERED_COOLED, Contribution, Scoring
from storage.models import Activity, Lead, ScoreEvent, StageChange
from storage.uow import UnitOfWork


def activity(
    uow: UnitOfWork,
    lead_id: int,
    kind: ActivityKind | str,
    now: datetime,
    *,
    agent_id: int | None = None,
    body: str = "",
    occurred_at: datetime | None = None,
    result: str | None = None,
    duration_minutes: int | None = None,
    place: str | None = None,
    details: dict[str, Any] | None = None,
) -> Activity:
    """An activity with who (None: the bot or the system) and when."""
    row = Activity(
        lead_id=lead_id,
        agent_id=agent_id,
        kind=str(kind),
        occurred_at=occurred_at or now,
        created_at=now,
        result=result,
        duration_minutes=duration_minutes,
        place=place,
        body=body,
        details=details or {},
    )
    uow.crm.record_activity(row)
    return row


def stage_entered(
    uow: UnitOfWork,
    lead: Lead,
    to: str,
    now: datetime,
    *,
    agent_id: int | None = None,
    reason: str | None = None,
) -> None:
    """The lead enters stage `to` (also its first stage, when it is created): the stage, when,
    a `stage_changes` row and an activity."""
    from_stage = lead.stage if lead.stage_changed_at is not None else None
    lead.stage = to
    lead.stage_changed_at = now
    uow.crm.record_stage_change(
        StageChange(
            lead_id=lead.id,
            pipeline=lead.pipeline,
            from_stage=from_stage,
            to_stage=to,
            agent_id=agent_id,
            reason=reason,
            at=now,
        )
    )
    if from_stage is not None:
        activity(
            uow,
            lead.id,
            ActivityKind.STAGE,
            now,
            agent_id=agent_id,
            details={"from": from_stage, "to": to, **({"reason": reason} if reason else {})},
        )


def rescore(
    uow: UnitOfWork,
    lead: Lead,
    scoring: Scoring,
    rule: str,
    now: datetime,
    points: int | None = None,
) -> Contribution | None:
    """Apply one scoring rule: the score and tier move, and the move is kept (what it really
    moved, so the initial score plus every event is the score)."""
    moved = scoring.apply(lead.score, rule, points)
    if moved is None:
        return None
    lead.score, lead.tier = moved.score, moved.tier
    uow.crm.record_score(ScoreEvent(lead_id=lead.id, rule=rule, points=moved.points, at=now))
    return moved


def cool(uow: UnitOfWork, lead: Lead, scoring: Scoring, rule: str, now: datetime) -> None:
    """Down to the top of the cold tier at most, kept as the rule's move."""
    rescore(uow, lead, scoring, rule, now, scoring.cooled(lead.score) - lead.score)


async def unanswered(uow: UnitOfWork, lead: Lead, scoring: Scoring, now: datetime) -> None:
    """A follow-up attempt went unanswered; seed 002: the third within two weeks makes the
    lead cold. Every attempt is kept, even one that moves nothing (a score already at 1)."""
    if rescore(uow, lead, scoring, UNANSWERED, now) is None:
        uow.crm.record_score(ScoreEvent(lead_id=lead.id, rule=UNANSWERED, points=0, at=now))
    since = now - timedelta(days=scoring.unanswered_days)
    if await uow.crm.count_scored(lead.id, UNANSWERED, since) >= scoring.unanswered_attempts:
        cool(uow, lead, scoring, UNANSWERED_COOLED, now)


async def created(uow: UnitOfWork, lead: Lead, scoring: Scoring, now: datetime) -> None:
    """A new lead: its first stage entered, a 'created' activity, its source's points."""
    stage_entered(uow, lead, lead.stage, now)
    activity(uow, lead.id, ActivityKind.CREATED, now, details={"source": lead.source})
    if lead.source:
        rescore(uow, lead, scoring, f"source:{lead.source}", now)
    await emit(uow, "lead.created", {"lead": lead_data(lead)}, now)


async def emit(uow: UnitOfWork, event: str, data: dict[str, Any], now: datetime) -> None:
    """Stage the event for every endpoint that wants it, in the caller's transaction (sent
    after the commit by the webhook dispatcher)."""
    body = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": event,
            "created_at": now.isoformat(),
            "data": data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    await uow.webhooks.stage_for_subscribers(event, body, now)


def lead_data(lead: Lead) -> dict[str, Any]:
    """What an event says about a lead (no message text)."""
    return {
        "id": lead.id,
        "name": lead.name,
        "email": lead.email,
        "source": lead.source,
        "pipeline": lead.pipeline,
        "stage": lead.stage,
        "score": lead.score,
        "tier": lead.tier,
        "owner_id": lead.owner_id,
    }
