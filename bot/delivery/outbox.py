"""The outbox: outgoing messages are rows first, written in the transaction that decided them.

Writing the row in the same transaction as the decision that caused it means a reply is never
lost (the transaction commits both or neither) and never sent for a message that was rolled
back. `bot.delivery.dispatcher` sends the rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from bot.core.channel import TEXT_LIMITS, Button, Template
from bot.core.materials import Material, MaterialKind
from bot.core.model import Author, Channel, DeliveryStatus, Direction, OutboxState
from bot.settings import TemplateSettings
from storage.models import Conversation, Notification
from storage.uow import UnitOfWork

# Why a row was not sent, as recorded on it.
OPTED_OUT = "opted_out"
UNREACHABLE = "unreachable"
LEAD_REPLIED = "lead_replied"
NO_SENDER = "channel_not_configured"
# Where uploaded materials are served (bot.web.materials), under the public URL.
MATERIALS_PATH = "/materiales"


async def stage(
    uow: UnitOfWork,
    conversation: Conversation,
    text: str,
    *,
    author: Author,
    now: datetime,
    script: str | None = None,
    variant: int | None = None,
    agent_id: int | None = None,
    buttons: tuple[Button, ...] = (),
    template: Template | None = None,
    optout_confirmation: bool = False,
    cancel_on_reply: bool = False,
    delivered_inline: bool = False,
    attachment: Mapping[str, Any] | None = None,
    with_changes: bool = False,
) -> int:
    """Record an outgoing message and its outbox row in the caller's transaction; its id.

    A text longer than the channel allows becomes several messages, split between sentences,
    each its own row: a retry then repeats only the part that did not go out. Buttons go with
    the last part. `template` is what a channel with a messaging window (WhatsApp) may send
    instead once the window has closed. `delivered_inline` is for channels that deliver the
    reply in the HTTP response itself (web chat): the row is recorded as already done.
    `attachment` is a material's file sent with the first part (see `stage_material`).
    `with_changes`: the unit of work's pending changes go in the same statement (see
    `UnitOfWork.write_changes`: new CRM rows are not read back).
    """
    status = DeliveryStatus.DELIVERED if delivered_inline else DeliveryStatus.PENDING
    parts = split_text(text, TEXT_LIMITS.get(conversation.channel))
    ids = []
    for n, part in enumerate(parts, start=1):
        message = {
            "conversation_id": conversation.id,
            "channel": conversation.channel,
            "direction": Direction.OUT,
            "author": author,
            "agent_id": agent_id,
            "text": part,
            "media": [],
            "script": script,
            "script_variant": variant,
            "status": status,
            "created_at": now,
        }
        extras: dict[str, Any] = {}
        if buttons and n == len(parts):
            extras["buttons"] = [[b.title, b.payload] for b in buttons]
        if attachment is not None and n == 1:
            extras["attachment"] = dict(attachment)
        if template is not None and n == 1:
            extras["template"] = {
                "content_sid": template.content_sid,
                "variables": template.variables,
            }
        message_id = await uow.outbox.insert_with_message(
            message,
            {
                "lead_id": conversation.lead_id,
                "channel": conversation.channel,
                "recipient": conversation.identity.external_id,
                "extras": extras,
                "optout_confirmation": optout_confirmation,
                "cancel_on_reply": cancel_on_reply,
                "state": OutboxState.DONE if delivered_inline else OutboxState.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "settled_at": now if delivered_inline else None,
            },
            with_changes=with_changes,
        )
        ids.append(message_id)
    return ids[0]


async def stage_material(
    uow: UnitOfWork,
    conversation: Conversation,
    material: Material,
    *,
    public_url: str,
    now: datetime,
    delivered_inline: bool = False,
) -> tuple[int, str]:
    """Send one material on the conversation's channel: a document or an image as a file with
    its caption (Telegram, WhatsApp), a link (and, on the web chat, every material) as text
    with its address. The message's id and text.
    """
    url = material_url(material, public_url)
    caption = material.title + (f"\n{material.text}" if material.text else "")
    as_file = material.kind != MaterialKind.LINK and conversation.channel != Channel.WEBCHAT
    attachment = None
    if as_file:
        attachment = {
            "material_id": material.id,
            "kind": material.kind.value,
            "url": url,
            "file_name": material.file_name,
            "content_type": material.content_type,
            "uploaded": material.uploaded,
        }
    text = caption if as_file else f"{caption}\n{url}"
    message_id = await stage(
        uow,
        conversation,
        text,
        author=Author.BOT,
        now=now,
        script=f"material:{material.key}"[:64],
        attachment=attachment,
        delivered_inline=delivered_inline,
    )
    return message_id, text


def material_url(material: Material, public_url: str) -> str:
    """Where a material is fetched from: its own address, or this service's for an uploaded
    file (`public_url` + /materiales/<token>/<file>; a path alone when no public URL is set,
    which the web chat's page can still open)."""
    if material.file_name is None:
        return material.url or ""
    return f"{public_url}{MATERIALS_PATH}/{material.token}/{quote(material.file_name)}"


_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")


def split_text(text: str, limit: int | None) -> list[str]:
    """`text` in parts of at most `limit` characters, cut between sentences where possible.

    Falls back to the last space, then to a hard cut, for sentences longer than the limit.
    """
    if limit is None or len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cuts = [m.end() for m in _SENTENCE_END.finditer(window) if m.start() <= limit]
        cut = cuts[-1] if cuts and cuts[-1] > limit // 3 else window.rfind(" ") + 1
        if cut <= 0 or cut > limit:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest.strip():
        parts.append(rest.rstrip())
    return parts


def template_for(
    templates: Mapping[str, TemplateSettings], key: str | None, values: Mapping[str, str]
) -> Template | None:
    """The approved template configured for messages of `key` (a script id, or "agent"),
    its variables ({{1}}, {{2}}, ...) filled from `values`."""
    settings = templates.get(key) if key else None
    if settings is None:
        return None
    variables = {str(n): values.get(name, "") for n, name in enumerate(settings.variables, 1)}
    return Template(settings.content_sid, variables)


async def stage_notification(
    uow: UnitOfWork, notification: Notification, chat_id: int, now: datetime
) -> None:
    """Send an agent's notification to the agent's own Telegram chat, through the outbox:
    never from inside the transaction that created it, with the retries every message gets."""
    await uow.outbox.insert(
        {
            "notification_id": notification.id,
            "channel": Channel.TELEGRAM,
            "recipient": str(chat_id),
            "extras": {},
            "optout_confirmation": False,
            "cancel_on_reply": False,
            "state": OutboxState.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
    )
