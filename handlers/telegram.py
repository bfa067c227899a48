"""Telegram: the webhook (secret-token checked), updates into events, and the PTB sender.

Updates are parsed with PTB's `Update.de_json`; sends go through PTB's `Bot`, so there is no
second HTTP stack for Telegram. The webhook answers as soon as the engine's transaction commits:
replies wait in the outbox, Telegram never waits on a send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import telegram
from aiohttp import web
from aiolimiter import AsyncLimiter
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from bot.core.channel import (
    AGENT_LINK_PREFIX,
    Channel,
    ChatLinkRequested,
    InboundEvent,
    InboundMessage,
    Intake,
    MediaContent,
    MediaRef,
    MessageEdited,
    OutboundMessage,
    RawRequest,
    ReachabilityChanged,
    SendReceipt,
)
from bot.core.errors import (
    Blocked,
    ConfigError,
    MediaUnavailable,
    RetryLater,
    SeguibotError,
    SendFailed,
    Unreachable,
    WebhookRejected,
)
from bot.core.materials import MaterialKind
from bot.core.phones import to_e164
from bot.core.wire import parse_json
from handlers.http import read_raw

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name, not a secret
# The update types the bot handles; everything else is never sent to us.
ALLOWED_UPDATES = ("message", "edited_message", "callback_query", "my_chat_member")
WEBHOOK_PATH = "/webhooks/telegram"
UNCERTAIN = "uncertain: the service stopped while sending; it may have arrived"


def message_key(chat_id: int, message_id: int) -> str:
    """Telegram numbers messages per chat; the chat makes the id unique on the channel."""
    return f"{chat_id}:{message_id}"


class TelegramInbound:
    """Verifies the secret token and turns an update into an event."""

    channel = Channel.TELEGRAM

    def __init__(self, secret_token: str, *, phone_region: str) -> None:
        self.secret_token = secret_token
        self.phone_region = phone_region

    def parse(self, raw: RawRequest) -> InboundEvent | None:
        return self.event(self.update(raw))

    def update(self, raw: RawRequest) -> Update:
        """The verified, parsed update.

        Raises:
            WebhookRejected: 403 without the exact secret token, 400 for what is not an update.
        """
        given = raw.headers.get(SECRET_HEADER, "")
        # Constant-time comparison: the secret is the only thing that authenticates Telegram.
        if not secrets.compare_digest(given.encode(), self.secret_token.encode()):
            raise WebhookRejected(403, "missing or wrong secret token")
        data = parse_json(raw.body)
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            raise WebhookRejected(400, "not a Telegram update (no update_id)")
        try:
            return Update.de_json(data, bot=None)
        except Exception as exc:
            # PTB builds objects from whatever the JSON holds; a field of the wrong type or
            # out of range fails somewhere inside it, with any exception type.
            raise WebhookRejected(400, f"malformed update: {type(exc).__name__}") from None

    def event(self, update: Update) -> InboundEvent | None:
        """The event an update means for us, or None when there is nothing to do.

        Raises:
            WebhookRejected: 400 when a field PTB accepted has a shape no client sends.
        """
        try:
            return self._event(update)
        except WebhookRejected:
            raise
        except Exception as exc:
            raise WebhookRejected(400, f"malformed update: {type(exc).__name__}") from None

    def _event(self, update: Update) -> InboundEvent | None:
        if update.message is not None:
            return self._message(update.message)
        if update.edited_message is not None:
            edited = update.edited_message
            if edited.chat.type != ChatType.PRIVATE:
                return None
            return MessageEdited(
                channel=Channel.TELEGRAM,
                message_id=message_key(edited.chat.id, edited.message_id),
                text=edited.text or edited.caption or "",
                edited_at=edited.edit_date or datetime.now(UTC),
            )
        if update.callback_query is not None:
            return self._callback(update.callback_query)
        if update.my_chat_member is not None:
            member = update.my_chat_member
            if member.chat.type != ChatType.PRIVATE:
                return None
            status = member.new_chat_member.status
            return ReachabilityChanged(
                channel=Channel.TELEGRAM,
                sender_id=str(member.chat.id),
                reachable=status not in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT),
                at=member.date,
            )
        return None

    def _message(self, message: telegram.Message) -> InboundMessage | ChatLinkRequested | None:
        # The bot talks to prospects one to one; a group it was added to is not a lead.
        if message.chat.type != ChatType.PRIVATE or message.from_user is None:
            return None
        if not isinstance(message.chat.id, int) or not isinstance(message.from_user.id, int):
            raise WebhookRejected(400, "malformed update: chat and user ids are integers")
        sender = message.from_user
        text = message.text or message.caption or ""
        source = None
        start = False
        if message.text and (message.text == "/start" or message.text.startswith("/start ")):
            # Deep link t.me/<bot>?start=<payload>: the payload names the campaign, or is the
            # code an agent copied from the console to get alerts in this chat.
            payload = message.text.removeprefix("/start").strip()
            if payload.startswith(AGENT_LINK_PREFIX):
                return ChatLinkRequested(
                    Channel.TELEGRAM, str(message.chat.id), payload, message.date
                )
            source, start, text = (payload[:64] or None), True, ""
        phone = None
        if message.contact is not None:
            # Anyone can forward a contact card; only the sender's own number is theirs.
            if message.contact.user_id == sender.id:
                phone = to_e164(_with_plus(message.contact.phone_number), self.phone_region)
            text = text or ""
        return InboundMessage(
            channel=Channel.TELEGRAM,
            sender_id=str(message.chat.id),
            message_id=message_key(message.chat.id, message.message_id),
            text=text,
            sent_at=message.date,
            media=_media(message),
            sender_name=sender.full_name or None,
            sender_phone=phone,
            source=source,
            start=start,
            shared_contact=message.contact is not None,
        )

    def _callback(self, query: telegram.CallbackQuery) -> InboundMessage | None:
        chat = query.message.chat if query.message is not None else None
        if chat is None or chat.type != ChatType.PRIVATE or not query.data:
            return None
        return InboundMessage(
            channel=Channel.TELEGRAM,
            sender_id=str(chat.id),
            message_id=f"callback:{query.id}",
            text=_button_title(query) or query.data,
            sent_at=datetime.now(UTC),
            sender_name=query.from_user.full_name or None,
            choice=query.data,
        )


def _with_plus(number: str) -> str:
    # Telegram sends contact numbers in international form, sometimes without the "+".
    return number if number.startswith("+") else "+" + number


def _button_title(query: telegram.CallbackQuery) -> str | None:
    message = query.message
    markup = getattr(message, "reply_markup", None)
    if markup is None:
        return None
    for row in markup.inline_keyboard:
        for button in row:
            if button.callback_data == query.data:
                return button.text
    return None


def _media(message: telegram.Message) -> tuple[MediaRef, ...]:
    found: list[MediaRef] = []
    if message.photo:
        largest = message.photo[-1]
        found.append(MediaRef("photo", largest.file_id, "image/jpeg"))
    if message.document:
        found.append(MediaRef("document", message.document.file_id, message.document.mime_type))
    if message.voice:
        found.append(MediaRef("voice", message.voice.file_id, message.voice.mime_type))
    if message.audio:
        found.append(MediaRef("audio", message.audio.file_id, message.audio.mime_type))
    if message.video:
        found.append(MediaRef("video", message.video.file_id, message.video.mime_type))
    if message.video_note:
        found.append(MediaRef("video", message.video_note.file_id, "video/mp4"))
    if message.sticker:
        found.append(MediaRef("sticker", message.sticker.file_id, None))
    if message.location:
        point = message.location
        found.append(MediaRef("location", f"{point.latitude},{point.longitude}", None))
    return tuple(found)


class TelegramSender:
    """Sends with PTB's `Bot`, inside Telegram's limits, and turns its errors into ours.

    Telegram allows about one message per second in a chat and thirty per second overall. A
    chat that is ahead of its pace gets `RetryLater` (its row waits in the outbox) instead of
    a sleep, so one busy chat never holds a sending slot that other chats could use.

    A timeout is retried. Telegram has no idempotency key, so a request that reached Telegram
    before the timeout can show twice; losing a reply is worse than a rare repeat, and the
    outbox keeps a chat's messages in order either way. (WhatsApp, where a repeat costs money
    and trust, reconciles instead.)

    A row left `uncertain` by a crash (its send was in flight when the process died) is held,
    not sent again: it is blocked with the reason `UNCERTAIN`, visible to agents, who resend it
    when the lead did not get it. Nearly all such rows did arrive (the request leaves in
    milliseconds; the wait is for the answer), so resending them blindly mostly repeats them.
    `resend_uncertain` sends them again instead.
    """

    channel = Channel.TELEGRAM

    def __init__(
        self,
        bot: telegram.Bot,
        *,
        per_chat_interval: float = 1.0,
        overall_per_second: int = 30,
        resend_uncertain: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self.resend_uncertain = resend_uncertain
        self.per_chat_interval = per_chat_interval
        self.overall = AsyncLimiter(overall_per_second, 1)
        self.clock = clock
        self._next_allowed: dict[str, float] = {}

    async def send(self, message: OutboundMessage) -> SendReceipt:
        if message.uncertain and not self.resend_uncertain:
            raise Blocked(UNCERTAIN, "uncertain")
        now = self.clock()
        wait = self._next_allowed.get(message.recipient, 0.0) - now
        if wait > 0:
            raise RetryLater("pacing this chat", after=wait, counts=False)
        self._next_allowed[message.recipient] = now + self.per_chat_interval
        if len(self._next_allowed) > 10_000:
            self._forget_idle(now)
        markup = None
        if message.buttons:
            markup = InlineKeyboardMarkup(
                [[InlineKeyboardButton(b.title, callback_data=b.payload)] for b in message.buttons]
            )
        async with self.overall:
            try:
                sent = await self._send(message, markup)
            except RetryAfter as exc:
                after = exc.retry_after
                seconds = after.total_seconds() if isinstance(after, timedelta) else float(after)
                raise RetryLater("telegram 429: too many requests", after=seconds) from exc
            except Forbidden as exc:
                # Blocked by the user (or never started): no retry, the lead is unreachable here.
                raise SendFailed(f"telegram 403: {exc.message}", "403", unreachable=True) from exc
            except BadRequest as exc:
                raise SendFailed(f"telegram 400: {exc.message}", "400") from exc
            except TimedOut as exc:
                raise RetryLater("telegram: timed out") from exc
            except NetworkError as exc:
                # Kept as the row's last error (/api/outbox): which URL, and why. PTB's own
                # text can carry the request's URL, and the URL the bot token: never stored,
                # the token is masked here.
                raise RetryLater(f"telegram: {describe_failure(exc, self.bot.token)}") from exc
            except TelegramError as exc:
                raise SendFailed(f"telegram: {type(exc).__name__}", type(exc).__name__) from exc
        return SendReceipt(channel_message_id=message_key(sent.chat.id, sent.message_id))

    async def _send(
        self, message: OutboundMessage, markup: InlineKeyboardMarkup | None
    ) -> telegram.Message:
        """The text, or a material's file with the text as its caption: uploaded when this
        service keeps the file (no public address needed), else by its URL."""
        chat_id = int(message.recipient)
        attachment = message.attachment
        if attachment is None:
            return await self.bot.send_message(
                chat_id=chat_id, text=message.text, reply_markup=markup
            )
        file: str | telegram.InputFile = attachment.url
        if attachment.data is not None:
            file = telegram.InputFile(attachment.data, filename=attachment.file_name)
        if attachment.kind == MaterialKind.IMAGE:
            return await self.bot.send_photo(
                chat_id=chat_id, photo=file, caption=message.text, reply_markup=markup
            )
        return await self.bot.send_document(
            chat_id=chat_id, document=file, caption=message.text, reply_markup=markup
        )

    def _forget_idle(self, now: float) -> None:
        self._next_allowed = {k: v for k, v in self._next_allowed.items() if v > now}


class TelegramMedia:
    """Downloads a file the lead sent, through the Bot API (getFile, then the file host)."""

    channel = Channel.TELEGRAM

    def __init__(self, bot: telegram.Bot, *, max_bytes: int) -> None:
        self.bot = bot
        self.max_bytes = max_bytes

    async def fetch(self, media: MediaRef) -> MediaContent:
        if media.kind == "location":
            raise MediaUnavailable(404, "a location has no file")
        try:
            file = await self.bot.get_file(media.ref)
            if file.file_size and file.file_size > self.max_bytes:
                raise MediaUnavailable(413, f"file larger than {self.max_bytes} bytes")
            data = await file.download_as_bytearray()
        except BadRequest as exc:
            raise MediaUnavailable(404, "Telegram does not have this file") from exc
        except TelegramError as exc:
            raise MediaUnavailable(502, f"Telegram: {type(exc).__name__}") from exc
        return MediaContent(bytes(data), media.content_type or "application/octet-stream")


class TelegramWebhook:
    """`POST /webhooks/telegram`: verify, hand the event to the engine, answer 200."""

    def __init__(self, intake: Intake, inbound: TelegramInbound, bot: telegram.Bot) -> None:
        self.intake = intake
        self.inbound = inbound
        self.bot = bot
        self._background: set[asyncio.Task[Any]] = set()

    def register(self, app: web.Application) -> None:
        app.router.add_post(WEBHOOK_PATH, self.handle)

    async def finish(self, app: web.Application) -> None:
        """Let the callback answers in flight finish (on shutdown)."""
        if self._background:
            await asyncio.wait(self._background, timeout=5)

    async def handle(self, request: web.Request) -> web.Response:
        update = self.inbound.update(await read_raw(request))
        await self.deliver(update)
        return web.json_response({})

    async def deliver(self, update: Update) -> None:
        """Hand the update's event to the engine; answer a button press so the spinner stops."""
        event = self.inbound.event(update)
        if event is not None:
            await self.intake.receive(event)
        if update.callback_query is not None:
            self._spawn(self._answer_callback(update.callback_query.id))

    async def _answer_callback(self, callback_id: str) -> None:
        try:
            await self.bot.answer_callback_query(callback_id)
        except TelegramError as exc:
            # The button's spinner stops by itself after a while; nothing else depends on it.
            log.warning("telegram_callback_answer_failed", extra={"error": type(exc).__name__})

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class TelegramPoller:
    """Long polling, for development without a public URL: the webhook's path, fed by getUpdates.

    An update is acknowledged (the offset moves past it) only once the engine has taken it, so
    a database outage (`transient` says which errors are one) delays updates instead of losing
    them. An update that fails for any other reason is tried `max_failures` times, then logged
    and skipped: one bad update must not stop every later one. Telegram refuses getUpdates
    while a webhook is set, and the poller stops then: never both at once.
    """

    def __init__(
        self,
        updates: TelegramWebhook,
        bot: telegram.Bot,
        *,
        transient: Callable[[BaseException], bool] = lambda exc: False,
        max_failures: int = 3,
        wait: int = 25,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.updates = updates
        self.bot = bot
        self.transient = transient
        self.max_failures = max_failures
        self.wait = wait
        self.sleep = sleep
        self._failures: dict[int, int] = {}

    async def run(self) -> None:
        offset: int | None = None
        pause = 1.0
        while True:
            try:
                batch = await self.bot.get_updates(
                    offset=offset, timeout=self.wait, allowed_updates=list(ALLOWED_UPDATES)
                )
                for update in batch:
                    await self._deliver(update)
                    offset = update.update_id + 1
                pause = 1.0
            except Conflict:
                log.error("telegram_poll_conflict", extra={"reason": "a webhook is set"})
                return
            except (NetworkError, OSError) as exc:
                log.warning(
                    "telegram_poll_retry",
                    extra={
                        "error": type(exc).__name__,
                        "reason": describe_failure(exc, self.bot.token),
                    },
                )
            except _TryAgain:
                pass
            else:
                continue
            await self.sleep(pause)
            pause = min(pause * 2, 60.0)

    async def _deliver(self, update: Update) -> None:
        """Hand one update over; raises _TryAgain when it must be fetched again."""
        try:
            await self.updates.deliver(update)
        except WebhookRejected as exc:
            # Malformed: delivering it again would fail the same way.
            log.warning(
                "telegram_update_dropped",
                extra={"update_id": update.update_id, "reason": exc.reason},
            )
        except Exception as exc:
            if self.transient(exc):
                log.warning("telegram_poll_unavailable", extra={"error": type(exc).__name__})
                raise _TryAgain from exc
            failures = self._failures.get(update.update_id, 0) + 1
            if failures < self.max_failures:
                self._failures[update.update_id] = failures
                log.exception("telegram_poll_update_failed", extra={"update_id": update.update_id})
                raise _TryAgain from exc
            log.exception(
                "telegram_update_skipped",
                extra={"update_id": update.update_id, "failures": failures},
            )
        self._failures.pop(update.update_id, None)


class _TryAgain(Exception):
    """The update was not taken; fetch it again after a pause."""


def file_url(api_base_url: str) -> str:
    """Where the Bot API serves files, beside `api_base_url`: ".../bot" -> ".../file/bot", and
    the same with a {token} placeholder (".../bot{token}/test" -> ".../file/bot{token}/test")."""
    before_token = api_base_url.find("{")
    end = before_token if before_token >= 0 else len(api_base_url)
    cut = api_base_url.rfind("/bot", 0, end)
    if cut < 0:
        return api_base_url
    return api_base_url[:cut] + "/file" + api_base_url[cut:]


def make_bot(
    token: str, *, api_base_url: str, file_base_url: str = "", connections: int = 8
) -> telegram.Bot:
    """PTB's `Bot` for this service: every form of base URL PTB takes ({token} included)."""
    return telegram.Bot(
        token,
        base_url=api_base_url,
        base_file_url=file_base_url or file_url(api_base_url),
        # PTB's default pool holds one connection; the outbox sends several at once.
        request=HTTPXRequest(connection_pool_size=connections, read_timeout=10, connect_timeout=5),
    )


def describe_failure(exc: BaseException, token: str) -> str:
    """What could not be reached and why, in words, with the token masked: PTB's messages and
    httpx's request URL carry it (https://api.telegram.org/bot<token>/getMe)."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    url = "the Telegram Bot API"
    for error in chain:
        if isinstance(error, httpx.RequestError):
            with contextlib.suppress(RuntimeError):  # no request attached
                url = str(error.request.url)
            break
    reason = _why(chain)
    masked = f"could not reach {url}: {reason}"
    return masked.replace(token, "<token>") if token else masked


def _why(chain: list[BaseException]) -> str:
    for error in chain:
        if isinstance(error, socket.gaierror):
            return f"the host name does not resolve (DNS: {error.strerror})"
        if isinstance(error, ConnectionRefusedError):
            return "connection refused (nothing listens there)"
        if isinstance(error, ssl.SSLError):
            return f"the TLS handshake failed ({error.reason or error})"
        if isinstance(error, httpx.ConnectTimeout):
            return "no connection in time (connect timeout)"
    if any(isinstance(error, httpx.TimeoutException | TimedOut) for error in chain):
        return "connected, but no answer in time (read timeout)"
    for error in reversed(chain):
        if str(error):
            return str(error)
    return type(chain[-1]).__name__


class TelegramAdmin:
    """The Bot API calls an operator makes: where Telegram delivers updates.

    Errors come out as ours, with the token never in them: `Unreachable` (which URL, and
    why: DNS, refused, timeout), `ConfigError` (the token was refused), `SeguibotError`
    (Telegram refused the request, with its reason).
    """

    def __init__(self, bot: telegram.Bot) -> None:
        self.bot = bot

    async def set_webhook(self, url: str, *, secret: str, drop_pending: bool = False) -> None:
        async with self._calling():
            await self.bot.set_webhook(
                url=url,
                secret_token=secret,
                allowed_updates=list(ALLOWED_UPDATES),
                drop_pending_updates=drop_pending,
            )

    async def webhook(self) -> str:
        """The URL Telegram currently delivers to ("" when none: polling is possible)."""
        async with self._calling():
            return (await self.bot.get_webhook_info()).url

    async def delete_webhook(self) -> None:
        async with self._calling():
            await self.bot.delete_webhook()

    @contextlib.asynccontextmanager
    async def _calling(self) -> AsyncIterator[None]:
        token = self.bot.token
        try:
            async with self.bot:
                yield
        except InvalidToken:
            # PTB's message for a refused token contains the token: never show it.
            raise ConfigError(
                "Telegram refused the bot token: check SEGUIBOT_TELEGRAM_TOKEN (from @BotFather)"
            ) from None
        except (NetworkError, OSError) as exc:  # TimedOut is a NetworkError
            raise Unreachable(
                f"{describe_failure(exc, token)}; check this machine's network, or "
                "SEGUIBOT_TELEGRAM_API_BASE_URL"
            ) from None
        except TelegramError as exc:
            raise SeguibotError(
                f"Telegram refused the request: {exc.message.replace(token, '<token>')}"
            ) from None
