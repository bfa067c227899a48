"""WhatsApp through Twilio: signed webhooks in, twilio's REST client out.

Inbound messages and status callbacks are verified with twilio's `RequestValidator` over the
public URL Twilio called and every parameter it posted; nothing about the sender is looked up
first (a Messaging Service sends from a pool of numbers). Replies never ride on the webhook's
TwiML: it answers an empty `<Response/>` and the outbox sends through the REST API, where each
send is recorded before it is made and never blindly repeated.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from aiohttp import ClientError, ClientResponse, ClientSession, web
from multidict import MultiDict
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from yarl import URL

from bot.core.channel import (
    Channel,
    DeliveryUpdate,
    InboundMessage,
    Intake,
    MediaContent,
    MediaRef,
    OutboundMessage,
    RawRequest,
    SendReceipt,
)
from bot.core.errors import Blocked, MediaUnavailable, RetryLater, SendFailed, WebhookRejected
from bot.core.model import DeliveryStatus
from bot.core.phones import to_e164
from bot.core.wire import parse_id
from handlers.http import read_raw

log = logging.getLogger(__name__)

INBOUND_PATH = "/webhooks/whatsapp"
STATUS_PATH = "/webhooks/whatsapp/status"
SIGNATURE_HEADER = "X-Twilio-Signature"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
WINDOW = timedelta(hours=24)

# Twilio message statuses that mean something for the record; the rest (queued, sending,
# accepted, ...) are steps before "sent" and change nothing.
_STATUSES = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
    "undelivered": DeliveryStatus.FAILED,
}
# Error codes we act on, in words for the people reading the record.
ERRORS = {
    "63016": "outside WhatsApp's 24-hour window (63016)",
    "21610": "the recipient opted out at Twilio (21610)",
    "63018": "WhatsApp rate or tier limit (63018)",
    "63024": "invalid WhatsApp recipient (63024)",
}


def _kind(content_type: str) -> str:
    major = content_type.split("/", 1)[0]
    return {"image": "photo", "audio": "voice", "video": "video"}.get(major, "document")


class WhatsappInbound:
    """Verifies Twilio's signature and turns its form posts into events."""

    channel = Channel.WHATSAPP

    def __init__(self, auth_token: str, *, phone_region: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.phone_region = phone_region

    def verified(self, raw: RawRequest) -> MultiDict[str]:
        """The posted parameters, once the signature over URL and parameters checks out.

        Raises:
            WebhookRejected: 403 when the signature is missing or does not match.
        """
        params: MultiDict[str] = MultiDict(
            (key, value) for key, values in raw.form.items() for value in values
        )
        signature = raw.headers.get(SIGNATURE_HEADER, "")
        # Every parameter as posted, unfiltered: Twilio adds parameters without notice and
        # signs them all.
        if not signature or not self.validator.validate(raw.url, params, signature):
            raise WebhookRejected(403, "missing or invalid X-Twilio-Signature")
        return params

    def parse(self, raw: RawRequest) -> InboundMessage:
        params = self.verified(raw)
        message_sid, sender = params.get("MessageSid"), params.get("From")
        if not message_sid:
            raise WebhookRejected(400, "missing MessageSid")
        if not sender:
            raise WebhookRejected(400, "missing From")
        address = sender.removeprefix("whatsapp:")
        # A business-scoped user id ("MX.2081...") carries no phone number at all.
        phone = to_e164(address, self.phone_region) if address.startswith("+") else None
        if phone is None and params.get("WaId"):
            phone = to_e164("+" + params["WaId"], self.phone_region)
        text = params.get("ButtonText") or params.get("Body") or ""
        return InboundMessage(
            channel=Channel.WHATSAPP,
            sender_id=sender,
            message_id=message_sid,
            text=text,
            sent_at=datetime.now(UTC),
            media=_media(params),
            sender_name=params.get("ProfileName") or None,
            sender_phone=phone,
            source=_source(params),
            choice=params.get("ButtonPayload") or None,
        )

    def parse_status(self, raw: RawRequest) -> DeliveryUpdate | None:
        params = self.verified(raw)
        message_sid, status = params.get("MessageSid"), params.get("MessageStatus")
        if not message_sid or not status:
            raise WebhookRejected(400, "missing MessageSid or MessageStatus")
        mapped = _STATUSES.get(status)
        if mapped is None:
            return None
        code = params.get("ErrorCode") or None
        key = parse_qs(urlsplit(raw.url).query).get("outbox", [""])[0]
        return DeliveryUpdate(
            channel=Channel.WHATSAPP,
            message_id=message_sid,
            status=mapped,
            at=datetime.now(UTC),
            error_code=ERRORS.get(code, code) if code else None,
            outbox_key=parse_id(key),
        )


def _media(params: MultiDict[str]) -> tuple[MediaRef, ...]:
    found = []
    count = parse_id(params.get("NumMedia", "0")[:2]) or 0  # Twilio sends at most 10
    for n in range(min(count, 10)):
        url = params.get(f"MediaUrl{n}")
        if url:
            content_type = params.get(f"MediaContentType{n}", "")
            found.append(MediaRef(_kind(content_type), url, content_type or None))
    if params.get("MessageType") == "location" and params.get("Latitude"):
        found.append(MediaRef("location", f"{params['Latitude']},{params.get('Longitude', '')}"))
    return tuple(found)


def _source(params: MultiDict[str]) -> str | None:
    # A click-to-WhatsApp ad names the ad the lead came from.
    ad = params.get("ReferralSourceId") or params.get("ReferralCtwaClid")
    return f"ad:{ad}"[:64] if ad else None


class TwilioMedia:
    """Downloads media a lead sent on WhatsApp: only from Twilio, with our credentials, bounded.

    The URL comes in the webhook; it is fetched only if it points at Twilio's API under our
    own account (or the configured API base, in tests), so no address a sender could make us
    call is ever requested. Twilio may redirect to its storage: those hosts only, without the
    credentials. Size and time are capped.
    """

    channel = Channel.WHATSAPP
    # Where Twilio serves media after redirecting (its CDN, or signed S3 links).
    STORAGE_HOSTS = (".twiliocdn.com", ".twilio.com", ".amazonaws.com")

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        api_base_url: str,
        max_bytes: int,
        timeout: float = 15.0,
    ) -> None:
        self.account_sid = account_sid
        self.authorization = "Basic " + base64.b64encode(
            f"{account_sid}:{auth_token}".encode()
        ).decode("ascii")
        base = URL(api_base_url)
        self.api_origins = {("https", "api.twilio.com"), (base.scheme, base.raw_authority)}
        # Messages/{MM|SM…}/Media/{ME…} under our own account, nothing else, no dot segments.
        self.media_path = re.compile(
            rf"/2010-04-01/Accounts/{re.escape(account_sid)}"
            r"/Messages/(MM|SM)[0-9a-fA-F]{32}/Media/ME[0-9a-fA-F]{32}"
        )
        self.max_bytes = max_bytes
        self.timeout = timeout

    def _media_url(self, ref: str) -> URL:
        """The URL to fetch, exactly as it will be requested, if it is one of our account's media.

        Checked after parsing, the way the HTTP client will send it (dot segments resolved), and
        against the one shape Twilio's media URLs have: `…/Accounts/AC…/../../x` or an escaped
        dot would otherwise carry our credentials to other paths of Twilio's API.

        Raises:
            MediaUnavailable: 404 for anything else.
        """
        try:
            url = URL(ref)
        except (TypeError, ValueError):
            url = None
        if (
            url is None
            or (url.scheme, url.raw_authority) not in self.api_origins
            or url.query_string
            or url.fragment
            or not self.media_path.fullmatch(url.raw_path)
        ):
            raise MediaUnavailable(404, "not a Twilio media URL of this account")
        return url

    async def fetch(self, media: MediaRef) -> MediaContent:
        url = self._media_url(media.ref)
        try:
            async with (
                asyncio.timeout(self.timeout),
                ClientSession(headers={"User-Agent": "seguibot"}) as session,
            ):
                headers = {"Authorization": self.authorization}
                async with session.get(url, headers=headers, allow_redirects=False) as first:
                    if first.status in (301, 302, 303, 307, 308):
                        location = first.headers.get("Location", "")
                        return await self._from_storage(session, location, media)
                    return await self._read(first, media)
        except TimeoutError as exc:
            raise MediaUnavailable(502, "Twilio did not answer in time") from exc
        except (ClientError, OSError) as exc:
            raise MediaUnavailable(502, f"Twilio: {type(exc).__name__}") from exc

    async def _from_storage(
        self, session: ClientSession, location: str, media: MediaRef
    ) -> MediaContent:
        target = urlsplit(location)
        if target.scheme != "https" or not (target.hostname or "").endswith(self.STORAGE_HOSTS):
            raise MediaUnavailable(502, "Twilio redirected outside its own storage")
        async with session.get(location, allow_redirects=False) as stored:
            return await self._read(stored, media)

    async def _read(self, response: ClientResponse, media: MediaRef) -> MediaContent:
        if response.status == 404:
            raise MediaUnavailable(404, "Twilio does not have this media (deleted?)")
        if response.status != 200:
            raise MediaUnavailable(502, f"Twilio answered {response.status}")
        data = await response.content.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise MediaUnavailable(413, f"media larger than {self.max_bytes} bytes")
        content_type = response.headers.get("Content-Type") or media.content_type
        return MediaContent(data, content_type or "application/octet-stream")


