"""The fake Bot API, driven through PTB's real `telegram.Bot`, and the recorded Update payloads.

If the fake accepted what Telegram refuses, or answered what PTB cannot parse, every channel test
built on it would pass for the wrong reason; these tests pin both sides.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import telegram
from aiohttp import web
from pytest_aiohttp import AiohttpClient
from telegram import error as tg_error
from telegram.warnings import PTBDeprecationWarning

from tests.fakes.telegram_api import (
    DEFAULT_TOKEN,
    SECRET_HEADER,
    Call,
    FakeTelegramServer,
    post_update,
)
from tests.fakes.telegram_spec import SPEC_PATH, load_spec, require_spec

pytestmark = pytest.mark.skipif(
    not SPEC_PATH.is_file(), reason=f"Telegram Bot API spec not found at {SPEC_PATH}"
)

DATA = Path(__file__).resolve().parents[1] / "data" / "telegram"
MARIANA = 5839201746  # private chat ids equal the user's id
JUAN = 6120457839
WEBHOOK_URL = "https://bot.example.com/telegram/webhook"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture(autouse=True)
def _timedelta_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without it, PTB 22.8 warns on every RetryAfter (see the test that unsets it).
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as server:
        yield server


@pytest.fixture
async def bot(tg: FakeTelegramServer) -> AsyncIterator[telegram.Bot]:
    async with telegram.Bot(tg.token, base_url=tg.base_url) as client:
        yield client


async def raw(
    tg: FakeTelegramServer,
    method: str,
    *,
    http: str = "POST",
    token: str | None = None,
    **kwargs: Any,
) -> tuple[int, dict[str, Any]]:
    """One hand-made request, for calls PTB would never send."""
    url = f"{tg.url}/bot{token or tg.token}/{method}"
    async with aiohttp.ClientSession() as session, session.request(http, url, **kwargs) as resp:
        body: dict[str, Any] = await resp.json(content_type=None)
        return resp.status, body


def keyboard(*data: str) -> telegram.InlineKeyboardMarkup:
    return telegram.InlineKeyboardMarkup(
        [[telegram.InlineKeyboardButton(f"Opción {d}", callback_data=d) for d in data]]
    )


# --- lifecycle and the happy path ------------------------------------------------------------


async def test_initialize_calls_get_me_once(tg: FakeTelegramServer) -> None:
    bot = telegram.Bot(tg.token, base_url=tg.base_url)
    await bot.initialize()
    await bot.initialize()  # cached: no second getMe
    try:
        assert tg.calls == [Call("getMe", {}, "none")]
        assert bot.bot.id == 123456789
        assert bot.username == "SeguibotPruebasBot"
    finally:
        await bot.shutdown()


async def test_default_token_is_fake_but_shaped_like_one() -> None:
    bot_id, _, secret = DEFAULT_TOKEN.partition(":")
    assert bot_id.isdigit() and re.fullmatch(r"[A-Za-z0-9_-]+", secret)
    assert "fake" in secret
    # Shorter than a real token's secret part, so secret scanners never mistake it for one.
    assert len(secret) < 35


async def test_send_message_returns_a_parsed_message(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    first = await bot.send_message(
        MARIANA, "¡Hola, Mariana! ¿Seguimos?", reply_markup=keyboard("si")
    )
    second = await bot.send_message(MARIANA, "Te escribo mañana")
    other = await bot.send_message(JUAN, "Hola, Juan Camilo")

    assert isinstance(first, telegram.Message)
    assert (first.message_id, second.message_id, other.message_id) == (1, 2, 1)
    assert first.from_user is not None and first.from_user.id == bot.id
    assert first.chat.id == MARIANA and first.chat.type == telegram.constants.ChatType.PRIVATE
    assert first.text == "¡Hola, Mariana! ¿Seguimos?"
    assert first.reply_markup == keyboard("si")
    assert second.reply_markup is None
    assert first.date.tzinfo is not None
    assert tg.sent_texts(MARIANA) == ["¡Hola, Mariana! ¿Seguimos?", "Te escribo mañana"]
    assert tg.sent_texts() == [*tg.sent_texts(MARIANA), "Hola, Juan Camilo"]


async def test_ptb_sends_form_fields_with_json_encoded_non_strings(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    await bot.send_message(MARIANA, "123", disable_notification=True, reply_markup=keyboard("a"))

    (call,) = tg.calls_to("sendMessage")
    assert call.encoding == "form"
    # "123" stays a String for `text`; the others decode by their declared types.
    assert call.params == {
        "chat_id": MARIANA,
        "text": "123",
        "disable_notification": True,
        "reply_markup": {"inline_keyboard": [[{"callback_data": "a", "text": "Opción a"}]]},
    }


async def test_ptb_uploads_files_as_multipart(tg: FakeTelegramServer, bot: telegram.Bot) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert await bot.set_webhook(WEBHOOK_URL, certificate=pem, secret_token="s3cr3t_TOKEN-1")

    (call,) = tg.calls_to("setWebhook")
    assert call.encoding == "multipart"
    assert call.params["certificate"].data == pem
    assert (await bot.get_webhook_info()).has_custom_certificate is True


@pytest.mark.parametrize("encoding", ["query", "form", "json", "multipart"])
async def test_every_bot_api_encoding_is_accepted(tg: FakeTelegramServer, encoding: str) -> None:
    markup = {"inline_keyboard": [[{"text": "Sí", "callback_data": "si"}]]}
    typed = {
        "chat_id": MARIANA,
        "text": "Hola",
        "disable_notification": True,
        "reply_markup": markup,
    }
    wire = {
        "chat_id": str(MARIANA),
        "text": "Hola",
        "disable_notification": "true",
        "reply_markup": json.dumps(markup),
    }
    requests: dict[str, dict[str, Any]] = {
        "query": {"http": "GET", "params": wire},
        "form": {"data": wire},
        "json": {"json": typed},
        "multipart": {"data": aiohttp.FormData(wire, default_to_multipart=True)},
    }
    request = requests[encoding]

    status, body = await raw(tg, "sendMessage", **request)

    assert (status, body["ok"]) == (200, True)
    assert body["result"]["reply_markup"] == markup
    assert tg.calls == [Call("sendMessage", typed, encoding)]


async def test_method_names_are_case_insensitive(tg: FakeTelegramServer) -> None:
    status, body = await raw(tg, "SENDMESSAGE", json={"chat_id": MARIANA, "text": "Hola"})
    assert (status, body["ok"]) == (200, True)
    assert [call.method for call in tg.calls] == ["sendMessage"]


async def test_answers_match_the_spec(tg: FakeTelegramServer, bot: telegram.Bot) -> None:
    # The fake checks its own answers too; this pins that the check runs on real results.
    spec = load_spec()
    sent = await bot.send_message(MARIANA, "Hola", reply_markup=keyboard("a"))
    await bot.edit_message_reply_markup(MARIANA, sent.message_id, reply_markup=keyboard("b"))
    await bot.set_webhook(WEBHOOK_URL, allowed_updates=["message"])
    for method, payload in [
        ("getMe", {}),
        ("getWebhookInfo", {}),
        ("sendMessage", {"chat_id": JUAN, "text": "Hola"}),
        ("editMessageReplyMarkup", {"chat_id": MARIANA, "message_id": sent.message_id}),
    ]:
        _, body = await raw(tg, method, json=payload)
        assert body["ok"] is True
        assert spec.validate_result(method, body["result"]) == []
    assert spec.validate_result("getMe", {"id": 1, "is_bot": True}) == [
        "getMe result.first_name: required field of User is missing"
    ]


# --- rejected calls ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_kwargs", "description"),
    [
        (
            {"json": {"chat_id": MARIANA, "text": "Hola", "colour": "azul"}},
            'Bad Request: unknown parameter "colour" for method sendMessage',
        ),
        ({"json": {"text": "Hola"}}, 'Bad Request: parameter "chat_id" is required'),
        ({"json": {"chat_id": MARIANA}}, "Bad Request: message text is empty"),
        (
            {"json": {"chat_id": True, "text": "Hola"}},
            "Bad Request: chat_id: expected Integer or String, got true",
        ),
        (
            {"data": {"chat_id": str(MARIANA), "text": "Hola", "disable_notification": "yes"}},
            'Bad Request: disable_notification: expected Boolean, got "yes"',
        ),
        (
            {"data": {"chat_id": str(MARIANA), "text": "Hola", "message_thread_id": "1.5"}},
            'Bad Request: message_thread_id: expected Integer, got "1.5"',
        ),
        (
            {"json": {"chat_id": MARIANA, "text": 42}},
            "Bad Request: text: expected String, got 42",
        ),
        (
            {
                "json": {
                    "chat_id": MARIANA,
                    "text": "Hola",
                    "reply_markup": {"inline_keyboard": [[{"text": "Sí", "callback_data": 5}]]},
                }
            },
            "Bad Request: reply_markup.inline_keyboard[0][0].callback_data: expected String, got 5",
        ),
        (
            {
                "json": {
                    "chat_id": MARIANA,
                    "text": "Hola",
                    "link_preview_options": {"is_disabled": "yes"},
                }
            },
            'Bad Request: link_preview_options.is_disabled: expected Boolean, got "yes"',
        ),
        (
            {"json": {"chat_id": MARIANA, "text": "Hola", "reply_parameters": {"chat_id": 1}}},
            "Bad Request: reply_parameters.message_id: required field of ReplyParameters is "
            "missing",
        ),
        (
            {"data": {"chat_id": str(MARIANA), "text": "Hola", "reply_markup": "{oops"}},
            "Bad Request: reply_markup: expected InlineKeyboardMarkup or ReplyKeyboardMarkup or "
            'ReplyKeyboardRemove or ForceReply, got "{oops"',
        ),
    ],
    ids=[
        "unknown-param",
        "missing-chat",
        "missing-text",
        "bool-chat-id",
        "bad-boolean",
        "float-for-integer",
        "int-for-string",
        "nested-type",
        "nested-boolean",
        "nested-required",
        "not-json",
    ],
)
async def test_invalid_send_message_is_rejected_with_400(
    tg: FakeTelegramServer, request_kwargs: dict[str, Any], description: str
) -> None:
    status, body = await raw(tg, "sendMessage", **request_kwargs)

    assert status == 400
    assert body == {"ok": False, "error_code": 400, "description": description}
    assert tg.calls == []
    assert [r.description for r in tg.take_rejected()] == [description]


async def test_unknown_parameter_from_ptb_raises_bad_request(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    with pytest.raises(tg_error.BadRequest) as info:
        await bot.send_message(MARIANA, "Hola", api_kwargs={"colour": "azul"})
    # PTB strips "Bad Request: " and str.capitalize()s the rest, lowercasing the method name.
    assert info.value.message == 'Unknown parameter "colour" for method sendmessage'
    assert len(tg.take_rejected()) == 1


async def test_leaving_with_rejected_calls_fails_loudly() -> None:
    with pytest.raises(AssertionError, match=r"rejected 1 call\(s\):\n  sendMessage: Bad Req"):
        async with FakeTelegramServer() as tg:
            await raw(tg, "sendMessage", json={"chat_id": MARIANA})


async def test_wrong_token_is_401_and_ptb_reports_invalid_token(tg: FakeTelegramServer) -> None:
    status, body = await raw(tg, "getMe", token="123456789:AAnotTheRightOne")
    assert (status, body) == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})

    bot = telegram.Bot("123456789:AAnotTheRightOne", base_url=tg.base_url)
    with pytest.raises(tg_error.InvalidToken, match="was rejected by the server"):
        await bot.initialize()
    await bot.shutdown()
    assert [r.status for r in tg.take_rejected()] == [401, 401]


async def test_unknown_method_is_404_which_ptb_reads_as_endpoint_not_found(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    status, body = await raw(tg, "sendTelepathy")
    assert (status, body) == (404, {"ok": False, "error_code": 404, "description": "Not Found"})
    with pytest.raises(tg_error.EndPointNotFound):
        await bot.do_api_request("sendTelepathy")
    assert len(tg.take_rejected()) == 2


async def test_unimplemented_non_boolean_method_is_rejected_until_scripted(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    assert await bot.delete_message(MARIANA, 3) is True  # Boolean results are answered
    with pytest.raises(tg_error.BadRequest, match="does not implement getchat"):
        await bot.get_chat(MARIANA)
    tg.take_rejected()

    with pytest.raises(ValueError, match="accent_color_id: required field of ChatFullInfo"):
        tg.set_result("getChat", {"id": MARIANA, "type": "private"})
    tg.set_result(
        "getChat",
        {
            "id": MARIANA,
            "type": "private",
            "first_name": "Mariana",
            "accent_color_id": 3,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        },
    )
    chat = await bot.get_chat(MARIANA)
    assert chat.id == MARIANA


# --- value limits ------------------------------------------------------------------------------


async def test_text_length_limits(tg: FakeTelegramServer, bot: telegram.Bot) -> None:
    await bot.send_message(MARIANA, "ñ" * 4096)  # characters, not bytes
    with pytest.raises(tg_error.BadRequest, match=r"^Message is too long$"):
        await bot.send_message(MARIANA, "a" * 4097)
    with pytest.raises(tg_error.BadRequest, match=r"^Message text is empty$"):
        await bot.send_message(MARIANA, "  \n ")
    assert [r.description for r in tg.take_rejected()] == [
        "Bad Request: message is too long",
        "Bad Request: message text is empty",
    ]


async def test_callback_data_is_limited_to_64_bytes(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    await bot.send_message(MARIANA, "Elige", reply_markup=keyboard("ñ" * 32))  # 64 bytes
    with pytest.raises(tg_error.BadRequest, match=r"^Button_data_invalid$"):
        await bot.send_message(MARIANA, "Elige", reply_markup=keyboard("ñ" * 33))  # 66 bytes
    with pytest.raises(tg_error.BadRequest, match="text buttons are unallowed"):
        await bot.send_message(
            MARIANA,
            "Elige",
            reply_markup=telegram.InlineKeyboardMarkup([[telegram.InlineKeyboardButton("Sí")]]),
        )
    assert len(tg.take_rejected()) == 2


async def test_answer_callback_query(tg: FakeTelegramServer, bot: telegram.Bot) -> None:
    assert await bot.answer_callback_query("3132823786054239161", text="x" * 200) is True
    with pytest.raises(tg_error.BadRequest, match=r"^Message_too_long$"):
        await bot.answer_callback_query("3132823786054239161", text="x" * 201)
    assert len(tg.take_rejected()) == 1


async def test_markdown_v2_needs_escapes_and_html_is_parsed(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    with pytest.raises(tg_error.BadRequest, match="character '!' is reserved"):
        await bot.send_message(MARIANA, "¡Hola! Nos vemos a las 5.", parse_mode="MarkdownV2")
    escaped = await bot.send_message(
        MARIANA, "¡Hola\\! Nos vemos a las *5\\.30*", parse_mode="MarkdownV2"
    )
    assert escaped.text == "¡Hola! Nos vemos a las 5.30"
    html = await bot.send_message(MARIANA, "<b>Casa</b> &amp; jardín", parse_mode="HTML")
    assert html.text == "Casa & jardín"
    assert len(tg.take_rejected()) == 1


async def test_send_chat_action(tg: FakeTelegramServer, bot: telegram.Bot) -> None:
    assert await bot.send_chat_action(MARIANA, telegram.constants.ChatAction.TYPING) is True
    status, body = await raw(tg, "sendChatAction", json={"chat_id": MARIANA, "action": "bailar"})
    assert (status, body["description"]) == (400, "Bad Request: wrong parameter action in request")
    assert len(tg.take_rejected()) == 1


# --- scripted failures -------------------------------------------------------------------------


async def test_429_raises_retry_after_then_the_next_call_passes(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    tg.fail_next("sendMessage", status=429, retry_after=3)
    status, body = await raw(tg, "sendMessage", json={"chat_id": MARIANA, "text": "Hola"})
    assert (status, body) == (
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": 3},
        },
    )

    tg.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.raises(tg_error.RetryAfter) as info:
        await bot.send_message(MARIANA, "Hola")
    assert info.value.retry_after == timedelta(seconds=3)

    await bot.send_message(MARIANA, "Hola")
    assert tg.sent_texts() == ["Hola"]
    assert [failure.status for failure in tg.failures] == [429, 429]


async def test_retry_after_is_a_deprecated_int_without_ptb_timedelta(
    tg: FakeTelegramServer, bot: telegram.Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PTB_TIMEDELTA")
    tg.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.warns(PTBDeprecationWarning), pytest.raises(tg_error.RetryAfter) as info:
        await bot.send_message(MARIANA, "Hola")
    with pytest.warns(PTBDeprecationWarning):
        assert info.value.retry_after == 3


async def test_403_blocked_and_block_unblock(tg: FakeTelegramServer, bot: telegram.Bot) -> None:
    tg.fail_next("sendMessage", status=403, description="Forbidden: bot was blocked by the user")
    with pytest.raises(tg_error.Forbidden, match=r"^Forbidden: bot was blocked by the user$"):
        await bot.send_message(MARIANA, "Hola")

    tg.block(MARIANA)
    for _ in range(2):
        with pytest.raises(tg_error.Forbidden):
            await bot.send_message(MARIANA, "¿Sigues ahí?")
    await bot.send_message(JUAN, "Hola")
    tg.unblock(MARIANA)
    await bot.send_message(MARIANA, "De nuevo por aquí")
    assert tg.sent_texts() == ["Hola", "De nuevo por aquí"]


async def test_failures_can_target_one_chat(tg: FakeTelegramServer, bot: telegram.Bot) -> None:
    tg.fail_next("sendMessage", status=400, chat_id=MARIANA)
    await bot.send_message(JUAN, "Hola")
    with pytest.raises(tg_error.BadRequest, match=r"^Chat not found$"):
        await bot.send_message(MARIANA, "Hola")
    await bot.send_message(MARIANA, "Hola")
    assert tg.sent_texts(MARIANA) == ["Hola"]


async def test_migrated_group_raises_chat_migrated(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    tg.fail_next(
        "sendMessage",
        status=400,
        description="Bad Request: group chat was upgraded to a supergroup chat",
        migrate_to_chat_id=-1001829301756,
    )
    with pytest.raises(tg_error.ChatMigrated) as info:
        await bot.send_message(-4829301756, "Hola, equipo")
    assert info.value.new_chat_id == -1001829301756


@pytest.mark.parametrize("status", [500, 502])
async def test_5xx_with_html_body_is_a_network_error(
    tg: FakeTelegramServer, bot: telegram.Bot, status: int
) -> None:
    tg.fail_next("sendMessage", status=status, body="<html><body>Bad Gateway</body></html>")
    with pytest.raises(tg_error.NetworkError, match=f"\\({status}\\). Parsing the server") as info:
        await bot.send_message(MARIANA, "Hola")
    assert not isinstance(info.value, tg_error.BadRequest | tg_error.TimedOut)


async def test_hang_times_out_in_ptb_but_the_message_went_out(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    tg.hang_next("sendMessage", seconds=30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(tg_error.TimedOut):
        await bot.send_message(MARIANA, "Hola", read_timeout=0.2)
    assert loop.time() - started < 2
    assert tg.sent_texts() == ["Hola"]  # the sender cannot tell: Telegram did send it
    assert (await bot.send_message(MARIANA, "Otra")).message_id == 2


async def test_per_chat_rate_limit_is_opt_in_and_per_chat() -> None:
    now = [1000.0]
    async with (
        FakeTelegramServer(per_chat_rate=1.0, per_chat_burst=2, clock=lambda: now[0]) as tg,
        telegram.Bot(tg.token, base_url=tg.base_url) as bot,
    ):
        await bot.send_message(MARIANA, "1")
        await bot.send_message(MARIANA, "2")
        with pytest.raises(tg_error.RetryAfter) as info:
            await bot.send_message(MARIANA, "3")
        assert info.value.retry_after == timedelta(seconds=1)
        await bot.send_message(JUAN, "otro chat")
        await bot.send_chat_action(MARIANA, "typing")  # not a message
        now[0] += 1.0
        await bot.send_message(MARIANA, "3")
        assert tg.sent_texts(MARIANA) == ["1", "2", "3"]
        assert [f.description for f in tg.failures] == ["Too Many Requests: retry after 1"]


# --- editing -----------------------------------------------------------------------------------


async def test_edit_message_reply_markup(tg: FakeTelegramServer, bot: telegram.Bot) -> None:
    sent = await bot.send_message(MARIANA, "¿Agendamos?", reply_markup=keyboard("si", "no"))
    edited = await bot.edit_message_reply_markup(
        MARIANA, sent.message_id, reply_markup=keyboard("ok")
    )
    assert isinstance(edited, telegram.Message)
    assert edited.reply_markup == keyboard("ok") and edited.edit_date is not None

    with pytest.raises(tg_error.BadRequest, match=r"^Message is not modified"):
        await bot.edit_message_reply_markup(MARIANA, sent.message_id, reply_markup=keyboard("ok"))
    removed = await bot.edit_message_reply_markup(MARIANA, sent.message_id)
    assert isinstance(removed, telegram.Message) and removed.reply_markup is None
    with pytest.raises(tg_error.BadRequest, match=r"^Message to edit not found$"):
        await bot.edit_message_reply_markup(MARIANA, 999, reply_markup=keyboard("x"))

    tg.push_update(load("message_text_private"))  # Mariana's own message 412
    with pytest.raises(tg_error.BadRequest, match=r"^Message can't be edited$"):
        await bot.edit_message_reply_markup(MARIANA, 412, reply_markup=keyboard("x"))
    assert tg.rejected == []  # state errors are Telegram's answers, not our bugs


async def test_replies_continue_the_chat_s_message_ids(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    tg.push_update(load("message_text_private"))
    reply = await bot.send_message(
        MARIANA, "¡Sí, sigue disponible!", reply_parameters=telegram.ReplyParameters(412)
    )
    assert reply.message_id == 413
    assert reply.chat.first_name == "Mariana"  # the chat as the update showed it
    assert reply.reply_to_message is not None and reply.reply_to_message.message_id == 412


# --- updates: getUpdates and webhooks ----------------------------------------------------------


async def test_get_updates_long_polls_until_an_update_arrives(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    update = load("message_text_private")
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, tg.push_update, update)
    started = loop.time()

    (received,) = await bot.get_updates(timeout=5)

    assert 0.15 < loop.time() - started < 2
    assert received.update_id == update["update_id"]
    assert received.message is not None and received.message.text == update["message"]["text"]
    assert len(await bot.get_updates(timeout=0)) == 1  # not confirmed yet
    assert await bot.get_updates(offset=received.update_id + 1, timeout=0) == ()
    assert tg.calls_to("getUpdates")[0].params == {"timeout": 5}


async def test_empty_long_poll_answers_after_the_timeout(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 < loop.time() - started < 2


async def test_get_updates_offset_limit_and_allowed_updates(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    reaction = tg.push_update(
        {k: v for k, v in load("message_reaction").items() if k != "update_id"}
    )
    first = tg.push_update(load("message_start_deep_link"))
    second = tg.push_update(load("callback_query"))
    assert reaction["update_id"] > 0  # assigned

    (only,) = await bot.get_updates(limit=1, timeout=0)
    assert only.update_id == first["update_id"]  # reactions are opt-in, so it was dropped
    rest = await bot.get_updates(offset=first["update_id"] + 1, timeout=0)
    assert [u.update_id for u in rest] == [second["update_id"]]

    newer = {k: v for k, v in load("message_reaction").items() if k != "update_id"}
    assert tg.push_update(newer)["update_id"] == second["update_id"] + 1
    wanted = await bot.get_updates(
        offset=second["update_id"] + 1, timeout=0, allowed_updates=["message_reaction"]
    )
    assert [u.message_reaction is not None for u in wanted] == [True]


async def test_push_update_refuses_invalid_updates(tg: FakeTelegramServer) -> None:
    update = load("callback_query")
    del update["callback_query"]["chat_instance"]
    with pytest.raises(ValueError, match="chat_instance: required field of CallbackQuery"):
        tg.push_update(update)


async def test_a_second_poller_ends_the_first_with_409(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    # A second instance of the bot: one Bot cannot poll twice at once anyway, since PTB gives
    # getUpdates its own connection pool of size 1 (a second call waits, then PoolTimeout).
    async with telegram.Bot(tg.token, base_url=tg.base_url) as other:
        assert await other.get_updates(timeout=0) == ()
    with pytest.raises(tg_error.Conflict, match="terminated by other getUpdates request"):
        await first


async def test_webhook_lifecycle_and_409_on_get_updates(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    tg.push_update(load("message_text_private"))
    assert await bot.set_webhook(
        WEBHOOK_URL, secret_token="s3cr3t_TOKEN-1", allowed_updates=["message", "callback_query"]
    )
    assert tg.webhook is not None
    assert (tg.webhook.url, tg.webhook.secret_token) == (WEBHOOK_URL, "s3cr3t_TOKEN-1")

    info = await bot.get_webhook_info()
    assert (info.url, info.pending_update_count) == (WEBHOOK_URL, 1)
    assert info.allowed_updates == ("message", "callback_query")
    with pytest.raises(tg_error.Conflict, match="can't use getUpdates method while webhook"):
        await bot.get_updates(timeout=0)

    await bot.set_webhook(WEBHOOK_URL, drop_pending_updates=True)
    assert tg.webhook.allowed_updates == ("message", "callback_query")  # omitted: kept
    assert (await bot.get_webhook_info()).pending_update_count == 0

    assert await bot.delete_webhook()
    assert tg.webhook is None
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.get_updates(timeout=0) == ()


@pytest.mark.parametrize(
    ("url", "secret", "message"),
    [
        ("http://bot.example.com/hook", "ok", "^Bad webhook: an https url must be provided"),
        ("https://bot.example.com:8080/hook", "ok", "only on ports 80, 88, 443 or 8443"),
        (WEBHOOK_URL, "bot:token", "^Secret token contains unallowed characters$"),
        (WEBHOOK_URL, "a" * 257, "^Secret token is too long$"),
    ],
)
async def test_set_webhook_checks_url_and_secret(
    tg: FakeTelegramServer, bot: telegram.Bot, url: str, secret: str, message: str
) -> None:
    with pytest.raises(tg_error.BadRequest, match=message):
        await bot.set_webhook(url, secret_token=secret)
    assert tg.webhook is None
    assert len(tg.take_rejected()) == 1


async def test_set_webhook_accepts_the_longest_secret(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    secret = "Aa0_-" * 51 + "z"  # 256 characters
    assert await bot.set_webhook(WEBHOOK_URL, secret_token=secret)
    assert tg.webhook is not None and tg.webhook.secret_token == secret


async def test_deliver_posts_like_telegram(
    tg: FakeTelegramServer, bot: telegram.Bot, aiohttp_client: AiohttpClient
) -> None:
    seen: list[tuple[str, str | None, str, bytes]] = []

    async def webhook(request: web.Request) -> web.Response:
        seen.append(
            (
                request.path,
                request.headers.get(SECRET_HEADER),
                request.content_type,
                await request.read(),
            )
        )
        return web.Response()

    app = web.Application()
    app.router.add_post("/telegram/webhook", webhook)
    client = await aiohttp_client(app)
    update = load("message_contact_self")

    with pytest.raises(ValueError, match="no webhook is set"):
        await tg.deliver(client, update)
    await bot.set_webhook(WEBHOOK_URL, secret_token="s3cr3t_TOKEN-1")

    reply = await tg.deliver(client, update)
    assert (reply.status, reply.text) == (200, "")
    ((path, secret, content_type, body),) = seen
    assert (path, secret, content_type) == (
        "/telegram/webhook",
        "s3cr3t_TOKEN-1",
        "application/json",
    )
    assert json.loads(body) == update
    assert "López".encode() in body  # raw UTF-8, as Telegram sends it

    await post_update(str(client.make_url("")), update, secret=None, path="/telegram/webhook")
    assert seen[-1][1] is None  # no header when no secret is set


# --- the validator and the recorded payloads ---------------------------------------------------

DATA_CHECKS: dict[str, Callable[[telegram.Update], bool]] = {
    "message_text_private": lambda u: bool(
        u.message and u.message.text and u.message.chat.type == "private"
    ),
    "message_start_deep_link": lambda u: bool(
        u.message
        and re.fullmatch(r"/start [A-Za-z0-9_-]{1,64}", u.message.text or "")
        and u.message.entities[0].type == "bot_command"
        and u.message.entities[0].offset == 0
    ),
    "message_contact_self": lambda u: bool(
        u.message
        and u.message.contact
        and u.message.from_user
        and u.message.contact.user_id == u.message.from_user.id
    ),
    "message_contact_other": lambda u: bool(
        u.message
        and u.message.contact
        and u.message.from_user
        and u.message.contact.user_id != u.message.from_user.id
    ),
    "callback_query": lambda u: bool(
        u.callback_query
        and u.callback_query.chat_instance
        and isinstance(u.callback_query.message, telegram.Message)
        and u.callback_query.message.reply_markup
        and u.callback_query.data
        in [
            b.callback_data
            for row in u.callback_query.message.reply_markup.inline_keyboard
            for b in row
        ]
    ),
    "message_photo_caption": lambda u: bool(
        u.message
        and len(u.message.photo) >= 3
        and u.message.caption
        and [p.width for p in u.message.photo] == sorted(p.width for p in u.message.photo)
    ),
    "message_document": lambda u: bool(
        u.message and u.message.document and u.message.document.mime_type
    ),
    "message_voice": lambda u: bool(u.message and u.message.voice and u.message.voice.duration),
    "message_sticker": lambda u: bool(u.message and u.message.sticker and u.message.text is None),
    "edited_message": lambda u: bool(
        u.edited_message and u.edited_message.edit_date and u.message is None
    ),
    "my_chat_member_kicked": lambda u: bool(
        u.my_chat_member and u.my_chat_member.new_chat_member.status == "kicked"
    ),
    "my_chat_member_member": lambda u: bool(
        u.my_chat_member
        and u.my_chat_member.old_chat_member.status == "kicked"
        and u.my_chat_member.new_chat_member.status == "member"
    ),
    "message_group": lambda u: bool(u.message and u.message.chat.type == "group"),
    "message_reaction": lambda u: bool(u.message_reaction and u.message_reaction.new_reaction),
}


def test_data_folder_holds_exactly_the_documented_payloads() -> None:
    assert sorted(p.stem for p in DATA.glob("*.json")) == sorted(DATA_CHECKS)


@pytest.mark.parametrize("name", sorted(DATA_CHECKS))
def test_recorded_update_matches_spec_and_ptb(name: str) -> None:
    data = load(name)
    assert require_spec().validate_object("Update", data) == []

    update = telegram.Update.de_json(data, bot=None)

    assert DATA_CHECKS[name](update)
    # PTB 22.8 knows every field: nothing spilled into api_kwargs.
    assert update.api_kwargs == {}
    if update.effective_message is not None:
        assert update.effective_message.api_kwargs == {}


@pytest.mark.parametrize(
    ("name", "mutate", "problem"),
    [
        (
            "callback_query",
            lambda d: d["callback_query"].pop("chat_instance"),
            "Update.callback_query.chat_instance: required field of CallbackQuery is missing",
        ),
        (
            "message_text_private",
            lambda d: d["message"]["from"].update(is_bot="false"),
            'Update.message.from.is_bot: expected Boolean, got "false"',
        ),
        (
            "message_group",
            lambda d: d["message"]["chat"].update(all_members_are_administrators=True),
            'Update.message.chat: unknown field "all_members_are_administrators" for Chat',
        ),
        (
            "my_chat_member_kicked",
            lambda d: d["my_chat_member"]["new_chat_member"].pop("until_date"),
            "Update.my_chat_member.new_chat_member.until_date: required field of "
            "ChatMemberBanned is missing",
        ),
        (
            "my_chat_member_kicked",
            lambda d: d["my_chat_member"]["new_chat_member"].update(status="blocked"),
            "Update.my_chat_member.new_chat_member: ChatMember needs status in ['administrator', "
            "'creator', 'kicked', 'left', 'member', 'restricted'], got \"blocked\"",
        ),
        (
            "message_reaction",
            lambda d: d["message_reaction"]["new_reaction"][0].pop("emoji"),
            "Update.message_reaction.new_reaction[0].emoji: required field of ReactionTypeEmoji "
            "is missing",
        ),
    ],
)
def test_validator_catches_drift(
    name: str, mutate: Callable[[dict[str, Any]], object], problem: str
) -> None:
    data = load(name)
    mutate(data)
    assert require_spec().validate_object("Update", data) == [problem]


def test_decode_params_follows_declared_types() -> None:
    spec = require_spec()
    decoded = spec.decode_params(
        "sendMessage",
        {
            "chat_id": "-1001829301756",
            "text": "true",
            "disable_notification": "false",
            "entities": '[{"type": "bold", "offset": 0, "length": 4}]',
            "extra": "7",
        },
    )
    assert decoded == {
        "chat_id": -1001829301756,
        "text": "true",
        "disable_notification": False,
        "entities": [{"type": "bold", "offset": 0, "length": 4}],
        "extra": "7",
    }
    assert spec.decode_params("sendMessage", {"chat_id": "@canal_ventas"}) == {
        "chat_id": "@canal_ventas"
    }
    assert spec.validate_call("sendTelepathy", {}) == ["unknown method 'sendTelepathy'"]


def test_a_missing_spec_skips_and_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "telegram-bot-api.json"
    with pytest.raises(pytest.skip.Exception, match=re.escape(str(missing))):
        require_spec(missing)


# --- files: sendDocument and sendPhoto (the materials the bot sends) ----------------------------


async def test_send_document_upload_is_recorded_as_multipart(
    tg: FakeTelegramServer, bot: telegram.Bot
) -> None:
    pdf = b"%PDF-1.4 caso de exito"
    sent = await bot.send_document(
        MARIANA, telegram.InputFile(pdf, filename="caso.pdf"), caption="Caso: Clínica"
    )
    assert sent.document is not None and sent.document.file_name == "caso.pdf"
    assert sent.caption == "Caso: Clínica"
    (call,) = tg.sent_files("sendDocument", MARIANA)
    assert call.encoding == "multipart"
    assert call.params["document"].data == pdf
    assert call.params["caption"] == "Caso: Clínica"


async def test_send_photo_by_url(tg: FakeTelegramServer, bot: telegram.Bot) -> None:
    sent = await bot.send_photo(MARIANA, "https://bot.example.com/materiales/x/tabla.png")
    assert sent.photo
    (call,) = tg.sent_files("sendPhoto")
    assert call.params["photo"] == "https://bot.example.com/materiales/x/tabla.png"


async def test_a_caption_over_1024_characters_is_refused(tg: FakeTelegramServer) -> None:
    tg.fail_on_rejected = False
    async with telegram.Bot(tg.token, base_url=tg.base_url) as bot:
        with pytest.raises(tg_error.BadRequest, match="caption is too long"):
            await bot.send_photo(MARIANA, "https://example.com/a.png", caption="a" * 1025)
    assert [r.method for r in tg.take_rejected()] == ["sendPhoto"]
