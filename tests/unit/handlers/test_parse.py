"""Each channel's `parse()` on recorded payloads: no database, no server, no network.

A channel is verify-then-parse, a pure function of the raw request (STYLE.md), so what each
recorded update or webhook means is checked here directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from bot.core.channel import (
    DeliveryUpdate,
    InboundMessage,
    MessageEdited,
    RawRequest,
    ReachabilityChanged,
)
from bot.core.errors import WebhookRejected
from bot.core.model import Channel, DeliveryStatus
from handlers.telegram import SECRET_HEADER, TelegramInbound, file_url
from handlers.webchat import WebchatInbound
from handlers.whatsapp import SIGNATURE_HEADER, WhatsappInbound

DATA = Path(__file__).resolve().parents[2] / "data"
SECRET = "s3cret-token_for-tests"
AUTH_TOKEN = "12345678901234567890123456789012"
URL = "https://bot.example.com/webhooks/whatsapp"
SESSION = "Zk3v9QmT2xLp7RbN4wYc8A"


def telegram(name: str, secret: str = SECRET) -> RawRequest:
    body = (DATA / "telegram" / f"{name}.json").read_bytes()
    return RawRequest(
        "POST", "https://bot.example.com/webhooks/telegram", {SECRET_HEADER: secret}, body
    )


def twilio(name: str, url: str = URL, **changes: str) -> RawRequest:
    params: dict[str, str] = json.loads((DATA / "twilio" / f"{name}.json").read_text("utf-8"))
    params.update(changes)
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    form = {key: [value] for key, value in params.items()}
    return RawRequest("POST", url, {SIGNATURE_HEADER: signature}, b"", form)


TG = TelegramInbound(SECRET, phone_region="MX")
WA = WhatsappInbound(AUTH_TOKEN, phone_region="MX")


def test_telegram_text() -> None:
    event = TG.parse(telegram("message_text_private"))
    assert isinstance(event, InboundMessage)
    assert event.channel == Channel.TELEGRAM
    assert event.sender_id == "5839201746" and event.message_id.startswith("5839201746:")
    assert event.text and event.sender_name == "Mariana López García"
    assert event.sent_at.tzinfo is not None


def test_telegram_deep_link_names_the_campaign_and_greets() -> None:
    event = TG.parse(telegram("message_start_deep_link"))
    assert isinstance(event, InboundMessage)
    assert (event.start, event.text, event.source) == (True, "", "ref_feria-medellin-2026")


def test_telegram_own_contact_gives_a_phone_and_someone_elses_does_not() -> None:
    own = TG.parse(telegram("message_contact_self"))
    other = TG.parse(telegram("message_contact_other"))
    assert isinstance(own, InboundMessage) and isinstance(other, InboundMessage)
    assert own.shared_contact and own.sender_phone == "+525512345678"
    assert other.shared_contact and other.sender_phone is None


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("message_photo_caption", "photo"),
        ("message_voice", "voice"),
        ("message_document", "document"),
        ("message_sticker", "sticker"),
    ],
)
def test_telegram_media_is_kept_by_reference(name: str, kind: str) -> None:
    event = TG.parse(telegram(name))
    assert isinstance(event, InboundMessage)
    assert [m.kind for m in event.media] == [kind]
    assert event.media[0].ref


def test_telegram_button_press_carries_its_payload() -> None:
    event = TG.parse(telegram("callback_query"))
    assert isinstance(event, InboundMessage)
    assert event.choice and event.message_id.startswith("callback:")


def test_telegram_edit_block_and_unblock() -> None:
    assert isinstance(TG.parse(telegram("edited_message")), MessageEdited)
    kicked = TG.parse(telegram("my_chat_member_kicked"))
    member = TG.parse(telegram("my_chat_member_member"))
    assert isinstance(kicked, ReachabilityChanged) and not kicked.reachable
    assert isinstance(member, ReachabilityChanged) and member.reachable


@pytest.mark.parametrize("name", ["message_group", "message_reaction"])
def test_telegram_updates_with_nothing_to_do(name: str) -> None:
    assert TG.parse(telegram(name)) is None


def test_telegram_without_the_secret_is_403() -> None:
    with pytest.raises(WebhookRejected) as refused:
        TG.parse(telegram("message_text_private", secret="wrong"))
    assert refused.value.status == 403


def test_whatsapp_text_from_mexico_is_one_lead_whatever_the_spelling() -> None:
    event = WA.parse(twilio("inbound_text_mx"))
    assert event.channel == Channel.WHATSAPP
    assert event.sender_id == "whatsapp:+5215512345678"
    assert event.sender_phone == "+525512345678"  # E.164 as it is dialled today
    assert event.text.startswith("Hola, vi el anuncio")


def test_whatsapp_ad_referral_is_the_source() -> None:
    assert WA.parse(twilio("inbound_ctwa_referral")).source == "ad:120210987654321098"


def test_whatsapp_location_and_image() -> None:
    location = WA.parse(twilio("inbound_location"))
    assert [m.kind for m in location.media] == ["location"]
    assert location.media[0].ref == "19.3910038,-99.1707536"
    image = WA.parse(twilio("inbound_image_caption"))
    assert [m.kind for m in image.media] == ["photo"]


def test_whatsapp_business_scoped_user_has_no_phone() -> None:
    event = WA.parse(twilio("inbound_text_bsuid"))
    assert event.sender_id == "whatsapp:MX.2081978709342942" and event.sender_phone is None


def test_whatsapp_status_callback_with_its_error() -> None:
    update = WA.parse_status(twilio("status_failed_63016", url=URL + "/status?outbox=42"))
    assert isinstance(update, DeliveryUpdate)
    assert update.status == DeliveryStatus.FAILED
    assert update.outbox_key == 42
    assert update.error_code is not None and "24-hour window" in update.error_code


@pytest.mark.parametrize("change", [{"Body": "cambiado"}, {"Extra": "1"}])
def test_whatsapp_changed_after_signing_is_403(change: dict[str, str]) -> None:
    raw = twilio("inbound_text_mx")
    form = {**raw.form, **{key: [value] for key, value in change.items()}}
    with pytest.raises(WebhookRejected) as refused:
        WA.parse(RawRequest(raw.method, raw.url, raw.headers, raw.body, form))
    assert refused.value.status == 403


def webchat(body: Any) -> RawRequest:
    data = json.dumps(body).encode()
    return RawRequest("POST", "/webchat/messages", {"Content-Type": "application/json"}, data)


def test_webchat_message_ids_are_scoped_to_their_session() -> None:
    event = WebchatInbound().parse(
        webchat({"session_id": SESSION, "text": "hola", "message_id": "m1"})
    )
    assert event.sender_id == SESSION
    assert event.message_id == f"{SESSION}:m1"
    assert event.reply_inline


@pytest.mark.parametrize(
    "body",
    [
        {"session_id": "corta", "text": "hola"},
        {"session_id": SESSION, "text": 5},
        {"session_id": SESSION, "text": "hola", "message_id": "con espacio"},
        [SESSION, "hola"],
    ],
)
def test_webchat_malformed_is_400(body: Any) -> None:
    with pytest.raises(WebhookRejected) as refused:
        WebchatInbound().parse(webchat(body))
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("api", "files"),
    [
        ("https://api.telegram.org/bot", "https://api.telegram.org/file/bot"),
        (
            "https://api.telegram.org/bot{token}/test",
            "https://api.telegram.org/file/bot{token}/test",
        ),
        ("http://127.0.0.1:8081/bot", "http://127.0.0.1:8081/file/bot"),
    ],
)
def test_telegram_files_live_beside_the_api(api: str, files: str) -> None:
    assert file_url(api) == files
