"""Outbound webhooks' rows: endpoints, and deliveries claimed, sent and settled like the
outbox's (due rows under a lease; SKIP LOCKED lets several processes share the work)."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import String, Table, bindparam, insert, literal, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.base import Executable

from storage import folded
from storage.models import WebhookDelivery, WebhookEndpoint

PENDING, SENDING, DONE, FAILED = "pending", "sending", "done", "failed"

_ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
_DELIVERIES = cast(Table, WebhookDelivery.__table__)


@folded.in_any_order
def _stage_for_subscribers(prefix: str) -> Executable:
    """PostgreSQL: one delivery per active endpoint that wants the event, without reading
    the endpoints first (most installations have none: then it writes nothing). Two events
    of one turn may be staged in one statement: their deliveries are sent concurrently and
    retried apart, so a subscriber never had their order to rely on."""
    event = bindparam(prefix + "event", type_=String)
    now = bindparam(prefix + "now", type_=_DELIVERIES.c.created_at.type)
    return insert(_DELIVERIES).from_select(
        ["endpoint_id", "event", "body", "state", "attempts", "next_attempt_at", "created_at"],
        select(
            _ENDPOINTS.c.id,
            event,
            bindparam(prefix + "body", type_=_DELIVERIES.c.body.type),
            literal(PENDING),
            literal(0),
            now,
            now,
        ).where(
            _ENDPOINTS.c.active.is_(True),
            type_coerce(_ENDPOINTS.c.events, JSONB).has_key(event),
        ),
    )


class Webhooks:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def endpoints(self) -> list[WebhookEndpoint]:
        statement = select(WebhookEndpoint).order_by(WebhookEndpoint.id)
        return list((await self.session.execute(statement)).scalars())

    async def endpoint(self, endpoint_id: int) -> WebhookEndpoint | None:
        return await self.session.get(WebhookEndpoint, endpoint_id)

    async def add_endpoint(self, endpoint: WebhookEndpoint) -> WebhookEndpoint:
        self.session.add(endpoint)
        await self.session.flush()
        return endpoint

    async def subscribed(self, event: str) -> list[WebhookEndpoint]:
        """Active endpoints that want this event (the list is short: filtered here)."""
        statement = select(WebhookEndpoint).where(WebhookEndpoint.active.is_(True))
        found = (await self.session.execute(statement)).scalars()
        return [e for e in found if event in e.events]

    def stage(self, delivery: WebhookDelivery) -> None:
        self.session.add(delivery)

    async def stage_for_subscribers(self, event: str, body: str, now: datetime) -> None:
        """Stage the event's delivery to every active endpoint that wants it. On PostgreSQL
        one INSERT ... SELECT written with the unit of work's other changes (`storage.folded`);
        elsewhere the endpoints are read and a delivery added for each."""
        if self.session.get_bind().dialect.name == "postgresql":
            parameters = {"event": event, "body": body, "now": now}
            await folded.defer(self.session, _stage_for_subscribers, parameters)
            return
        for endpoint in await self.subscribed(event):
            self.stage(
                WebhookDelivery(
                    endpoint_id=endpoint.id,
                    event=event,
                    body=body,
                    state=PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )

    async def claim_due(
        self, now: datetime, limit: int, lease_until: datetime
    ) -> list[tuple[WebhookDelivery, WebhookEndpoint]]:
        statement = (
            select(WebhookDelivery)
            .where(
                or_(
                    (WebhookDelivery.state == PENDING) & (WebhookDelivery.next_attempt_at <= now),
                    (WebhookDelivery.state == SENDING) & (WebhookDelivery.lease_until < now),
                )
            )
            .order_by(WebhookDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = list((await self.session.execute(statement)).scalars())
        claimed = []
        for row in rows:
            row.state, row.lease_until = SENDING, lease_until
            row.attempts += 1
            endpoint = await self.session.get(WebhookEndpoint, row.endpoint_id)
            if endpoint is not None:
                claimed.append((row, endpoint))
        await self.session.flush()
        return claimed

    async def get(self, delivery_id: int) -> WebhookDelivery | None:
        return await self.session.get(WebhookDelivery, delivery_id)

    async def deliveries(self, endpoint_id: int, limit: int = 100) -> list[WebhookDelivery]:
        statement = (
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars())
