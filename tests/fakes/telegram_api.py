"""A local fake of the Telegram Bot API for tests that drive PTB's real `telegram.Bot`.

    async with FakeTelegramServer() as tg:
        bot = telegram.Bot(tg.token, base_url=tg.base_url)
        await bot.initialize()  # getMe

The fake is an aiohttp server on 127.0.0.1 that answers in Telegram's envelopes. Every call is
checked against the Bot API spec (`telegram_spec.py`) and the value limits we depend on; a bad call
gets Telegram's 400, lands in `rejected`, and fails the test when the server closes, because our
sender may well swallow the `BadRequest`. Failures that Telegram produces on valid calls (429,
403 blocked, 5xx, slow answers) are scripted per method and chat.

Deliberate deviations from Telegram, each to catch our bugs sooner:
- a parameter the method does not define is rejected (Telegram ignores it);
- inside a JSON body, a non-string value for a String parameter is rejected (Telegram converts it);
- methods without a built-in answer are rejected unless they return only Boolean or a result was
  set with `set_result`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import html
import json
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.fakes.telegram_spec import TelegramSpec, UploadedFile, require_spec

# Shaped like a token (id, colon, secret) but plainly not one, and too short to pass for one.
DEFAULT_TOKEN: Final = "123456789:fake-token-for-tests"
SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"

MAX_TEXT_LENGTH: Final = 4096
MAX_CAPTION_LENGTH: Final = 1024
MAX_CALLBACK_DATA_BYTES: Final = 64
MAX_CALLBACK_ANSWER_LENGTH: Final = 200
MAX_SECRET_TOKEN_LENGTH: Final = 256
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_PATH = re.compile(r"/bot(?P<token>[^/]+)/(?P<method>[A-Za-z0-9_]+)/?")
_WEBHOOK_PORTS: Final = frozenset({80, 88, 443, 8443})
_CHAT_ACTIONS: Final = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# getUpdates/setWebhook with allowed_updates unset or [] leave these out (Bot API docs).
_OPT_IN_UPDATES: Final = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_BUTTON_ACTIONS: Final = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_MESSAGE_KEYS: Final = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_message",
        "edited_business_message",
        "reply_to_message",
        "pinned_message",
    }
)
_MARKDOWN_V2_RESERVED: Final = frozenset("#+-={}.!")
_NOT_MODIFIED: Final = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
_WEBHOOK_CONFLICT: Final = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
    "the webhook first"
)
_POLL_CONFLICT: Final = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
    "running"
)

ChatId = int | str


@dataclass(frozen=True, slots=True)
class Call:
    """One call as the fake decoded it. `encoding`: query, form, json, multipart or none."""

    method: str
    params: dict[str, Any]
    encoding: str = "form"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A call the fake refused because it breaks the spec or a limit: a bug on our side."""

    method: str
    params: dict[str, Any]
    status: int
    description: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Failure:
    """A valid call answered with an error: scripted, simulated (blocked, rate limit) or state."""

    call: Call
    status: int
    description: str


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    secret_token: str | None
    allowed_updates: tuple[str, ...] | None
    max_connections: int
    ip_address: str | None
    has_custom_certificate: bool
    drop_pending_updates: bool


@dataclass(frozen=True, slots=True)
class WebhookReply:
    """What our webhook endpoint answered to a delivered update."""

    status: int
    text: str


class _Default(enum.Enum):
    FROM_WEBHOOK = enum.auto()


FROM_WEBHOOK: Final = _Default.FROM_WEBHOOK


@dataclass(frozen=True, slots=True)
class _Scripted:
    method: str  # lower-case: Telegram method names are case-insensitive
    chat_id: ChatId | None
    status: int = 0  # 0: a hang, not a failure
    description: str = ""
    parameters: Mapping[str, int] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str = "application/json"
    hang_seconds: float = 0.0

    def matches(self, method: str, chat_id: object) -> bool:
        if self.method != method.lower():
            return False
        return self.chat_id is None or _same_chat(self.chat_id, chat_id)


