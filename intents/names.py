"""The name a prospect introduces themselves with: "hola, soy Pedro", "me llamo Ana María".

Conservative on purpose: a wrong name in the lead's record (and in every reply after it) is worse
than none. A name follows a cue ("me llamo", "mi nombre es" anywhere; "soy", "habla" only at the
start of the message, after a greeting at most), and each of its words is a known first name or
is written like one (a capital, then lower case) without being a word that often follows "soy"
("Soy Contador", "soy de Monterrey"). The words are data: `scripts/names.es.yaml`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import yaml

from intents.normalize import fold

DEFAULT_NAMES = Path(__file__).parent / "scripts" / "names.es.yaml"

_WORD = re.compile(r"[^\W\d_]+")
_MAX_WORDS = 3  # "Ana María López": a first name and what belongs to it, not a sentence
_MAX_CHARS = 600  # like the matcher: the opening of a message says who is writing
# Messages repeat their words: a word is folded once (a look-up instead of three regexes).
_fold_word = lru_cache(maxsize=16384)(fold)


@dataclass(frozen=True, slots=True)
class NameFinder:
    """Finds a name after a cue; built from `scripts/names.es.yaml` (`load_names`).

    Attributes:
        anywhere: folded cues, as word tuples, that may come anywhere ("me llamo").
        opening: folded cues allowed only at the start, after greetings ("soy", "habla").
        greetings: folded words that may come before an opening cue.
        first_names: folded first name -> how it is written ("maria" -> "María").
        not_names: folded words that are never taken for a name.
        starts: the first words of all cues (most words of a message begin none).
    """

    anywhere: tuple[tuple[str, ...], ...]
    opening: tuple[tuple[str, ...], ...]
    greetings: frozenset[str]
    first_names: dict[str, str]
    not_names: frozenset[str]
    starts: frozenset[str]

    def find(self, text: str) -> str | None:
        """The name given in `text`, written properly ("ana maria" -> "Ana María"), or None."""
        tokens = list(_WORD.finditer(text[:_MAX_CHARS]))
        folded = [_fold_word(token[0]) for token in tokens]
        for start in range(len(tokens)):
            if folded[start] not in self.starts:
                continue
            for cue in self._cues_at(folded, start):
                name = self._name_after(text, tokens, folded, start + len(cue))
                if name is not None:
                    return name
        return None

    def _cues_at(self, folded: list[str], start: int) -> list[tuple[str, ...]]:
        """The cues that begin at word `start`, longest first."""
        found = [c for c in self.anywhere if tuple(folded[start : start + len(c)]) == c]
        if all(word in self.greetings for word in folded[:start]):
            found += [c for c in self.opening if tuple(folded[start : start + len(c)]) == c]
        return sorted(found, key=len, reverse=True)

    def _name_after(
        self, text: str, tokens: list[re.Match[str]], folded: list[str], first: int
    ) -> str | None:
        words: list[str] = []
        for i in range(first, min(first + _MAX_WORDS, len(tokens))):
            # A name's words are separated by spaces only: "soy Pedro, Luis me recomendó".
            if words and text[tokens[i - 1].end() : tokens[i].start()].strip():
                break
            word = self._as_name(tokens[i][0], folded[i])
            if word is None:
                break
            words.append(word)
        return " ".join(words) if words else None

    def _as_name(self, typed: str, folded: str) -> str | None:
        known = self.first_names.get(folded)
        if known is not None:
            return known
        looks_like_one = len(typed) >= 2 and typed[0].isupper() and typed[1:].islower()
        if looks_like_one and folded not in self.not_names:
            return typed
        return None


def load_names(path: Path = DEFAULT_NAMES) -> NameFinder:
    """Read the cues, first names and non-names from a YAML file.

    Raises:
        ValueError: the file lacks one of its lists or holds something else than words.
    """
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        cues = data["cues"]
        anywhere = _words(cues["anywhere"])
        opening = _words(cues["opening"])
        greetings = _words(data["greetings"])
        first_names = [str(name) for name in data["first_names"]]
        not_names = _words(data["not_names"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: expected cues, greetings, first_names and not_names") from exc
    split = [tuple(cue.split()) for cue in [*anywhere, *opening]]
    if not all(split):
        raise ValueError(f"{path}: cues: a cue has no words")
    return NameFinder(
        anywhere=tuple(split[: len(anywhere)]),
        opening=tuple(split[len(anywhere) :]),
        greetings=frozenset(greetings),
        first_names={fold(name): name for name in first_names},
        not_names=frozenset(not_names),
        starts=frozenset(cue[0] for cue in split),
    )


def _words(value: object) -> list[str]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return [fold(str(item)) for item in value]


@cache
def default_names() -> NameFinder:
    """The packaged Spanish names and cues, loaded once."""
    return load_names()


def find_name(text: str) -> str | None:
    """The name given in `text` with the packaged Spanish cues and names (see `NameFinder`)."""
    return default_names().find(text)