class TwilioSender:
    """Sends WhatsApp messages with twilio's async `Client`.

    - The client is made inside the running loop (`start`) and closed on shutdown (`close`).
    - Every call runs under an explicit timeout: the library's own is not applied
      (twilio-python#925), and its retries are off because they re-POST a create.
    - A timeout after the request went out is not followed by a blind second POST: the row
      is marked uncertain, and the next attempt first looks for the message at Twilio (our
      status callback, which carries the row's key, may also settle it meanwhile).
    - Outside the 24-hour window free text is not sent: the row's template goes instead, or
      the message is blocked with the reason.
    """

    channel = Channel.WHATSAPP

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        api_base_url: str,
        status_callback: str,
        timeout: float = 15.0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.sender = sender
        self.api_base_url = api_base_url.rstrip("/")
        self.status_callback = status_callback
        self.timeout = timeout
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    async def start(self) -> None:
        self._http = AsyncTwilioHttpClient()
        self._client = Client(self.account_sid, self.auth_token, http_client=self._http)
        self._client.api.base_url = self.api_base_url

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = self._client = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RetryLater("twilio client not started")
        return self._client

    async def send(self, message: OutboundMessage) -> SendReceipt:
        outside = message.last_inbound_at is None or (
            datetime.now(UTC) - message.last_inbound_at > WINDOW
        )
        if outside and message.template is None:
            raise Blocked(
                "outside_24h_window: no template configured for this message", "outside_24h_window"
            )
        if message.uncertain:
            found = await self._find(message, outside)
            if found is not None:
                return found
        fields: dict[str, Any] = {
            "to": message.recipient,
            "from_": self.sender,
            "status_callback": f"{self.status_callback}?{urlencode({'outbox': message.key})}",
        }
        if outside and message.template is not None:
            fields["content_sid"] = message.template.content_sid
            fields["content_variables"] = json.dumps(message.template.variables)
        else:
            fields["body"] = message.text
            if message.attachment is not None:
                # Twilio fetches the file itself, from a public address; the body is its caption.
                fields["media_url"] = [message.attachment.url]
        try:
            async with asyncio.timeout(self.timeout):
                created = await self.client.messages.create_async(**fields)
        except TimeoutError as exc:
            raise RetryLater("twilio: no answer in time", uncertain=True) from exc
        except TwilioRestException as exc:
            raise _translate(exc) from exc
        except (ClientError, OSError) as exc:
            # The request may or may not have left: treat it as possibly sent.
            raise RetryLater(f"twilio: {type(exc).__name__}", uncertain=True) from exc
        return SendReceipt(channel_message_id=created.sid, status=DeliveryStatus.SENT)

    async def _find(self, message: OutboundMessage, as_template: bool) -> SendReceipt | None:
        """The message an unconfirmed attempt created, if Twilio has it."""
        try:
            async with asyncio.timeout(self.timeout):
                recent = await self.client.messages.list_async(
                    to=message.recipient, from_=self.sender, limit=20
                )
        except (TimeoutError, TwilioRestException, ClientError, OSError) as exc:
            raise RetryLater(
                "twilio: cannot check an unconfirmed send yet", uncertain=True
            ) from exc
        since = message.created_at - timedelta(minutes=1)
        for candidate in recent:
            created_at = candidate.date_created
            if created_at is not None and created_at < since:
                continue
            if as_template or candidate.body == message.text:
                log.info("whatsapp_send_found", extra={"outbox_id": message.key})
                return SendReceipt(channel_message_id=candidate.sid, status=DeliveryStatus.SENT)
        return None


