"""Promises in a reply: the phrases with which the bot says it will send something.

"¿Te comparto un caso de tu industria?" promises a material; on "sí" the bot must have one to
send. The phrases are data (`scripts/promesas.es.yaml`), matched in lower case and without
accents, so "te envío" and "te envio" read alike.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_PROMISES = Path(__file__).parent / "scripts" / "promesas.es.yaml"


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.casefold())
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


@dataclass(frozen=True, slots=True)
class Promises:
    """The promise phrases, compiled. `Promises(())` finds none."""

    patterns: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def of(cls, expressions: list[str] | tuple[str, ...]) -> Promises:
        return cls(tuple(re.compile(rf"\b(?:{expression})") for expression in expressions))

    def found(self, text: str) -> str | None:
        """The words of `text` that promise to send something, as written there, or None."""
        plain = _plain(text)
        for pattern in self.patterns:
            hit = pattern.search(plain)
            if hit is not None:
                # NFD keeps one character per character of the folded text, bar accents: the
                # same span of the original reads as the prospect would see it.
                return _span(text, hit.start(), hit.end())
        return None


def _span(text: str, start: int, end: int) -> str:
    """The characters of `text` behind positions `start`..`end` of its plain form."""
    plain_index = 0
    begin = stop = None
    for index, char in enumerate(text):
        if plain_index == start and begin is None:
            begin = index
        plain_index += len(_plain(char))
        if plain_index >= end:
            stop = index + 1
            break
    return text[begin or 0 : stop or len(text)]


@functools.cache
def load_promises(path: Path = DEFAULT_PROMISES) -> Promises:
    """The packaged promise phrases (read once)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return Promises.of([str(expression) for expression in data["promesas"]])
