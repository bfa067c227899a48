"""WhatsApp end to end: signed Twilio webhooks in, twilio's real Client out, against fakes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot.core.channel import Channel, OutboundMessage
from bot.core.model import DeliveryStatus, OutboxState
from bot.web.keys import DATABASE, DESK, DISPATCHER
from handlers.whatsapp import TwilioSender
from storage.models import ChannelIdentity, Conversation, Lead, LeadPhone, Message
from tests.builders import make_outbox_due, message_of, outbox_rows, send_due
from tests.conftest import free_port
from tests.fakes.prism import PrismMock
from tests.fakes.twilio_api import WHATSAPP_SANDBOX, FakeTwilioServer

DATA = Path(__file__).resolve().parents[1] / "data" / "twilio"
ANA = "whatsapp:+5215512345678"
TEMPLATE_SID = "HX" + "ab" * 16


@pytest.fixture
async def tw() -> AsyncIterator[FakeTwilioServer]:
    async with FakeTwilioServer() as server:
        yield server


def whatsapp_settings(tw: FakeTwilioServer, port: int, **whatsapp: Any) -> dict[str, Any]:
    return {
        "public_url": f"http://127.0.0.1:{port}",
        "twilio": {
            "account_sid": tw.account_sid,
            "auth_token": tw.auth_token,
            "api_base_url": tw.base_url,
        },
        "whatsapp": {"from": WHATSAPP_SANDBOX, "send_timeout": 1.0, **whatsapp},
    }


@pytest.fixture
async def client(service: Any, tw: FakeTwilioServer) -> TestClient[Any, Any]:
    port = free_port()
    started: TestClient[Any, Any] = await service(
        # Retries wait until a test makes them due, so each step can be looked at.
        port=port,
        outbox={"backoff_base": 30.0},
        **whatsapp_settings(tw, port),
    )
    # The tests send with drain(), so the order of events is theirs.
    await started.app[DISPATCHER].stop(timeout=1)
    return started


async def post(
    client: TestClient[Any, Any],
    tw: FakeTwilioServer,
    params: dict[str, str],
    path: str = "/webhooks/whatsapp",
    *,
    tamper: dict[str, str] | None = None,
    signature: str | None = None,
) -> Any:
    url = _public(client) + path
    form, headers = tw.sign(url, params)
    form.update(tamper or {})
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return await client.post(path, data=form, headers=headers)


def _public(client: TestClient[Any, Any]) -> str:
    return f"http://127.0.0.1:{client.server.port}"


def recorded(name: str) -> dict[str, str]:
    params: dict[str, str] = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return params


async def test_inbound_is_answered_with_empty_twiml_and_a_rest_reply(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    params = tw.inbound_whatsapp_params(ANA, "hola, buenas tardes", profile_name="Ana Martínez")
    response = await post(client, tw, params)
    assert response.status == 200
    assert response.content_type == "text/xml"
    assert (await response.text()).endswith("<Response/>")
    await send_due(client)
    [sent] = tw.outbound
    assert (sent.to, sent.from_) == (ANA, WHATSAPP_SANDBOX)
    assert sent.body
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.DONE
    assert message_of(row).channel_message_id == sent.sid
    assert sent.status_callback == f"{_public(client)}/webhooks/whatsapp/status?outbox={row.id}"
    async with client.app[DATABASE].session() as session:
        lead = (await session.execute(select(Lead))).scalar_one()
        phones = list((await session.execute(select(LeadPhone.e164))).scalars())
    assert lead.name == "Ana Martínez"
    assert phones == ["+525512345678"]


@pytest.mark.parametrize(
    ("tamper", "signature"),
    [
        (None, ""),  # no signature at all
        (None, "bm90IGEgc2lnbmF0dXJl"),  # forged
        ({"Body": "hola, cambiado"}, None),  # replayed with a changed parameter
        ({"Extra": "1"}, None),  # a parameter added after signing
    ],
)
async def test_unsigned_or_altered_requests_are_403(
    client: TestClient[Any, Any],
    tw: FakeTwilioServer,
    tamper: dict[str, str] | None,
    signature: str | None,
) -> None:
    params = tw.inbound_whatsapp_params(ANA, "hola")
    response = await post(client, tw, params, tamper=tamper, signature=signature)
    assert response.status == 403
    async with client.app[DATABASE].session() as session:
        assert (await session.execute(select(Message))).first() is None


async def test_signature_over_another_url_is_refused(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    params = tw.inbound_whatsapp_params(ANA, "hola")
    form, headers = tw.sign("https://otro.example.com/webhooks/whatsapp", params)
    assert (await client.post("/webhooks/whatsapp", data=form, headers=headers)).status == 403


async def test_missing_message_sid_is_400(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    params = tw.inbound_whatsapp_params(ANA, "hola")
    del params["MessageSid"]
    response = await post(client, tw, params)
    assert response.status == 400
    assert "MessageSid" in (await response.json())["error"]


async def test_duplicate_delivery_is_answered_once(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    params = tw.inbound_whatsapp_params(ANA, "¿cuánto cuesta?")
    assert (await post(client, tw, params)).status == 200
    assert (await post(client, tw, params)).status == 200
    await send_due(client)
    assert len(tw.outbound) == 1


async def test_sender_without_a_phone_number(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    params = recorded("inbound_text_bsuid")
    tw.received_from(params["From"])
    assert (await post(client, tw, params)).status == 200
    await send_due(client)
    [sent] = tw.outbound
    assert sent.to == params["From"]
    async with client.app[DATABASE].session() as session:
        identity = (await session.execute(select(ChannelIdentity))).scalar_one()
        assert (await session.execute(select(LeadPhone))).first() is None
    assert identity.phone is None


async def test_one_person_is_one_lead_across_spellings_and_channels(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    # Mexico's legacy "+52 1" form and the plain form are the same phone.
    await post(client, tw, tw.inbound_whatsapp_params("whatsapp:+5215512345678", "hola"))
    await post(client, tw, tw.inbound_whatsapp_params("whatsapp:+525512345678", "hola"))
    # Argentina: "+54 9" and without the 9.
    await post(client, tw, tw.inbound_whatsapp_params("whatsapp:+5491123456789", "hola"))
    await post(client, tw, tw.inbound_whatsapp_params("whatsapp:+541123456789", "hola"))
    async with client.app[DATABASE].session() as session:
        leads = list((await session.execute(select(Lead))).scalars())
        identities = list((await session.execute(select(ChannelIdentity))).scalars())
    assert len(leads) == 2
    assert len(identities) == 4


async def test_media_is_stored_by_reference_and_acknowledged(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    params = tw.inbound_whatsapp_params(ANA, "", media_types=("image/jpeg", "audio/ogg"))
    assert (await post(client, tw, params)).status == 200
    async with client.app[DATABASE].session() as session:
        message = (await session.execute(select(Message))).scalars().first()
    assert message is not None
    assert [m["kind"] for m in message.media] == ["photo", "voice"]
    assert message.media[0]["ref"] == params["MediaUrl0"]
    await send_due(client)
    assert len(tw.outbound) == 1


async def test_status_callbacks_move_forward_only(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    tw.auto_callbacks = False
    await post(client, tw, tw.inbound_whatsapp_params(ANA, "hola"))
    await send_due(client)
    [sent] = tw.outbound
    await tw.send_callbacks(sent.sid, ["sent", "read", "delivered"])  # out of order
    await tw.send_callbacks(sent.sid, ["read"], duplicate=True)
    assert {delivery.response_status for delivery in tw.callbacks} == {204}
    [row] = await outbox_rows(client.app[DATABASE])
    assert message_of(row).status == DeliveryStatus.READ


async def test_status_callback_without_signature_is_403(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    params = recorded("status_delivered")
    response = await post(client, tw, params, "/webhooks/whatsapp/status", signature="x")
    assert response.status == 403


async def test_failure_callback_records_the_reason(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    tw.auto_callbacks = False
    await post(client, tw, tw.inbound_whatsapp_params(ANA, "hola"))
    await send_due(client)
    [sent] = tw.outbound
    await tw.send_callbacks(sent.sid, ["failed"], error_code=63016)
    [row] = await outbox_rows(client.app[DATABASE])
    assert message_of(row).status == DeliveryStatus.FAILED
    assert "24-hour window" in (message_of(row).error or "")


async def hand_to_agent(client: TestClient[Any, Any], tw: FakeTwilioServer) -> tuple[Any, int]:
    await post(client, tw, tw.inbound_whatsapp_params(ANA, "quiero hablar con un asesor"))
    await send_due(client)
    desk = client.app[DESK]
    agent, _ = await desk.add_agent("Carla")
    [entry] = await desk.queue()
    await desk.claim(entry.conversation_id, agent)
    return agent, entry.conversation_id


async def close_window(client: TestClient[Any, Any]) -> None:
    async with client.app[DATABASE].session() as session:
        await session.execute(
            update(Conversation).values(last_inbound_at=datetime.now(UTC) - timedelta(hours=25))
        )
        await session.commit()


async def test_outside_the_window_free_text_is_blocked(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    agent, conversation = await hand_to_agent(client, tw)
    await close_window(client)
    await client.app[DESK].reply(conversation, agent, "¿Seguimos con tu trámite?")
    await send_due(client)
    last = (await outbox_rows(client.app[DATABASE]))[-1]
    assert last.state == OutboxState.BLOCKED
    assert "outside_24h_window" in (last.last_error or "")
    assert len(tw.outbound) == 1  # only the handoff notice, inside the window


async def test_outside_the_window_the_configured_template_goes(
    service: Any, tw: FakeTwilioServer
) -> None:
    port = free_port()
    templates = {"agent": {"content_sid": TEMPLATE_SID, "variables": ["nombre", "asesor"]}}
    client: TestClient[Any, Any] = await service(
        port=port, **whatsapp_settings(tw, port, templates=templates)
    )
    await client.app[DISPATCHER].stop(timeout=1)
    agent, conversation = await hand_to_agent(client, tw)
    await close_window(client)
    tw.last_inbound[ANA] = datetime.now(UTC) - timedelta(hours=25)
    await client.app[DESK].reply(conversation, agent, "¿Seguimos con tu trámite?")
    await send_due(client)
    template = tw.outbound[-1]
    assert template.content_sid == TEMPLATE_SID
    assert template.body in (None, "")
    create = tw.creates[-1]
    assert json.loads(create.params["ContentVariables"]) == {"1": "Ana", "2": "Carla"}
    assert (await outbox_rows(client.app[DATABASE]))[-1].state == OutboxState.DONE


async def test_opted_out_at_twilio_is_not_retried(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    tw.opt_out(ANA)
    await post(client, tw, tw.inbound_whatsapp_params(ANA, "hola"))
    await send_due(client)
    await make_outbox_due(client.app[DATABASE])
    await send_due(client)
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.BLOCKED
    assert "21610" in (row.last_error or "")
    assert len(tw.creates) == 1


async def test_a_timeout_after_sending_is_not_sent_twice(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    tw.auto_callbacks = False
    tw.hang_after_accept(3.0)  # longer than whatsapp.send_timeout (1 s)
    await post(client, tw, tw.inbound_whatsapp_params(ANA, "hola"))
    await send_due(client)
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.PENDING
    assert row.uncertain
    assert len(tw.outbound) == 1  # Twilio did create it
    await make_outbox_due(client.app[DATABASE])
    await send_due(client)
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.DONE
    assert message_of(row).channel_message_id == tw.outbound[0].sid
    assert len(tw.creates) == 1  # found at Twilio instead of posted again


async def test_the_status_callback_settles_a_send_whose_answer_was_lost(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    tw.auto_callbacks = False
    tw.hang_after_accept(3.0)
    await post(client, tw, tw.inbound_whatsapp_params(ANA, "hola"))
    await send_due(client)
    [sent] = tw.outbound
    await tw.send_callbacks(sent.sid, ["sent"])
    [row] = await outbox_rows(client.app[DATABASE])
    assert row.state == OutboxState.DONE
    assert message_of(row).channel_message_id == sent.sid
    await make_outbox_due(client.app[DATABASE])
    await send_due(client)
    assert len(tw.creates) == 1


async def test_long_text_is_split_for_twilio(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    agent, conversation = await hand_to_agent(client, tw)
    long_text = "Aquí tienes el detalle completo de tu plan de pagos. " * 50
    await client.app[DESK].reply(conversation, agent, long_text)
    await send_due(client)
    bodies = [m.body or "" for m in tw.outbound[1:]]
    assert len(bodies) == 2
    assert all(len(body) <= 1600 for body in bodies)


@pytest.fixture(scope="session")
def prism() -> Iterator[PrismMock]:
    reason = PrismMock.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with PrismMock() as mock:
        yield mock


async def test_our_create_request_matches_twilios_api_description(prism: PrismMock) -> None:
    sender = TwilioSender(
        account_sid="AC" + "0" * 31 + "1",
        auth_token="0123456789abcdef" * 2,
        sender=WHATSAPP_SANDBOX,
        api_base_url=prism.base_url,
        status_callback="https://bot.example.com/webhooks/whatsapp/status",
        timeout=10,
    )
    await sender.start()
    try:
        receipt = await sender.send(
            OutboundMessage(
                key=1,
                channel=Channel.WHATSAPP,
                recipient=ANA,
                text="¡Hola, Ana! ¿En qué te ayudo?",
                created_at=datetime.now(UTC),
                last_inbound_at=datetime.now(UTC),
            )
        )
    finally:
        await sender.close()
    assert receipt.channel_message_id  # Prism validated the request and answered 201


async def agent_headers(client: TestClient[Any, Any]) -> dict[str, str]:
    _, token = await client.app[DESK].add_agent("Carla")
    return {"Authorization": f"Bearer {token}"}


async def stored_message(client: TestClient[Any, Any]) -> Message:
    async with client.app[DATABASE].session() as session:
        message = (await session.execute(select(Message).order_by(Message.id))).scalars().first()
    assert message is not None
    return message


async def test_an_agent_can_open_media_from_twilio(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    params = tw.inbound_whatsapp_params(ANA, "mi INE", media_types=("image/jpeg",))
    assert (await post(client, tw, params)).status == 200
    message = await stored_message(client)
    response = await client.get(
        f"/api/messages/{message.id}/media/0", headers=await agent_headers(client)
    )
    assert response.status == 200
    assert response.content_type == "image/jpeg"
    assert await response.read()
    media_requests = [r for r in tw.requests if r.route == "media"]
    assert media_requests and all(r.auth_ok for r in media_requests)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/",  # cloud metadata
        "http://127.0.0.1:5432/",  # something local
        "https://evil.example.com/2010-04-01/Accounts/AC00000000000000000000000000000001/x",
        "https://api.twilio.com/2010-04-01/Accounts/AC99999999999999999999999999999999/Media/1",
        # Our account's prefix, then dot segments (plain or escaped) out to other API paths.
        "{base}/2010-04-01/Accounts/{account}/../../2010-04-01/Accounts/{account}/Messages.json",
        "{base}/2010-04-01/Accounts/{account}/%2e%2e/%2E%2E/Accounts/{account}/Calls.json",
        "{base}/2010-04-01/Accounts/{account}/Messages/{message}/Media/{media}/../../../..",
        "{base}/2010-04-01/Accounts/{account}/Messages/{message}/Media/{media}?x=1",
    ],
)
async def test_media_urls_outside_twilio_are_never_fetched(
    client: TestClient[Any, Any], tw: FakeTwilioServer, url: str
) -> None:
    url = url.format(
        base=tw.base_url, account=tw.account_sid, message="MM" + "a" * 32, media="ME" + "b" * 32
    )
    params = tw.inbound_whatsapp_params(ANA, "", NumMedia="1", MediaUrl0=url)
    params["MediaContentType0"] = "image/jpeg"
    assert (await post(client, tw, params)).status == 200
    message = await stored_message(client)
    assert message.media[0]["ref"] == url  # kept as the reference Twilio gave
    response = await client.get(
        f"/api/messages/{message.id}/media/0", headers=await agent_headers(client)
    )
    assert response.status == 404
    assert "not a Twilio media URL" in (await response.json())["error"]
    assert not [r for r in tw.requests if r.route != "create"]  # nothing reached Twilio


async def test_a_template_button_reply_is_read_as_its_words(
    client: TestClient[Any, Any], tw: FakeTwilioServer
) -> None:
    # A quick-reply button of an approved template: its payload is the business's own id,
    # not one of ours, so the words on the button are what the lead said.
    response = await post(client, tw, recorded("inbound_button_reply"))
    assert response.status == 200
    async with client.app[DATABASE].session() as session:
        message = (await session.execute(select(Message))).scalars().first()
    assert message is not None
    assert message.text == "Sí, agendar visita"
    assert message.intent is not None
