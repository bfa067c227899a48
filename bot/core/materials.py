"""Materials: what the bot can send when a reply promises it (a success case, the table of
plans, testimonials), and which of them a reply variant offers a given lead.

A reply variant names what it offers in the scripts (`materials:`), each by a reference:

- a material's key (`tabla-planes`): that material;
- `mejor:<tag>` (`mejor:caso`), optionally `mejor:<tag>:<n>` (up to n, at most 5): the active
  materials tagged `<tag>` that best fit the lead: those of the lead's industry first (the
  `industria:<x>` tag of the lead's record), then general ones (no `industria:` tag).

A variant is used only when every reference finds something for this lead; the check at publish
(`problems`) asks that each `mejor:` reference has a general material, so no lead is left out.

Pure: no I/O. The service (`bot.conversation.materials`) reads the library and stores files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

INDUSTRY = "industria:"
BEST = "mejor:"
MAX_BEST = 5
KEY = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
TAG = re.compile(r"^[a-z0-9áéíóúñü][a-z0-9áéíóúñü_.:-]{0,63}$")
_BEST = re.compile(r"^mejor:(?P<tag>[^:\s]+)(?::(?P<n>[1-5]))?$")


class MaterialKind(StrEnum):
    LINK = "link"  # a web page: sent as a link on every channel
    DOCUMENT = "document"  # a PDF: Telegram sendDocument, WhatsApp media
    IMAGE = "image"  # a picture: Telegram sendPhoto, WhatsApp media


# What an uploaded file must be, by kind: the content types accepted and the bytes they start
# with (the type a browser announces is not trusted; the file's first bytes are checked).
UPLOADS: dict[MaterialKind, dict[str, tuple[bytes, ...]]] = {
    MaterialKind.DOCUMENT: {"application/pdf": (b"%PDF-",)},
    MaterialKind.IMAGE: {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",)},
}


@dataclass(frozen=True, slots=True)
class Material:
    """One material of the library, as the conversation sees it.

    `url` is the outside address of a link (or of a file kept elsewhere); `file_name` is set
    when the file was uploaded here and is served from `/materiales/<token>/<file_name>`.
    """

    id: int
    key: str
    title: str
    kind: MaterialKind
    text: str
    tags: tuple[str, ...]
    active: bool
    token: str
    url: str | None = None
    file_name: str | None = None
    content_type: str | None = None

    @property
    def industry(self) -> str | None:
        return industry_of(self.tags)

    @property
    def uploaded(self) -> bool:
        return self.file_name is not None


@dataclass(frozen=True, slots=True)
class Reference:
    """One entry of a variant's `materials:` list, read."""

    key: str | None = None  # a material's key
    tag: str | None = None  # mejor:<tag>
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Reference | None:
        """The reference written as `text`, or None when it is neither form."""
        text = text.strip()
        best = _BEST.match(text)
        if best is not None:
            return cls(tag=best["tag"], count=int(best["n"] or 1))
        return cls(key=text) if KEY.match(text) else None


def industry_of(tags: Iterable[str]) -> str | None:
    """The industry named by the first `industria:<x>` tag, lower-case, or None."""
    for tag in tags:
        folded = str(tag).strip().lower()
        if folded.startswith(INDUSTRY) and len(folded) > len(INDUSTRY):
            return folded[len(INDUSTRY) :]
    return None


def clean_tags(text: str) -> tuple[str, ...]:
    """Tags typed as "caso, industria:salud": lower-case, no blanks, no repeats, in order."""
    seen: dict[str, None] = {}
    for part in text.split(","):
        tag = " ".join(part.split()).lower().replace(" ", "-")
        if tag:
            seen.setdefault(tag, None)
    return tuple(seen)


def resolve(
    references: Sequence[str], library: Sequence[Material], industry: str | None
) -> tuple[Material, ...] | None:
    """The materials a variant offers this lead, in order and without repeats; None when a
    reference finds nothing (then the variant is not used)."""
    chosen: dict[int, Material] = {}
    for text in references:
        reference = Reference.parse(text)
        if reference is None:
            return None
        found = _find(reference, library, industry)
        if not found:
            return None
        for material in found:
            chosen.setdefault(material.id, material)
    return tuple(chosen.values())


def _find(
    reference: Reference, library: Sequence[Material], industry: str | None
) -> list[Material]:
    active = [m for m in library if m.active]
    if reference.key is not None:
        return [m for m in active if m.key == reference.key]
    tagged = [m for m in active if reference.tag in m.tags]
    fitting = [m for m in tagged if industry is not None and m.industry == industry]
    general = [m for m in tagged if m.industry is None]
    return (fitting + general)[: min(reference.count, MAX_BEST)]


@dataclass(frozen=True, slots=True)
class VariantProblem:
    """Why a reply variant cannot be published (`refused`) or will not be used (a warning).

    `code` names the problem for the console's Spanish words: `promise_without` (promises
    `words` and attaches nothing), `unknown_reference`, `unknown_key` (no material has it),
    `inactive` (the material is deactivated), `no_general` (a `mejor:` with no material for
    every lead), `only_offers` (every variant of the script attaches something: when the
    library changes the bot would have nothing to say).
    """

    script: str
    variant: int  # 0-based; -1 for the script as a whole
    code: str
    detail: str = ""
    refused: bool = True

    def __str__(self) -> str:
        where = self.script if self.variant < 0 else f"{self.script} reply {self.variant + 1}"
        return f"{where}: {self.code}" + (f" ({self.detail})" if self.detail else "")


def problems(
    script: str,
    texts: Sequence[str],
    offers: Sequence[Sequence[str]],
    library: Sequence[Material],
    promised: Sequence[str | None],
) -> list[VariantProblem]:
    """What is wrong with the materials of one script's variants.

    `promised[i]` is the promise found in `texts[i]` (see `intents.promises`), or None.
    Refused: a promise without material, a reference that is malformed or names no material,
    and a script whose every variant attaches something. Warnings: a material deactivated, a
    `mejor:` reference without a general material (the variant is not used meanwhile).
    """
    found: list[VariantProblem] = []
    keys = {m.key: m for m in library}
    for index in range(len(texts)):
        references = tuple(offers[index]) if index < len(offers) else ()
        if not references:
            if promised[index]:
                found.append(
                    VariantProblem(script, index, "promise_without", promised[index] or "")
                )
            continue
        for written in references:
            reference = Reference.parse(written)
            if reference is None:
                found.append(VariantProblem(script, index, "unknown_reference", written))
            elif reference.key is not None:
                material = keys.get(reference.key)
                if material is None:
                    found.append(VariantProblem(script, index, "unknown_key", written))
                elif not material.active:
                    found.append(VariantProblem(script, index, "inactive", written, refused=False))
            elif not _find(reference, library, None):
                found.append(VariantProblem(script, index, "no_general", written, refused=False))
    if texts and all(index < len(offers) and offers[index] for index in range(len(texts))):
        found.append(VariantProblem(script, -1, "only_offers"))
    return found
