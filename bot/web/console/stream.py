"""Server-sent events for the console: the queue and the open conversation, as they change.

A change signalled in any process (`bot.live`; between processes through PostgreSQL
LISTEN/NOTIFY) wakes the stream at once; looking again every few seconds covers a signal lost
while that connection was being made again. Each event only says what
changed; the page fetches the fresh part itself (`/console/queue/rows`,
`/console/conversations/<id>/messages`), so nothing can arrive out of order or half.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from bot import live
from bot.web.console.auth import AGENT
from bot.web.keys import DESK

LOOK_AGAIN = 5.0  # seconds: how stale a change made by another process may be
KEEPALIVE = 15.0


class Streams:
    """Open event streams end when the service stops, instead of holding shutdown up."""

    def __init__(self, signals: live.Signals) -> None:
        self.signals = signals
        self.closing = False


STREAMS = web.AppKey("console_streams", Streams)


def register(app: web.Application, signals: live.Signals) -> None:
    app[STREAMS] = Streams(signals)
    app.router.add_get("/events", events)
    app.on_shutdown.append(_close)


async def _close(app: web.Application) -> None:
    streams = app[STREAMS]
    streams.closing = True
    streams.signals.wake_all()


async def events(request: web.Request) -> web.StreamResponse:
    desk = request.config_dict[DESK]
    signals = request.app[STREAMS].signals
    agent = request[AGENT]
    conversation = request.query.get("conversation", "")
    conversation_id = (
        int(conversation) if conversation.isascii() and conversation.isdigit() else None
    )
    topics = [live.QUEUE, live.agent(agent.id)]
    if conversation_id is not None:
        topics.append(live.conversation(conversation_id))

    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 3000\n\n")
    queue_seen: list[int] | None = None
    # What the page showed when it was made (`seen`): a change since is sent at once. Without
    # it (an older page), the first look is taken as what the page shows.
    conversation_seen: str | None = request.query.get("seen") or None
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    with signals.listen(topics) as woken, contextlib.suppress(ConnectionResetError):
        while not request.app[STREAMS].closing:
            woken.clear()
            entries = await desk.queue()
            ids = [entry.conversation_id for entry in entries]
            sent = False
            if ids != queue_seen:
                new = [i for i in ids if queue_seen is not None and i not in queue_seen]
                mine = [e.conversation_id for e in entries if e.assigned_to == agent.name]
                payload = {"count": len(ids), "new": new, "mine": mine}
                await _send(response, "queue", payload)
                queue_seen, sent = ids, True
            if conversation_id is not None:
                fingerprint = await desk.fingerprint(conversation_id)
                if fingerprint != conversation_seen:
                    if conversation_seen is not None:
                        await _send(response, "conversation", {"id": conversation_id})
                        sent = True
                    conversation_seen = fingerprint
            if sent:
                quiet_since = loop.time()
            elif loop.time() - quiet_since >= KEEPALIVE:
                await response.write(b": keepalive\n\n")
                quiet_since = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=LOOK_AGAIN)
    return response


async def _send(response: web.StreamResponse, event: str, data: dict[str, object]) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
