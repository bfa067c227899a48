"""The scripts file: intents with their label, training examples and replies.

```yaml
intents:
  objection.price:
    label: "el precio"
    examples: ["es muy caro", ...]
    replies:
      - "Te entiendo, {nombre}..."
      - text: "¿Te muestro un caso real parecido al tuyo?"
        materials: ["mejor:caso"]    # what this variant offers to send (bot.core.materials)
      - text: "¿Lo platicamos en una llamada corta?"
        books: call                  # a yes to this variant books a call (or meeting, visit)
scripts: {}        # texts not tied to one intent, keyed by script id
sequences: {}      # optional: the follow-up sequences (the service reads and checks them)
```

A malformed file stops start-up with `CatalogueError` naming the file, the line and the problem
(lines come from YAML's own marks). Examples that normalise to the same text twice are not
errors, since the matcher still works, but they are reported: `Catalogue.warnings` lists them and
each is also logged once on the `intents` logger at WARNING level.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from intents.normalize import Normalizer, default_normalizer

DEFAULT_SCRIPTS = Path(__file__).parent / "scripts" / "es.yaml"

# Placeholders the service can fill; anything else in braces is a typo the prospect would see.
# {planes} is the business's plans and prices (business.plans), empty when none are set.
# {a} and {b} are the two intents' labels in "clarify.which"; {fecha}, {dia}, {tipo}, {opciones},
# {dias} and {tarea} come from the agenda, reminders and tasks; {apertura} (when people are back)
# and {motivo} (why a conversation was handed off) from the handoff; {correo} and {telefono} are
# the contact details a lead typed and the bot saved.
PLACEHOLDERS = frozenset(
    {"nombre", "producto", "negocio", "asesor", "planes", "a", "b"}
    | {"fecha", "dia", "tipo", "opciones", "dias", "tarea", "apertura", "motivo"}
    | {"correo", "telefono"}
)
_INTENT_ID = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*$")
_INTENT_KEYS = frozenset({"label", "examples", "replies"})
_REPLY_KEYS = frozenset({"text", "materials", "books"})
# What a yes to a reply variant can book (`books:`): the kinds of appointment.
BOOKABLE = ("call", "meeting", "visit")
_TOP_KEYS = frozenset({"intents", "scripts", "sequences"})
_STR_TAG = "tag:yaml.org,2002:str"

log = logging.getLogger("intents")

# libyaml's parser, when PyYAML was built with it, reads the scripts 20 times faster (0.13 s
# of start-up); it reports the same line marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CatalogueError(ValueError):
    """The scripts file cannot be used. The message reads `file:line: problem`."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Example:
    """One training example and where it was written."""

    intent: str
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class IntentScripts:
    """Everything the scripts file says about one intent."""

    label: str
    examples: tuple[Example, ...]
    replies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Catalogue:
    """A loaded scripts file.

    Attributes:
        path: the file it was read from.
        intents: intent ids in file order.
        warnings: duplicate or conflicting examples, each naming both places.
        offers: by script id, the materials each reply variant offers (`materials:`), one
            tuple per variant; only scripts where some variant offers something.
        books: by script id, the kind of appointment a yes to each variant books (`books:`),
            None for a variant that books nothing; only scripts where some variant books.
        sequences: the `sequences:` section as plain YAML data, None when there is none. The
            follow-up sequences are the service's: it checks them (`bot.settings`).
    """

    path: Path
    intents: tuple[str, ...]
    entries: Mapping[str, IntentScripts]
    scripts: Mapping[str, tuple[str, ...]]
    warnings: tuple[str, ...] = ()
    offers: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    books: Mapping[str, tuple[str | None, ...]] = field(default_factory=dict)
    sequences: object = None

    def examples(self, intent: str) -> tuple[str, ...]:
        """Training examples of `intent`. Raises KeyError for an unknown intent."""
        return tuple(example.text for example in self.entries[intent].examples)

    def all_examples(self) -> tuple[Example, ...]:
        """Every training example, intents in file order."""
        return tuple(
            example for intent in self.intents for example in self.entries[intent].examples
        )

    def replies(self, script_id: str) -> tuple[str, ...]:
        """Reply variants of an intent id or of a key of `scripts:`. Raises KeyError if neither."""
        if script_id in self.entries:
            return self.entries[script_id].replies
        return self.scripts[script_id]

    def offered(self, script_id: str) -> tuple[tuple[str, ...], ...]:
        """What each reply variant of `script_id` offers to send; () when none offers."""
        return self.offers.get(script_id, ())

    def booked(self, script_id: str) -> tuple[str | None, ...]:
        """What a yes to each reply variant of `script_id` books; () when none books."""
        return self.books.get(script_id, ())

    def label(self, intent: str) -> str:
        """Short Spanish noun phrase naming `intent`. Raises KeyError for an unknown intent."""
        return self.entries[intent].label


