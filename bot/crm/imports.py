"""Leads from a CSV file, and all leads to one. A dry run reports every bad row by its line
number and why (a bad phone, an unknown stage, a duplicate of lead N or of an earlier line);
a real run adds the good rows and reports the bad ones the same way."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.core.crm import ActivityKind, LeadFilter, clean_tags
from bot.core.model import utcnow
from bot.core.phones import spellings, to_e164
from bot.core.scoring import Scoring
from bot.crm import record
from bot.crm.leads import Records
from bot.crm.pipelines import Pipelines
from storage.db import Database
from storage.models import Lead
from storage.uow import UnitOfWork

# Header names accepted (Spanish or English), lower case.
COLUMNS = {
    "name": ("name", "nombre"),
    "phone": ("phone", "phones", "telefono", "teléfono", "telefonos", "teléfonos"),
    "email": ("email", "correo", "e-mail"),
    "source": ("source", "origen"),
    "campaign": ("campaign", "campaña", "campana"),
    "stage": ("stage", "etapa"),
    "tags": ("tags", "etiquetas"),
    "address": ("address", "dirección", "direccion"),
}


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str


@dataclass
class Imported:
    added: list[int] = field(default_factory=list)  # new lead ids (none in a dry run)
    good: int = 0
    bad: list[BadRow] = field(default_factory=list)


class Importer:
    def __init__(
        self, db: Database, pipelines: Pipelines, scoring: Scoring, *, region: str, timezone: str
    ) -> None:
        self.db = db
        self.pipelines = pipelines
        self.scoring = scoring
        self.region = region
        self.timezone = timezone

    async def run(self, text: str, *, dry_run: bool) -> Imported:
        """Check every row; unless `dry_run`, add the good ones (one transaction)."""
        reader = csv.reader(io.StringIO(text))
        try:
            header = next(reader)
        except StopIteration:
            return Imported(bad=[BadRow(1, "empty file: expected a header row")])
        columns = _columns(header)
        result = Imported()
        if "name" not in columns and "phone" not in columns and "email" not in columns:
            result.bad.append(BadRow(1, "the header names no name, phone or email column"))
            return result
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            default = await uow.crm.pipeline(self.pipelines.default)
            assert default is not None, "pipelines are seeded before imports"
            stages = [s.key for s in await uow.crm.stages(default.id)]
            names = {s.name.lower(): s.key for s in await uow.crm.stages(default.id)}
            seen_phones: dict[str, int] = {}
            seen_emails: dict[str, int] = {}
            for line, row in _numbered(reader):
                if not any(cell.strip() for cell in row):
                    continue
                values = {k: (row[i].strip() if i < len(row) else "") for k, i in columns.items()}
                reasons: list[str] = []
                phones: list[str] = []
                for raw in _split(values.get("phone", "")):
                    e164 = to_e164(raw, self.region)
                    if e164 is None:
                        reasons.append(f"bad phone {raw!r}")
                    else:
                        phones.append(e164)
                email = values.get("email") or None
                if email is not None and ("@" not in email or len(email) > 254):
                    reasons.append(f"bad email {email!r}")
                stage = values.get("stage") or stages[0]
                stage = names.get(stage.lower(), stage)
                if stage not in stages:
                    reasons.append(f"unknown stage {values.get('stage')!r}")
                for e164 in phones:
                    every = spellings(e164)
                    owner = await uow.leads.by_phone(every)
                    if owner is not None:
                        reasons.append(f"duplicate of lead {owner.id} (phone)")
                    earlier = next((seen_phones[s] for s in every if s in seen_phones), None)
                    if earlier is not None:
                        reasons.append(f"duplicate of line {earlier} (phone)")
                if email is not None:
                    owner = await uow.crm.by_email(email)
                    if owner is not None:
                        reasons.append(f"duplicate of lead {owner.id} (email)")
                    if email.lower() in seen_emails:
                        reasons.append(f"duplicate of line {seen_emails[email.lower()]} (email)")
                if reasons:
                    result.bad.append(BadRow(line, "; ".join(dict.fromkeys(reasons))))
                    continue
                for e164 in phones:
                    seen_phones[e164] = line
                if email is not None:
                    seen_emails[email.lower()] = line
                result.good += 1
                if dry_run:
                    continue
                lead = await uow.leads.add(
                    Lead(
                        name=values.get("name") or None,
                        email=email,
                        address=values.get("address") or None,
                        source=values.get("source") or "import",
                        campaign=values.get("campaign") or None,
                        stage=stage,
                        pipeline=self.pipelines.default,
                        score=self.scoring.initial,
                        tier=self.scoring.tier(self.scoring.initial),
                        timezone=self.timezone,
                        tags=clean_tags(values.get("tags", "")),
                        custom={},
                        first_contact_at=now,
                        last_activity_at=now,
                    )
                )
                for e164 in phones:
                    await uow.leads.add_phone(lead.id, e164)
                await record.created(uow, lead, self.scoring, now)
                record.activity(uow, lead.id, ActivityKind.IMPORT, now, details={"line": line})
                result.added.append(lead.id)
            if not dry_run:
                uow.audit.record(
                    "leads_imported",
                    agent_id=None,
                    detail={"added": len(result.added), "bad": len(result.bad)},
                    at=now,
                )
                await uow.commit()
        return result


async def export(records: Records) -> str:
    """Every lead as CSV (the console's export columns)."""
    return await records.export(LeadFilter(), None)


def _columns(header: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, cell in enumerate(header):
        name = cell.strip().lower().removeprefix("\ufeff")
        for key, spellings_ in COLUMNS.items():
            if name in spellings_ and key not in found:
                found[key] = index
    return found


def _numbered(reader: Any) -> Iterable[tuple[int, list[str]]]:
    """Rows with the file line they start on (a quoted cell may span lines)."""
    previous: int = reader.line_num
    for row in reader:
        yield previous + 1, row
        previous = reader.line_num


def _split(raw: str) -> list[str]:
    parts = raw.replace(";", "|").replace("/", "|").split("|")
    return [p.strip() for p in parts if p.strip()]
