"""Nothing acknowledged is lost: messages stored first when they cannot be handled now.

Twilio never delivers a webhook again, whatever we answer. So for WhatsApp the engine is used
through `Deferring`: a message the engine cannot take now (over capacity, a conflict that
outlasted its retries, a pool with no free connection) is stored in `deferred_inbound`, deduped
on the channel's id, and only then acknowledged. `Deferring.run` handles the stored messages as
soon as places are free, in the order they came, each exactly once: a claim under a lease
(SKIP LOCKED on PostgreSQL) keeps two workers off one row, and the engine's own dedupe on the
channel's id makes a run again after a crash (handled, not yet deleted) a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from bot.conversation.engine import Engine
from bot.core.channel import Channel, InboundEvent, InboundMessage, MediaRef, Outcome
from bot.core.errors import Overloaded, SeguibotError
from bot.core.model import utcnow
from storage.db import Database
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)


def to_record(message: InboundMessage) -> dict[str, Any]:
    """The message as JSON, to store."""
    return {
        "channel": message.channel.value,
        "sender_id": message.sender_id,
        "message_id": message.message_id,
        "text": message.text,
        "sent_at": message.sent_at.isoformat(),
        "media": [
            {"kind": m.kind, "ref": m.ref, "content_type": m.content_type} for m in message.media
        ],
        "sender_name": message.sender_name,
        "sender_phone": message.sender_phone,
        "source": message.source,
        "start": message.start,
        "shared_contact": message.shared_contact,
        "choice": message.choice,
        "reply_inline": message.reply_inline,
    }


def from_record(record: dict[str, Any]) -> InboundMessage:
    return InboundMessage(
        channel=Channel(record["channel"]),
        sender_id=record["sender_id"],
        message_id=record["message_id"],
        text=record["text"],
        sent_at=datetime.fromisoformat(record["sent_at"]),
        media=tuple(MediaRef(m["kind"], m["ref"], m["content_type"]) for m in record["media"]),
        sender_name=record["sender_name"],
        sender_phone=record["sender_phone"],
        source=record["source"],
        start=record["start"],
        shared_contact=record["shared_contact"],
        choice=record["choice"],
        reply_inline=record["reply_inline"],
    )


class Deferring:
    """The engine for a channel that never delivers again (an `Intake`), and the worker that
    handles what it had to store."""

    def __init__(
        self,
        engine: Engine,
        db: Database,
        *,
        # A claim outlives a crash by at most this (`database.deferred_lease`); a row whose
        # lease ran out while it was still being handled is handled again as a no-op (the
        # engine dedupes on the message id).
        lease: float = 15.0,
        poll: float = 2.0,
        max_attempts: int = 5,
        batch: int = 20,
    ) -> None:
        self.engine = engine
        self.db = db
        self.lease = timedelta(seconds=lease)
        self.poll = poll
        self.max_attempts = max_attempts
        self.batch = batch
        self._wake = asyncio.Event()

    async def receive(self, event: InboundEvent) -> Outcome:
        """Handle the event now, or store it to handle later.

        Raises:
            WebhookRejected and the other refusals of the engine (bad input is still 400).
            sqlalchemy errors when even storing failed (the database is down): 503.
        """
        if not isinstance(event, InboundMessage):
            return await self.engine.receive(event)
        try:
            return await self.engine.receive(event)
        except Overloaded:
            reason = "overloaded"
        except SeguibotError:
            raise
        except Exception as exc:
            # A conflict that outlasted the retries, a pool with no free connection, or a
            # fault: stored, the message is tried again later rather than lost.
            reason = type(exc).__name__
        async with UnitOfWork(self.db) as uow:
            stored = await uow.deferred.store(event.channel, event.message_id, to_record(event))
            await uow.commit()
        log.warning(
            "message_deferred", extra={"channel": event.channel, "reason": reason, "new": stored}
        )
        self._wake.set()
        return Outcome(deferred=True)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Handle stored messages until cancelled: woken by a store in this process, and
        looking every `poll` seconds for those stored by others (or before a restart)."""
        while True:
            try:
                handled = await self.work()
            except Exception as exc:
                # The database is down or busy: look again after the pause.
                log.warning("deferred_work_failed", extra={"error": type(exc).__name__})
                handled = 0
            if handled:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll)

    async def work(self) -> int:
        """Claim a batch and handle it, oldest first; returns how many were handled."""
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            rows = await uow.deferred.claim(now, now + self.lease, self.batch)
            claimed = [(row.id, row.attempts, row.event) for row in rows]
            await uow.commit()
        handled = 0
        for position, (row_id, attempts, record) in enumerate(claimed):
            event = from_record(record)
            try:
                await self.engine.receive(event)  # waits its turn like any message
            except (Overloaded, asyncio.CancelledError) as exc:
                # Still no place, or the service is stopping: give the rest back, untried.
                await self._give_back([later for later, _, _ in claimed[position:]])
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return handled
            except Exception as exc:
                last = attempts >= self.max_attempts
                retry_at = None if last else utcnow() + timedelta(seconds=2**attempts)
                async with UnitOfWork(self.db) as uow:
                    await uow.deferred.failed(
                        row_id, type(exc).__name__, retry_at=retry_at, now=utcnow()
                    )
                    await uow.commit()
                log.log(
                    logging.ERROR if last else logging.WARNING,
                    "deferred_message_failed",
                    extra={
                        "deferred_id": row_id,
                        "attempt": attempts,
                        "error": type(exc).__name__,
                        "given_up": last,
                    },
                    exc_info=last,
                )
                continue
            async with UnitOfWork(self.db) as uow:
                await uow.deferred.done(row_id)
                await uow.commit()
            handled += 1
            log.info("deferred_message_handled", extra={"deferred_id": row_id})
        return handled

    async def _give_back(self, row_ids: list[int]) -> None:
        async with UnitOfWork(self.db) as uow:
            for row_id in row_ids:
                await uow.deferred.release(row_id, undo_attempt=True)
            await uow.commit()
