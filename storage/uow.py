"""The unit of work: one session, one transaction, committed only on purpose."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage import driver, folded
from storage.crm import Crm
from storage.db import Database
from storage.desk import Accounts, Audit, Inbox, Invites, Lists, Transfers
from storage.materials import Materials
from storage.reports import Reports
from storage.repositories import (
    Actions,
    Agents,
    Appointments,
    Conversations,
    Deferred,
    Handoffs,
    Identities,
    Leads,
    Messages,
    Notifications,
    Outbox,
    Sequences,
    Tasks,
    Transcripts,
)
from storage.scripts import Scripts
from storage.webhooks import Webhooks

_REPOSITORIES: dict[str, Callable[[AsyncSession], object]] = {
    "leads": Leads,
    "identities": Identities,
    "conversations": Conversations,
    "messages": Messages,
    "outbox": Outbox,
    "handoffs": Handoffs,
    "agents": Agents,
    "appointments": Appointments,
    "actions": Actions,
    "sequences": Sequences,
    "tasks": Tasks,
    "notifications": Notifications,
    "transcripts": Transcripts,
    "accounts": Accounts,
    "invites": Invites,
    "transfers": Transfers,
    "audit": Audit,
    "lists": Lists,
    "inbox": Inbox,
    "crm": Crm,
    "webhooks": Webhooks,
    "reports": Reports,
    "scripts": Scripts,
    "deferred": Deferred,
    "materials": Materials,
}


class UnitOfWork:
    """`async with UnitOfWork(db) as uow: ...; await uow.commit()`. Anything else rolls back."""

    session: AsyncSession
    leads: Leads
    identities: Identities
    conversations: Conversations
    messages: Messages
    outbox: Outbox
    handoffs: Handoffs
    agents: Agents
    appointments: Appointments
    actions: Actions
    sequences: Sequences
    tasks: Tasks
    notifications: Notifications
    transcripts: Transcripts
    accounts: Accounts
    invites: Invites
    transfers: Transfers
    audit: Audit
    lists: Lists
    inbox: Inbox
    crm: Crm
    webhooks: Webhooks
    reports: Reports
    scripts: Scripts
    deferred: Deferred
    materials: Materials

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __aenter__(self) -> UnitOfWork:
        self.session = self._db.session()
        return self

    def __getattr__(self, name: str) -> Any:
        # A repository is made on first use: a message's unit of work touches a handful of
        # the two dozen, and making them all cost more than its SQL statement's building.
        repository = _REPOSITORIES.get(name)
        if repository is None or "session" not in self.__dict__:
            raise AttributeError(name)
        made = repository(self.session)
        setattr(self, name, made)
        return made

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() rolls back whatever was not committed and detaches the objects without
        # expiring them, so values read in the unit of work stay readable after it. With no
        # transaction left (committed: the common end) it holds no connection and does no
        # I/O, so it runs here rather than in a greenlet of its own. (I/O here would fail
        # with MissingGreenlet, and where the pool does it, closing a connection, the pool
        # only logs that: see `driver.commit`, which hands such a connection back itself.)
        if self.session.in_transaction():
            await self.session.close()
        else:
            self.session.sync_session.close()

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: what fails inside rolls back alone, the rest stays."""
        await folded.write_deferred(self.session)
        try:
            async with self.session.begin_nested():
                yield
        except BaseException:
            # Writes deferred inside belong to what rolled back.
            folded.discard_deferred(self.session)
            raise

    @contextlib.contextmanager
    def unflushed(self) -> Iterator[None]:
        """Reads inside see the database as this unit of work last wrote to it: its pending
        changes are not flushed first, and go out together at the end (`write_changes`). For
        reads that nothing pending can change."""
        with self.session.no_autoflush:
            yield

    async def refresh(self, row: object) -> None:
        """Read a row again (after a savepoint rolled back changes made to it)."""
        await self.session.refresh(row)

    async def write_changes(self) -> None:
        """Write what the session holds now; on PostgreSQL the lead's and conversations'
        changes and new CRM rows in one statement (see `storage.folded`). New CRM rows are
        not read back: call it when nothing reads their ids, right before `commit`."""
        await folded.write_changes(self.session)

    async def commit(self) -> None:
        await folded.write_deferred(self.session)
        await driver.commit(self.session)

    async def rollback(self) -> None:
        await self.session.rollback()
