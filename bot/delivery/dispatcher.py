"""Sends the outbox's rows through each channel's `Sender`, outside any transaction.

The dispatcher claims due rows, sends each, and settles it: done, retry later (exponential
backoff with jitter, or the channel's own `retry_after`), failed after the attempt budget, or
blocked (opted out, unreachable). A process that dies mid-send leaves its rows claimed under a
lease; when the lease runs out another dispatcher takes them up. A send the channel
acknowledged is recorded before anything else happens, so a restart never repeats it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from functools import partial

from bot.core.channel import Attachment, Button, OutboundMessage, Sender, SendReceipt, Template
from bot.core.errors import Blocked, RetryLater, SendFailed
from bot.core.materials import MaterialKind
from bot.core.model import Channel, OutboxState, utcnow
from bot.delivery.outbox import LEAD_REPLIED, NO_SENDER, OPTED_OUT, UNREACHABLE
from bot.metrics import Metrics
from bot.settings import OutboxSettings
from storage.db import Database, is_unavailable
from storage.models import OutboxItem
from storage.repositories import DeliveryContext
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

# Tries at recording a send's outcome before leaving the row to its lease (about 30 s in all).
SETTLE_ATTEMPTS = 5


def backoff(
    attempt: int, settings: OutboxSettings, rng: Callable[[], float] = random.random
) -> float:
    """Seconds before attempt `attempt + 1`: doubling from `backoff_base`, capped, jittered.

    The jitter spreads retries of many rows that failed together (a channel outage) so they do
    not all come back at the same instant; half the delay is kept so a retry is never instant.
    """
    delay = min(settings.backoff_max, settings.backoff_base * 2 ** (attempt - 1))
    return delay * (0.5 + rng() / 2)


class Dispatcher:
    """Sends committed outbox rows; one per process, running in the background."""

    def __init__(
        self,
        db: Database,
        senders: Mapping[Channel, Sender],
        settings: OutboxSettings,
        metrics: Metrics,
        *,
        on_sent: Callable[[Channel, str, int | None], None] = lambda *sent: None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.on_sent = on_sent
        self.senders = dict(senders)
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self._wake = asyncio.Event()
        self._stopping = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._claiming = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Look for due rows now (called after a transaction that staged messages commits)."""
        self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="outbox-dispatcher")

    async def stop(self, timeout: float) -> None:
        """Stop claiming rows and let the sends in flight finish, for at most `timeout` s.

        A send cut off by the timeout keeps its claim; its lease expiry hands it to the next
        dispatcher, so nothing is lost.
        """
        self._stopping = True
        self._wake.set()
        if self._loop_task:
            await self._loop_task
        if self._in_flight:
            _, pending = await asyncio.wait(self._in_flight, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("outbox_sends_cut_off", extra={"count": len(pending)})

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            claimed = 0
            try:
                claimed = await self.dispatch_due()
            except Exception as exc:
                if not is_unavailable(exc):
                    log.exception("outbox_claim_failed")
                else:
                    log.warning("outbox_database_unavailable", extra={"error": type(exc).__name__})
            if claimed and not self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_interval)

    async def dispatch_due(self) -> int:
        """Claim what is due (within free capacity) and start sending it; returns how many."""
        # One claim at a time per process: a claim and the start of its sends are one step,
        # so drain() never sees "nothing claimed, nothing in flight" halfway through another.
        async with self._claiming:
            capacity = self.settings.concurrency - len(self._in_flight)
            if capacity <= 0:
                return 0
            claimed = await self._claim(min(capacity, self.settings.batch_size))
            for item in claimed:
                task = asyncio.create_task(self._deliver(item))
                self._in_flight.add(task)
                task.add_done_callback(self._sent)
            return len(claimed)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()  # capacity is free again, and that chat's next message may be due

    async def drain(self) -> None:
        """Send everything due now and wait for the sends (tests, CLI one-shots)."""
        while await self.dispatch_due() or self._in_flight:
            if self._in_flight:
                await asyncio.wait(self._in_flight)

    async def _claim(self, limit: int) -> list[OutboundMessage]:
        now = self.clock()
        lease = now + timedelta(seconds=self.settings.lease_seconds)
        async with UnitOfWork(self.db) as uow:
            items = await uow.outbox.claim_due(now, limit, lease)
            if not items:
                return []
            context = await uow.outbox.delivery_context(items)
            ready = []
            for item in items:
                if reason := self._held_back(item, context[item.id]):
                    uow.outbox.blocked(item, reason, now)
                    self._count_blocked(item, reason, reason)
                else:
                    data = await _attached_file(uow, item)
                    ready.append(_outbound(item, context[item.id].last_inbound_at, data))
            await uow.commit()
        return ready

    def _held_back(self, item: OutboxItem, context: DeliveryContext) -> str | None:
        """Why this row must not go out now, if it must not."""
        if context.opted_out and not item.optout_confirmation:
            return OPTED_OUT
        replied = context.last_inbound_at and context.last_inbound_at > item.created_at
        if item.cancel_on_reply and replied:
            # A follow-up nudge staged before the lead wrote back: it has nothing to say.
            return LEAD_REPLIED
        if not context.reachable:
            return UNREACHABLE
        if item.channel not in self.senders:
            return NO_SENDER
        return None

    def _count_blocked(self, item: OutboxItem, code: str, reason: str) -> None:
        """`code` is the metric's label: one of a fixed few (the reason may be free text)."""
        self.metrics.outbox_blocked.labels(item.channel, code).inc()
        log.info("outbox_blocked", extra={"outbox_id": item.id, "reason": reason})

    async def _deliver(self, message: OutboundMessage) -> None:
        sender = self.senders[message.channel]
        settle: Callable[[], Awaitable[None]]
        try:
            receipt = await sender.send(message)
        except RetryLater as exc:
            settle = partial(self._settle, message, retry=exc)
        except SendFailed as exc:
            settle = partial(self._settle, message, failure=exc)
        except Blocked as exc:
            settle = partial(self._settle, message, blocked=exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A sender bug or an error it did not classify: keep the row and try again later.
            log.exception("outbox_send_crashed", extra={"outbox_id": message.key})
            retry = RetryLater(f"unexpected: {type(exc).__name__}")
            settle = partial(self._settle, message, retry=retry)
        else:
            settle = partial(self._settle, message, receipt=receipt)
        await self._insist(message, settle)

    async def _insist(
        self, message: OutboundMessage, settle: Callable[[], Awaitable[None]]
    ) -> None:
        """Record the outcome, retrying a failure: a row left claimed would be taken up again
        when its lease runs out, and a message that did go out would be sent twice."""
        for attempt in range(1, SETTLE_ATTEMPTS + 1):
            try:
                await settle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "outbox_settle_failed",
                    extra={
                        "outbox_id": message.key,
                        "attempt": attempt,
                        "error": type(exc).__name__,
                    },
                )
                if attempt == SETTLE_ATTEMPTS:
                    log.exception("outbox_settle_gave_up", extra={"outbox_id": message.key})
                    return
                await self.sleep(min(0.5 * 2**attempt, 10.0))
            else:
                return

    async def _settle(
        self,
        message: OutboundMessage,
        *,
        receipt: SendReceipt | None = None,
        retry: RetryLater | None = None,
        failure: SendFailed | None = None,
        blocked: Blocked | None = None,
    ) -> None:
        now = self.clock()
        async with UnitOfWork(self.db) as uow:
            outbox = uow.outbox
            item = await outbox.get(message.key)
            if item is None or item.state != OutboxState.SENDING:
                return  # settled meanwhile by someone whose lease we outlived
            if receipt is not None:
                outbox.sent(item, now, receipt.channel_message_id, receipt.status)
                self.metrics.outbox_sent.labels(item.channel).inc()
            elif blocked is not None:
                outbox.blocked(item, blocked.reason, now)
                self._count_blocked(item, blocked.code, blocked.reason)
            elif retry is not None and not retry.counts:
                # The sender is pacing the chat: nothing was tried, no attempt is spent.
                outbox.retry(item, now + timedelta(seconds=retry.after or 0.0), None, counts=False)
            elif retry is not None and item.attempts < self.settings.max_attempts:
                delay = (
                    retry.after
                    if retry.after is not None
                    else backoff(item.attempts, self.settings)
                )
                outbox.retry(
                    item, now + timedelta(seconds=delay), retry.reason, uncertain=retry.uncertain
                )
                self.metrics.outbox_retried.labels(item.channel).inc()
                log.info(
                    "outbox_retry",
                    extra={
                        "outbox_id": item.id,
                        "attempt": item.attempts,
                        "delay_s": round(delay, 2),
                    },
                )
            elif failure is not None and failure.unreachable:
                # The lead blocked us or opted out at the channel: no retry, and no more sends
                # there until the channel says they are reachable again.
                outbox.blocked(item, failure.reason, now)
                self.metrics.outbox_failed.labels(item.channel, failure.code or "unreachable").inc()
                log.info("outbox_blocked", extra={"outbox_id": item.id, "code": failure.code})
                await uow.identities.set_reachable(item.channel, item.recipient, False)
            else:
                reason = failure.reason if failure else f"gave up: {retry.reason if retry else ''}"
                outbox.failed_for_good(item, reason, now)
                code = failure.code if failure and failure.code else "gave_up"
                self.metrics.outbox_failed.labels(item.channel, code).inc()
                log.warning(
                    "outbox_failed",
                    extra={"outbox_id": item.id, "code": code, "attempts": item.attempts},
                )
            await uow.commit()
        self.on_sent(message.channel, message.recipient, message.conversation_id)


async def _attached_file(uow: UnitOfWork, item: OutboxItem) -> bytes | None:
    """The bytes of the material file a row sends, when this service keeps the file."""
    attached = item.extras.get("attachment")
    if not attached or not attached.get("uploaded"):
        return None
    return await uow.materials.file(int(attached["material_id"]))


def _outbound(
    item: OutboxItem, last_inbound_at: datetime | None, data: bytes | None = None
) -> OutboundMessage:
    buttons = tuple(Button(title, payload) for title, payload in item.extras.get("buttons", []))
    template = item.extras.get("template")
    attached = item.extras.get("attachment")
    attachment = (
        Attachment(
            kind=MaterialKind(attached["kind"]),
            url=attached["url"],
            file_name=attached.get("file_name"),
            content_type=attached.get("content_type"),
            data=data,
        )
        if attached
        else None
    )
    return OutboundMessage(
        key=item.id,
        channel=item.channel,
        recipient=item.recipient,
        text=item.text,
        created_at=item.created_at,
        buttons=buttons,
        conversation_id=item.message.conversation_id if item.message is not None else None,
        uncertain=item.uncertain,
        last_inbound_at=last_inbound_at,
        template=Template(template["content_sid"], template["variables"]) if template else None,
        attachment=attachment,
    )
