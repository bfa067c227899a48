"""Sends the staged webhook deliveries: signed (HMAC-SHA256 with a timestamp, like Stripe's),
retried with the outbox's backoff until the endpoint answers 2xx, then never again; failed
after `outbox.max_attempts`. Rows are claimed under a lease, as the outbox's are, so a process
that dies mid-send hands its rows to the next one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from bot.core.errors import RetryLater
from bot.core.model import utcnow
from bot.core.webhooks import HEADER, signature
from bot.delivery.dispatcher import backoff
from bot.settings import OutboxSettings
from storage.db import Database, is_unavailable
from storage.uow import UnitOfWork
from storage.webhooks import DONE, FAILED, PENDING

log = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds an endpoint has to answer


class Poster(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST; the status code. Raises RetryLater when no answer came (network, timeout)."""
        ...


class WebhookDispatcher:
    def __init__(
        self,
        db: Database,
        poster: Poster,
        settings: OutboxSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.poster = poster
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            await self._task

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            sent = 0
            try:
                sent = await self.send_due()
            except Exception as exc:
                if is_unavailable(exc):
                    log.warning(
                        "webhooks_database_unavailable", extra={"error": type(exc).__name__}
                    )
                else:
                    log.exception("webhooks_failed")
            if sent and not self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_interval)

    async def send_due(self) -> int:
        """Claim the due deliveries, send each, settle it; how many were tried."""
        now = self.clock()
        lease = now + timedelta(seconds=self.settings.lease_seconds)
        async with UnitOfWork(self.db) as uow:
            claimed = await uow.webhooks.claim_due(now, self.settings.batch_size, lease)
            jobs = [(d.id, d.body, d.attempts, e.url, e.secret) for d, e in claimed]
            await uow.commit()
        outcomes = await asyncio.gather(
            *(self._send(url, body, secret) for _, body, _, url, secret in jobs)
        )
        async with UnitOfWork(self.db) as uow:
            for (delivery_id, _, attempts, _, _), (status, error) in zip(
                jobs, outcomes, strict=True
            ):
                delivery = await uow.webhooks.get(delivery_id)
                if delivery is None:
                    continue
                delivery.last_status, delivery.last_error = status, error
                delivery.lease_until = None
                if status is not None and 200 <= status < 300:
                    delivery.state, delivery.delivered_at = DONE, self.clock()
                elif attempts >= self.settings.max_attempts:
                    delivery.state = FAILED
                else:
                    delivery.state = PENDING
                    delay = backoff(attempts, self.settings)
                    delivery.next_attempt_at = self.clock() + timedelta(seconds=delay)
                log.info(
                    "webhook_sent",
                    extra={"delivery_id": delivery_id, "status": status, "state": delivery.state},
                )
            await uow.commit()
        return len(jobs)

    async def _send(self, url: str, body: str, secret: str) -> tuple[int | None, str | None]:
        raw = body.encode()
        headers = {
            "Content-Type": "application/json",
            HEADER: signature(secret, int(time.time()), raw),
            "User-Agent": "Seguibot-Webhooks/1",
        }
        try:
            status = await self.poster.post(url, raw, headers, TIMEOUT)
        except RetryLater as exc:
            return None, exc.reason[:500]
        return status, None if 200 <= status < 300 else f"HTTP {status}"

    async def drain(self, rounds: int = 50) -> None:
        """Send until nothing is due now (tests, shutdown)."""
        for _ in range(rounds):
            if not await self.send_due():
                return
