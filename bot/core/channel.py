"""What a channel is to the rest of Seguibot: two small objects and the values they exchange.

A channel's `Inbound` turns a raw HTTP request into an event (verifying it first); its `Sender`
delivers an outgoing message. The engine and the policy import this module, never `handlers`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from bot.core.errors import WebhookRejected
from bot.core.materials import MaterialKind
from bot.core.model import Channel, DeliveryStatus

__all__ = [
    "AGENT_LINK_PREFIX",
    "TEXT_LIMITS",
    "Attachment",
    "Button",
    "Channel",
    "ChatLine",
    "ChatLinkRequested",
    "DeliveryUpdate",
    "InboundEvent",
    "InboundMessage",
    "InlineReply",
    "Intake",
    "MediaContent",
    "MediaRef",
    "MediaSource",
    "MessageEdited",
    "OutboundMessage",
    "Outcome",
    "RawRequest",
    "ReachabilityChanged",
    "SendReceipt",
    "Sender",
    "Template",
    "Transcript",
    "checked",
]


# Longest text one message may carry (Bot API sendMessage; Twilio's Body). Longer texts are
# sent as several messages.
TEXT_LIMITS: dict[Channel, int] = {Channel.TELEGRAM: 4096, Channel.WHATSAPP: 1600}


@dataclass(frozen=True, slots=True)
class RawRequest:
    """An HTTP request as a channel receives it, before any parsing."""

    method: str
    url: str  # the public URL the remote service called (what signatures cover)
    headers: Mapping[str, str]
    body: bytes
    form: Mapping[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A photo, document or voice note the lead sent, by reference (never fetched on receipt)."""

    kind: str  # photo | document | voice | video | sticker | audio | location | other
    ref: str  # the channel's file id or URL
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message from a lead.

    `message_id` is the channel's id for it, the key that makes a redelivery a no-op.
    `reply_inline` asks the engine to deliver the replies in the HTTP response (web chat)
    instead of sending them later.
    """

    channel: Channel
    sender_id: str
    message_id: str
    text: str
    sent_at: datetime
    media: tuple[MediaRef, ...] = ()
    sender_name: str | None = None
    sender_phone: str | None = None  # E.164, only when the channel vouches for it
    source: str | None = None  # acquisition source or campaign (e.g. a deep-link payload)
    start: bool = False  # the lead opened the chat (Telegram /start): greet them
    shared_contact: bool = False  # the message is a contact card the lead shared
    choice: str | None = None  # payload of the button the lead pressed
    reply_inline: bool = False


def web_chat_message(
    session_id: str, client_id: str, text: str, sent_at: datetime
) -> InboundMessage:
    """A message typed in the web chat, answered inline. The page makes its ids, unique only
    within its session: the channel's id is the two together."""
    return InboundMessage(
        channel=Channel.WEBCHAT,
        sender_id=session_id,
        message_id=f"{session_id}:{client_id}",
        text=text,
        sent_at=sent_at,
        reply_inline=True,
    )


@dataclass(frozen=True, slots=True)
class MessageEdited:
    """The lead edited a message already received: update the record, never reply again."""

    channel: Channel
    message_id: str
    text: str
    edited_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """The channel reports what happened to a message we sent."""

    channel: Channel
    message_id: str  # the channel's id, as recorded from the send receipt
    status: DeliveryStatus
    at: datetime
    error_code: str | None = None
    # The outbox row the report is about, when the channel echoes it back (our callback URL
    # carries it): how a send whose answer was lost is matched to its row.
    outbox_key: int | None = None


@dataclass(frozen=True, slots=True)
class ReachabilityChanged:
    """The lead blocked or unblocked us on this channel."""

    channel: Channel
    sender_id: str
    reachable: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class ChatLinkRequested:
    """An agent sent the bot the one-time code from the console: alerts go to this chat."""

    channel: Channel
    sender_id: str
    code: str
    at: datetime


# "/start agente-XXXX": a console code, never a lead's campaign.
AGENT_LINK_PREFIX = "agente-"

InboundEvent = (
    InboundMessage | MessageEdited | DeliveryUpdate | ReachabilityChanged | ChatLinkRequested
)


@dataclass(frozen=True, slots=True)
class InlineReply:
    """A reply delivered in the HTTP response itself; `id` is the stored message's id."""

    id: int
    text: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the engine did with one event.

    `replies` holds the replies when the event asked for inline delivery; `deferred` says
    the message was stored to be handled later (the service was over capacity).
    """

    message_id: int | None = None
    duplicate: bool = False
    replies: tuple[InlineReply, ...] = ()
    deferred: bool = False


@dataclass(frozen=True, slots=True)
class Button:
    """A choice offered with a message; `payload` comes back as the lead's answer."""

    title: str
    payload: str


@dataclass(frozen=True, slots=True)
class Template:
    """A channel-approved message (WhatsApp's ContentSid) with its variables filled."""

    content_sid: str
    variables: dict[str, str]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message (a material): a document (PDF) or an image, with the text
    as its caption. A link needs none: it travels in the text.

    `url` is where the channel can fetch it (WhatsApp must: Twilio takes only `MediaUrl`);
    `data` holds its bytes when the file is kept by this service (Telegram uploads them, so a
    public address is not needed there).
    """

    kind: MaterialKind
    url: str
    file_name: str | None = None
    content_type: str | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to deliver. `key` is stable across retries (the outbox row id).

    `uncertain` says an earlier attempt may have reached the channel (its answer was lost, or
    the process died mid-send); a sender that must not repeat itself checks before sending.
    `last_inbound_at` is when the lead last wrote on this channel (WhatsApp's 24-hour window);
    `template` is what to send instead of the text when free text is not allowed.
    """

    key: int
    channel: Channel
    recipient: str
    text: str
    created_at: datetime
    buttons: tuple[Button, ...] = ()
    conversation_id: int | None = None
    uncertain: bool = False
    last_inbound_at: datetime | None = None
    template: Template | None = None
    attachment: Attachment | None = None


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """The channel accepted the message; its id lets delivery reports find it."""

    channel_message_id: str | None = None
    status: DeliveryStatus = DeliveryStatus.SENT


