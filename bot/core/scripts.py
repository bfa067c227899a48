"""Scripts: the business-owned texts the bot sends, rendered with the lead's details."""

from __future__ import annotations

import functools
import re
import string
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from bot.core.errors import ConfigError
from intents.promises import Promises

# Scripts the conversation logic itself uses, besides one per intent.
SYSTEM_SCRIPTS = (
    "handoff.waiting",
    "handoff.not_understood",
    "optout.confirm",
    "media.received",
    "clarify.which",
    "contact.saved",
    "contact.other",
    "contact.name_saved",
    "contact.email_saved",
    "contact.phone_saved",
    "post_sale.next",
    "schedule.ask_time",
    "schedule.ask_hour",
    "schedule.ask_other_time",
    "schedule.confirm",
    "schedule.booked",
    "schedule.moved",
    "schedule.unavailable",
    "schedule.taken",
    "schedule.no_slots",
    "schedule.cancel_confirm",
    "schedule.cancelled",
    "schedule.cancel_kept",
    "schedule.nothing_booked",
    "handoff.away",
    "handoff.still_waiting",
    "handoff.agent_alert",
    "agent.telegram_linked",
    "schedule.which",
    "schedule.confirm_again",
    "schedule.cancel_again",
    "schedule.passed",
    "schedule.not_now",
    "reminder.lead.day",
    "reminder.lead.soon",
    "reminder.agent",
    "task.due_alert",
    "task.overdue_alert",
    "task.follow_up_idle",
)


# Intents the conversation logic itself acts on: their replies may change, they may not go.
SYSTEM_INTENTS = frozenset(
    {
        "optout",
        "handoff.human",
        "schedule.book",
        "schedule.reschedule",
        "schedule.cancel",
        "buy.intent",
        "affirm",
        "deny",
        "greeting",
        "thanks",
        "none",
    }
)


class ScriptBook(Protocol):
    """Where the texts come from (the intents catalogue)."""

    @property
    def intents(self) -> tuple[str, ...]: ...

    def replies(self, script_id: str) -> tuple[str, ...]: ...

    def offered(self, script_id: str) -> tuple[tuple[str, ...], ...]: ...

    def booked(self, script_id: str) -> tuple[str | None, ...]: ...

    def label(self, intent: str) -> str: ...


@dataclass(frozen=True, slots=True)
class Rendered:
    """One variant, filled. `offers`: the materials it offers to send (when they can be);
    `books`: the kind of appointment a yes to it books (call, meeting, visit), if any."""

    text: str
    script: str
    variant: int
    offers: tuple[str, ...] = ()
    books: str | None = None


# Whether the materials a variant offers can be sent to this lead (bot.core.materials.resolve).
Sendable = Callable[[tuple[str, ...]], bool]


# Facts about the business a configuration may leave out ({planes}: business.plans). A variant
# that quotes one left out is never chosen (it would read "nuestros planes: ."); once it is
# set, the variants that quote it are chosen before the others.
OPTIONAL_FACTS = frozenset({"planes"})


@functools.lru_cache(maxsize=4096)
def _promise(promises: Promises, text: str) -> str | None:
    """The promise `text` makes, looked for once per text (replies are rendered many times)."""
    return promises.found(text)


@functools.lru_cache(maxsize=4096)
def _placeholders(text: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(text) if name)


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


