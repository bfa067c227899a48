"""Text normalisation: bring a chat message and a training example to the same plain form.

Prospects type "ta muy caro xq no me haces descuento 😒" and examples say "está muy caro porque
…": after normalisation both read alike. The steps: drop control characters and cap the length,
turn meaningful emojis into words (👍 → "ok"), lower-case, strip accents (ñ included, since many
keyboards lose it), split into clauses at punctuation, mark questions with a "?" token, squeeze
stretched letters ("siiii" → "si"), fold laughter ("jajsjaja" → "jaja") and expand chat shorthand
("xq" → "porque").

Shorthand and emoji meanings are data (`scripts/abbreviations.es.yaml`), not code.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

DEFAULT_ABBREVIATIONS = Path(__file__).parent / "scripts" / "abbreviations.es.yaml"

# Longer messages are not richer in intent, only slower: the first part says what the lead wants.
MAX_CHARS = 600

# Emoji modifiers and joiners: removed first so that "🙅‍♂️" is looked up as "🙅".
_EMOJI_GLUE = re.compile("[\u200d\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
# Clause breaks: sentence punctuation, and "." or "," unless between digits ("4.30", "1,500").
# Kept (captured) so that a clause asked as a question can be marked as one.
_CLAUSE_BREAK = re.compile(r"([!?;¿¡\n…]+|(?<!\d)[.,]|[.,](?!\d)|(?=\bpero\b))")
# "¿cuánto cuesta?" and "cuánto cuesta" differ in kind from "cuesta mucho": a question asks for
# information, a statement objects. The mark is a token of its own.
QUESTION = "?"
_DECIMAL_CLOCK = re.compile(r"(\d)\.(\d\d)\b")  # "4.30" is a clock time, keep it as "4:30"
_THOUSANDS = re.compile(r"(\d)[.,](\d{3})\b")
_NOT_WORD = re.compile(r"[^a-z0-9:/ ]+")
_LOOSE_PUNCT = re.compile(
    r"(?<!\d)[:/]|[:/](?!\d)"
)  # ":" and "/" only matter inside "16:30", "3/12"
_DIGIT_LETTER = re.compile(r"(?<=\d)(?=[a-z])|(?<=[a-z])(?=\d)")  # "5pm" -> "5 pm", "a1" -> "a 1"
_STRETCH = re.compile(r"([a-z])\1{2,}")
# Spanish spells these doubles on purpose (llamar, carro, acción, leer); other doubles are typing.
_DOUBLE = re.compile(r"([abdf-kmnopqs-z])\1")
_LAUGH = re.compile(r"\b(?:a?(?:j[aeiou]|[aeiou]j|js|sj|jk|kj|h[ae]h?)){2,}[a-z]?\b")
_SPACES = re.compile(r"\s+")
# Words after which a vocative ("hermano", "compa", "mija") names someone: "mi hermano", "un
# cuate". Not "esta": without its accent it is also the verb ("¿cómo está, hermano?").
_DETERMINERS = frozenset(
    {"mi", "mis", "tu", "tus", "su", "sus", "el", "la", "los", "las", "un", "una", "unos"}
    | {"unas", "nuestro", "nuestra", "nuestros", "nuestras", "este", "ese", "esa", "aquel"}
)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_ASCII_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # keeps \n: it ends a clause


def fold(text: str) -> str:
    """Lower-case, strip accents and squeeze stretched letters, nothing else.

    Used for keys and vocabularies too, so that data and messages are compared alike.
    """
    decomposed = unicodedata.normalize("NFD", text.casefold())
    plain = _NON_ASCII.sub(_unmarked, decomposed)  # an ASCII character is never a mark
    return _DOUBLE.sub(r"\1", _STRETCH.sub(r"\1", plain))


def _unmarked(match: re.Match[str]) -> str:
    return "" if unicodedata.category(match[0]) == "Mn" else match[0]


@dataclass(frozen=True, slots=True)
class Normalizer:
    """Turns raw message text into normalised clauses.

    Attributes:
        words: folded shorthand token -> folded full form ("xq" -> "porque").
        emojis: emoji -> folded word that carries its meaning ("👍" -> "ok").
    """

    words: Mapping[str, str]
    emojis: Mapping[str, str]

    def clauses(self, text: str) -> tuple[str, ...]:
        """Split and normalise a message; empty clauses are dropped.

        Never raises on odd input: control characters, lone surrogates and unknown symbols
        become spaces.
        """
        text = _EMOJI_GLUE.sub("", text[:MAX_CHARS])
        text = _ASCII_CONTROL.sub(" ", text)
        text = _NON_ASCII.sub(lambda m: self._char(m[0]), text)  # most text is ASCII: skip it
        text = _THOUSANDS.sub(r"\1\2", _DECIMAL_CLOCK.sub(r"\1:\2", fold(text)))
        parts = _CLAUSE_BREAK.split(text)  # clause, break, clause, break, ..., clause
        clauses: list[str] = []
        for i in range(0, len(parts), 2):
            clause = self._clause(parts[i])
            before = parts[i - 1] if i else ""
            after = parts[i + 1] if i + 1 < len(parts) else ""
            if clause and ("?" in after or "¿" in before):
                clause = f"{clause} {QUESTION}"
            if clause:
                clauses.append(clause)
        return tuple(clauses)

    def __call__(self, text: str) -> str:
        """The whole message as one normalised string."""
        return " ".join(self.clauses(text))

    def _char(self, ch: str) -> str:
        meaning = self.emojis.get(ch)
        if meaning is not None:
            return f" {meaning} , "  # an emoji closes its clause: "gracias 🙏 cuanto cuesta"
        category = unicodedata.category(ch)
        if category in ("Zl", "Zp"):
            return "\n"
        return " " if category[0] in "CS" else ch

    def _clause(self, text: str) -> str:
        text = _NOT_WORD.sub(" ", text)
        text = _DIGIT_LETTER.sub(" ", _LOOSE_PUNCT.sub(" ", text))
        text = _LAUGH.sub("jaja", text)
        tokens = text.split()
        expanded = (
            # A vocative after a determiner is a person talked about, not to: "mi hermano".
            token if not full and i and tokens[i - 1] in _DETERMINERS else full
            for i, (token, full) in enumerate((t, self.words.get(t, t)) for t in tokens)
        )
        return " ".join(word for word in expanded if word)  # fillers expand to nothing


def load_normalizer(path: Path = DEFAULT_ABBREVIATIONS) -> Normalizer:
    """Read shorthand and emoji meanings from a YAML file (`words:` and `emojis:` mappings).

    Raises:
        ValueError: the file is not a mapping of those two string-to-string mappings.
    """
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'words' and 'emojis'")  # noqa: TRY004
    words = _string_map(data.get("words", {}), path, "words")
    emojis = _string_map(data.get("emojis", {}), path, "emojis")
    return Normalizer(
        words={fold(key): _SPACES.sub(" ", fold(value)) for key, value in words.items()},
        emojis={_EMOJI_GLUE.sub("", key): fold(value) for key, value in emojis.items()},
    )


def _string_map(value: object, path: Path, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{path}: '{key}' must map strings to strings")
    return dict(value)


@cache
def default_normalizer() -> Normalizer:
    """The packaged Spanish normaliser, loaded once."""
    return load_normalizer()


def normalize(text: str) -> str:
    """Normalise `text` with the packaged Spanish shorthand and emoji tables."""
    return default_normalizer()(text)
