"""A local stand-in for `https://api.twilio.com` (Messages, API 2010-04-01) for tests that drive
twilio's real `Client`, `AsyncTwilioHttpClient` and `RequestValidator`.

Point twilio 9.x at it with one attribute (checked against twilio 9.13's `base/domain.py`:
`Domain.absolute_url()` reads `self.base_url` on every request, and `ApiBase` sets it to
`https://api.twilio.com`; `edge`/`region` only rewrite `*.twilio.com` host names):

    async with FakeTwilioServer() as tw, AsyncTwilioHttpClient() as http:
        client = Client(tw.account_sid, tw.auth_token, http_client=http)
        client.api.base_url = tw.base_url
        msg = await client.messages.create_async(to=..., from_=..., body="Hola")

What the fake checks on `POST .../Messages.json`, in this order: HTTP basic auth (401, 20003);
the parameters against the `CreateMessage` form schema of
`tests/data/specs/twilio_api_v2010_messages_subset.json` (types, enums, patterns); then the
rules the spec cannot express: `To` (21604), `From` or `MessagingServiceSid` (21603), one of
`Body`/`MediaUrl`/`ContentSid` (21619), `Body` ≤ 1600 chars (21617), `ContentVariables` is a JSON
object (21656), `ValidityPeriod` 1-36000 (90007), and opted-out recipients (21610).

Where the fake is stricter or simpler than Twilio, on purpose:
- Unknown parameters are rejected (400, code 20001). Twilio accepts and ignores them, logging only
  warning 20001, so a misspelt `StatusCallbak` would silently cost us every status callback.
  `FakeTwilioServer(strict_params=False)` behaves like Twilio. `MessageIntent` counts as known:
  twilio 9.13 sends it, although the spec snapshot (twilio-oai @d50069b4) predates it.
- A type/enum/pattern violation without a documented code of its own answers code 400
  ("Bad Request" in Twilio's error dictionary).
- The 24-hour WhatsApp window is checked when the message is created, from `last_inbound`, with
  the fake's clock (`clock=`). Addresses are compared exactly as Twilio writes them
  (`whatsapp:+5215512345678`): the fake does not merge Mexico's `+521`/`+52` forms.
- `DateSent`, `DateSent<`, `DateSent>` filters: a `YYYY-MM-DD` value compares days (inclusive); a
  value with a time compares instants (inclusive), except `DateSent=` which always compares days.
  twilio's `serialize.iso8601_datetime` formats any `datetime` or `date` as `...T%H:%M:%SZ`
  whatever its tzinfo, so pass UTC datetimes.

Recorded shapes (`tests/data/twilio/*.json`, and the builders below) follow payloads seen in public
code: the inbound WhatsApp set (`SmsMessageSid`, `NumMedia`, `ProfileName`, `MessageType`, `WaId`,
`SmsStatus`, `ReferralNumMedia`, `ChannelMetadata` = `{"type":"whatsapp","data":{"context":{...}}}`
with sorted keys) from logged Twilio webhooks; `ExternalUserId` (`whatsapp:CO.4480…`),
`ParentExternalUserId`, `ProfileUsername` and the `whatsapp:CC.<digits>` sender form from
Chatwoot's `Twilio::WhatsappIdentifierHelper` and a logged 2026 payload; the CTWA `Referral*` names
from Chatwoot's specs (FACTS.md §C) and a third-party integration's field list; status callbacks
(`ChannelToAddress` masked to its last 4 digits, `ChannelInstallSid`, `StructuredMessage`,
`EventType` DELIVERED/READ/UNDELIVERED) from logged callbacks and Twilio's Messages resource page.
Values are invented; keys are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlencode, urlsplit

from aiohttp import BasicAuth, ClientError, ClientSession, ClientTimeout, web
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from tests.paths import TWILIO_SPEC

SPEC_PATH = TWILIO_SPEC

# Obviously fake credentials; both still pass format checks (`^AC[0-9a-fA-F]{32}$`, 32 hex).
FAKE_ACCOUNT_SID = "AC" + "0" * 31 + "1"
FAKE_AUTH_TOKEN = "0123456789abcdef" * 2
FAKE_CHANNEL_INSTALL_SID = "XE" + "0" * 31 + "1"
# Twilio's public WhatsApp sandbox number, the usual `To` of inbound test payloads.
WHATSAPP_SANDBOX = "whatsapp:+14155238886"

API_VERSION = "2010-04-01"
WHATSAPP_WINDOW = timedelta(hours=24)
BODY_LIMIT = 1600

Route = Literal["create", "list", "fetch", "media", "any"]
CallbackOrder = Literal["in_order", "reversed"]

MESSAGE_STATUSES = frozenset(
    {
        "queued",
        "sending",
        "sent",
        "failed",
        "delivered",
        "undelivered",
        "receiving",
        "received",
        "accepted",
        "scheduled",
        "read",
        "partially_delivered",
        "canceled",
    }
)
FAILURE_STATUSES = frozenset({"failed", "undelivered"})
# How far along the lifecycle a status is; a late callback for an earlier status must not move
# the resource back (Twilio documents that callbacks can arrive out of order).
_STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "read": 5,
}
_EVENT_TYPES = {"delivered": "DELIVERED", "read": "READ", "undelivered": "UNDELIVERED"}

ERROR_MESSAGES: dict[int, str] = {
    400: "Bad Request",
    20001: "Unknown parameters",
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service Unavailable",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message",
    21604: "A 'To' phone number is required.",
    21609: "Invalid 'StatusCallback'",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit",
    21619: "A text message body or media urls must be specified.",
    21655: "The ContentSid is Invalid",
    21656: "The ContentVariables Parameter is invalid",
    63016: (
        "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template."
    ),
    63018: "Rate limit exceeded for Channel",
    90007: "Invalid validity period value",
}
_DEFAULT_CODES = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
# Parameters whose violations Twilio documents under their own code.
_PARAM_CODES = {"StatusCallback": 21609, "ContentSid": 21655, "ContentVariables": 21656}

# A valid 8x8 grey baseline JPEG (159 bytes, hand-assembled; `djpeg` decodes it).
_JPEG_SEGMENTS = (
    "ffd8",  # SOI
    "ffe000104a46494600010100000100010000",  # APP0: JFIF 1.1
    "ffdb004300" + "01" * 64,  # DQT 0: all ones
    "ffc0000b080008000801011100",  # SOF0: 8x8, one grey component
    "ffc400140001" + "00" * 15 + "00",  # DHT DC 0: one 1-bit code, category 0
    "ffc400141001" + "00" * 15 + "00",  # DHT AC 0: one 1-bit code, EOB
    "ffda0008010100003f00",  # SOS
    "3f",  # DC diff 0, EOB, padding
    "ffd9",  # EOI
)
TINY_JPEG = bytes.fromhex("".join(_JPEG_SEGMENTS))
# Not a playable file: only the Ogg magic, enough for content sniffing and size checks.
OGG_PLACEHOLDER = b"OggS\x00\x02" + bytes(58)

_T = TypeVar("_T")


# --- errors and small values ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TwilioError:
    """An error answer in Twilio's legacy JSON shape (the one `TwilioRestException` parses)."""

    status: int
    code: int
    message: str

    @classmethod
    def of(cls, status: int, code: int, detail: str | None = None) -> TwilioError:
        text = ERROR_MESSAGES.get(code, "Error")
        return cls(status, code, f"{text}: {detail}" if detail else text)

    def body(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One HTTP request the fake answered, with what it answered."""

    method: str
    path: str
    route: str | None
    pairs: tuple[tuple[str, str], ...]  # form fields (POST) or query (GET), repeats kept
    headers: tuple[tuple[str, str], ...]  # without Authorization
    auth_ok: bool
    status: int
    at: datetime

    @property
    def params(self) -> dict[str, str]:
        """First value of each parameter."""
        out: dict[str, str] = {}
        for key, value in self.pairs:
            out.setdefault(key, value)
        return out

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


@dataclass(frozen=True, slots=True)
class StatusChange:
    status: str
    at: datetime
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class CallbackDelivery:
    """One status callback the fake POSTed, and how the receiving service answered."""

    message_sid: str
    status: str
    url: str
    params: dict[str, str]
    signature: str
    idempotency_token: str
    response_status: int | None  # None: no HTTP answer (see `error`)
    error: str | None
    at: datetime


@dataclass(slots=True)
class FakeMessage:
    """A Message resource as the fake holds it: mutable because its status moves on."""

    sid: str
    account_sid: str
    direction: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    media_urls: tuple[str, ...]
    content_sid: str | None
    status_callback: str | None
    status: str
    date_created: datetime
    date_updated: datetime
    order: int  # creation order: the list endpoint returns newest first
    params: tuple[tuple[str, str], ...] = ()
    plan: tuple[str, ...] = ()  # statuses still to come when delivery runs
    plan_error_code: int | None = None
    date_sent: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    history: list[StatusChange] = field(default_factory=list)

    @property
    def is_whatsapp(self) -> bool:
        return self.to.startswith("whatsapp:")

    @property
    def statuses(self) -> list[str]:
        return [change.status for change in self.history]

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def resource(self) -> dict[str, object]:
        """The JSON Twilio answers for this Message (`api.v2010.account.message`)."""
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent) if self.date_sent else None,
            "date_updated": rfc2822(self.date_updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(len(self.media_urls)),
            "num_segments": str(1 if self.is_whatsapp else sms_segments(self.body)),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "media": f"{base}/Media.json",
                "feedback": f"{base}/Feedback.json",
            },
            "to": self.to,
            "uri": self.uri,
        }


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int
    code: int
    message: str | None
    route: Route
    create_anyway: bool
    headers: tuple[tuple[str, str], ...]


# --- helpers --------------------------------------------------------------------------------------


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 lower-case hex digits."""
    return prefix + uuid.uuid4().hex


def rfc2822(moment: datetime) -> str:
    """Twilio's date format in resources: `Thu, 24 Aug 2023 05:01:45 +0000`."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0))


_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def sms_segments(body: str) -> int:
    """SMS segments for `body`: GSM-7 160/153 per part, else UCS-2 70/67 (so `á` costs)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in body):
        units, single, multi = sum(2 if ch in _GSM_EXTENDED else 1 for ch in body), 160, 153
    else:
        units, single, multi = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else -(-units // multi)


def mask_address(address: str) -> str:
    """`ChannelToAddress` as Twilio sends it: the bare number with its last 4 digits hidden."""
    bare = address.removeprefix("whatsapp:")
    return bare[:-4] + "XXXX" if bare.startswith("+") and len(bare) > 5 else bare


def _valid_callback_url(value: str) -> bool:
    # Twilio: fully qualified http(s) URL, ≤ 4000 chars, no underscore in the host name (21609).
    parts = urlsplit(value)
    host = parts.hostname or ""
    return (
        parts.scheme in ("http", "https") and bool(host) and "_" not in host and len(value) <= 4000
    )


def _parse_iso_datetime(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _parse_filter_date(value: str) -> tuple[datetime, bool] | None:
    """(instant in UTC, whether a time was given) for a `DateSent` filter value."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return datetime.combine(date.fromisoformat(value), time(), UTC), False
    moment = _parse_iso_datetime(value)
    if moment is None:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    # Twilio reads filter values as GMT.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC), True


# --- request validation from the OpenAPI spec -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParamRule:
    """What the spec says about one form parameter of `CreateMessage`."""

    name: str
    type: str  # string | integer | number | boolean | array (of strings)
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    format: str | None = None


# Sent by twilio 9.13 (`message_intent=`) but missing from the spec snapshot.
_EXTRA_PARAMS = (ParamRule("MessageIntent", "string"),)


@cache
def create_message_rules(
    spec_path: Path = SPEC_PATH,
) -> tuple[dict[str, ParamRule], frozenset[str]]:
    """Form-parameter rules and required names of `POST .../Messages.json`, read from the spec.

    Raises:
        FileNotFoundError: the spec is missing from tests/data/specs.
    """
    if not spec_path.is_file():
        raise FileNotFoundError(
            f"Twilio spec not found at {spec_path}; the fake validates requests against it"
        )
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    operation = spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["post"]
    schema = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            *_, name = node["$ref"].split("/")
            node = spec["components"]["schemas"][name]
        return node

    rules: dict[str, ParamRule] = {}
    for name, raw in schema["properties"].items():
        prop = resolve(raw)
        enum = prop.get("enum")
        rules[name] = ParamRule(
            name=name,
            type=prop["type"],
            enum=tuple(enum) if enum else None,
            pattern=prop.get("pattern"),
            min_length=prop.get("minLength"),
            max_length=prop.get("maxLength"),
            format=prop.get("format"),
        )
    for extra in _EXTRA_PARAMS:
        rules.setdefault(extra.name, extra)
    return rules, frozenset(schema.get("required", ()))


def _check_value(rule: ParamRule, value: str) -> str | None:
    """Why `value` breaks `rule`, or None."""
    kind = rule.type
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        return f"{rule.name} must be an integer"
    if kind == "number":
        try:
            float(value)
        except ValueError:
            return f"{rule.name} must be a number"
    if kind == "boolean" and value.lower() not in ("true", "false"):
        return f"{rule.name} must be true or false"
    if rule.enum is not None and value not in rule.enum:
        return f"{rule.name} must be one of {', '.join(rule.enum)}"
    if rule.pattern is not None and not re.search(rule.pattern, value):
        return f"{rule.name} does not match {rule.pattern}"
    if rule.min_length is not None and len(value) < rule.min_length:
        return f"{rule.name} is shorter than {rule.min_length}"
    if rule.max_length is not None and len(value) > rule.max_length:
        return f"{rule.name} is longer than {rule.max_length}"
    if rule.format == "uri" and rule.name == "StatusCallback" and not _valid_callback_url(value):
        return f"{rule.name} is not a fully qualified URL"
    if rule.format == "date-time" and _parse_iso_datetime(value) is None:
        return f"{rule.name} is not an ISO 8601 date-time"
    return None


def validate_create(pairs: Sequence[tuple[str, str]], *, strict: bool = True) -> TwilioError | None:
    """Check a `CreateMessage` form as the fake's API does; None when Twilio would accept it."""
    rules, required = create_message_rules()
    form: MultiDict[str] = MultiDict(pairs)

    unknown = sorted({key for key, _ in pairs if key not in rules})
    if unknown and strict:
        return TwilioError.of(400, 20001, ", ".join(unknown))
    for name, rule in rules.items():
        values = form.getall(name) if name in form else []
        if len(values) > 1 and rule.type != "array":
            return TwilioError.of(400, 400, f"{name} given {len(values)} times")
        for value in values:
            problem = _check_value(rule, value)
            if problem:
                return TwilioError.of(400, _PARAM_CODES.get(name, 400), problem)

    if "To" in required and not form.get("To"):
        return TwilioError.of(400, 21604)
    if not form.get("From") and not form.get("MessagingServiceSid"):
        return TwilioError.of(400, 21603)
    if not (form.get("Body") or "MediaUrl" in form or form.get("ContentSid")):
        return TwilioError.of(400, 21619)
    if len(form.get("Body", "")) > BODY_LIMIT:
        return TwilioError.of(400, 21617)
    variables = form.get("ContentVariables")
    if variables is not None:
        try:
            parsed = json.loads(variables)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return TwilioError.of(400, 21656, "must be a JSON object string")
    validity = form.get("ValidityPeriod")
    if validity is not None and not 1 <= int(validity) <= 36000:
        return TwilioError.of(400, 90007)
    return None


# --- inbound webhook helpers ----------------------------------------------------------------------


def signed_form(
    url: str, params: Mapping[str, str], auth_token: str
) -> tuple[dict[str, str], dict[str, str]]:
    """(form, headers) for POSTing `params` to `url` as Twilio would, signed with `auth_token`.

    The signature covers the exact `url` (query string included) and every parameter, so post to
    that very URL and send the form unchanged.
    """
    form = dict(params)
    signature = RequestValidator(auth_token).compute_signature(url, form)
    headers = {
        "X-Twilio-Signature": signature,
        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        "User-Agent": "TwilioProxy/1.1",
    }
    return form, headers


_PHONE_ADDRESS = re.compile(r"^whatsapp:\+(\d{6,15})$")
_CONTEXT_KEYS = ("ButtonText", "Forwarded", "FrequentlyForwarded")


def _message_type(content_type: str) -> str:
    major = content_type.split("/", 1)[0]
    return major if major in ("image", "audio", "video") else "document"


def inbound_whatsapp_params(
    from_: str = "whatsapp:+5215512345678",
    body: str = "Hola",
    profile_name: str = "Ana",
    wa_id: str | None = None,
    media: Sequence[tuple[str, str]] = (),
    message_sid: str | None = None,
    *,
    to: str = WHATSAPP_SANDBOX,
    account_sid: str = FAKE_ACCOUNT_SID,
    messaging_service_sid: str | None = None,
    external_user_id: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The parameters Twilio POSTs for an inbound WhatsApp message.

    Keys come in the order seen in logged payloads (the signature does not depend on it).
    `media` is `(MediaUrl, MediaContentType)` pairs; `NumMedia`, the `MM` SID prefix and
    `MessageType` follow from it. A `from_` that is not a phone address (a business-scoped user
    id such as `whatsapp:MX.2081978709342942`) gets no `WaId` and an `ExternalUserId`. Anything
    in `extra` (e.g. `MessageType="location"`, `Latitude=...`, `ButtonPayload=...`) is added last
    and overrides.
    """
    phone = _PHONE_ADDRESS.match(from_)
    if wa_id is None and phone:
        wa_id = phone.group(1)
    sid = message_sid or new_sid("MM" if media else "SM")
    context: dict[str, str] = {"ProfileName": profile_name}
    if wa_id:
        context["WaId"] = wa_id
    context.update({key: extra[key] for key in _CONTEXT_KEYS if key in extra})
    if "Forwarded" in extra:  # seen only together, and FrequentlyForwarded only in the context
        context.setdefault("FrequentlyForwarded", "false")

    params: dict[str, str] = {}
    for n, (_, content_type) in enumerate(media):
        params[f"MediaContentType{n}"] = content_type
    if external_user_id or not phone:
        params["ExternalUserId"] = external_user_id or from_
    params |= {
        "SmsMessageSid": sid,
        "NumMedia": str(len(media)),
        "ProfileName": profile_name,
        "MessageType": _message_type(media[0][1]) if media else "text",
        "SmsSid": sid,
    }
    if wa_id:
        params["WaId"] = wa_id
    params |= {"SmsStatus": "received", "Body": body, "To": to}
    if messaging_service_sid:
        params["MessagingServiceSid"] = messaging_service_sid
    params |= {"NumSegments": "1", "ReferralNumMedia": "0"}
    for n, (url, _) in enumerate(media):
        params[f"MediaUrl{n}"] = url
    params |= {
        "MessageSid": sid,
        "AccountSid": account_sid,
        "ChannelMetadata": json.dumps(
            {"type": "whatsapp", "data": {"context": dict(sorted(context.items()))}},
            separators=(",", ":"),
            ensure_ascii=False,
        ),
        "From": from_,
        "ApiVersion": API_VERSION,
    }
    params.update(extra)
    return params


def inbound_whatsapp_bsuid_params(
    bsuid: str = "MX.2081978709342942",
    username: str = "ana.compras",
    body: str = "Hola",
    profile_name: str = "Ana",
    parent_bsuid: str | None = None,
    *,
    message_sid: str | None = None,
    to: str = WHATSAPP_SANDBOX,
    account_sid: str = FAKE_ACCOUNT_SID,
    messaging_service_sid: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """An inbound message from a user known only by a business-scoped user id (no phone, no WaId).

    `From` is `whatsapp:<bsuid>`; `ExternalUserId` repeats it; `ProfileUsername` carries the
    WhatsApp username; `ParentExternalUserId` is added when given.
    """
    params = inbound_whatsapp_params(
        f"whatsapp:{bsuid}",
        body,
        profile_name,
        media=(),
        message_sid=message_sid,
        to=to,
        account_sid=account_sid,
        messaging_service_sid=messaging_service_sid,
        **extra,
    )
    params["ProfileUsername"] = username
    if parent_bsuid:
        params["ParentExternalUserId"] = f"whatsapp:{parent_bsuid}"
    return params


def status_callback_params(
    message: FakeMessage,
    status: str,
    error_code: int | None = None,
    *,
    channel_install_sid: str = FAKE_CHANNEL_INSTALL_SID,
    sender: str | None = None,
) -> dict[str, str]:
    """The parameters Twilio POSTs to a message's `StatusCallback` for `status`."""
    sender = sender or message.from_ or ""
    params: dict[str, str] = {}
    if message.is_whatsapp and status in _EVENT_TYPES:
        params["EventType"] = _EVENT_TYPES[status]
    params |= {"SmsSid": message.sid, "SmsStatus": status, "MessageStatus": status}
    if message.is_whatsapp:
        params |= {"ChannelToAddress": mask_address(message.to)}
    params["To"] = message.to
    if message.is_whatsapp:
        params["ChannelPrefix"] = "whatsapp"
    if message.messaging_service_sid:
        params["MessagingServiceSid"] = message.messaging_service_sid
    params |= {"MessageSid": message.sid, "AccountSid": message.account_sid}
    if message.is_whatsapp and status == "sent":
        params["StructuredMessage"] = "false"
    params |= {"From": sender, "ApiVersion": API_VERSION}
    if message.is_whatsapp:
        params["ChannelInstallSid"] = channel_install_sid
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
    return params


# --- the server -----------------------------------------------------------------------------------

_ACCOUNT = r"/2010-04-01/Accounts/(?P<account>[^/]+)"
_ROUTES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("POST", "create", re.compile(_ACCOUNT + r"/Messages\.json$")),
    ("GET", "list", re.compile(_ACCOUNT + r"/Messages\.json$")),
    ("GET", "fetch", re.compile(_ACCOUNT + r"/Messages/(?P<sid>[^/]+)\.json$")),
    ("GET", "media", re.compile(_ACCOUNT + r"/Messages/(?P<sid>[^/]+)/Media/(?P<media>ME\w+)$")),
)


def _json(
    status: int, payload: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(dict(payload), status=status, headers=headers)


def _error(error: TwilioError, headers: Mapping[str, str] | None = None) -> web.Response:
    return _json(error.status, error.body(), headers)


class FakeTwilioServer:
    """An aiohttp server on 127.0.0.1 (random port) that answers like api.twilio.com's Messages.

    State is public for assertions: `requests` (every request, with the answer's status),
    `messages` (by SID, with `history`), `callbacks` (every status callback POSTed, with our
    service's answer), `last_inbound` (address → last inbound time: the WhatsApp 24 h window).
    """

    def __init__(
        self,
        *,
        account_sid: str = FAKE_ACCOUNT_SID,
        auth_token: str = FAKE_AUTH_TOKEN,
        strict_params: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.strict_params = strict_params
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))

        self.requests: list[RecordedRequest] = []
        self.messages: dict[str, FakeMessage] = {}
        self.callbacks: list[CallbackDelivery] = []
        self.last_inbound: dict[str, datetime] = {}

        # Delivery: with auto_callbacks, each created message runs its planned statuses (and posts
        # their callbacks) on its own, callback_delay seconds apart.
        self.auto_callbacks = True
        self.callback_delay = 0.01
        self.callback_order: CallbackOrder = "in_order"
        self.duplicate_callbacks = False
        self.callback_timeout = 15.0  # what Twilio waits for a webhook by default
        self.channel_install_sid = FAKE_CHANNEL_INSTALL_SID

        self._opted_out: set[str] = set()
        self._scripted: dict[str, tuple[tuple[str, ...], int | None]] = {}
        self._faults: list[_Fault] = []
        self._hangs: list[float] = []
        self._media: dict[str, tuple[str, str, bytes]] = {}  # ME sid -> (MM/SM sid, type, bytes)
        self._order = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._port = 0

    # lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        create_message_rules()  # fail now, with the path, if the spec is missing
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]
        self._session = ClientSession()

    async def close(self) -> None:
        # Wake handlers held by hang_after_accept, and stop deliveries still under way.
        self._closing.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # scripting

    def received_from(self, address: str, at: datetime | None = None) -> None:
        """Record an inbound message from `address` (opens its 24-hour WhatsApp window)."""
        self.last_inbound[address] = at or self._now()

    def in_window(self, address: str, now: datetime | None = None) -> bool:
        last = self.last_inbound.get(address)
        return last is not None and (now or self._now()) - last < WHATSAPP_WINDOW

    def opt_out(self, address: str) -> None:
        """Sends to `address` now fail synchronously: 400, code 21610."""
        self._opted_out.add(address)

    def opt_in(self, address: str) -> None:
        self._opted_out.discard(address)

    def script_delivery(
        self, to: str, statuses: Sequence[str], *, error_code: int | None = None
    ) -> None:
        """Messages to `to` go through `statuses` (e.g. `["sent", "undelivered"]`, 63018)."""
        unknown = set(statuses) - MESSAGE_STATUSES
        if unknown:
            raise ValueError(f"not Twilio message statuses: {sorted(unknown)}")
        self._scripted[to] = (tuple(statuses), error_code)

    def fail_next(
        self,
        status: int = 500,
        code: int | None = None,
        message: str | None = None,
        *,
        route: Route = "create",
        times: int = 1,
        create_anyway: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests on `route` with a Twilio error instead.

        `code` defaults from the status (429 → 20429, 500 → 20500, 503 → 20503). With
        `create_anyway`, a create still creates (and delivers) the message before answering the
        error, as when Twilio's edge fails after the API accepted it.
        """
        resolved = code if code is not None else _DEFAULT_CODES.get(status, status)
        fault = _Fault(
            status, resolved, message, route, create_anyway, tuple((headers or {}).items())
        )
        self._faults.extend([fault] * times)

    def hang_after_accept(self, seconds: float, *, times: int = 1) -> None:
        """The next `times` creates succeed (the message exists and is delivered) but their HTTP
        answer is held back `seconds`, so a client that times out must not POST again."""
        self._hangs.extend([seconds] * times)

    # delivery and callbacks

    async def deliver(self, sid: str) -> list[CallbackDelivery]:
        """Run the message's planned statuses now (what `auto_callbacks` does on its own)."""
        message = self.messages[sid]
        plan, message.plan = message.plan, ()
        events: list[tuple[str, dict[str, str], str]] = []
        deliveries: list[CallbackDelivery] = []
        for status in plan:
            await asyncio.sleep(self.callback_delay)
            error_code = message.plan_error_code if status in FAILURE_STATUSES else None
            event = (status, self._transition(message, status, error_code), str(uuid.uuid4()))
            if self.callback_order == "in_order":
                deliveries += await self._post_event(message, *event)
            else:
                events.append(event)
        for event in reversed(events):
            deliveries += await self._post_event(message, *event)
        return deliveries

    async def send_callbacks(
        self,
        sid: str,
        statuses: Sequence[str],
        *,
        error_code: int | None = None,
        duplicate: bool = False,
    ) -> list[CallbackDelivery]:
        """Move the message through `statuses` and POST one callback each, in the given order.

        Give them out of order (`["read", "sent"]`) or repeated to test the receiver: the
        resource itself only moves forward. `duplicate` posts each callback twice with the same
        `I-Twilio-Idempotency-Token`, as a Twilio retry would.
        """
        message = self.messages[sid]
        deliveries: list[CallbackDelivery] = []
        for status in statuses:
            code = error_code if status in FAILURE_STATUSES else None
            params = self._transition(message, status, code)
            token = str(uuid.uuid4())
            for _ in range(2 if duplicate else 1):
                deliveries += await self._post_callback(message, status, params, token)
        return deliveries

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until every automatic delivery has finished; re-raise what one raised."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                done, _ = await asyncio.wait(set(self._tasks))
                for task in done:
                    failure = None if task.cancelled() else task.exception()
                    if failure is not None:
                        raise failure

    # media and inbound

    def media_url(
        self,
        message_sid: str,
        n: int = 0,
        *,
        content_type: str = "image/jpeg",
        content: bytes | None = None,
    ) -> str:
        """URL of media `n` of an inbound message, served by the fake behind basic auth."""
        media_sid = "ME" + hashlib.sha256(f"{message_sid}/{n}".encode()).hexdigest()[:32]
        if content is None:
            content = {"image/jpeg": TINY_JPEG, "audio/ogg": OGG_PLACEHOLDER}.get(
                content_type, b"fake media"
            )
        self._media[media_sid] = (message_sid, content_type, content)
        return (
            f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}"
            f"/Messages/{message_sid}/Media/{media_sid}"
        )

    def inbound_whatsapp_params(
        self,
        from_: str = "whatsapp:+5215512345678",
        body: str = "Hola",
        *,
        media_types: Sequence[str] = (),
        profile_name: str = "Ana",
        to: str = WHATSAPP_SANDBOX,
        **extra: str,
    ) -> dict[str, str]:
        """An inbound message as Twilio would post it, from this account, with media served here.

        Twilio has then received it: the sender's 24-hour window opens, and the message is listed.
        """
        sid = new_sid("MM" if media_types else "SM")
        media = [
            (self.media_url(sid, n, content_type=kind), kind) for n, kind in enumerate(media_types)
        ]
        params = inbound_whatsapp_params(
            from_,
            body,
            profile_name,
            media=media,
            message_sid=sid,
            to=to,
            account_sid=self.account_sid,
            **extra,
        )
        now = self._now()
        self.received_from(from_, now)
        self.messages[sid] = FakeMessage(
            sid=sid,
            account_sid=self.account_sid,
            direction="inbound",
            to=to,
            from_=from_,
            messaging_service_sid=None,
            body=body,
            media_urls=tuple(url for url, _ in media),
            content_sid=None,
            status_callback=None,
            status="received",
            date_created=now,
            date_updated=now,
            date_sent=now,
            order=self._next_order(),
            history=[StatusChange("received", now)],
        )
        return params

    def sign(self, url: str, params: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """`signed_form` with this account's auth token."""
        return signed_form(url, params, self.auth_token)

    @property
    def outbound(self) -> list[FakeMessage]:
        """Messages created through the API (`messages` also holds simulated inbound ones)."""
        return [m for m in self.messages.values() if m.direction != "inbound"]

    @property
    def creates(self) -> list[RecordedRequest]:
        """The create requests (`POST .../Messages.json`) received, in order."""
        return [request for request in self.requests if request.route == "create"]

    # internals

    def _now(self) -> datetime:
        return self.clock().astimezone(UTC).replace(microsecond=0)

    def _next_order(self) -> int:
        self._order += 1
        return self._order

    def _spawn(self, coro: Awaitable[_T]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _auth_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        try:
            auth = BasicAuth.decode(header)
        except ValueError:
            return False
        return secrets.compare_digest(auth.login, self.account_sid) and secrets.compare_digest(
            auth.password, self.auth_token
        )

    def _take_fault(self, route: str | None) -> _Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.route in ("any", route):
                return self._faults.pop(index)
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            form = await request.post()
            pairs = tuple((k, v if isinstance(v, str) else "<file>") for k, v in form.items())
        else:
            pairs = tuple(request.query.items())
        route: str | None = None
        match: re.Match[str] | None = None
        for method, name, pattern in _ROUTES:
            found = pattern.match(request.path)
            if found and method == request.method:
                route, match = name, found
                break
        auth_ok = self._auth_ok(request)
        fault = self._take_fault(route)
        hang = 0.0

        response: web.Response
        if fault is not None and not fault.create_anyway:
            response = self._fault_response(fault)
        elif route is None or match is None:
            response = _error(TwilioError.of(404, 20404, request.path))
        elif not auth_ok:
            response = _error(
                TwilioError.of(401, 20003), {"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        elif match["account"] != self.account_sid:
            response = _error(TwilioError.of(404, 20404, request.path))
        else:
            response = self._handle(route, match, pairs)
            if route == "create" and response.status == 201:
                hang = self._hangs.pop(0) if self._hangs else 0.0
                if fault is not None:  # created, then the answer failed
                    response = self._fault_response(fault)

        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                route=route,
                pairs=pairs,
                headers=tuple(
                    (k, v) for k, v in request.headers.items() if k.lower() != "authorization"
                ),
                auth_ok=auth_ok,
                status=response.status,
                at=self._now(),
            )
        )
        if hang:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), hang)
        return response

    def _fault_response(self, fault: _Fault) -> web.Response:
        error = TwilioError.of(fault.status, fault.code)
        if fault.message:
            error = TwilioError(fault.status, fault.code, fault.message)
        return _error(error, dict(fault.headers))

    def _handle(
        self, route: str, match: re.Match[str], pairs: tuple[tuple[str, str], ...]
    ) -> web.Response:
        if route == "create":
            return self._create(pairs)
        if route == "list":
            return self._list(pairs)
        message = self.messages.get(match["sid"])
        if route == "fetch":
            if message is None:
                return _error(TwilioError.of(404, 20404, match.string))
            return _json(200, message.resource())
        media = self._media.get(match["media"])
        if media is None or media[0] != match["sid"]:
            return _error(TwilioError.of(404, 20404, match.string))
        return web.Response(body=media[2], content_type=media[1])

    def _create(self, pairs: tuple[tuple[str, str], ...]) -> web.Response:
        error = validate_create(pairs, strict=self.strict_params)
        if error is not None:
            return _error(error)
        form: MultiDict[str] = MultiDict(pairs)
        to = form["To"]
        if to in self._opted_out:
            return _error(TwilioError.of(400, 21610))

        now = self._now()
        content_sid = form.get("ContentSid")
        service = form.get("MessagingServiceSid")
        media = tuple(form.getall("MediaUrl")) if "MediaUrl" in form else ()
        sid = new_sid("MM" if media else "SM")
        message = FakeMessage(
            sid=sid,
            account_sid=self.account_sid,
            direction="outbound-api",
            to=to,
            from_=form.get("From"),
            messaging_service_sid=service,
            body=form.get("Body", ""),
            media_urls=media,
            content_sid=content_sid,
            status_callback=form.get("StatusCallback"),
            # Twilio: `accepted` when a Messaging Service picks the sender, else `queued`.
            status="accepted" if service else "queued",
            date_created=now,
            date_updated=now,
            order=self._next_order(),
            params=pairs,
        )
        message.history.append(StatusChange(message.status, now))
        message.plan, message.plan_error_code = self._plan(message, free_form=not content_sid)
        self.messages[sid] = message
        if self.auto_callbacks:
            self._spawn(self.deliver(sid))
        return _json(201, message.resource())

    def _plan(self, message: FakeMessage, *, free_form: bool) -> tuple[tuple[str, ...], int | None]:
        if message.is_whatsapp and free_form and not self.in_window(message.to):
            # Accepted now, failed later: Twilio checks the window after the 201.
            return ("failed",), 63016
        if message.to in self._scripted:
            return self._scripted[message.to]
        queued = ("queued",) if message.status == "accepted" else ()
        tail = ("sent", "delivered", "read") if message.is_whatsapp else ("sent", "delivered")
        return queued + tail, None

    def _transition(
        self, message: FakeMessage, status: str, error_code: int | None
    ) -> dict[str, str]:
        now = self._now()
        current = _STATUS_RANK.get(message.status, 0)
        if message.status not in FAILURE_STATUSES and _STATUS_RANK.get(status, 0) > current:
            message.status = status
            message.date_updated = now
            if message.date_sent is None and status in ("sent", "delivered", "read"):
                message.date_sent = now
            if error_code is not None:
                message.error_code = error_code
                message.error_message = ERROR_MESSAGES.get(error_code)
            message.history.append(StatusChange(status, now, error_code))
        return status_callback_params(
            message,
            status,
            error_code,
            channel_install_sid=self.channel_install_sid,
            sender=message.from_ or WHATSAPP_SANDBOX,
        )

    async def _post_event(
        self, message: FakeMessage, status: str, params: dict[str, str], token: str
    ) -> list[CallbackDelivery]:
        deliveries = await self._post_callback(message, status, params, token)
        if self.duplicate_callbacks:
            deliveries += await self._post_callback(message, status, params, token)
        return deliveries

    async def _post_callback(
        self, message: FakeMessage, status: str, params: dict[str, str], token: str
    ) -> list[CallbackDelivery]:
        url = message.status_callback
        if url is None or self._session is None:
            return []
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        headers = {
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": token,
            "User-Agent": "TwilioProxy/1.1",
        }
        response_status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                url,
                data=params,
                headers=headers,
                allow_redirects=False,  # Twilio does not follow webhook redirects (11200)
                timeout=ClientTimeout(total=self.callback_timeout),
            ) as response:
                await response.read()
                response_status = response.status
        except (ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivery = CallbackDelivery(
            message_sid=message.sid,
            status=status,
            url=url,
            params=dict(params),
            signature=signature,
            idempotency_token=token,
            response_status=response_status,
            error=error,
            at=self._now(),
        )
        self.callbacks.append(delivery)
        return [delivery]

    def _list(self, pairs: tuple[tuple[str, str], ...]) -> web.Response:
        query = dict(pairs)
        filters: list[Callable[[FakeMessage], bool]] = []
        if "To" in query:
            filters.append(lambda m: m.to == query["To"])
        if "From" in query:
            filters.append(lambda m: m.from_ == query["From"])
        for key in ("DateSent", "DateSent<", "DateSent>"):
            if key not in query:
                continue
            parsed = _parse_filter_date(query[key])
            if parsed is None:
                return _error(TwilioError.of(400, 400, f"{key} is not a date"))
            filters.append(_date_filter(key, *parsed))
        try:
            page_size = int(query.get("PageSize", "50"))
            page = int(query.get("Page", "0"))
        except ValueError:
            return _error(TwilioError.of(400, 400, "PageSize and Page must be integers"))
        if not 1 <= page_size <= 1000 or page < 0:
            return _error(TwilioError.of(400, 400, "PageSize must be 1-1000"))

        found = sorted(
            (m for m in self.messages.values() if all(check(m) for check in filters)),
            key=lambda m: m.order,
            reverse=True,
        )
        start = page * page_size
        token = query.get("PageToken", "")
        sids = [m.sid for m in found]
        if token[2:] in sids:  # PA<last sid of the previous page> / PB<first sid of the next>
            index = sids.index(token[2:])
            start = index + 1 if token.startswith("PA") else max(index - page_size, 0)
        items = found[start : start + page_size]

        base_query = [(k, v) for k, v in pairs if k not in ("Page", "PageSize", "PageToken")]
        path = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

        def page_uri(number: int, page_token: str | None = None) -> str:
            extra = [("PageSize", str(page_size)), ("Page", str(number))]
            if page_token:
                extra.append(("PageToken", page_token))
            return f"{path}?{urlencode(base_query + extra)}"

        more = start + page_size < len(found)
        return _json(
            200,
            {
                "messages": [m.resource() for m in items],
                "end": start + max(len(items) - 1, 0),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1, "PA" + items[-1].sid) if more else None,
                "page": page,
                "page_size": page_size,
                "previous_page_uri": (
                    page_uri(page - 1, "PB" + items[0].sid) if page > 0 and items else None
                ),
                "start": start,
                "uri": page_uri(page, token or None),
            },
        )


def _date_filter(key: str, moment: datetime, has_time: bool) -> Callable[[FakeMessage], bool]:
    day = moment.date()

    def check(message: FakeMessage) -> bool:
        sent = message.date_sent
        if sent is None:
            return False
        if key == "DateSent":
            return sent.date() == day
        if key == "DateSent<":
            return sent <= moment if has_time else sent.date() <= day
        return sent >= moment if has_time else sent.date() >= day

    return check