def load_catalogue(
    path: Path | str = DEFAULT_SCRIPTS, *, normalizer: Normalizer | None = None
) -> Catalogue:
    """Read and check a scripts file.

    Args:
        path: the YAML scripts file.
        normalizer: used to find examples that read the same once normalised.

    Raises:
        CatalogueError: unreadable file, bad YAML or a file that breaks the schema.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(path, 0, f"cannot read the file ({exc})") from exc
    return parse_catalogue(text, path, normalizer=normalizer)


def parse_catalogue(
    text: str,
    source: Path | str,
    *,
    normalizer: Normalizer | None = None,
    overlaps: bool = True,
) -> Catalogue:
    """Check scripts given as text (a version kept in the database); `source` names it in
    errors ("version 3:120: ...") and becomes the catalogue's `path`. `overlaps=False` skips
    looking for duplicate examples (no `warnings`): a version checked when it was published.

    Raises:
        CatalogueError: bad YAML or a text that breaks the schema.
    """
    path = Path(source)
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise CatalogueError(path, line, f"invalid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise CatalogueError(path, 0, f"invalid YAML: {exc}") from exc
    return _Reader(path, normalizer or default_normalizer(), overlaps).catalogue(root)


@dataclass(frozen=True, slots=True)
class _Reader:
    path: Path
    normalizer: Normalizer
    overlaps: bool = True
    _offers: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    _books: dict[str, tuple[str | None, ...]] = field(default_factory=dict)

    def catalogue(self, root: Node | None) -> Catalogue:
        if root is None:
            raise CatalogueError(self.path, 1, "the file is empty; expected 'intents:'")
        top = self._mapping(root, "the top level", allowed=_TOP_KEYS)
        if "intents" not in top:
            raise CatalogueError(self.path, _line(root), "missing 'intents:'")
        intents_node = top["intents"][1]
        self._offers.clear()
        self._books.clear()
        entries = {
            intent: self._intent(intent, node)
            for intent, (key_node, node) in self._mapping(intents_node, "'intents'").items()
            if self._check_id(intent, key_node)
        }
        if not entries:
            raise CatalogueError(self.path, _line(intents_node), "'intents' has no intent")
        scripts: dict[str, tuple[str, ...]] = {}
        if "scripts" in top:
            for key, (_, node) in self._mapping(top["scripts"][1], "'scripts'").items():
                scripts[key] = self._replies(node, f"scripts.{key}", key)
        offers, books = dict(self._offers), dict(self._books)
        sequences = (
            SafeConstructor().construct_document(top["sequences"][1])
            if "sequences" in top
            else None
        )
        catalogue = Catalogue(
            path=self.path,
            intents=tuple(entries),
            entries=entries,
            scripts=scripts,
            offers=offers,
            books=books,
        )
        warnings = self._overlaps(catalogue) if self.overlaps else ()
        for warning in warnings:
            log.warning("catalogue_warning %s", warning)
        return Catalogue(
            path=self.path,
            intents=catalogue.intents,
            entries=entries,
            scripts=scripts,
            warnings=warnings,
            offers=offers,
            books=books,
            sequences=sequences,
        )

    def _books_kind(self, entry: tuple[Node, Node] | None, where: str) -> str | None:
        """The kind of appointment a variant's `books:` names, checked."""
        if entry is None:
            return None
        kind = self._string(entry[1], f"{where}.books")
        if kind not in BOOKABLE:
            raise CatalogueError(
                self.path,
                _line(entry[1]),
                f"{where}: books: {kind!r} is not one of {', '.join(BOOKABLE)}",
            )
        return kind

    def _check_id(self, intent: str, key_node: Node) -> bool:
        if not _INTENT_ID.match(intent):
            raise CatalogueError(
                self.path,
                _line(key_node),
                f"intent id {intent!r} must be lower-case words joined by dots (objection.price)",
            )
        return True

    def _intent(self, intent: str, node: Node) -> IntentScripts:
        fields = self._mapping(node, f"intent {intent!r}", allowed=_INTENT_KEYS)
        missing = sorted(_INTENT_KEYS - fields.keys())
        if missing:
            raise CatalogueError(self.path, _line(node), f"intent {intent!r} has no '{missing[0]}'")
        label = self._string(fields["label"][1], f"{intent}.label")
        examples = tuple(
            Example(intent, text, line)
            for text, line in self._strings(fields["examples"][1], f"{intent}.examples")
        )
        return IntentScripts(
            label, examples, self._replies(fields["replies"][1], f"{intent}.replies", intent)
        )

    def _replies(self, node: Node, where: str, script: str | None = None) -> tuple[str, ...]:
        """Reply variants: each a text, or `{text: ..., materials: [...], books: call}` (what
        it offers to send, what a yes to it books)."""
        if not isinstance(node, SequenceNode) or not node.value:
            raise CatalogueError(self.path, _line(node), f"{where} must be a non-empty list")
        replies: list[tuple[str, int]] = []
        offers: list[tuple[str, ...]] = []
        books: list[str | None] = []
        for item in node.value:
            if isinstance(item, MappingNode):
                fields = self._mapping(item, f"a reply of {where}", allowed=_REPLY_KEYS)
                if "text" not in fields:
                    raise CatalogueError(
                        self.path, _line(item), f"a reply of {where} has no 'text'"
                    )
                text_node = fields["text"][1]
                replies.append((self._string(text_node, where), _line(text_node)))
                materials = fields.get("materials")
                offered = (
                    tuple(t for t, _ in self._strings(materials[1], f"{where}.materials"))
                    if materials
                    else ()
                )
                offers.append(offered)
                books.append(self._books_kind(fields.get("books"), where))
            else:
                replies.append((self._string(item, where), _line(item)))
                offers.append(())
                books.append(None)
        if any(offers):
            self._offers[script or where.removeprefix("scripts.")] = tuple(offers)
        if any(books):
            self._books[script or where.removeprefix("scripts.")] = tuple(books)
        known = ", ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS))
        for text, line in replies:
            try:
                names = [name for _, name, _, _ in string.Formatter().parse(text) if name]
            except ValueError as exc:  # an unbalanced brace would break the reply when sent
                raise CatalogueError(self.path, line, f"{exc} in {where}") from None
            for name in names:
                if name not in PLACEHOLDERS:
                    raise CatalogueError(
                        self.path, line, f"unknown placeholder {{{name}}} in {where} (use {known})"
                    )
        return tuple(text for text, _ in replies)

    def _mapping(
        self, node: Node, what: str, *, allowed: frozenset[str] | None = None
    ) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise CatalogueError(self.path, _line(node), f"{what} must be a mapping")
        result: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str) or not key:
                raise CatalogueError(self.path, _line(key_node), f"{what} has a non-text key")
            if key in result:
                first = _line(result[key][0])
                raise CatalogueError(
                    self.path, _line(key_node), f"{what}: {key!r} repeated (first on line {first})"
                )
            if allowed is not None and key not in allowed:
                expected = ", ".join(sorted(allowed))
                raise CatalogueError(
                    self.path, _line(key_node), f"{what}: unknown key {key!r} (expected {expected})"
                )
            result[key] = (key_node, value_node)
        return result

    def _strings(self, node: Node, what: str) -> tuple[tuple[str, int], ...]:
        if not isinstance(node, SequenceNode) or not node.value:
            raise CatalogueError(self.path, _line(node), f"{what} must be a non-empty list")
        return tuple((self._string(item, what), _line(item)) for item in node.value)

    def _string(self, node: Node, what: str) -> str:
        # Plain scalars like `no` or `12` would load as bool/int: demand text that stays text.
        if not isinstance(node, ScalarNode) or node.tag != _STR_TAG:
            raise CatalogueError(self.path, _line(node), f'{what}: expected text (quote it: "...")')
        if not node.value.strip():
            raise CatalogueError(self.path, _line(node), f"{what}: empty text")
        return str(node.value)

    def _overlaps(self, catalogue: Catalogue) -> tuple[str, ...]:
        seen: dict[str, Example] = {}
        warnings: list[str] = []
        for example in catalogue.all_examples():
            key = self.normalizer(example.text)
            if not key:
                warnings.append(
                    f"{self.path}:{example.line}: example {example.text!r} ({example.intent}) "
                    "has no words left after normalisation; it teaches nothing"
                )
                continue
            first = seen.setdefault(key, example)
            if first is example:
                continue
            kind = "duplicate" if first.intent == example.intent else "conflicting"
            warnings.append(
                f"{self.path}:{example.line}: {kind} example {example.text!r} ({example.intent}) "
                f"reads like {first.text!r} ({first.intent}, line {first.line})"
            )
        return tuple(warnings)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1
