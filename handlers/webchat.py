"""The web chat: a page on /chat, its JSON endpoint, and server-sent events for later messages.

The page keeps a random session id in the browser's storage; that id is the lead's identity on
this channel. Replies to a message come back in the POST's response; anything that comes later
(an agent's reply, a reminder) reaches the page over `/webchat/events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from aiohttp import web

from bot.core.channel import (
    Channel,
    ChatLine,
    InboundMessage,
    Intake,
    OutboundMessage,
    RawRequest,
    SendReceipt,
    Transcript,
    web_chat_message,
)
from bot.core.errors import WebhookRejected
from bot.core.ratelimit import RateLimiter
from bot.core.wire import parse_id, parse_json
from handlers.http import client_address, read_raw

# The session id is the only credential for a conversation's history: at least 128 bits
# (22 base64url characters), as the page makes them with crypto.getRandomValues.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{22,128}")
SESSION_RULE = (
    "session_id must be 22-128 random characters of A-Z a-z 0-9 _ - "
    "(16 bytes from crypto.getRandomValues, base64url)"
)
CLIENT_MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_TEXT = 16_000
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
# The page's own policy: its script and style files only, requests to this origin only.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'"
)


def strong_session(session_id: object) -> str:
    """The session id, when it is one nobody could guess.

    Raises:
        WebhookRejected: 400 for a short id, digits only (a timestamp and Math.random), or
            characters too repetitive to be random (a counter, a repeated letter).
    """
    if (
        not isinstance(session_id, str)
        or not SESSION_ID.fullmatch(session_id)
        or session_id.isdigit()
        or _spread_bits(session_id) < 64
    ):
        raise WebhookRejected(400, SESSION_RULE)
    return session_id


def _spread_bits(text: str) -> float:
    """Length times the Shannon entropy of the text's characters, in bits.

    Random ids score near their true entropy (22 base64url characters: about 95; a UUID's
    32 hex digits: about 118); a counter or a repeated letter scores far below 64.
    """
    counts = Counter(text)
    return -sum(n * math.log2(n / len(text)) for n in counts.values())


class WebchatInbound:
    """Parses `POST /webchat/messages`."""

    channel = Channel.WEBCHAT

    def parse(self, raw: RawRequest) -> InboundMessage:
        content_type = raw.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise WebhookRejected(415, "expected Content-Type: application/json")
        data = parse_json(raw.body)
        if not isinstance(data, dict):
            raise WebhookRejected(400, "expected a JSON object")
        session_id = strong_session(data.get("session_id"))
        text = data.get("text", "")
        if not isinstance(text, str):
            raise WebhookRejected(400, "text must be a string")
        if len(text) > MAX_TEXT:
            raise WebhookRejected(400, f"text is longer than {MAX_TEXT} characters")
        message_id = data.get("message_id")
        if message_id is None:
            message_id = uuid.uuid4().hex
        elif not isinstance(message_id, str) or not CLIENT_MESSAGE_ID.fullmatch(message_id):
            raise WebhookRejected(400, "message_id must be 1-64 characters of A-Z a-z 0-9 _ . : -")
        return web_chat_message(session_id, message_id, text, datetime.now(UTC))


class WebchatHub:
    """Wakes the open event streams of a session when something was sent to it.

    `publish`, when set, carries `notify` to every process (the app routes it through
    PostgreSQL LISTEN/NOTIFY), which then calls `wake` in each, this one included.
    """

    def __init__(self, publish: Callable[[str], None] | None = None) -> None:
        self._listeners: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self.publish = publish

    def notify(self, session_id: str) -> None:
        if self.publish is not None:
            self.publish(session_id)
        else:
            self.wake(session_id)

    def wake(self, session_id: str) -> None:
        """Wake this process's streams of the session."""
        for event in self._listeners.get(session_id, ()):
            event.set()

    def notify_all(self) -> None:
        for session_id in list(self._listeners):
            self.wake(session_id)

    @contextlib.contextmanager
    def listen(self, session_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._listeners[session_id].add(event)
        try:
            yield event
        finally:
            self._listeners[session_id].discard(event)
            if not self._listeners[session_id]:
                del self._listeners[session_id]


class WebchatSender:
    """Sending to a web chat means making the message available to the page's event stream.

    The page collects it over `/webchat/events`; a page that is closed finds it in the
    history when it opens again, so there is nothing to retry.
    """

    channel = Channel.WEBCHAT

    def __init__(self, hub: WebchatHub) -> None:
        self.hub = hub

    async def send(self, message: OutboundMessage) -> SendReceipt:
        return SendReceipt(channel_message_id=None)


class WebchatChannel:
    """The web chat's routes: the page, the message endpoint, history and events."""

    def __init__(
        self,
        intake: Intake,
        transcript: Transcript,
        hub: WebchatHub,
        *,
        business_name: str,
        greeting: Callable[[], str] = str,
        history_limit: int = 50,
        reads_per_minute: int = 120,
        frame_ancestors: Sequence[str] = (),
        forwarded_for: bool = False,
        poll_interval: float = 2.0,
        keepalive: float = 15.0,
    ) -> None:
        self.intake = intake
        self.transcript = transcript
        self.hub = hub
        self.inbound = WebchatInbound()
        self.business_name = business_name
        # The business's greeting (a script), shown on the empty page; read at each load.
        self.greeting = greeting
        self.history_limit = history_limit
        self.poll_interval = poll_interval
        self.keepalive = keepalive
        # Reading a conversation needs only its session id: a limit per address keeps anyone
        # from trying ids at speed.
        self.reads = RateLimiter(reads_per_minute, 60, burst=max(10, reads_per_minute // 4))
        self.forwarded_for = forwarded_for
        ancestors = " ".join(frame_ancestors) or "'none'"
        self.page_headers = {
            "Content-Security-Policy": f"{PAGE_POLICY}; frame-ancestors {ancestors}"
        }
        if not frame_ancestors:
            self.page_headers["X-Frame-Options"] = "DENY"  # browsers without CSP level 2
        self._closing = False
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, enable_async=False
        )
        self._page = env.get_template("chat.html")

    def register(self, app: web.Application) -> None:
        app.router.add_get("/chat", self.page)
        app.router.add_post("/webchat/messages", self.post_message)
        app.router.add_get("/webchat/history", self.history)
        app.router.add_get("/webchat/events", self.events)
        app.router.add_static("/static/webchat/", STATIC)
        # Browsers ask for it on every page; a 404 would be logged as a warning each time.
        app.router.add_get("/favicon.ico", self.favicon)
        app.on_shutdown.append(self._close_streams)

    async def _close_streams(self, app: web.Application) -> None:
        # Open event streams never end on their own; end them so shutdown does not wait.
        self._closing = True
        self.hub.notify_all()

    async def page(self, request: web.Request) -> web.Response:
        html = self._page.render(business=self.business_name, greeting=self.greeting())
        return web.Response(
            text=html, content_type="text/html", charset="utf-8", headers=self.page_headers
        )

    async def favicon(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            STATIC / "favicon.ico",
            headers={"Content-Type": "image/x-icon", "Cache-Control": "max-age=86400"},
        )

    async def post_message(self, request: web.Request) -> web.Response:
        raw = await read_raw(request)
        message = self.inbound.parse(raw)
        outcome = await self.intake.receive(message)
        # Other tabs of this session show the lead's message (and the replies) now.
        self.hub.notify(message.sender_id)
        client_id = message.message_id.split(":", 1)[1]
        at = _iso(message.sent_at)
        return web.json_response(
            {
                "message_id": client_id,
                # The stored message's id: the page matches it with the event stream's copy.
                "id": outcome.message_id,
                "at": at,
                "replies": [{"id": r.id, "text": r.text, "at": at} for r in outcome.replies],
            }
        )

    def _session(self, request: web.Request) -> str:
        """The session a read is for, once the address is within its rate.

        Raises:
            HTTPTooManyRequests: with Retry-After, past `reads_per_minute`.
            WebhookRejected: 400 for a weak session id.
        """
        wait = self.reads.wait(client_address(request, forwarded_for=self.forwarded_for))
        if wait > 0:
            raise web.HTTPTooManyRequests(
                text="too many reads from this address, try again later",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        return strong_session(request.query.get("session_id", ""))

    async def history(self, request: web.Request) -> web.Response:
        session_id = self._session(request)
        lines = await self.transcript.lines(
            Channel.WEBCHAT, session_id, after_id=0, limit=self.history_limit
        )
        return web.json_response({"messages": [_shown(line, session_id) for line in lines]})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: each message after `Last-Event-ID` / `after` that went out to
        the lead, and the lead's own (so a second tab shows both sides).

        Wakes at once when any process sends to the session or the session writes (the hub's
        `publish` carries that between processes), and polls now and then as a safety net.
        """
        session_id = self._session(request)
        after = parse_id(request.headers.get("Last-Event-ID") or request.query.get("after") or "0")
        if after is None:
            raise WebhookRejected(400, "after must be a message id")
        last_id = after
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx would buffer the stream otherwise
            }
        )
        await response.prepare(request)
        await response.write(b"retry: 3000\n\n")
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        with self.hub.listen(session_id) as woken, contextlib.suppress(ConnectionResetError):
            while not self._closing:
                woken.clear()
                lines = await self.transcript.visible_after(
                    Channel.WEBCHAT, session_id, after_id=last_id, limit=100
                )
                for line in lines:
                    data = json.dumps(_shown(line, session_id))
                    await response.write(
                        f"id: {line.id}\nevent: message\ndata: {data}\n\n".encode()
                    )
                    last_id = line.id
                if lines:
                    quiet_since = loop.time()
                elif loop.time() - quiet_since >= self.keepalive:
                    await response.write(b": keepalive\n\n")
                    quiet_since = loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=self.poll_interval)
        return response


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _shown(line: ChatLine, session_id: str) -> dict[str, object]:
    """A message as the page gets it: id, author, text, time (UTC, ISO 8601) and, for the
    lead's own, the id the page gave it (`client_id`)."""
    shown: dict[str, object] = {"id": line.id, "author": line.author, "text": line.text}
    if line.at is not None:
        shown["at"] = _iso(line.at)
    prefix = session_id + ":"
    if (
        line.author == "lead"
        and line.channel_message_id
        and line.channel_message_id.startswith(prefix)
    ):
        shown["client_id"] = line.channel_message_id.removeprefix(prefix)
    return shown