class _ApiError(Exception):
    """Raised inside the fake to answer with an error envelope."""

    def __init__(
        self,
        status: int,
        description: str,
        parameters: Mapping[str, int] | None = None,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = dict(parameters or {})
        self.body = body
        self.content_type = content_type

    def response(self) -> web.Response:
        if self.body is not None:
            return web.Response(status=self.status, body=self.body, content_type=self.content_type)
        envelope: dict[str, object] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters:
            envelope["parameters"] = self.parameters
        return web.json_response(envelope, status=self.status)


class _NotImplementedByFake(_ApiError):
    """A valid call the fake cannot answer: a rejection, so the gap gets noticed."""


def _same_chat(expected: ChatId, actual: object) -> bool:
    return str(expected).lower() == str(actual).lower()


def _default_description(status: int, retry_after: int) -> str:
    known = {
        400: "Bad Request: chat not found",
        401: "Unauthorized",
        403: "Forbidden: bot was blocked by the user",
        404: "Not Found",
        409: _POLL_CONFLICT,
        429: f"Too Many Requests: retry after {retry_after}",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }
    if status in known:
        return known[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Error {status}"


def _update_kind(update: Mapping[str, object]) -> str:
    kinds = [key for key in update if key != "update_id"]
    return kinds[0] if kinds else ""


def _parse_entities(text: str, parse_mode: str | None) -> tuple[str, str | None]:
    """The visible text after Telegram's entity parsing, or an error description.

    Only what matters to length limits and to catching unescaped MarkdownV2; no entities are
    produced.
    """
    if parse_mode is None:
        return text, None
    mode = parse_mode.lower()
    if mode == "html":
        return html.unescape(re.sub(r"<[^>]*>", "", text)), None
    if mode == "markdown":
        return re.sub(r"[*_`\[\]]", "", text), None
    if mode != "markdownv2":
        return text, "Bad Request: unsupported parse_mode"
    return _parse_markdown_v2(text)


def _parse_markdown_v2(text: str) -> tuple[str, str | None]:
    out: list[str] = []
    index = 0
    link_depth = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index + 1])
            index += 2
            continue
        if char == "`":
            fence = "```" if text.startswith("```", index) else "`"
            end = text.find(fence, index + len(fence))
            if end < 0:
                return text, "Bad Request: can't parse entities: Can't find end of code entity"
            out.append(text[index + len(fence) : end])
            index = end + len(fence)
            continue
        if char == "[":
            link_depth += 1
        elif char == "]" and link_depth:
            link_depth -= 1
            if text.startswith("(", index + 1):
                end = text.find(")", index + 2)
                index = (end if end >= 0 else len(text)) + 1
                continue
        elif char in "*_~|":
            pass  # formatting markers; Telegram checks pairing too, we only drop them
        elif (
            char in _MARKDOWN_V2_RESERVED
            or char in "()]"
            or (char == ">" and index > 0 and text[index - 1] != "\n")
        ):
            return text, (
                f"Bad Request: can't parse entities: Character '{char}' is reserved and must be "
                "escaped with the preceding '\\'"
            )
        else:
            out.append(char)
        index += 1
    return "".join(out), None


def _inline_keyboard_problems(markup: object) -> list[str]:
    if not isinstance(markup, dict) or not isinstance(markup.get("inline_keyboard"), list):
        return []
    problems: list[str] = []
    for row in markup["inline_keyboard"]:
        for button in row if isinstance(row, list) else []:
            if not isinstance(button, dict):
                continue
            actions = [name for name in _BUTTON_ACTIONS if name in button]
            if not actions:
                problems.append(
                    "Bad Request: can't parse inline keyboard button: Text buttons are "
                    "unallowed in the inline keyboard"
                )
            elif len(actions) > 1:
                problems.append(
                    "Bad Request: can't parse inline keyboard button: exactly one of "
                    f"{', '.join(actions)} must be used"
                )
            data = button.get("callback_data")
            if isinstance(data, str) and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                problems.append("Bad Request: BUTTON_DATA_INVALID")
    return problems


