"""The materials library: admins add links, PDFs and images; the bot sends them when a reply
offered them and the lead said yes.

Uploaded files are kept in the database (`material_files`), not in `data_dir`: every process
and every replica on one PostgreSQL serves the same file to Twilio (which fetches `MediaUrl`
from whichever answers), the Docker set-up keeps only the database's volume, and one backup
holds everything. `max_bytes` keeps the rows small; the bytes are read only to serve or send
a file, never with the list.
"""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.errors import InvalidInput, NotFound
from bot.core.materials import (
    KEY,
    UPLOADS,
    Material,
    MaterialKind,
    clean_tags,
    industry_of,
    resolve,
)
from bot.core.model import utcnow
from bot.desk.accounts import Who
from storage.db import Database
from storage.materials import as_material
from storage.models import MaterialRow
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

TITLE_MAX = 120
TEXT_MAX = 800
URL_MAX = 2000
_URL = re.compile(r"^https?://[^\s]+$")
_EXTENSIONS = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png"}


@dataclass(frozen=True, slots=True)
class Upload:
    """A file as the browser sent it."""

    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class MaterialForm:
    """What an admin typed for a material."""

    title: str
    kind: str
    key: str = ""
    url: str = ""
    text: str = ""
    tags: str = ""


@dataclass(frozen=True, slots=True)
class ServedFile:
    data: bytes
    content_type: str
    file_name: str


