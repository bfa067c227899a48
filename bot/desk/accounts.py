"""Agents as people who sign in: passwords, invites, roles, availability, linked Telegram chats.

Passwords are argon2 hashes (argon2-cffi's defaults, RFC 9106). A session remembers the agent
and their `session_epoch`; raising the epoch (new password, deactivation, "sign out
everywhere") ends every session signed in before. Every change here is in the audit log.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.core.errors import ConflictError, InvalidInput, NotFound, SeguibotError
from bot.core.model import AgentRole, utcnow
from storage.db import Database
from storage.models import Agent, AuditEvent, Invite
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

MIN_PASSWORD = 10
INVITE_LIFETIME = timedelta(days=3)
LINK_LIFETIME = timedelta(minutes=30)
LINK_PREFIX = "agente-"  # /start agente-XXXX links an agent's Telegram chat, never a lead
# Verifying against this when the e-mail is unknown takes as long as for a real account, so
# the answer's timing does not tell which e-mails have accounts.
_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash("not a password anyone has")


class SignInRefused(SeguibotError):
    """Wrong e-mail or password, or the account cannot sign in (deliberately one answer)."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    """The stored form of a new password.

    Raises:
        InvalidInput: shorter than `MIN_PASSWORD` characters.
    """
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password must have at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


@dataclass(frozen=True, slots=True)
class Who:
    """The agent acting, and from where (for the audit log)."""

    agent_id: int | None
    address: str | None = None


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def sign_in(self, email: str, password: str, address: str | None) -> Agent:
        """The agent, when the e-mail and password are right and the account is active.

        Raises:
            SignInRefused: anything else, with one message for every case.
        """
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            agent = await uow.accounts.by_email(email)
            stored = agent.password_hash if agent is not None and agent.active else None
            try:
                _HASHER.verify(stored or _DUMMY, password)
                verified = stored is not None
            except (VerificationError, InvalidHashError):
                verified = False
            if agent is None or not verified:
                uow.audit.record(
                    "sign_in_refused",
                    agent_id=agent.id if agent else None,
                    detail={"email_known": agent is not None},
                    address=address,
                    at=now,
                )
                await uow.commit()
                raise SignInRefused("wrong e-mail or password")
            if _HASHER.check_needs_rehash(agent.password_hash or ""):
                agent.password_hash = _HASHER.hash(password)
            uow.audit.record("sign_in", agent_id=agent.id, address=address, at=now)
            await uow.commit()
            return agent

    async def signed_in(self, agent_id: int, epoch: int) -> Agent | None:
        """The agent a session names, if that session still stands."""
        async with UnitOfWork(self.db) as uow:
            agent = await uow.agents.get(agent_id)
        if agent is None or not agent.active or agent.session_epoch != epoch:
            return None
        return agent

    async def sign_out(self, who: Who) -> None:
        async with UnitOfWork(self.db) as uow:
            uow.audit.record("sign_out", agent_id=who.agent_id, address=who.address, at=utcnow())
            await uow.commit()

    async def set_password(self, agent_id: int, password: str, who: Who) -> None:
        """A new password; every session signed in before it ends."""
        hashed = hash_password(password)
        async with UnitOfWork(self.db) as uow:
            agent = await self._agent(uow, agent_id)
            agent.password_hash = hashed
            agent.session_epoch += 1
            uow.audit.record(
                "password_set",
                agent_id=who.agent_id,
                subject=f"agent:{agent_id}",
                address=who.address,
                at=utcnow(),
            )
            await uow.commit()

    async def invite(self, *, email: str, name: str, admin: bool, who: Who) -> tuple[Invite, str]:
        """A one-time link for a new agent; returns the invite and its token (shown once).

        Raises:
            InvalidInput: no name or e-mail. ConflictError: the e-mail has an account.
        """
        email, name = email.strip().lower(), name.strip()
        if "@" not in email or not name:
            raise InvalidInput("an invitation needs a name and an e-mail address")
        token = secrets.token_urlsafe(32)
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            if await uow.accounts.by_email(email) is not None:
                raise ConflictError(f"{email} already has an account")
            invite = await uow.invites.add(
                Invite(
                    token_hash=digest(token),
                    email=email,
                    name=name,
                    role=AgentRole.ADMIN if admin else AgentRole.AGENT,
                    created_by=who.agent_id,
                    created_at=now,
                    expires_at=now + INVITE_LIFETIME,
                )
            )
            uow.audit.record(
                "invite_created",
                agent_id=who.agent_id,
                subject=f"invite:{invite.id}",
                detail={"role": str(invite.role)},
                address=who.address,
                at=now,
            )
            await uow.commit()
        return invite, token

    async def invitation(self, token: str) -> Invite | None:
        async with UnitOfWork(self.db) as uow:
            return await uow.invites.usable(digest(token), utcnow())

    async def accept(self, token: str, password: str, address: str | None) -> Agent:
        """The invited agent, created with their password; the link works once.

        Raises:
            NotFound: the link is unknown, used or expired. InvalidInput: weak password.
        """
        hashed = hash_password(password)
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            invite = await uow.invites.usable(digest(token), now)
            if invite is None:
                raise NotFound("this invitation link is not valid any more")
            if await uow.accounts.by_email(invite.email) is not None:
                raise ConflictError(f"{invite.email} already has an account")
            invite.used_at = now
            agent = await uow.agents.add(
                Agent(
                    name=invite.name,
                    email=invite.email,
                    role=invite.role,
                    token_hash=digest(secrets.token_urlsafe(32)),  # API token: none shown yet
                    active=True,
                    password_hash=hashed,
                    created_at=now,
                )
            )
            uow.audit.record(
                "invite_accepted",
                agent_id=agent.id,
                subject=f"invite:{invite.id}",
                address=address,
                at=now,
            )
            await uow.commit()
            return agent

    async def agents(self) -> list[Agent]:
        async with UnitOfWork(self.db) as uow:
            return await uow.agents.all()

    async def invites(self) -> list[Invite]:
        async with UnitOfWork(self.db) as uow:
            return await uow.invites.open(utcnow())

    async def set_active(self, agent_id: int, active: bool, who: Who) -> list[int]:
        """Deactivate (sessions and API token stop working at once; the conversations they
        hold go back to the queue, in their place, and nothing waits assigned to them) or
        reactivate an agent. Returns the conversations put back in the queue.

        Raises:
            ConflictError: an admin cannot deactivate themselves (someone must remain).
        """
        if agent_id == who.agent_id and not active:
            raise ConflictError("you cannot deactivate yourself")
        requeued: list[int] = []
        async with UnitOfWork(self.db) as uow:
            agent = await self._agent(uow, agent_id)
            agent.active = active
            agent.session_epoch += 1
            if not active:
                requeued = await uow.conversations.release(agent_id)
                await uow.handoffs.reopen(requeued)
                await uow.handoffs.unassign(agent_id)
            uow.audit.record(
                "agent_activated" if active else "agent_deactivated",
                agent_id=who.agent_id,
                subject=f"agent:{agent_id}",
                address=who.address,
                at=utcnow(),
            )
            await uow.commit()
        return requeued

    async def set_role(self, agent_id: int, admin: bool, who: Who) -> None:
        if agent_id == who.agent_id and not admin:
            raise ConflictError("you cannot take away your own admin role")
        async with UnitOfWork(self.db) as uow:
            agent = await self._agent(uow, agent_id)
            agent.role = AgentRole.ADMIN if admin else AgentRole.AGENT
            uow.audit.record(
                "role_changed",
                agent_id=who.agent_id,
                subject=f"agent:{agent_id}",
                detail={"role": str(agent.role)},
                address=who.address,
                at=utcnow(),
            )
            await uow.commit()

    async def set_capacity(self, agent_id: int, capacity: int, who: Who) -> None:
        if not 1 <= capacity <= 100:
            raise InvalidInput("capacity must be between 1 and 100 conversations")
        async with UnitOfWork(self.db) as uow:
            agent = await self._agent(uow, agent_id)
            agent.capacity = capacity
            uow.audit.record(
                "capacity_changed",
                agent_id=who.agent_id,
                subject=f"agent:{agent_id}",
                detail={"capacity": capacity},
                address=who.address,
                at=utcnow(),
            )
            await uow.commit()

    async def set_available(self, agent_id: int, available: bool) -> None:
        """On shift or not: only available agents get conversations assigned."""
        async with UnitOfWork(self.db) as uow:
            agent = await self._agent(uow, agent_id)
            agent.available = available
            await uow.commit()

    async def telegram_code(self, agent_id: int) -> str:
        """A one-time code the agent sends the bot (/start CODE) to get alerts there."""
        code = LINK_PREFIX + secrets.token_urlsafe(9)
        async with UnitOfWork(self.db) as uow:
            agent = await self._agent(uow, agent_id)
            agent.telegram_link_hash = digest(code)
            agent.telegram_link_expires_at = utcnow() + LINK_LIFETIME
            await uow.commit()
        return code

    async def audit(
        self, *, action: str | None, agent_id: int | None, since: datetime
    ) -> tuple[list[AuditEvent], list[str]]:
        """The audit log, newest first, and every kind of action in it (for the filter)."""
        async with UnitOfWork(self.db) as uow:
            events = await uow.audit.events(action=action, agent_id=agent_id, since=since)
            return events, await uow.audit.actions()

    @staticmethod
    async def _agent(uow: UnitOfWork, agent_id: int) -> Agent:
        agent = await uow.agents.get(agent_id)
        if agent is None:
            raise NotFound(f"no agent {agent_id}")
        return agent