# What the database keeps of a channel's ids; longer ones are not ids any channel makes.
SENDER_ID_MAX = 128
MESSAGE_ID_MAX = 200


# Code points D800-DFFF: in a Python str (JSON joins real pairs) they are always lone halves.
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str) -> str:
    """Text every database can store: no NUL characters, no lone UTF-16 surrogates.

    Nobody types either on purpose; PostgreSQL refuses both (a NUL in text or JSON, a
    surrogate when encoding to UTF-8), so they are removed or replaced at the door.
    """
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise WebhookRejected(400, f"{name} must be text")
    return clean(value)


def _optional(value: object, name: str, limit: int) -> str | None:
    if value is None:
        return None
    return _text(value, name)[:limit] or None


def _id(value: object, name: str, limit: int) -> str:
    text = _text(value, name)
    if not text or len(text) > limit:
        raise WebhookRejected(400, f"{name} must be 1-{limit} characters")
    return text


def checked(event: InboundEvent) -> InboundEvent:
    """The event with every string storable, or WebhookRejected(400) when a field is not what
    the channel promises (ids out of bounds, text that is not text, no date).

    The one place where what came from outside is made safe to store, whatever the channel:
    parsers such as PTB's build objects from whatever the JSON held, without checking types.
    """
    match event:
        case InboundMessage():
            if not isinstance(event.sent_at, datetime) or event.sent_at.tzinfo is None:
                raise WebhookRejected(400, "message has no date")
            return dataclasses.replace(
                event,
                sender_id=_id(event.sender_id, "sender id", SENDER_ID_MAX),
                message_id=_id(event.message_id, "message id", MESSAGE_ID_MAX),
                text=_text(event.text, "text"),
                media=tuple(
                    MediaRef(
                        _text(m.kind, "media kind")[:16],
                        _text(m.ref, "media reference")[:2000],
                        _optional(m.content_type, "media type", 128),
                    )
                    for m in event.media
                ),
                sender_name=_optional(event.sender_name, "sender name", 200),
                source=_optional(event.source, "source", 64),
                choice=_optional(event.choice, "button payload", 256),
            )
        case MessageEdited():
            return dataclasses.replace(
                event,
                message_id=_id(event.message_id, "message id", MESSAGE_ID_MAX),
                text=_text(event.text, "text"),
            )
        case DeliveryUpdate():
            return dataclasses.replace(
                event,
                message_id=_id(event.message_id, "message id", MESSAGE_ID_MAX),
                error_code=_optional(event.error_code, "error code", 500),
            )
        case ReachabilityChanged():
            return dataclasses.replace(
                event, sender_id=_id(event.sender_id, "sender id", SENDER_ID_MAX)
            )
        case ChatLinkRequested():
            return dataclasses.replace(
                event,
                sender_id=_id(event.sender_id, "sender id", SENDER_ID_MAX),
                code=_id(event.code, "code", 64),
            )


class Inbound(Protocol):
    """Turns a channel's requests into events."""

    channel: Channel

    def parse(self, raw: RawRequest) -> InboundEvent | None:
        """Verify, then parse. `None` means valid but nothing to do (answered 200).

        Raises:
            WebhookRejected: the request is not authentic (401/403) or malformed (400).
        """
        ...


class Sender(Protocol):
    """Delivers outgoing messages on one channel."""

    channel: Channel

    async def send(self, message: OutboundMessage) -> SendReceipt:
        """Deliver one message.

        Raises:
            RetryLater: a transient failure (network, rate limit); `after` when the channel says.
            SendFailed: the channel refused it for good.
        """
        ...


@dataclass(frozen=True, slots=True)
class ChatLine:
    """One message of a conversation as a chat page shows it."""

    id: int
    author: str  # lead | bot | agent
    text: str
    at: datetime | None = None
    # The channel's id for a lead's message (the web chat's is "<session>:<page's id>"), so a
    # page can match a message it sent with the copy the event stream brings back.
    channel_message_id: str | None = None


class Transcript(Protocol):
    """Read access to a chat's messages, for channels that show history (web chat)."""

    async def lines(
        self, channel: Channel, sender_id: str, *, after_id: int, limit: int
    ) -> list[ChatLine]:
        """The conversation's messages after `after_id` (the latest `limit` when it is 0)."""
        ...

    async def sent_to_lead(
        self, channel: Channel, sender_id: str, *, after_id: int, limit: int
    ) -> list[ChatLine]:
        """Messages to the lead that went out (not pending, failed or blocked)."""
        ...

    async def visible_after(
        self, channel: Channel, sender_id: str, *, after_id: int, limit: int
    ) -> list[ChatLine]:
        """What an open chat page shows as it happens: the lead's own messages (written in
        another tab, say) and those to the lead that went out, oldest first."""
        ...


@dataclass(frozen=True, slots=True)
class MediaContent:
    data: bytes
    content_type: str


class MediaSource(Protocol):
    """Fetches what a lead sent (a photo, a voice note) so an agent can see it."""

    channel: Channel

    async def fetch(self, media: MediaRef) -> MediaContent:
        """The file's bytes.

        Raises:
            MediaUnavailable: not found, too large, not from the channel's own hosts, or the
                channel did not answer.
        """
        ...


class Intake(Protocol):
    """What channels hand their events to (the engine)."""

    async def receive(self, event: InboundEvent) -> Outcome: ...