class Library:
    """The materials: list, add, edit, deactivate; what a reply offers a lead; their files."""

    def __init__(self, db: Database, *, max_bytes: int) -> None:
        self.db = db
        self.max_bytes = max_bytes

    async def all(self) -> list[Material]:
        async with UnitOfWork(self.db) as uow:
            return await uow.materials.all()

    async def get(self, material_id: int) -> Material:
        async with UnitOfWork(self.db) as uow:
            row = await uow.materials.get(material_id)
        if row is None:
            raise NotFound(f"no material {material_id}", code="no_material")
        return as_material(row)

    async def add(self, form: MaterialForm, upload: Upload | None, who: Who) -> Material:
        """A new material, active.

        Raises:
            InvalidInput: a field is missing or wrong, the file too big or not what it says.
        """
        kind = _kind(form.kind)
        key = form.key.strip().lower() or slug(form.title)
        if not KEY.match(key):
            raise InvalidInput(f"bad material key {key!r}", code="material_key", key=key)
        checked = self._checked(kind, form, upload)
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            if await uow.materials.by_key(key) is not None:
                raise InvalidInput(f"material {key} exists", code="material_exists", key=key)
            row = await uow.materials.add(
                MaterialRow(
                    key=key,
                    title=checked.title,
                    kind=kind.value,
                    url=checked.url,
                    text=checked.text,
                    tags=list(checked.tags),
                    active=True,
                    token=secrets.token_urlsafe(24),
                    file_name=_file_name(key, upload) if upload else None,
                    content_type=upload.content_type if upload else None,
                    size=len(upload.data) if upload else None,
                    created_by=who.agent_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            if upload is not None:
                await uow.materials.store_file(row.id, upload.data)
            uow.audit.record(
                "material_created",
                agent_id=who.agent_id,
                subject=f"material:{key}",
                detail={"kind": kind.value, "file": upload is not None},
                address=who.address,
                at=now,
            )
            await uow.commit()
            material = as_material(row)
        log.info("material_created", extra={"material_id": material.id, "kind": kind.value})
        return material

    async def edit(
        self, material_id: int, form: MaterialForm, upload: Upload | None, who: Who
    ) -> Material:
        """Change a material; its key stays (the scripts name it). A new file replaces the
        old one at a new address.

        Raises:
            NotFound, InvalidInput.
        """
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            row = await uow.materials.get(material_id)
            if row is None:
                raise NotFound(f"no material {material_id}", code="no_material")
            kind = _kind(form.kind)
            keeps_file = upload is None and row.file_name is not None and not form.url.strip()
            checked = self._checked(kind, form, upload, has_file=keeps_file)
            row.title, row.kind, row.text = checked.title, kind.value, checked.text
            row.tags = list(checked.tags)
            row.updated_at = now
            if upload is not None:
                await uow.materials.store_file(row.id, upload.data)
                row.file_name = _file_name(row.key, upload)
                row.content_type, row.size = upload.content_type, len(upload.data)
                row.url = None
                row.token = secrets.token_urlsafe(24)  # the old address stops working
            elif not keeps_file:
                row.url, row.file_name, row.content_type, row.size = checked.url, None, None, None
            uow.audit.record(
                "material_changed",
                agent_id=who.agent_id,
                subject=f"material:{row.key}",
                detail={"file": upload is not None},
                address=who.address,
                at=now,
            )
            await uow.commit()
            return as_material(row)

    async def set_active(self, material_id: int, active: bool, who: Who) -> Material:
        """Deactivate (or bring back) a material: replies that offer it stop being used."""
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            row = await uow.materials.get(material_id)
            if row is None:
                raise NotFound(f"no material {material_id}", code="no_material")
            row.active, row.updated_at = active, now
            uow.audit.record(
                "material_activated" if active else "material_deactivated",
                agent_id=who.agent_id,
                subject=f"material:{row.key}",
                address=who.address,
                at=now,
            )
            await uow.commit()
            return as_material(row)

    async def served(self, token: str, file_name: str) -> ServedFile:
        """An uploaded file by its public address (an active material's only).

        Raises:
            NotFound: no such file, or its material is deactivated.
        """
        async with UnitOfWork(self.db) as uow:
            row = await uow.materials.by_token(token)
            if row is None or not row.active or row.file_name != file_name:
                raise NotFound("no such material file", code="no_material")
            data = await uow.materials.file(row.id)
        if data is None:
            raise NotFound("the material has no file", code="no_material")
        return ServedFile(data, row.content_type or "application/octet-stream", row.file_name)

    def _checked(
        self, kind: MaterialKind, form: MaterialForm, upload: Upload | None, has_file: bool = False
    ) -> _Checked:
        title = " ".join(form.title.split())
        if not title or len(title) > TITLE_MAX:
            raise InvalidInput("a material needs a title", code="material_title")
        text = form.text.strip()
        if len(text) > TEXT_MAX:
            raise InvalidInput("the text is too long", code="material_text")
        url = form.url.strip() or None
        if url is not None and (len(url) > URL_MAX or not _URL.match(url)):
            raise InvalidInput("bad url", code="material_url")
        if upload is not None:
            if kind == MaterialKind.LINK:
                raise InvalidInput("a link has no file", code="material_link_file")
            check_upload(kind, upload, self.max_bytes)
        elif url is None and not has_file:
            code = "material_url" if kind == MaterialKind.LINK else "material_source"
            raise InvalidInput("a material needs a URL or a file", code=code)
        tags = clean_tags(form.tags)
        if any(len(tag) > 64 for tag in tags) or len(tags) > 20:
            raise InvalidInput("bad tags", code="material_tags")
        return _Checked(title, text, url, tags)


@dataclass(frozen=True, slots=True)
class _Checked:
    title: str
    text: str
    url: str | None
    tags: tuple[str, ...]


def check_upload(kind: MaterialKind, upload: Upload, max_bytes: int) -> None:
    """A PDF for a document, a JPEG or PNG for an image, no larger than `max_bytes`: by the
    file's first bytes, not only by the type the browser announced.

    Raises:
        InvalidInput: `material_size` or `material_type`.
    """
    if not upload.data:
        raise InvalidInput("empty file", code="material_type")
    if len(upload.data) > max_bytes:
        raise InvalidInput("file too large", code="material_size", mb=f"{max_bytes / 1048576:.0f}")
    accepted = UPLOADS.get(kind, {})
    signatures = accepted.get(upload.content_type)
    if signatures is None or not upload.data.startswith(signatures):
        raise InvalidInput(
            f"not a {kind.value} file ({upload.content_type})", code=f"material_type_{kind.value}"
        )


def _kind(value: str) -> MaterialKind:
    try:
        return MaterialKind(value)
    except ValueError:
        raise InvalidInput(f"unknown kind {value!r}", code="material_kind") from None


def slug(text: str) -> str:
    """ "Caso: Clínica Dental" -> "caso-clinica-dental" (a material's key)."""
    plain = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-")[:64].strip("-")


def _file_name(key: str, upload: Upload) -> str:
    """The name the file is served under: the material's key and the type's extension."""
    return key[:100] + _EXTENSIONS.get(upload.content_type, "")


def offered_to(
    references: Sequence[str], library: Sequence[Material], lead_tags: Sequence[str]
) -> tuple[Material, ...] | None:
    """The materials a variant offers a lead with these tags (None: it cannot be used)."""
    return resolve(references, library, industry_of(lead_tags))
