"""Malformed input on every public endpoint: a 4xx with a short reason, never a 500.

The cases first (each one answered 500 once), then a fuzz test: hypothesis, with a fixed seed
and a bounded number of examples, posts malformed bodies to every endpoint.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.web.keys import DATABASE, DESK, DISPATCHER
from storage.models import ChannelIdentity, Lead, Message
from tests.conftest import free_port
from tests.fakes.telegram_api import FakeTelegramServer
from tests.fakes.twilio_api import FakeTwilioServer

DATA = Path(__file__).resolve().parents[1] / "data"
SECRET = "s3cret-token_for-tests"
SESSION = "fuzz-session-5Jd8Kq2LmN0pR7"
ANA = "whatsapp:+5215512345678"
FUZZ = settings(
    max_examples=80,
    derandomize=True,  # the same examples on every run: a failure is reproducible
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as server:
        yield server


@pytest.fixture
async def tw() -> AsyncIterator[FakeTwilioServer]:
    async with FakeTwilioServer() as server:
        yield server


@pytest.fixture
async def client(
    service: Any, tg: FakeTelegramServer, tw: FakeTwilioServer
) -> TestClient[Any, Any]:
    port = free_port()
    started: TestClient[Any, Any] = await service(
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        telegram={"token": tg.token, "webhook_secret": SECRET, "api_base_url": tg.base_url},
        twilio={
            "account_sid": tw.account_sid,
            "auth_token": tw.auth_token,
            "api_base_url": tw.base_url,
        },
        whatsapp={"from": "whatsapp:+14155238886"},
    )
    await started.app[DISPATCHER].stop(timeout=1)
    return started


@pytest.fixture
async def token(client: TestClient[Any, Any]) -> str:
    _, token = await client.app[DESK].add_agent("Fuzz", email="fuzz@example.com", admin=True)
    return token


def telegram_update(name: str = "message_text_private") -> dict[str, Any]:
    update: dict[str, Any] = json.loads((DATA / "telegram" / f"{name}.json").read_text("utf-8"))
    return copy.deepcopy(update)


async def post_telegram(client: TestClient[Any, Any], body: bytes | dict[str, Any]) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post(
        "/webhooks/telegram",
        data=data,
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"},
    )
    return response.status


async def post_twilio(
    client: TestClient[Any, Any],
    tw: FakeTwilioServer,
    params: dict[str, str],
    path: str = "/webhooks/whatsapp",
) -> int:
    form, headers = tw.sign(f"http://127.0.0.1:{client.server.port}{path}", params)
    response = await client.post(path, data=form, headers=headers)
    return response.status


async def stored(client: TestClient[Any, Any], model: Any) -> list[Any]:
    async with client.app[DATABASE].session() as session:
        return list((await session.execute(select(model))).scalars())


# --- the cases found, one by one ------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded; charset=nope", b"Body=hola&From=x"),
        ("application/x-www-form-urlencoded", b"Body=\xff&From=whatsapp%3A%2B5215512345678"),
        ("application/x-www-form-urlencoded", b"Body=%ff%fe"),
        ("application/x-www-form-urlencoded", b"&".join([b"a=1"] * 5000)),
    ],
)
async def test_an_unsigned_form_nobody_can_decode_is_403(
    client: TestClient[Any, Any], content_type: str, body: bytes
) -> None:
    for path in ("/webhooks/whatsapp", "/webhooks/whatsapp/status"):
        response = await client.post(path, data=body, headers={"Content-Type": content_type})
        assert response.status == 403, await response.text()


DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_NUMBER = b'{"session_id": "' + SESSION.encode() + b'", "text": ' + b"9" * 5000 + b"}"


@pytest.mark.parametrize(
    "body", [DEEP, HUGE_NUMBER, b'{"text": "\xff"}', b"\xef\xbb\xbf{}", b'"' + b"\\ud800" + b'"']
)
async def test_json_python_cannot_hold_is_400_everywhere(
    client: TestClient[Any, Any], token: str, body: bytes
) -> None:
    json_headers = {"Content-Type": "application/json"}
    bearer = {**json_headers, "Authorization": f"Bearer {token}"}
    for path, headers in (
        ("/webchat/messages", json_headers),
        ("/api/tasks", bearer),
        ("/api/conversations/1/messages", bearer),
        ("/api/leads/1/stage", bearer),
    ):
        response = await client.post(path, data=body, headers=headers)
        assert response.status == 400, (path, await response.text())
    assert await post_telegram(client, body) == 400


@pytest.mark.parametrize(
    ("key", "value", "merge"),
    [
        ("message", "x", False),
        ("message", {"message_id": 1}, False),  # no chat, no date
        ("message", {"date": 10**20}, True),
        ("message", {"date": None}, True),
        ("message", {"chat": {"id": "abc", "type": "private"}}, True),
        ("message", {"text": 5}, True),
        ("message", {"from": "nobody"}, True),
        ("edited_message", {"edit_date": -(10**30), "chat": {}}, False),
        ("callback_query", [], False),
    ],
)
async def test_an_update_with_fields_of_the_wrong_shape_is_400(
    client: TestClient[Any, Any], key: str, value: Any, merge: bool
) -> None:
    update = telegram_update()
    if merge:
        update[key].update(value)
    else:
        update[key] = value
    assert await post_telegram(client, update) == 400
    assert await stored(client, Message) == []


async def test_nul_bytes_and_lone_surrogates_are_stored_clean(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    update = telegram_update("message_start_deep_link")
    update["message"]["text"] = "/start camp\x00aña"
    update["message"]["from"]["first_name"] = "Ma\x00riana\ud800"
    assert await post_telegram(client, update) == 200
    edited = telegram_update("edited_message")
    edited["edited_message"]["text"] = "editado\x00"
    assert await post_telegram(client, edited) == 200
    response = await client.post(
        "/webchat/messages", json={"session_id": SESSION, "text": "a\ud800b\x00c"}
    )
    assert response.status == 200
    # Twilio posts UTF-8, so a NUL can come (%00), a lone surrogate cannot.
    params = tw.inbound_whatsapp_params(ANA, "hola\x00", profile_name="Ana\x00")
    assert await post_twilio(client, tw, params) == 200

    texts = [m.text for m in await stored(client, Message)]
    names = [lead.name for lead in await stored(client, Lead)]
    sources = [lead.source for lead in await stored(client, Lead)]
    assert "a\ufffdbc" in texts and "hola" in texts
    assert all("\x00" not in (value or "") for value in (*texts, *names, *sources))
    assert "campaña" in sources


@pytest.mark.parametrize(
    ("field", "value"), [("MessageSid", "SM" + "a" * 300), ("From", "whatsapp:+" + "5" * 200)]
)
async def test_ids_longer_than_any_channel_makes_are_400(
    client: TestClient[Any, Any], tw: FakeTwilioServer, field: str, value: str
) -> None:
    params = tw.inbound_whatsapp_params(ANA, "hola")
    params[field] = value
    assert await post_twilio(client, tw, params) == 400
    assert await stored(client, ChannelIdentity) == []


async def test_a_media_count_of_five_thousand_digits_is_no_media(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    params = tw.inbound_whatsapp_params(ANA, "hola")
    params["NumMedia"] = "9" * 5000
    assert await post_twilio(client, tw, params) == 200
    status = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "delivered"}
    path = "/webhooks/whatsapp/status?outbox=%C2%B2"
    assert await post_twilio(client, tw, status, path) in (200, 204)


@pytest.mark.parametrize("after", ["²", "9" * 25, "-1", "1e3", "٣"])
async def test_an_after_that_is_not_a_message_id_is_400(
    client: TestClient[Any, Any], after: str
) -> None:
    response = await client.get("/webchat/events", params={"session_id": SESSION, "after": after})
    assert response.status == 400
    response = await client.get(
        "/webchat/events", params={"session_id": SESSION}, headers={"Last-Event-ID": after}
    )
    assert response.status == 400


@pytest.mark.parametrize("raw_id", ["9" * 25, "²", "%C2%B2"])
async def test_ids_in_api_paths_that_overflow_are_404(
    client: TestClient[Any, Any], token: str, raw_id: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for method, path in (
        ("GET", f"/api/conversations/{raw_id}"),
        ("POST", f"/api/conversations/{raw_id}/claim"),
        ("POST", f"/api/tasks/{raw_id}/done"),
        ("GET", f"/api/messages/{raw_id}/media/{raw_id}"),
    ):
        response = await client.request(method, path, headers=headers)
        assert response.status == 404, (path, await response.text())


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        ({"owner_id": 987654}, "no agent 987654"),
        ({"lead_id": 987654}, "no lead 987654"),
        ({"due_at": "9999-12-31T23:59:00+00:00"}, "five years"),
        ({"priority": "urgentísima"}, "priority"),
        ({"title": "x" * 201}, "longer than 200"),
        ({"owner_id": 10**30}, "must be ids"),
    ],
)
async def test_a_task_naming_what_does_not_exist_is_400(
    client: TestClient[Any, Any], token: str, task: dict[str, Any], reason: str
) -> None:
    body = {"title": "Llamar", "due_at": "2026-12-01T10:00:00-06:00", **task}
    response = await client.post(
        "/api/tasks", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 400
    assert reason in (await response.json())["error"]


# --- fuzz -----------------------------------------------------------------------------------

TEXT = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=40
) | st.sampled_from(["\x00", "\ud800", "²", "9" * 30, "", " ", "slot:x", "<img src=x>"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
BODIES = st.binary(max_size=200) | JSON.map(lambda value: json.dumps(value).encode())


def _paths(update: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for key, value in update.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found.extend(_paths(value, (*prefix, key)))
    return found


UPDATES = [telegram_update(name) for name in ("message_text_private", "callback_query")]
UPDATE_PATHS = [(n, path) for n, update in enumerate(UPDATES) for path in _paths(update)]


@FUZZ
@given(body=BODIES, content_type=st.sampled_from(["application/json", "text/plain", ""]))
async def test_fuzz_webchat(client: TestClient[Any, Any], body: bytes, content_type: str) -> None:
    response = await client.post(
        "/webchat/messages", data=body, headers={"Content-Type": content_type}
    )
    assert response.status < 500


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["session_id", "text", "message_id"]), JSON))
async def test_fuzz_webchat_fields(client: TestClient[Any, Any], fields: dict[str, Any]) -> None:
    body = {"session_id": SESSION, "text": "hola", **fields}
    response = await client.post("/webchat/messages", json=body)
    assert response.status < 500
    for path in ("/webchat/history", "/webchat/events"):
        params = {"session_id": str(fields.get("session_id", SESSION)), "after": "x"}
        assert (await client.get(path, params=params)).status < 500


@FUZZ
@given(where=st.sampled_from(UPDATE_PATHS), value=JSON, body=BODIES)
async def test_fuzz_telegram(
    client: TestClient[Any, Any], where: tuple[int, tuple[str, ...]], value: Any, body: bytes
) -> None:
    n, path = where
    update = copy.deepcopy(UPDATES[n])
    node = update
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert await post_telegram(client, update) < 500
    assert await post_telegram(client, body) < 500


TWILIO_FIELDS = (
    *("MessageSid", "From", "Body", "NumMedia", "MediaUrl0", "MediaContentType0", "WaId"),
    *("ButtonPayload", "ButtonText", "ProfileName", "ReferralSourceId", "Latitude"),
    *("MessageType", "MessageStatus", "ErrorCode"),
)


@FUZZ
@given(
    fields=st.dictionaries(
        st.sampled_from(TWILIO_FIELDS),
        TEXT,
    ),
    outbox=TEXT,
)
async def test_fuzz_whatsapp(
    client: TestClient[Any, Any], tw: FakeTwilioServer, fields: dict[str, str], outbox: str
) -> None:
    params = {**tw.inbound_whatsapp_params(ANA, "hola"), **fields}
    # Twilio cannot post a NUL or a lone surrogate in a form (it posts UTF-8).
    params = {k: v.encode("utf-8", "replace").decode() for k, v in params.items()}
    assert await post_twilio(client, tw, params) < 500
    status_path = "/webhooks/whatsapp/status?" + json.dumps(outbox).encode().hex()
    assert await post_twilio(client, tw, params, status_path) < 500


@FUZZ
@given(
    route=st.sampled_from(
        [
            ("POST", "/api/tasks"),
            ("POST", "/api/conversations/1/messages"),
            ("POST", "/api/leads/1/stage"),
            ("POST", "/api/conversations/1/claim"),
            ("GET", "/api/appointments?range="),
            ("GET", "/api/tasks?done="),
        ]
    ),
    body=JSON,
    raw=BODIES,
)
async def test_fuzz_api(
    client: TestClient[Any, Any], token: str, route: tuple[str, str], body: Any, raw: bytes
) -> None:
    method, path = route
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for data in (json.dumps(body).encode(), raw):
        response = await client.request(method, path, data=data, headers=headers)
        assert response.status < 500, await response.text()
    if isinstance(body, dict):
        task = {"title": "t", "due_at": "2026-12-01T10:00:00-06:00", **body}
        response = await client.post("/api/tasks", json=task, headers=headers)
        assert response.status < 500, await response.text()
