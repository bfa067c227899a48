"""The outbox: outgoing messages are rows first, then a dispatcher sends them.

Writing the row in the same transaction as the decision that caused it means a reply is never
lost (the transaction commits both or neither) and never sent for a message that was rolled
back. The dispatcher claims due rows, sends each through its channel's `Sender` outside any
transaction, and settles the row: done, retry later (exponential backoff with jitter, or the
channel's own `retry_after`), failed after the attempt budget, or blocked (opted out,
unreachable). A process that dies mid-send leaves its rows claimed under a lease; when the lease
runs out another dispatcher takes them up. A send the channel acknowledged is recorded before
anything else happens, so a restart never repeats it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select

from bot import metrics
from bot.channel import TEXT_LIMITS, Button, OutboundMessage, Sender, SendReceipt, Template
from bot.errors import Blocked, RetryLater, SendFailed
from bot.settings import OutboxSettings, TemplateSettings
from storage.db import Database, is_unavailable
from storage.models import (
    Author,
    Channel,
    ChannelIdentity,
    Conversation,
    DeliveryStatus,
    Direction,
    Lead,
    OutboxItem,
    OutboxState,
    utcnow,
)
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

# Tries at recording a send's outcome before leaving the row to its lease (about 30 s in all).
SETTLE_ATTEMPTS = 5
OPTED_OUT = "opted_out"
UNREACHABLE = "unreachable"
LEAD_REPLIED = "lead_replied"
NO_SENDER = "channel_not_configured"


async def stage(
    uow: UnitOfWork,
    conversation: Conversation,
    text: str,
    *,
    author: Author,
    now: datetime,
    script: str | None = None,
    variant: int | None = None,
    agent_id: int | None = None,
    buttons: tuple[Button, ...] = (),
    template: Template | None = None,
    optout_confirmation: bool = False,
    cancel_on_reply: bool = False,
    delivered_inline: bool = False,
) -> int:
    """Record an outgoing message and its outbox row in the caller's transaction; its id.

    A text longer than the channel allows becomes several messages, split between sentences,
    each its own row: a retry then repeats only the part that did not go out. Buttons go with
    the last part. `template` is what a channel with a messaging window (WhatsApp) may send
    instead once the window has closed. `delivered_inline` is for channels that deliver the
    reply in the HTTP response itself (web chat): the row is recorded as already done.
    """
    status = DeliveryStatus.DELIVERED if delivered_inline else DeliveryStatus.PENDING
    parts = split_text(text, TEXT_LIMITS.get(conversation.channel))
    ids = []
    for n, part in enumerate(parts, start=1):
        message_id = await uow.messages.insert(
            {
                "conversation_id": conversation.id,
                "channel": conversation.channel,
                "direction": Direction.OUT,
                "author": author,
                "agent_id": agent_id,
                "text": part,
                "media": [],
                "script": script,
                "script_variant": variant,
                "status": status,
                "created_at": now,
            }
        )
        extras: dict[str, Any] = {}
        if buttons and n == len(parts):
            extras["buttons"] = [[b.title, b.payload] for b in buttons]
        if template is not None and n == 1:
            extras["template"] = {
                "content_sid": template.content_sid,
                "variables": template.variables,
            }
        await uow.outbox.insert(
            {
                "message_id": message_id,
                "lead_id": conversation.lead_id,
                "channel": conversation.channel,
                "recipient": conversation.identity.external_id,
                "extras": extras,
                "optout_confirmation": optout_confirmation,
                "cancel_on_reply": cancel_on_reply,
                "state": OutboxState.DONE if delivered_inline else OutboxState.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "settled_at": now if delivered_inline else None,
            }
        )
        ids.append(message_id)
    return ids[0]


_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")


def split_text(text: str, limit: int | None) -> list[str]:
    """`text` in parts of at most `limit` characters, cut between sentences where possible.

    Falls back to the last space, then to a hard cut, for sentences longer than the limit.
    """
    if limit is None or len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cuts = [m.end() for m in _SENTENCE_END.finditer(window) if m.start() <= limit]
        cut = cuts[-1] if cuts and cuts[-1] > limit // 3 else window.rfind(" ") + 1
        if cut <= 0 or cut > limit:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest.strip():
        parts.append(rest.rstrip())
    return parts


def template_for(
    templates: Mapping[str, TemplateSettings], key: str | None, values: Mapping[str, str]
) -> Template | None:
    """The approved template configured for messages of `key` (a script id, or "agent"),
    its variables ({{1}}, {{2}}, ...) filled from `values`."""
    settings = templates.get(key) if key else None
    if settings is None:
        return None
    variables = {str(n): values.get(name, "") for n, name in enumerate(settings.variables, 1)}
    return Template(settings.content_sid, variables)


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
        *,
        on_sent: Callable[[Channel, str], None] = lambda channel, recipient: None,
    ) -> None:
        self.db = db
        self.on_sent = on_sent
        self.senders = dict(senders)
        self.settings = settings
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
        now = utcnow()
        lease = now + timedelta(seconds=self.settings.lease_seconds)
        async with UnitOfWork(self.db) as uow:
            items = await uow.outbox.claim_due(now, limit, lease)
            if not items:
                return []
            context = await self._context(uow, items)
            ready = []
            for item in items:
                opted_out, reachable, last_inbound_at = context[item.id]
                reason = None
                if opted_out and not item.optout_confirmation:
                    reason = OPTED_OUT
                elif item.cancel_on_reply and last_inbound_at and last_inbound_at > item.created_at:
                    # A follow-up nudge staged before the lead wrote back: it has nothing to say.
                    reason = LEAD_REPLIED
                elif not reachable:
                    reason = UNREACHABLE
                elif item.channel not in self.senders:
                    reason = NO_SENDER
                if reason:
                    self._settle_blocked(item, reason, now)
                else:
                    ready.append(_outbound(item, last_inbound_at))
            await uow.commit()
        return ready

    async def _context(
        self, uow: UnitOfWork, items: list[OutboxItem]
    ) -> dict[int, tuple[bool, bool, datetime | None]]:
        """Per row: has the lead opted out, can the channel reach them, when did they last write."""
        statement = (
            select(
                OutboxItem.id,
                Lead.opted_out_at.is_not(None),
                ChannelIdentity.reachable,
                Conversation.last_inbound_at,
            )
            .join(Lead, Lead.id == OutboxItem.lead_id)
            .join(
                ChannelIdentity,
                (ChannelIdentity.channel == OutboxItem.channel)
                & (ChannelIdentity.external_id == OutboxItem.recipient),
            )
            .join(Conversation, Conversation.identity_id == ChannelIdentity.id)
            .where(OutboxItem.id.in_([item.id for item in items]))
        )
        rows = await uow.session.execute(statement)
        return {row[0]: (bool(row[1]), bool(row[2]), row[3]) for row in rows}

    def _settle_blocked(self, item: OutboxItem, reason: str, now: datetime) -> None:
        item.state = OutboxState.BLOCKED
        item.last_error = reason
        item.settled_at = now
        item.lease_until = None
        item.message.status = DeliveryStatus.BLOCKED
        item.message.error = reason
        metrics.OUTBOX_FAILED.labels(item.channel, reason).inc()
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
                await asyncio.sleep(min(0.5 * 2**attempt, 10.0))
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
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            item = await uow.outbox.get(message.key)
            if item is None or item.state != OutboxState.SENDING:
                return  # settled meanwhile by someone whose lease we outlived
            item.lease_until = None
            if retry is not None and retry.uncertain:
                item.uncertain = True
            if receipt is not None:
                item.uncertain = False
                item.state = OutboxState.DONE
                item.settled_at = now
                item.last_error = None
                item.message.status = receipt.status
                item.message.channel_message_id = receipt.channel_message_id
                item.message.error = None
                metrics.OUTBOX_SENT.labels(item.channel).inc()
            elif blocked is not None:
                self._settle_blocked(item, blocked.reason, now)
            elif retry is not None and not retry.counts:
                item.attempts -= 1  # the claim counted an attempt that never happened
                item.state = OutboxState.PENDING
                item.next_attempt_at = now + timedelta(seconds=retry.after or 0.0)
            elif retry is not None and item.attempts < self.settings.max_attempts:
                delay = (
                    retry.after
                    if retry.after is not None
                    else backoff(item.attempts, self.settings)
                )
                item.state = OutboxState.PENDING
                item.next_attempt_at = now + timedelta(seconds=delay)
                item.last_error = retry.reason[:500]
                metrics.OUTBOX_RETRIED.labels(item.channel).inc()
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
                self._settle_blocked(item, failure.reason, now)
                await uow.identities.set_reachable(item.channel, item.recipient, False)
            else:
                reason = failure.reason if failure else f"gave up: {retry.reason if retry else ''}"
                item.state = OutboxState.FAILED
                item.settled_at = now
                item.last_error = reason[:500]
                item.message.status = DeliveryStatus.FAILED
                item.message.error = reason[:500]
                code = failure.code if failure and failure.code else "gave_up"
                metrics.OUTBOX_FAILED.labels(item.channel, code).inc()
                log.warning(
                    "outbox_failed",
                    extra={"outbox_id": item.id, "code": code, "attempts": item.attempts},
                )
            await uow.commit()
        if receipt is not None:
            self.on_sent(message.channel, message.recipient)


def _outbound(item: OutboxItem, last_inbound_at: datetime | None) -> OutboundMessage:
    buttons = tuple(Button(title, payload) for title, payload in item.extras.get("buttons", []))
    template = item.extras.get("template")
    return OutboundMessage(
        key=item.id,
        channel=item.channel,
        recipient=item.recipient,
        text=item.message.text,
        created_at=item.created_at,
        buttons=buttons,
        conversation_id=item.message.conversation_id,
        uncertain=item.uncertain,
        last_inbound_at=last_inbound_at,
        template=Template(template["content_sid"], template["variables"]) if template else None,
    )
