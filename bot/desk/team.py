"""The team from the command line: renaming agents, switching them off and on, removing
them, replacing a token.

Adding an agent is `Desk.add_agent`; switching one off and on is `Accounts.set_active`, as in
the console. Names and e-mails are unique in any case, so an agent can be named by id, e-mail
or name. Every change is in the audit log, by "the command line".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from bot.core.errors import ConflictError, InvalidInput, NotFound
from bot.core.model import utcnow
from bot.desk.accounts import Accounts, Who
from bot.desk.handoff import hash_token, new_token
from storage.db import Database
from storage.models import Agent
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

# Who acts, for the audit log: nobody signed in, from the machine's shell.
COMMAND_LINE = Who(agent_id=None, address="command line")


@dataclass(frozen=True, slots=True)
class Deactivated:
    agent: Agent
    # Conversations the agent held, back in the queue for someone else.
    requeued: list[int] = field(default_factory=list)
    # Confirmed appointments from now on still in their name (to move by hand).
    upcoming_appointments: int = 0


class Team:
    """Changes to the agents themselves; each is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, ref: str) -> Agent:
        """Raises NotFound."""
        async with UnitOfWork(self.db) as uow:
            return await self._find(uow, ref)

    async def rename(self, ref: str, name: str) -> Agent:
        """Raises NotFound, InvalidInput (empty), ConflictError (another agent has the name)."""
        name = name.strip()
        if not name:
            raise InvalidInput("the new name is empty")
        async with UnitOfWork(self.db) as uow:
            agent = await self._find(uow, ref)
            if await uow.agents.taken(name, None, besides=agent.id):
                raise ConflictError(f"another agent is already called {name!r}")
            agent.name = name
            _audit(uow, "agent_renamed", agent)
            await uow.commit()
        log.info("agent_renamed", extra={"agent_id": agent.id})
        return agent

    async def activate(self, ref: str) -> Agent:
        """Raises NotFound."""
        agent = await self.get(ref)
        await Accounts(self.db).set_active(agent.id, True, COMMAND_LINE)
        log.info("agent_activated", extra={"agent_id": agent.id})
        return await self.get(str(agent.id))

    async def deactivate(self, ref: str) -> Deactivated:
        """Their token and console sessions stop working, they get no new conversations or
        appointments, and the conversations they hold go back to the queue. Raises NotFound."""
        agent = await self.get(ref)
        requeued = await Accounts(self.db).set_active(agent.id, False, COMMAND_LINE)
        async with UnitOfWork(self.db) as uow:
            upcoming = await uow.appointments.upcoming_of(agent.id, utcnow())
        log.info("agent_deactivated", extra={"agent_id": agent.id, "requeued": len(requeued)})
        return Deactivated(await self.get(str(agent.id)), requeued, upcoming)

    async def remove(self, ref: str) -> Agent:
        """Delete an agent that nothing refers to yet (one added by mistake).

        Raises:
            NotFound: no such agent.
            ConflictError: messages, conversations, appointments, leads or tasks name them;
                deactivating keeps that history.
        """
        async with UnitOfWork(self.db) as uow:
            agent = await self._find(uow, ref)
            footprint = await uow.agents.footprint(agent.id)
            if footprint:
                history = ", ".join(f"{n} {what}" for what, n in footprint.items())
                raise ConflictError(
                    f"agent {agent.id} ({agent.name}) has history ({history}); "
                    f"deactivate them instead (`seguibot agents deactivate {agent.id}`): "
                    "their access stops and the history keeps their name"
                )
            _audit(uow, "agent_removed", agent, name=agent.name)
            await uow.agents.delete(agent)
            await uow.commit()
        log.info("agent_removed", extra={"agent_id": agent.id})
        return agent

    async def new_token(self, ref: str) -> tuple[Agent, str]:
        """A new API token for the agent (shown once); the old one stops working now.

        Raises:
            NotFound: no such agent.
        """
        token = new_token()
        async with UnitOfWork(self.db) as uow:
            agent = await self._find(uow, ref)
            agent.token_hash = hash_token(token)
            _audit(uow, "agent_token_replaced", agent)
            await uow.commit()
        log.info("agent_token_replaced", extra={"agent_id": agent.id})
        return agent, token

    @staticmethod
    async def _find(uow: UnitOfWork, ref: str) -> Agent:
        agent = await uow.agents.find(ref)
        if agent is None:
            raise NotFound(f"no agent {ref!r} (give an id, e-mail or name: `seguibot agents list`)")
        return agent


def _audit(uow: UnitOfWork, action: str, agent: Agent, **detail: str) -> None:
    uow.audit.record(
        action,
        agent_id=COMMAND_LINE.agent_id,
        subject=f"agent:{agent.id}",
        detail=dict(detail),
        address=COMMAND_LINE.address,
        at=utcnow(),
    )