class FakeTelegramServer:
    """The Bot API on 127.0.0.1, with a spec check on every call and scriptable failures.

    Args:
        token: the token the fake accepts; any other gets 401.
        per_chat_rate: opt-in flood control, messages per second per chat (Telegram: about 1).
        per_chat_burst: how many messages a quiet chat may send at once before the rate applies.
        fail_on_rejected: leaving the `async with` block raises AssertionError while `rejected`
            holds calls; tests that provoke rejections on purpose `take_rejected()` them.
        clock: seconds, monotonic; the rate limiter reads it, so tests can move time by hand.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "SeguibotPruebasBot",
        bot_first_name: str = "Seguibot Pruebas",
        per_chat_rate: float | None = None,
        per_chat_burst: int = 3,
        fail_on_rejected: bool = True,
        latency: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        bot_id, _, secret = token.partition(":")
        if not bot_id.isdigit() or not secret:
            raise ValueError("a bot token looks like <bot id>:<secret>")
        self.token = token
        self.bot_user: dict[str, Any] = {
            "id": int(bot_id),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.per_chat_rate = per_chat_rate
        self.per_chat_burst = per_chat_burst
        self.fail_on_rejected = fail_on_rejected
        # Seconds a sendMessage takes to be answered, after Telegram has taken it: the window
        # in which a sender that dies cannot know its message went out.
        self.latency = latency
        self.clock = clock

        self.calls: list[Call] = []
        self.rejected: list[Rejection] = []
        self.failures: list[Failure] = []
        self.webhook: Webhook | None = None

        self._spec: TelegramSpec | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._script: list[_Scripted] = []
        self._results: dict[str, object] = {}
        self._blocked: set[str] = set()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._usernames: dict[str, int] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._last_message_id: dict[int, int] = {}
        self._updates: list[dict[str, Any]] = []
        self._last_update_id = 700_000_000
        self._poll_allowed: tuple[str, ...] = ()
        self._poll_generation = 0
        self._wakeup = asyncio.Event()
        self._closing = asyncio.Event()
        self._methods: dict[str, Callable[[dict[str, Any]], Awaitable[object]]] = {
            "getMe": self._get_me,
            "sendMessage": self._send_message,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "answerCallbackQuery": self._true,
            "sendChatAction": self._true,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getUpdates": self._get_updates,
            "getFile": self._get_file,
        }
        self._files: dict[str, tuple[str, bytes]] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._spec = require_spec()
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Short shutdown: a hung or long-polling request must not hold the test's teardown.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()
        self._wake_pollers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if exc_type is None and self.fail_on_rejected and self.rejected:
            lines = "\n".join(f"  {r.method}: {r.description}" for r in self.rejected)
            raise AssertionError(
                f"the fake Bot API rejected {len(self.rejected)} call(s):\n{lines}"
            )

    @property
    def url(self) -> str:
        """Root of the fake, e.g. http://127.0.0.1:40123."""
        if not self._port:
            raise RuntimeError("FakeTelegramServer is not running; use `async with`")
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """For `telegram.Bot(token, base_url=...)`; PTB appends the token."""
        return f"{self.url}/bot"

    @property
    def spec(self) -> TelegramSpec:
        if self._spec is None:
            self._spec = require_spec()
        return self._spec

    # --- what happened -----------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def sent_texts(self, chat_id: ChatId | None = None) -> list[str]:
        """Texts of accepted sendMessage calls as sent (markup included), in order."""
        return [
            str(call.params["text"])
            for call in self.calls_to("sendMessage")
            if chat_id is None or _same_chat(chat_id, call.params.get("chat_id"))
        ]

    def take_rejected(self) -> list[Rejection]:
        """The rejected calls so far, forgetting them (for tests that provoke them)."""
        taken, self.rejected = self.rejected, []
        return taken

    # --- scripting ---------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int,
        description: str | None = None,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        chat_id: ChatId | None = None,
        body: str | bytes | None = None,
        content_type: str = "text/html",
        times: int = 1,
    ) -> None:
        """Answer the next `times` valid calls of `method` (to `chat_id`, if given) with an error.

        `status=429` carries `parameters.retry_after` (default 5) as Telegram does. `body`
        replaces the JSON envelope with a raw body, such as the HTML page of a 502.
        """
        if status == 429 and retry_after is None:
            retry_after = 5
        parameters: dict[str, int] = {}
        if retry_after is not None:
            parameters["retry_after"] = retry_after
        if migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = migrate_to_chat_id
        raw = body.encode() if isinstance(body, str) else body
        entry = _Scripted(
            method=method.lower(),
            chat_id=chat_id,
            status=status,
            description=description or _default_description(status, retry_after or 0),
            parameters=parameters,
            body=raw,
            content_type=content_type if raw is not None else "application/json",
        )
        self._script.extend([entry] * times)

    def hang_next(self, method: str, seconds: float, *, chat_id: ChatId | None = None) -> None:
        """Carry out the next call of `method`, then answer only after `seconds`.

        The call takes effect (it is in `calls`, a message is "sent") even when the client gives
        up first, as with a real timeout: the sender cannot know whether it went out.
        """
        self._script.append(_Scripted(method=method.lower(), chat_id=chat_id, hang_seconds=seconds))

    def block(self, chat_id: ChatId) -> None:
        """The user blocks the bot: calls to this chat answer 403 until `unblock`."""
        self._blocked.add(str(chat_id).lower())

    def unblock(self, chat_id: ChatId) -> None:
        self._blocked.discard(str(chat_id).lower())

    def add_file(self, file_id: str, content: bytes, *, file_path: str | None = None) -> None:
        """Make a file downloadable as Telegram does: getFile, then the file host."""
        self._files[file_id] = (file_path or f"documents/{file_id[-8:]}.bin", content)

    @property
    def file_base_url(self) -> str:
        """What PTB's `base_file_url` should be (the token is appended)."""
        return f"{self.url}/file/bot"

    def set_result(self, method: str, result: object) -> None:
        """Answer every valid call of `method` with this result.

        Raises:
            ValueError: no such method, or `result` is not what the method returns.
        """
        definition = self.spec.method(method)
        if definition is None:
            raise ValueError(f"the Bot API has no method {method!r}")
        problems = self.spec.validate_result(definition.name, result)
        if problems:
            raise ValueError(f"not a valid {definition.name} result: " + "; ".join(problems))
        self._results[definition.name] = result

    # --- updates -----------------------------------------------------------------------------

    def push_update(self, update: Mapping[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates; assigns `update_id` when missing.

        Raises:
            ValueError: the update does not match the spec's Update type.
        """
        stored = self._accept_update(update)
        self._updates.append(stored)
        self._wake_pollers()
        return stored

    async def deliver(
        self,
        target: str | TestClient[web.Request, web.Application],
        update: Mapping[str, Any],
        *,
        secret: str | _Default | None = FROM_WEBHOOK,
        path: str | None = None,
    ) -> WebhookReply:
        """POST an update to our webhook endpoint the way Telegram does.

        `target` is the app's root URL or an `aiohttp_client` TestClient. `path` and `secret`
        default to those of the webhook set through setWebhook, so a test also checks that the
        app registered the URL it serves.

        Raises:
            ValueError: the update does not match the spec, or there is no webhook to copy from.
        """
        if path is None or secret is FROM_WEBHOOK:
            if self.webhook is None:
                raise ValueError("no webhook is set: pass path= and secret= explicitly")
            if path is None:
                path = str(URL(self.webhook.url).path_qs)
            if secret is FROM_WEBHOOK:
                secret = self.webhook.secret_token
        assert not isinstance(secret, _Default)
        return await post_update(target, self._accept_update(update), secret=secret, path=path)

    def _accept_update(self, update: Mapping[str, Any]) -> dict[str, Any]:
        stored = dict(update)
        if "update_id" not in stored:
            # Telegram numbers updates sequentially; follow on from the newest one seen.
            stored["update_id"] = self._last_update_id + 1
        problems = self.spec.validate_object("Update", stored)
        if problems:
            raise ValueError("not a valid Update: " + "; ".join(problems))
        self._last_update_id = max(self._last_update_id, stored["update_id"])
        self._learn(stored)
        return stored

    def _learn(self, value: object, key: str = "") -> None:
        """Remember chats and messages seen in updates, so replies and edits look real."""
        if not isinstance(value, dict):
            return
        chat = value.get("chat")
        if isinstance(chat, dict) and isinstance(chat.get("id"), int):
            self._chats.setdefault(chat["id"], dict(chat))
            if isinstance(chat.get("username"), str):
                self._usernames[chat["username"].lower()] = chat["id"]
            message_id = value.get("message_id")
            # date 0 marks an InaccessibleMessage: nothing to reply to or edit.
            if key in _MESSAGE_KEYS and isinstance(message_id, int) and value.get("date"):
                self._messages[(chat["id"], message_id)] = value
                last = self._last_message_id.get(chat["id"], 0)
                self._last_message_id[chat["id"]] = max(last, message_id)
        for child_key, child in value.items():
            self._learn(child, child_key)

    def _wake_pollers(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    # --- HTTP --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        match = _PATH.fullmatch(request.path)
        if match is None:
            return _ApiError(404, "Not Found").response()
        if match["token"] != self.token:
            self._reject(match["method"], {}, 401, "Unauthorized")
            return _ApiError(401, "Unauthorized").response()
        definition = self.spec.method(match["method"])
        if definition is None:
            self._reject(match["method"], {}, 404, "Not Found")
            return _ApiError(404, "Not Found").response()
        method = definition.name
        try:
            raw, encoding = await _read_params(request)
        except _ApiError as error:
            self._reject(method, {}, error.status, error.description)
            return error.response()
        params = self.spec.decode_params(method, raw)
        problems = self._problems(method, params)
        if problems:
            self._reject(method, params, 400, problems[0], problems)
            return _ApiError(400, problems[0]).response()

        call = Call(method, params, encoding)
        hang = 0.0
        try:
            hang = self._scripted(call)
            result = await self._answer(call)
        except _NotImplementedByFake as error:
            self._reject(method, params, error.status, error.description)
            return error.response()
        except _ApiError as error:
            self.failures.append(Failure(call, error.status, error.description))
            return error.response()
        answer = result.result if isinstance(result, _Described) else result
        if problems := self.spec.validate_result(method, answer):
            # A bug in the fake itself: fail as loudly as a bad call from our code.
            description = "FakeTelegramServer answered off-spec: " + "; ".join(problems)
            self._reject(method, params, 500, description, problems)
            return _ApiError(500, description).response()
        self.calls.append(call)
        if call.method == "sendMessage":
            hang = max(hang, self.latency)
        if hang:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), hang)
        envelope: dict[str, object] = {"ok": True, "result": answer}
        if isinstance(result, _Described):
            envelope["description"] = result.description
        return web.json_response(envelope, dumps=_dumps)

    def _reject(
        self,
        method: str,
        params: dict[str, Any],
        status: int,
        description: str,
        problems: list[str] | None = None,
    ) -> None:
        self.rejected.append(
            Rejection(method, params, status, description, tuple(problems or [description]))
        )

    def _problems(self, method: str, params: dict[str, Any]) -> list[str]:
        spec_problems = self.spec.validate_call(method, params)
        if method == "sendMessage" and "text" not in params:
            # Telegram words a missing text the same as an empty one.
            spec_problems = [p for p in spec_problems if p != 'parameter "text" is required']
            spec_problems.insert(0, "message text is empty")
        problems = [f"Bad Request: {problem}" for problem in spec_problems]
        if not problems:
            problems = self._limit_problems(method, params)
        return problems

    def _limit_problems(self, method: str, params: dict[str, Any]) -> list[str]:
        problems = _inline_keyboard_problems(params.get("reply_markup"))
        if method == "sendMessage":
            text, error = _parse_entities(params["text"], params.get("parse_mode"))
            if error:
                problems.insert(0, error)
            elif not text.strip():
                problems.insert(0, "Bad Request: message text is empty")
            elif len(text) > MAX_TEXT_LENGTH:
                problems.insert(0, "Bad Request: message is too long")
        elif method in ("sendDocument", "sendPhoto"):
            caption, error = _parse_entities(params.get("caption", ""), params.get("parse_mode"))
            if error:
                problems.insert(0, error)
            elif len(caption) > MAX_CAPTION_LENGTH:
                problems.insert(0, "Bad Request: message caption is too long")
            file = params["document" if method == "sendDocument" else "photo"]
            # A text that is neither a URL nor a file_id we issued: Telegram cannot fetch it.
            if isinstance(file, str) and not file.startswith(("http://", "https://", "BQ", "AgAC")):
                problems.insert(0, "Bad Request: wrong remote file identifier specified")
        elif method == "answerCallbackQuery":
            if len(params.get("text", "")) > MAX_CALLBACK_ANSWER_LENGTH:
                problems.append("Bad Request: MESSAGE_TOO_LONG")
        elif method == "sendChatAction":
            if params["action"] not in _CHAT_ACTIONS:
                problems.append("Bad Request: wrong parameter action in request")
        elif method == "setWebhook":
            problems.extend(_webhook_problems(params))
        return problems

    def _scripted(self, call: Call) -> float:
        """Apply scripted failures, blocks and flood control; the seconds to hang, if any.

        Raises:
            _ApiError: the call is answered with an error instead.
        """
        chat_id = call.params.get("chat_id")
        hang = 0.0
        for index, entry in enumerate(self._script):
            if entry.matches(call.method, chat_id):
                del self._script[index]
                if not entry.status:
                    hang = entry.hang_seconds
                    break
                raise _ApiError(
                    entry.status,
                    entry.description,
                    entry.parameters,
                    body=entry.body,
                    content_type=entry.content_type,
                )
        if chat_id is not None and str(chat_id).lower() in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        if self.per_chat_rate and chat_id is not None and _counts_as_message(call.method):
            self._take_token(str(chat_id).lower())
        return hang

    def _take_token(self, chat: str) -> None:
        assert self.per_chat_rate
        now = self.clock()
        tokens, last = self._buckets.get(chat, (float(self.per_chat_burst), now))
        tokens = min(float(self.per_chat_burst), tokens + (now - last) * self.per_chat_rate)
        if tokens < 1:
            self._buckets[chat] = (tokens, now)
            retry_after = max(1, math.ceil((1 - tokens) / self.per_chat_rate))
            raise _ApiError(
                429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
            )
        self._buckets[chat] = (tokens - 1, now)

    async def _answer(self, call: Call) -> object:
        if call.method in self._results:
            return self._results[call.method]
        handler = self._methods.get(call.method)
        if handler is not None:
            return await handler(call.params)
        if self.spec.methods[call.method].returns == ("Boolean",):
            return True
        raise _NotImplementedByFake(
            400, f"Bad Request: FakeTelegramServer does not implement {call.method}"
        )

    # --- methods -----------------------------------------------------------------------------

    async def _true(self, params: dict[str, Any]) -> object:
        return True

    async def _get_me(self, params: dict[str, Any]) -> object:
        return self.bot_user

    async def _get_file(self, params: dict[str, Any]) -> object:
        stored = self._files.get(params["file_id"])
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        path, content = stored
        return {
            "file_id": params["file_id"],
            "file_unique_id": "U" + params["file_id"][-12:],
            "file_size": len(content),
            "file_path": path,
        }

    async def _download(self, request: web.Request) -> web.Response:
        """Telegram's file host: `/file/bot<token>/<file_path>` (what PTB downloads from)."""
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        for path, content in self._files.values():
            if path == request.match_info["path"]:
                return web.Response(body=content, content_type="application/octet-stream")
        return web.Response(status=404)

    async def _send_message(self, params: dict[str, Any]) -> object:
        chat = self._chat(params["chat_id"])
        text, _ = _parse_entities(params["text"], params.get("parse_mode"))
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat["id"]),
            "from": self.bot_user,
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }
        if "entities" in params:
            message["entities"] = params["entities"]
        reply = params.get("reply_parameters") or {}
        replied = self._messages.get((chat["id"], reply.get("message_id", 0)))
        if replied is not None:
            message["reply_to_message"] = replied
        # Telegram echoes only inline keyboards; reply keyboards live on the client.
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        self._messages[(chat["id"], message["message_id"])] = message
        return message

    def sent_files(self, method: str, chat_id: ChatId | None = None) -> list[Call]:
        """sendDocument / sendPhoto calls (to `chat_id`, if given), oldest first."""
        return [
            call
            for call in self.calls_to(method)
            if chat_id is None or _same_chat(chat_id, call.params.get("chat_id"))
        ]

    def _file_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params["chat_id"])
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat["id"]),
            "from": self.bot_user,
            "chat": chat,
            "date": int(time.time()),
        }
        if params.get("caption"):
            caption, _ = _parse_entities(params["caption"], params.get("parse_mode"))
            message["caption"] = caption
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        self._messages[(chat["id"], message["message_id"])] = message
        return message

    @staticmethod
    def _file_size(file: object) -> int:
        return len(file.data) if isinstance(file, UploadedFile) else 0

    async def _send_document(self, params: dict[str, Any]) -> object:
        message = self._file_message(params)
        file = params["document"]
        document: dict[str, Any] = {
            "file_id": f"BQACAgEAAx{message['message_id']:08d}",
            "file_unique_id": f"AgAD{message['message_id']:08d}",
        }
        if isinstance(file, UploadedFile):
            document.update(
                file_name=file.filename,
                mime_type=file.content_type,
                file_size=self._file_size(file),
            )
        message["document"] = document
        return message

    async def _send_photo(self, params: dict[str, Any]) -> object:
        message = self._file_message(params)
        size = self._file_size(params["photo"])
        message["photo"] = [
            {
                "file_id": f"AgACAgEAAx{message['message_id']:08d}",
                "file_unique_id": f"AQAD{message['message_id']:08d}",
                "width": 320,
                "height": 240,
                **({"file_size": size} if size else {}),
            }
        ]
        return message

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> object:
        if "inline_message_id" in params:
            return True
        if "chat_id" not in params or "message_id" not in params:
            raise _ApiError(400, "Bad Request: message identifier is not specified")
        chat = self._chat(params["chat_id"])
        message = self._messages.get((chat["id"], params["message_id"]))
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        if message.get("from", {}).get("id") != self.bot_user["id"]:
            raise _ApiError(400, "Bad Request: message can't be edited")
        markup = params.get("reply_markup")
        if markup == message.get("reply_markup"):
            raise _ApiError(400, _NOT_MODIFIED)
        edited = {k: v for k, v in message.items() if k != "reply_markup"}
        edited["edit_date"] = int(time.time())
        if markup:
            edited["reply_markup"] = markup
        self._messages[(chat["id"], params["message_id"])] = edited
        return edited

    async def _set_webhook(self, params: dict[str, Any]) -> object:
        url = params["url"]
        if not url:
            return await self._delete_webhook(params)
        previous = self.webhook
        allowed = params.get("allowed_updates")
        self.webhook = Webhook(
            url=url,
            secret_token=params.get("secret_token") or None,
            allowed_updates=(
                tuple(allowed)
                if allowed is not None
                else (previous.allowed_updates if previous else None)
            ),
            max_connections=params.get("max_connections", 40),
            ip_address=params.get("ip_address"),
            has_custom_certificate="certificate" in params,
            drop_pending_updates=bool(params.get("drop_pending_updates")),
        )
        if params.get("drop_pending_updates"):
            self._updates.clear()
        same = previous is not None and previous.url == url
        return _Described(True, "Webhook is already set" if same else "Webhook was set")

    async def _delete_webhook(self, params: dict[str, Any]) -> object:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        previous, self.webhook = self.webhook, None
        return _Described(True, "Webhook was deleted" if previous else "Webhook is already deleted")

    async def _get_webhook_info(self, params: dict[str, Any]) -> object:
        info: dict[str, Any] = {
            "url": self.webhook.url if self.webhook else "",
            "has_custom_certificate": bool(self.webhook and self.webhook.has_custom_certificate),
            "pending_update_count": len(self._updates),
        }
        if self.webhook is not None:
            info["max_connections"] = self.webhook.max_connections
            if self.webhook.ip_address:
                info["ip_address"] = self.webhook.ip_address
            if self.webhook.allowed_updates is not None:
                info["allowed_updates"] = list(self.webhook.allowed_updates)
        return info

    async def _get_updates(self, params: dict[str, Any]) -> object:
        if self.webhook is not None:
            raise _ApiError(409, _WEBHOOK_CONFLICT)
        # A newer getUpdates ends a waiting one with 409, as Telegram does when two bots poll.
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()
        offset = params.get("offset")
        if offset is not None:
            if offset < 0:
                self._updates = self._updates[offset:]
            else:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if "allowed_updates" in params:
            self._poll_allowed = tuple(params["allowed_updates"])
        limit = min(max(params.get("limit", 100), 1), 100)
        deadline = asyncio.get_running_loop().time() + max(params.get("timeout", 0), 0)
        while True:
            if generation != self._poll_generation:
                raise _ApiError(409, _POLL_CONFLICT)
            ready = self._deliverable()[:limit]
            remaining = deadline - asyncio.get_running_loop().time()
            if ready or remaining <= 0 or self._closing.is_set():
                return ready
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _deliverable(self) -> list[dict[str, Any]]:
        """Pending updates the poller asked for; Telegram never keeps the others."""
        allowed = set(self._poll_allowed)

        def wanted(update: dict[str, Any]) -> bool:
            kind = _update_kind(update)
            return kind in allowed if allowed else kind not in _OPT_IN_UPDATES

        self._updates = [u for u in self._updates if wanted(u)]
        return list(self._updates)

    # --- chats -------------------------------------------------------------------------------

    def _chat(self, chat_id: ChatId) -> dict[str, Any]:
        if isinstance(chat_id, str):
            known = self._usernames.get(chat_id.removeprefix("@").lower())
            if known is None:
                raise _ApiError(400, "Bad Request: chat not found")
            chat_id = known
        if chat_id not in self._chats:
            self._chats[chat_id] = _invented_chat(chat_id)
        return self._chats[chat_id]

    def _next_message_id(self, chat_id: int) -> int:
        self._last_message_id[chat_id] = self._last_message_id.get(chat_id, 0) + 1
        return self._last_message_id[chat_id]