class Renderer:
    """Picks a variant of a script and fills its placeholders."""

    def __init__(
        self, book: ScriptBook, defaults: Mapping[str, str], promises: Promises | None = None
    ) -> None:
        self.book = book
        self.defaults = dict(defaults)
        self.promises = promises or Promises()

    def check(self, intents: tuple[str, ...]) -> None:
        """Fail at start-up, not mid-conversation, when a script the bot needs is missing.

        (The catalogue itself checks each text's placeholders, naming file and line.)

        Raises:
            ConfigError: naming the script.
        """
        for script in (*SYSTEM_SCRIPTS, *intents):
            try:
                replies = self.book.replies(script)
            except KeyError:
                replies = ()
            if not replies:
                raise ConfigError(f"scripts: {script!r} has no replies")

    def render(
        self,
        script: str,
        *,
        seed: str,
        values: Mapping[str, str],
        sendable: Sendable | None = None,
    ) -> Rendered:
        """One variant of `script`, chosen by `seed` so a retry renders the same text.

        A variant that offers materials is chosen only when `sendable` says they can be sent
        to this lead; one that promises to send something (`promises`) without attaching a
        material never is, unless no other variant is left.
        """
        variants = self.book.replies(script)
        offered = self.book.offered(script)
        honest = self._honest(variants, offered, sendable)
        choices = self._choices(variants, honest)
        variant = choices[zlib.crc32(f"{seed}:{script}".encode()) % len(choices)]
        filled = variants[variant].format_map(_Blank({**self.defaults, **values}))
        offers = offered[variant] if variant < len(offered) else ()
        if offers and not (sendable is not None and sendable(offers)):
            offers = ()
        booked = self.book.booked(script)
        books = booked[variant] if variant < len(booked) else None
        return Rendered(_tidy(filled), script, variant, offers, books)

    def _honest(
        self,
        variants: tuple[str, ...],
        offered: tuple[tuple[str, ...], ...],
        sendable: Sendable | None,
    ) -> list[int]:
        """The variants that promise only what can be sent now."""
        usable = []
        for index, text in enumerate(variants):
            offers = offered[index] if index < len(offered) else ()
            if offers:
                if sendable is not None and sendable(offers):
                    usable.append(index)
            elif _promise(self.promises, text) is None:
                usable.append(index)
        if usable:
            return usable
        plain = [i for i in range(len(variants)) if i >= len(offered) or not offered[i]]
        return plain or list(range(len(variants)))

    def _choices(self, variants: tuple[str, ...], among: list[int]) -> list[int]:
        """Of `among`, the variants that may be chosen, by the business facts configured
        (OPTIONAL_FACTS)."""
        known = {name for name in OPTIONAL_FACTS if self.defaults.get(name)}
        missing = OPTIONAL_FACTS - known
        every = among
        usable = [i for i in every if not _placeholders(variants[i]) & missing] or list(every)
        quoting = [i for i in usable if _placeholders(variants[i]) & known]
        return quoting or usable

    def label(self, intent: str) -> str:
        return self.book.label(intent)

    def knows(self, script: str) -> bool:
        """True when the scripts have a text for `script`."""
        try:
            return bool(self.book.replies(script))
        except KeyError:
            return False

    def is_intent(self, name: str) -> bool:
        """True for an intent id of the catalogue (what a button may stand for)."""
        return name in self.book.intents


_SPACE_BEFORE_PUNCTUATION = re.compile(r"[ \t]+([!?.,;:])")
_DOUBLE_SPACE = re.compile(r"[ \t]{2,}")
_DANGLING_COMMA = re.compile(r"(^|[¡¿])\s*,\s*")
_DOUBLE_COMMA = re.compile(r",\s*,")
_COMMA_BEFORE_STOP = re.compile(r",([!?.])")
_SENTENCE_START = re.compile(r"([.!?]\s+[¡¿]?)([a-záéíóúñ])")
_CONTRACTION = re.compile(r"\b(a|de) el ", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def _tidy(text: str) -> str:
    """Mend the seams an empty placeholder leaves: "¡Hola , Ana!" / "¡Hola !" → "¡Hola!".

    Kept per text: a variant filled with the same values (the business's facts, no name or
    the same one) is tidied once, not with seven regular expressions every time."""
    text = _DOUBLE_SPACE.sub(" ", text)
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)
    text = _COMMA_BEFORE_STOP.sub(r"\1", text)
    text = _DOUBLE_COMMA.sub(",", text)
    text = _DANGLING_COMMA.sub(r"\1", text).strip()
    # A label dropped after a preposition: "a el precio" -> "al precio", "de el" -> "del".
    text = _CONTRACTION.sub(lambda m: "al " if m[1].lower() == "a" else "del ", text)
    # "{nombre}, gracias..." without a name, or "¡Claro! {producto} tiene...", start a sentence
    # with whatever the placeholder held.
    text = _SENTENCE_START.sub(lambda m: m[1] + m[2].upper(), text)
    return text[:1].upper() + text[1:]