def _translate(exc: TwilioRestException) -> Exception:
    code = str(exc.code) if exc.code is not None else ""
    if code == "21610":
        return SendFailed(ERRORS["21610"], code, unreachable=True)
    if code == "63016":
        return Blocked(ERRORS["63016"], "63016")
    if exc.status == 429 or code == "20429":
        return RetryLater(f"twilio 429 ({code or 'too many requests'})")
    if exc.status >= 500:
        # Twilio may have created the message before failing to answer.
        return RetryLater(f"twilio {exc.status}", uncertain=True)
    return SendFailed(f"twilio {exc.status} ({code}): {exc.msg}", code or str(exc.status))


class WhatsappWebhook:
    """`POST /webhooks/whatsapp` and `POST /webhooks/whatsapp/status`."""

    def __init__(self, intake: Intake, inbound: WhatsappInbound, public_url: str) -> None:
        self.intake = intake
        self.inbound = inbound
        self.public_url = public_url

    def register(self, app: web.Application) -> None:
        app.router.add_post(INBOUND_PATH, self.message)
        app.router.add_post(STATUS_PATH, self.status)

    async def message(self, request: web.Request) -> web.Response:
        raw = await read_raw(request, self.public_url)
        await self.intake.receive(self.inbound.parse(raw))
        # Replies go through the outbox; Twilio gets an empty TwiML answer at once.
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    async def status(self, request: web.Request) -> web.Response:
        raw = await read_raw(request, self.public_url)
        update = self.inbound.parse_status(raw)
        if update is not None:
            await self.intake.receive(update)
        return web.Response(status=204)
