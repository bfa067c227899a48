"""Change signals between processes: PostgreSQL LISTEN/NOTIFY on one connection of its own.

Every process listens on one channel and publishes there what changed (topics only, no data:
pages re-read what they show). Replicas on several machines behind a load balancer then wake
each other's open pages as if they were one. The connection is outside the pool (a LISTEN
must stay on one session); when it drops it is made again, and pages still look again now
and then, so a signal lost meanwhile costs a few seconds, never a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANNEL = "seguibot_live"
_PAYLOAD_LIMIT = 7000  # PostgreSQL refuses NOTIFY payloads from 8000 bytes


class Relay:
    """Publish topics to the other processes; hand theirs to `received`."""

    def __init__(
        self,
        url: str,
        received: Callable[[Sequence[str]], None],
        *,
        retry: float = 1.0,
        linger: float = 0.05,
    ) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.received = received
        self.retry = retry
        self.linger = linger  # seconds the first topics wait for more to go out with them
        self.origin = uuid.uuid4().hex  # our own notifications come back too: skip them
        self._outgoing: asyncio.Queue[tuple[str, ...]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def publish(self, topics: Sequence[str]) -> None:
        """Queue topics for the other processes (never blocks; sent in order)."""
        if topics:
            self._outgoing.put_nowait(tuple(topics))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-relay")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            connection: Any = None
            try:
                connection = await asyncpg.connect(self.dsn, timeout=5)
                await connection.add_listener(CHANNEL, self._on_notify)
                self._ready.set()
                while True:
                    topics = await self._waiting_topics()
                    for payload in self._payloads(topics):
                        await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The server went away or refused: connect again; pages poll meanwhile.
                log.warning("live_relay_lost", extra={"error": type(exc).__name__})
                await asyncio.sleep(self.retry)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)

    async def _waiting_topics(self) -> tuple[str, ...]:
        """Every topic queued by now and within `linger` of the first, each once, in order:
        under load one NOTIFY carries the changes of many messages instead of a round trip
        each. (Sent as soon as the last had gone, they went out 1.4 a message at 300 a
        second: a message signals its session and the queue, and one in 3 ms leaves nothing
        to gather in a round trip.) A page hears of a change `linger` later: 50 ms, which
        nobody sees."""
        topics = dict.fromkeys(await self._outgoing.get())
        await asyncio.sleep(self.linger)
        while not self._outgoing.empty():
            topics.update(dict.fromkeys(self._outgoing.get_nowait()))
        return tuple(topics)

    def _payloads(self, topics: tuple[str, ...]) -> list[str]:
        payloads, batch = [], list(topics)
        while batch:
            count = len(batch)
            while count > 1 and len(self._encode(batch[:count])) > _PAYLOAD_LIMIT:
                count //= 2
            payloads.append(self._encode(batch[:count]))
            batch = batch[count:]
        return payloads

    def _encode(self, topics: Sequence[str]) -> str:
        return json.dumps({"origin": self.origin, "topics": list(topics)})

    def _on_notify(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            if data.get("origin") == self.origin:
                return
            topics = [t for t in data.get("topics", []) if isinstance(t, str)]
        except (ValueError, AttributeError):
            log.warning("live_relay_bad_payload")
            return
        self.received(topics)
