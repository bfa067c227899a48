"""What follow-up work says: scripts rendered for a lead or an agent and staged for sending."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.core.model import Author
from bot.core.scripts import Renderer
from bot.core.slots import quiet_until
from bot.delivery import outbox
from bot.settings import Settings, TemplateSettings
from storage.models import Conversation, Lead, Notification
from storage.uow import UnitOfWork


class Outreach:
    def __init__(self, settings: Settings, renderer: Renderer, *, telegram: bool) -> None:
        self.settings = settings
        self.renderer = renderer
        self.templates: Mapping[str, TemplateSettings] = settings.whatsapp.templates
        self.telegram = telegram  # the Telegram channel is on: agents' chats can be reached

    def quiet_until(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        """When the lead's quiet hours end, if `now` is inside them."""
        return quiet_until(now, tz, self.settings.scheduling.quiet)

    @staticmethod
    def values(lead: Lead, extra: Mapping[str, str]) -> dict[str, str]:
        return {"nombre": (lead.name or "").split(" ")[0], **extra}

    def render(self, script: str, *, seed: str, values: Mapping[str, str]) -> str:
        return self.renderer.render(script, seed=seed, values=values).text

    async def conversation(
        self, uow: UnitOfWork, lead: Lead, conversation_id: int | None
    ) -> Conversation | None:
        """Where to write to the lead: the given conversation, else the one they last used."""
        if conversation_id is not None:
            conversation = await uow.conversations.get(conversation_id)
            if conversation is not None:
                return conversation
        return await uow.conversations.latest_for_lead(lead.id)

    async def to_lead(
        self,
        uow: UnitOfWork,
        conversation: Conversation,
        script: str,
        values: Mapping[str, str],
        now: datetime,
        *,
        seed: str,
        nudge: bool = False,
    ) -> None:
        """Stage one variant of `script`; on WhatsApp its template goes if the window closed.
        A `nudge` is held back by the outbox if the lead writes before it goes out."""
        rendered = self.renderer.render(script, seed=seed, values=values)
        all_values = {**self.renderer.defaults, **values}
        await outbox.stage(
            uow,
            conversation,
            rendered.text,
            author=Author.BOT,
            now=now,
            script=rendered.script,
            variant=rendered.variant,
            template=outbox.template_for(self.templates, script, all_values),
            cancel_on_reply=nudge,
        )

    async def to_agent(
        self,
        uow: UnitOfWork,
        agent_id: int | None,
        kind: str,
        text: str,
        lead_id: int | None,
        now: datetime,
    ) -> bool:
        """A notification in the console, and in the agent's Telegram chat when linked;
        True when a message was staged."""
        notification = await uow.notifications.add(
            Notification(agent_id=agent_id, kind=kind, text=text, lead_id=lead_id, created_at=now)
        )
        agent = await uow.agents.get(agent_id) if agent_id is not None else None
        if agent is None or agent.telegram_chat_id is None or not self.telegram:
            return False
        await outbox.stage_notification(uow, notification, agent.telegram_chat_id, now)
        return True
