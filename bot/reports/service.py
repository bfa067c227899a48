"""Reports as a service: a report for a period (everything, or one agent's own), and the CAC
spend admins enter per source and month, by hand or imported from a CSV file."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.core.errors import InvalidInput
from bot.core.model import utcnow
from bot.core.report import Period
from bot.reports.figures import Figures
from bot.settings import Settings
from storage.db import Database
from storage.models import CacEntry
from storage.uow import UnitOfWork

MONTH = re.compile(r"^(\d{4})-(\d{2})$")
MAX_AMOUNT = Decimal("999999999999.99")
MAX_IMPORT_ROWS = 5000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who enters CAC, for the audit log."""

    agent_id: int | None
    address: str | None = None


class Reporting:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.figures = Figures(settings)
        self.currency = settings.reports.currency

    async def report(
        self, current: Period, owner: int | None = None, now: datetime | None = None
    ) -> dict[str, Any]:
        return await self.figures.report_from(self.db, current, now or utcnow(), owner)

    async def cac_entries(self) -> list[CacEntry]:
        async with UnitOfWork(self.db) as uow:
            return await uow.reports.cac_entries()

    async def save_cac(self, source: str, month: str, amount: str, actor: Actor) -> None:
        """Enter (or correct) one source's spend in one month."""
        entry = _entry(source, month, amount, 0)
        async with UnitOfWork(self.db) as uow:
            await self._save(uow, *entry, actor)
            await uow.commit()

    async def import_cac(self, text: str, actor: Actor) -> int:
        """Import `fuente,mes,monto` rows (a header line is optional); all or nothing."""
        rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
        if rows and rows[0] and rows[0][0].strip().lower() in ("fuente", "source"):
            rows = rows[1:]
        if not rows or len(rows) > MAX_IMPORT_ROWS:
            raise InvalidInput("no rows to import", code="cac_file")
        entries = []
        for line, row in enumerate(rows, start=1):
            if len(row) < 3:
                raise InvalidInput(
                    "a row needs source, month and amount", code="cac_row", linea=str(line)
                )
            entries.append(_entry(row[0], row[1], row[2], line))
        async with UnitOfWork(self.db) as uow:
            for entry in entries:
                await self._save(uow, *entry, actor)
            await uow.commit()
        return len(entries)

    async def _save(
        self, uow: UnitOfWork, source: str, month: date, amount: Decimal, actor: Actor
    ) -> None:
        now = utcnow()
        found = await uow.reports.cac_entry(source, month)
        if found is None:
            await uow.reports.add_cac_entry(
                CacEntry(
                    source=source,
                    month=month,
                    amount=amount,
                    currency=self.currency,
                    agent_id=actor.agent_id,
                    created_at=now,
                )
            )
        else:
            found.amount, found.agent_id = amount, actor.agent_id
        uow.audit.record(
            "cac.saved",
            agent_id=actor.agent_id,
            subject=f"cac:{source}:{month:%Y-%m}",
            detail={"amount": str(amount)},
            address=actor.address,
            at=now,
        )


def _entry(source: str, month: str, amount: str, line: int) -> tuple[str, date, Decimal]:
    where = {"linea": str(line)} if line else {}
    source = source.strip()
    if not source or len(source) > 64:
        raise InvalidInput("source: 1 to 64 characters", code="cac_source", **where)
    match = MONTH.match(month.strip())
    if match is None or not 1 <= int(match[2]) <= 12:
        raise InvalidInput("month: YYYY-MM", code="cac_month", **where)
    try:
        value = Decimal(amount.strip().replace(",", "").replace("$", ""))
    except InvalidOperation:
        raise InvalidInput("amount: a number", code="cac_amount", **where) from None
    if not value.is_finite() or value < 0 or value > MAX_AMOUNT:
        raise InvalidInput("amount: 0 or more", code="cac_amount", **where)
    return source, date(int(match[1]), int(match[2]), 1), value.quantize(Decimal("0.01"))
