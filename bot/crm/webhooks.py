"""Admins' outbound webhook endpoints: add (a secret made for it), pause, and the delivery log."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from urllib.parse import urlsplit

from bot.core.errors import InvalidInput, NotFound
from bot.core.model import utcnow
from bot.core.webhooks import EVENTS
from storage.db import Database
from storage.models import WebhookDelivery, WebhookEndpoint
from storage.uow import UnitOfWork


class Endpoints:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> list[WebhookEndpoint]:
        async with UnitOfWork(self.db) as uow:
            return await uow.webhooks.endpoints()

    async def add(self, url: str, events: Sequence[str], agent_id: int | None) -> WebhookEndpoint:
        """A new endpoint with its own signing secret.

        Raises:
            InvalidInput: not an http(s) URL (code "webhook_url"), no known event
                (code "webhook_events").
        """
        url = url.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 500:
            raise InvalidInput("url must be an http(s) URL", code="webhook_url")
        chosen = [e for e in EVENTS if e in events]
        if not chosen or len(chosen) != len(set(events)):
            raise InvalidInput(f"events are some of {', '.join(EVENTS)}", code="webhook_events")
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            endpoint = await uow.webhooks.add_endpoint(
                WebhookEndpoint(
                    url=url,
                    secret=f"whsec_{secrets.token_urlsafe(24)}",
                    events=chosen,
                    active=True,
                    created_at=now,
                )
            )
            uow.audit.record(
                "webhook_added",
                agent_id=agent_id,
                subject=f"webhook:{endpoint.id}",
                detail={"host": parts.netloc, "events": chosen},
                at=now,
            )
            await uow.commit()
            return endpoint

    async def set_active(self, endpoint_id: int, active: bool, agent_id: int | None) -> None:
        async with UnitOfWork(self.db) as uow:
            endpoint = await uow.webhooks.endpoint(endpoint_id)
            if endpoint is None:
                raise NotFound(f"no webhook {endpoint_id}", code="no_webhook")
            endpoint.active = active
            uow.audit.record(
                "webhook_activated" if active else "webhook_paused",
                agent_id=agent_id,
                subject=f"webhook:{endpoint_id}",
                at=utcnow(),
            )
            await uow.commit()

    async def log(self, endpoint_id: int) -> tuple[WebhookEndpoint, list[WebhookDelivery]]:
        async with UnitOfWork(self.db) as uow:
            endpoint = await uow.webhooks.endpoint(endpoint_id)
            if endpoint is None:
                raise NotFound(f"no webhook {endpoint_id}", code="no_webhook")
            return endpoint, await uow.webhooks.deliveries(endpoint_id)