@dataclass(frozen=True, slots=True)
class _Described:
    """A result Telegram sends with a `description` beside it (setWebhook, deleteWebhook)."""

    result: object
    description: str


def _dumps(value: object) -> str:
    # Telegram sends UTF-8 text, not \\u escapes.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _counts_as_message(method: str) -> bool:
    return method.startswith(("send", "copyMessage", "forwardMessage")) and method != (
        "sendChatAction"
    )


def _invented_chat(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "Prospecto"}
    if str(chat_id).startswith("-100"):
        return {"id": chat_id, "type": "supergroup", "title": "Grupo de pruebas"}
    return {"id": chat_id, "type": "group", "title": "Grupo de pruebas"}


def _webhook_problems(params: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    url = params["url"]
    if url:
        parsed = URL(url)
        if parsed.scheme != "https" or not parsed.host:
            problems.append("Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        elif parsed.port not in _WEBHOOK_PORTS:
            problems.append(
                "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
            )
    secret = params.get("secret_token")
    if secret:
        if len(secret) > MAX_SECRET_TOKEN_LENGTH:
            problems.append("Bad Request: secret token is too long")
        elif not _SECRET_TOKEN.fullmatch(secret):
            problems.append("Bad Request: secret token contains unallowed characters")
    connections = params.get("max_connections")
    if connections is not None and not 1 <= connections <= 100:
        problems.append("Bad Request: bad webhook: max_connections must be between 1 and 100")
    return problems


async def _read_params(request: web.Request) -> tuple[dict[str, object], str]:
    """Parameters from the query string and the body, in every encoding the Bot API accepts."""
    params: dict[str, object] = dict(request.query)
    encoding = "query" if params else "none"
    if not request.body_exists:
        return params, encoding
    content_type = request.content_type
    if content_type == "application/json":
        try:
            body = json.loads(await request.read())
        except ValueError as error:
            raise _ApiError(400, "Bad Request: can't parse JSON object") from error
        if not isinstance(body, dict):
            raise _ApiError(400, "Bad Request: JSON body must be an object")
        # A null is as good as leaving the parameter out.
        params.update({key: value for key, value in body.items() if value is not None})
        return params, "json"
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                params[key] = UploadedFile(
                    name=key,
                    filename=value.filename,
                    content_type=value.content_type,
                    data=value.file.read(),
                )
            else:
                params[key] = value if isinstance(value, str) else bytes(value).decode()
        return params, "multipart" if content_type == "multipart/form-data" else "form"
    return params, encoding


async def post_update(
    target: str | TestClient[web.Request, web.Application],
    update: Mapping[str, Any],
    *,
    secret: str | None,
    path: str = "",
) -> WebhookReply:
    """POST one update as Telegram's webhook requests do: compact UTF-8 JSON, and the
    `X-Telegram-Bot-Api-Secret-Token` header when a secret token is set.

    `target` is a root URL (`path` appended) or an aiohttp TestClient.
    """
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    body = _dumps(update).encode()
    if isinstance(target, TestClient):
        response = await target.post(path or "/", data=body, headers=headers)
        return WebhookReply(response.status, await response.text())
    async with (
        aiohttp.ClientSession() as session,
        session.post(target.rstrip("/") + path, data=body, headers=headers) as response,
    ):
        return WebhookReply(response.status, await response.text())
