"""FakeTwilioServer and Prism, driven through twilio's real async `Client`.

These also pin what twilio 9.13 itself does, because our sender depends on it:
`client.api.base_url` is the knob that points the client at another host;
`AsyncTwilioHttpClient(timeout=...)` is ignored (twilio-python#925), so only `asyncio.wait_for`
bounds a call; `max_retries=` re-POSTs a create after a 5xx, which can send a message twice.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.fakes.prism import PrismMock
from tests.fakes.twilio_api import (
    FAILURE_STATUSES,
    FAKE_ACCOUNT_SID,
    MESSAGE_STATUSES,
    TINY_JPEG,
    FakeMessage,
    FakeTwilioServer,
    inbound_whatsapp_bsuid_params,
    inbound_whatsapp_params,
    signed_form,
    status_callback_params,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "twilio"
LEAD = "whatsapp:+5215512345678"
OTHER_LEAD = "whatsapp:+5491123456789"
BUSINESS = "whatsapp:+14155238886"
TEMPLATE_SID = "HX" + "0" * 31 + "2"
SID = re.compile(r"^(SM|MM)[0-9a-f]{32}$")

# twilio 9.13 (AsyncTwilioHttpClient) and aiohttp-retry still pass aiohttp's `auth=BasicAuth`,
# deprecated in aiohttp 3.14: their warnings, not ours, so keep them out of this module's output.
pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]


def _basic_auth(login: str, password: str) -> dict[str, str]:
    # Built by hand: aiohttp 3.14 deprecates BasicAuth/auth=, older 3.x lack encode_basic_auth.
    token = base64.b64encode(f"{login}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _client(tw: FakeTwilioServer, http: AsyncTwilioHttpClient, token: str | None = None) -> Client:
    client = Client(tw.account_sid, token or tw.auth_token, http_client=http)
    client.api.base_url = tw.base_url
    return client


@pytest.fixture
async def tw() -> AsyncIterator[FakeTwilioServer]:
    async with FakeTwilioServer() as server:
        yield server


@pytest.fixture
async def client(tw: FakeTwilioServer) -> AsyncIterator[Client]:
    # AsyncTwilioHttpClient opens its aiohttp session in __init__: build it inside the loop.
    async with AsyncTwilioHttpClient() as http:
        yield _client(tw, http)


@pytest.fixture(scope="session")
def prism() -> Iterator[PrismMock]:
    reason = PrismMock.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with PrismMock() as mock:
        yield mock


@dataclass(frozen=True, slots=True)
class Received:
    url: str
    params: dict[str, str]
    signature: str
    idempotency_token: str
    valid: bool


class Receiver:
    """A status-callback endpoint that validates as our handler must: full URL, every param."""

    def __init__(self, auth_token: str, answers: Iterator[int] | None = None) -> None:
        self.validator = RequestValidator(auth_token)
        self.answers = answers
        self.received: list[Received] = []
        app = web.Application()
        app.router.add_post("/twilio/status", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._port = 0

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._runner.cleanup()

    def url(self, query: str = "lead=7&canal=wa") -> str:
        return f"http://127.0.0.1:{self._port}/twilio/status?{query}"

    async def _handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        signature = request.headers.get("X-Twilio-Signature", "")
        url = str(request.url)
        self.received.append(
            Received(
                url=url,
                params={k: str(v) for k, v in form.items()},
                signature=signature,
                idempotency_token=request.headers.get("I-Twilio-Idempotency-Token", ""),
                valid=self.validator.validate(url, form, signature),
            )
        )
        return web.Response(status=next(self.answers, 200) if self.answers else 200)


async def _expect_error(call: Any, status: int, code: int) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as caught:
        await call
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.msg
    return caught.value


# --- the REST API through twilio's Client ---------------------------------------------------------


async def test_base_url_points_the_real_client_at_the_fake(
    tw: FakeTwilioServer, client: Client
) -> None:
    assert Client(FAKE_ACCOUNT_SID, "x").api.base_url == "https://api.twilio.com"
    tw.received_from(LEAD)

    msg = await client.messages.create_async(to=LEAD, from_=BUSINESS, body="Hola Ana 👋")

    assert SID.fullmatch(msg.sid) and msg.sid.startswith("SM")
    assert (msg.status, msg.to, msg.from_, msg.body) == ("queued", LEAD, BUSINESS, "Hola Ana 👋")
    assert (msg.direction, msg.num_segments, msg.num_media) == ("outbound-api", "1", "0")
    assert msg.date_created.tzinfo is not None and msg.date_sent is None
    assert msg.uri == f"/2010-04-01/Accounts/{tw.account_sid}/Messages/{msg.sid}.json"
    [request] = tw.creates
    assert (request.auth_ok, request.status) == (True, 201)
    assert request.params == {"To": LEAD, "From": BUSINESS, "Body": "Hola Ana 👋"}
    assert dict(request.headers)["User-Agent"].startswith("twilio-python/9.")
    assert tw.messages[msg.sid].status == "queued"


async def test_wrong_auth_token_is_401_code_20003(tw: FakeTwilioServer) -> None:
    async with AsyncTwilioHttpClient() as http:
        client = _client(tw, http, token="f" * 32)
        await _expect_error(
            client.messages.create_async(to=LEAD, from_=BUSINESS, body="Hola"), 401, 20003
        )
    assert tw.requests[-1].auth_ok is False
    assert tw.messages == {}


async def test_opted_out_recipient_is_21610_until_opt_in(
    tw: FakeTwilioServer, client: Client
) -> None:
    tw.received_from(LEAD)
    tw.opt_out(LEAD)
    error = await _expect_error(
        client.messages.create_async(to=LEAD, from_=BUSINESS, body="Hola"), 400, 21610
    )
    assert "unsubscribed recipient" in error.msg
    assert tw.messages == {}

    tw.opt_in(LEAD)
    assert (await client.messages.create_async(to=LEAD, from_=BUSINESS, body="Hola")).sid


async def test_body_over_1600_chars_is_21617(tw: FakeTwilioServer, client: Client) -> None:
    tw.received_from(LEAD)
    await client.messages.create_async(to=LEAD, from_=BUSINESS, body="á" * 1600)
    await _expect_error(
        client.messages.create_async(to=LEAD, from_=BUSINESS, body="á" * 1601), 400, 21617
    )
    assert len(tw.messages) == 1


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        pytest.param({"to": None, "from_": BUSINESS, "body": "Hola"}, 21604, id="no-To"),
        pytest.param({"to": LEAD, "body": "Hola"}, 21603, id="no-From-nor-service"),
        pytest.param({"to": LEAD, "from_": BUSINESS}, 21619, id="no-Body-Media-Content"),
        pytest.param(
            {
                "to": LEAD,
                "from_": BUSINESS,
                "content_sid": TEMPLATE_SID,
                "content_variables": "{1: Ana}",
            },
            21656,
            id="ContentVariables-not-JSON",
        ),
        pytest.param(
            {"to": LEAD, "from_": BUSINESS, "content_sid": "HX123"}, 21655, id="ContentSid"
        ),
        pytest.param(
            {"to": LEAD, "from_": BUSINESS, "body": "Hola", "risk_check": "maybe"}, 400, id="enum"
        ),
        pytest.param(
            {"to": LEAD, "from_": BUSINESS, "body": "Hola", "validity_period": 0},
            90007,
            id="ValidityPeriod",
        ),
        pytest.param(
            {"to": LEAD, "from_": BUSINESS, "body": "Hola", "status_callback": "http://my_host/s"},
            21609,
            id="StatusCallback-host",
        ),
    ],
)
async def test_invalid_creates_are_rejected_synchronously(
    tw: FakeTwilioServer, client: Client, kwargs: dict[str, Any], code: int
) -> None:
    await _expect_error(client.messages.create_async(**kwargs), 400, code)
    assert tw.messages == {}
    assert tw.creates[-1].status == 400


async def test_unknown_parameters_are_refused_unless_lenient(tw: FakeTwilioServer) -> None:
    url = f"{tw.base_url}/2010-04-01/Accounts/{tw.account_sid}/Messages.json"
    form = {"To": LEAD, "From": BUSINESS, "Body": "Hola", "StatusCallbak": "https://x.example/s"}
    auth = _basic_auth(tw.account_sid, tw.auth_token)
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=form, headers=auth) as response:
            assert response.status == 400
            body = await response.json()
        assert body["code"] == 20001 and "StatusCallbak" in body["message"]
        assert body["more_info"] == "https://www.twilio.com/docs/errors/20001"

        tw.strict_params = False  # what Twilio does: ignore it (and lose the callbacks)
        async with session.post(url, data=form, headers=auth) as response:
            assert response.status == 201


# --- WhatsApp window, templates and status callbacks ----------------------------------------------


async def test_free_form_outside_window_is_queued_then_fails_63016_by_signed_callback(
    tw: FakeTwilioServer, client: Client
) -> None:
    tw.received_from(LEAD, at=datetime.now(UTC) - timedelta(hours=25))
    async with Receiver(tw.auth_token) as receiver:
        msg = await client.messages.create_async(
            to=LEAD, from_=BUSINESS, body="¿Seguimos con la visita?", status_callback=receiver.url()
        )
        assert (msg.status, msg.error_code) == ("queued", None)
        await tw.settle()

    [callback] = receiver.received
    assert callback.valid
    assert callback.url == receiver.url()
    params = callback.params
    assert (params["MessageStatus"], params["SmsStatus"], params["ErrorCode"]) == (
        "failed",
        "failed",
        "63016",
    )
    assert params["MessageSid"] == params["SmsSid"] == msg.sid
    assert (params["AccountSid"], params["From"], params["To"]) == (tw.account_sid, BUSINESS, LEAD)
    assert (params["ChannelPrefix"], params["ChannelToAddress"]) == ("whatsapp", "+521551234XXXX")
    validator = RequestValidator(tw.auth_token)
    assert not validator.validate(receiver.url(), params | {"ErrorCode": "0"}, callback.signature)
    assert not validator.validate(receiver.url().split("?")[0], params, callback.signature)

    fetched = await client.messages(msg.sid).fetch_async()
    assert (fetched.status, fetched.error_code) == ("failed", 63016)
    assert [d.response_status for d in tw.callbacks] == [200]


async def test_free_form_inside_window_reports_sent_delivered_read(
    tw: FakeTwilioServer, client: Client
) -> None:
    tw.received_from(LEAD, at=datetime.now(UTC) - timedelta(hours=23))
    async with Receiver(tw.auth_token) as receiver:
        msg = await client.messages.create_async(
            to=LEAD, from_=BUSINESS, body="Te espero el jueves", status_callback=receiver.url()
        )
        await tw.settle()

    assert [r.params["MessageStatus"] for r in receiver.received] == ["sent", "delivered", "read"]
    assert all(r.valid for r in receiver.received)
    assert [r.params.get("EventType") for r in receiver.received] == [None, "DELIVERED", "READ"]
    assert [r.params.get("StructuredMessage") for r in receiver.received] == ["false", None, None]
    assert not any("ErrorCode" in r.params for r in receiver.received)
    fetched = await client.messages(msg.sid).fetch_async()
    assert fetched.status == "read" and fetched.date_sent is not None


async def test_template_outside_window_is_delivered(tw: FakeTwilioServer, client: Client) -> None:
    assert not tw.in_window(LEAD)
    msg = await client.messages.create_async(
        to=LEAD,
        from_=BUSINESS,
        content_sid=TEMPLATE_SID,
        content_variables=json.dumps({"1": "Ana", "2": "jueves 10:00"}),
    )
    await tw.settle()
    assert tw.messages[msg.sid].statuses == ["queued", "sent", "delivered", "read"]
    assert tw.messages[msg.sid].error_code is None


async def test_scripted_callbacks_out_of_order_duplicated_and_answers_recorded(
    tw: FakeTwilioServer, client: Client
) -> None:
    tw.auto_callbacks = False
    tw.received_from(LEAD)
    async with Receiver(tw.auth_token, answers=iter([500])) as receiver:
        msg = await client.messages.create_async(
            to=LEAD, from_=BUSINESS, body="Hola", status_callback=receiver.url()
        )
        await asyncio.sleep(0.05)
        assert receiver.received == [] and tw.messages[msg.sid].status == "queued"

        await tw.send_callbacks(msg.sid, ["read", "sent", "delivered"], duplicate=True)

    statuses = [r.params["MessageStatus"] for r in receiver.received]
    assert statuses == ["read", "read", "sent", "sent", "delivered", "delivered"]
    tokens = [r.idempotency_token for r in receiver.received]
    assert tokens[0::2] == tokens[1::2] and len(set(tokens)) == 3
    assert all(r.valid for r in receiver.received)
    assert [d.response_status for d in tw.callbacks] == [500, 200, 200, 200, 200, 200]
    # The resource only moves forward: late `sent`/`delivered` do not undo `read`.
    assert tw.messages[msg.sid].statuses == ["queued", "read"]


async def test_automatic_callbacks_can_arrive_reversed_and_twice(
    tw: FakeTwilioServer, client: Client
) -> None:
    tw.callback_order = "reversed"
    tw.duplicate_callbacks = True
    tw.script_delivery(LEAD, ["sent", "undelivered"], error_code=63018)
    async with Receiver(tw.auth_token) as receiver:
        await client.messages.create_async(
            to=LEAD, from_=BUSINESS, content_sid=TEMPLATE_SID, status_callback=receiver.url()
        )
        await tw.settle()
    assert [r.params["MessageStatus"] for r in receiver.received] == [
        "undelivered",
        "undelivered",
        "sent",
        "sent",
    ]
    assert receiver.received[0].params["ErrorCode"] == "63018"
    assert receiver.received[0].params["EventType"] == "UNDELIVERED"


# --- timeouts, retries and reconciliation ---------------------------------------------------------


async def test_timed_out_create_was_still_created_once_and_is_found_by_listing(
    tw: FakeTwilioServer, client: Client
) -> None:
    tw.received_from(LEAD)
    tw.hang_after_accept(3.0)
    started = datetime.now(UTC).replace(microsecond=0)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            client.messages.create_async(to=LEAD, from_=BUSINESS, body="Hola"), timeout=0.3
        )

    assert len(tw.creates) == 1 and len(tw.messages) == 1
    [sid] = tw.messages
    await tw.settle()
    found = await client.messages.list_async(to=LEAD, date_sent_after=started, limit=20)
    assert [(m.sid, m.status) for m in found] == [(sid, "read")]


async def test_async_http_client_ignores_its_timeout_argument(tw: FakeTwilioServer) -> None:
    tw.received_from(LEAD)
    tw.hang_after_accept(1.0)
    async with AsyncTwilioHttpClient(timeout=0.2) as http:
        began = time.monotonic()
        msg = await _client(tw, http).messages.create_async(to=LEAD, from_=BUSINESS, body="Hola")
        assert time.monotonic() - began >= 1.0  # twilio-python#925: no timeout was applied
    assert msg.status == "queued"


async def test_max_retries_reposts_a_create_after_a_5xx(tw: FakeTwilioServer) -> None:
    tw.received_from(LEAD)
    tw.fail_next(502, 20500, create_anyway=True)  # Twilio created it; the answer got lost
    async with AsyncTwilioHttpClient(max_retries=3) as http:
        msg = await _client(tw, http).messages.create_async(to=LEAD, from_=BUSINESS, body="Hola")
    assert [r.status for r in tw.creates] == [502, 201]
    assert len(tw.messages) == 2 and msg.sid in tw.messages  # the lead gets it twice


async def test_429_is_raised_as_20429_and_not_retried(tw: FakeTwilioServer) -> None:
    tw.fail_next(429)
    async with AsyncTwilioHttpClient(max_retries=3) as http:
        client = _client(tw, http)
        await _expect_error(
            client.messages.create_async(to=LEAD, from_=BUSINESS, body="Hola"), 429, 20429
        )
    assert len(tw.creates) == 1 and tw.messages == {}


async def test_fetch_and_paginated_list_with_filters(tw: FakeTwilioServer, client: Client) -> None:
    tw.received_from(LEAD)
    tw.received_from(OTHER_LEAD)
    sids = [
        (await client.messages.create_async(to=to, from_=BUSINESS, body=f"Hola {n}")).sid
        for n, to in enumerate([LEAD, LEAD, OTHER_LEAD, LEAD])
    ]
    await tw.settle()

    fetched = await client.messages(sids[0]).fetch_async()
    assert (fetched.sid, fetched.to, fetched.body) == (sids[0], LEAD, "Hola 0")

    listed = await client.messages.list_async(to=LEAD, page_size=2)
    assert [m.sid for m in listed] == [sids[3], sids[1], sids[0]]  # newest first
    pages = [r for r in tw.requests if r.route == "list"]
    assert len(pages) == 2 and pages[1].params["PageToken"] == "PA" + sids[1]
    assert len(await client.messages.list_async(from_=BUSINESS)) == 4

    sent_at = tw.messages[sids[0]].date_sent
    assert sent_at is not None
    assert len(await client.messages.list_async(to=LEAD, date_sent=sent_at)) == 3
    before = sent_at - timedelta(days=1)
    assert await client.messages.list_async(to=LEAD, date_sent_before=before) == []
    after = sent_at - timedelta(minutes=1)
    assert len(await client.messages.list_async(to=LEAD, date_sent_after=after)) == 3

    # The page token anchors on a SID: a message created between pages shifts nothing.
    first = await client.messages.page_async(to=LEAD, page_size=2)
    await client.messages.create_async(to=LEAD, from_=BUSINESS, body="Hola otra vez")
    second = await first.next_page_async()
    assert [m.sid for m in first] == [sids[3], sids[1]] and [m.sid for m in second] == [sids[0]]
    await tw.settle()

    await _expect_error(client.messages("SM" + "0" * 32).fetch_async(), 404, 20404)


# --- media and inbound webhooks -------------------------------------------------------------------


async def test_media_urls_require_the_account_credentials(tw: FakeTwilioServer) -> None:
    params = tw.inbound_whatsapp_params(LEAD, "Así se ve la sala", media_types=["image/jpeg"])
    url = params["MediaUrl0"]
    prefix = f"{tw.base_url}/2010-04-01/Accounts/{tw.account_sid}/Messages/{params['MessageSid']}"
    assert url.startswith(prefix + "/Media/ME") and params["MessageSid"].startswith("MM")
    assert (params["NumMedia"], params["MessageType"]) == ("1", "image")

    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 401
            assert (await response.json())["code"] == 20003
        wrong = _basic_auth(tw.account_sid, "f" * 32)
        async with session.get(url, headers=wrong) as response:
            assert response.status == 401
        right = _basic_auth(tw.account_sid, tw.auth_token)
        async with session.get(url, headers=right) as response:
            assert (response.status, response.content_type) == (200, "image/jpeg")
            body = await response.read()
        assert body == TINY_JPEG and body[:2] == b"\xff\xd8" and body[-2:] == b"\xff\xd9"
        async with session.get(url[:-4] + "0000", headers=right) as response:
            assert response.status == 404


async def test_inbound_params_sign_like_twilio_and_open_the_window(
    tw: FakeTwilioServer, client: Client
) -> None:
    params = tw.inbound_whatsapp_params(LEAD, "¿Tienen departamentos en Polanco? 🏢")
    assert (params["WaId"], params["SmsStatus"], params["MessageType"]) == (
        "5215512345678",
        "received",
        "text",
    )
    assert params["MessageSid"] == params["SmsSid"] == params["SmsMessageSid"]
    context = json.loads(params["ChannelMetadata"])["data"]["context"]
    assert context == {"ProfileName": "Ana", "WaId": "5215512345678"}

    async with Receiver(tw.auth_token) as receiver, aiohttp.ClientSession() as session:
        form, headers = tw.sign(receiver.url(), params)
        async with session.post(receiver.url(), data=form, headers=headers) as response:
            assert response.status == 200
        tampered = form | {"Body": "Hola"}
        async with session.post(receiver.url(), data=tampered, headers=headers) as response:
            assert response.status == 200
    assert [r.valid for r in receiver.received] == [True, False]

    assert tw.in_window(LEAD)
    inbound = await client.messages(params["MessageSid"]).fetch_async()
    assert (inbound.direction, inbound.status, inbound.from_) == ("inbound", "received", LEAD)


def test_bsuid_sender_has_no_phone() -> None:
    params = inbound_whatsapp_bsuid_params(bsuid="MX.2081978709342942", username="ana.compras")
    assert params["From"] == params["ExternalUserId"] == "whatsapp:MX.2081978709342942"
    assert params["ProfileUsername"] == "ana.compras"
    assert "WaId" not in params
    assert "WaId" not in json.loads(params["ChannelMetadata"])["data"]["context"]


def test_published_signature_test_vector() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
        "Caller": "+14158675309",
    }
    expected = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert RequestValidator("12345").compute_signature(url, params) == expected
    form, headers = signed_form(url, params, "12345")
    assert headers["X-Twilio-Signature"] == expected and form == params
    assert RequestValidator("12345").validate(url, form, expected)


# --- recorded payloads ----------------------------------------------------------------------------

RECORDED = sorted(DATA.glob("*.json"))


def _load(path: Path) -> dict[str, str]:
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_every_expected_recording_is_there() -> None:
    assert {path.stem for path in RECORDED} >= {
        "inbound_text_mx",
        "inbound_text_ar",
        "inbound_text_bsuid",
        "inbound_image_caption",
        "inbound_voice_note",
        "inbound_location",
        "inbound_ctwa_referral",
        "inbound_button_reply",
        "status_sent",
        "status_delivered",
        "status_read",
        "status_failed_63016",
        "status_undelivered_63018",
    }


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.stem)
def test_recording_is_a_flat_string_map_of_twilio_shape(path: Path) -> None:
    params = _load(path)
    assert params and all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
    assert re.fullmatch(r"AC[0-9a-f]{32}", params["AccountSid"])
    assert SID.fullmatch(params["MessageSid"]) and params["SmsSid"] == params["MessageSid"]
    assert params["ApiVersion"] == "2010-04-01"
    if path.stem.startswith("inbound_"):
        assert params["SmsMessageSid"] == params["MessageSid"] and params["SmsStatus"] == "received"
        media = [k for k in params if re.fullmatch(r"MediaUrl\d+", k)]
        assert params["NumMedia"] == str(len(media))
        assert params["MessageSid"].startswith("MM" if media else "SM")
        assert json.loads(params["ChannelMetadata"])["type"] == "whatsapp"
    else:
        status = params["MessageStatus"]
        assert status in MESSAGE_STATUSES and params["SmsStatus"] == status
        assert ("ErrorCode" in params) == (status in FAILURE_STATUSES)


def _rebuild(name: str, f: dict[str, str]) -> dict[str, str]:
    """The recording rebuilt by our builders from its own values."""
    if name.startswith("status_"):
        message = FakeMessage(
            sid=f["MessageSid"],
            account_sid=f["AccountSid"],
            direction="outbound-api",
            to=f["To"],
            from_=f["From"],
            messaging_service_sid=None,
            body="",
            media_urls=(),
            content_sid=None,
            status_callback=None,
            status="queued",
            date_created=datetime.now(UTC),
            date_updated=datetime.now(UTC),
            order=0,
        )
        code = f.get("ErrorCode")
        return status_callback_params(
            message,
            f["MessageStatus"],
            int(code) if code else None,
            channel_install_sid=f["ChannelInstallSid"],
        )
    common: dict[str, Any] = {
        "body": f["Body"],
        "profile_name": f["ProfileName"],
        "message_sid": f["MessageSid"],
        "to": f["To"],
        "account_sid": f["AccountSid"],
        "messaging_service_sid": f["MessagingServiceSid"],
    }
    if name == "inbound_text_bsuid":
        bsuid = f["From"].removeprefix("whatsapp:")
        return inbound_whatsapp_bsuid_params(bsuid, f["ProfileUsername"], **common)
    if "MediaUrl0" in f:
        common["media"] = [(f["MediaUrl0"], f["MediaContentType0"])]
    extra_keys = {
        "inbound_location": ["MessageType", "Latitude", "Longitude", "Address", "Label"],
        "inbound_button_reply": [
            "MessageType",
            "ButtonText",
            "ButtonPayload",
            "Forwarded",
            "OriginalRepliedMessageSid",
            "OriginalRepliedMessageSender",
        ],
        "inbound_ctwa_referral": [k for k in f if k.startswith("Referral")],
    }.get(name, [])
    extra: dict[str, Any] = {key: f[key] for key in extra_keys}
    return inbound_whatsapp_params(f["From"], **common, **extra)


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.stem)
def test_builders_reproduce_the_recording(path: Path) -> None:
    recorded = _load(path)
    assert _rebuild(path.stem, recorded) == recorded


# --- Prism: the same requests against the spec-driven mock ----------------------------------------

CROSS_CHECK = [
    pytest.param({"to": LEAD, "from_": BUSINESS, "body": "Hola"}, None, False, id="valid"),
    pytest.param({"to": None, "from_": BUSINESS, "body": "Hola"}, 21604, True, id="no-To"),
    pytest.param(
        {"to": LEAD, "from_": BUSINESS, "body": "Hola", "risk_check": "maybe"}, 400, True, id="enum"
    ),
    pytest.param({"to": LEAD, "from_": BUSINESS, "content_sid": "HX1"}, 21655, True, id="pattern"),
    # The spec cannot say "one of Body/MediaUrl/ContentSid": Prism lets it through, the fake not.
    pytest.param({"to": LEAD, "from_": BUSINESS}, 21619, False, id="no-content"),
]


@pytest.mark.parametrize(("kwargs", "fake_code", "prism_rejects"), CROSS_CHECK)
async def test_prism_and_the_fake_judge_the_same_request(
    prism: PrismMock,
    tw: FakeTwilioServer,
    kwargs: dict[str, Any],
    fake_code: int | None,
    prism_rejects: bool,
) -> None:
    tw.received_from(LEAD)
    async with AsyncTwilioHttpClient() as http:
        against_prism = _client(tw, http)
        against_prism.api.base_url = prism.base_url
        create: Callable[[Client], Any] = lambda c: c.messages.create_async(**kwargs)  # noqa: E731

        if prism_rejects:
            with pytest.raises(TwilioRestException) as caught:
                await create(against_prism)
            assert 400 <= caught.value.status < 500
        else:
            msg = await create(against_prism)
            assert (msg.sid, msg.status) == ("SM" + "a" * 32, "queued")  # the spec's example

        if fake_code is None:
            assert SID.fullmatch((await create(_client(tw, http))).sid)
        else:
            await _expect_error(create(_client(tw, http)), 400, fake_code)
