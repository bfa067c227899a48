"""Changing a scripts text one piece at a time: add or remove an example, a reply, an intent,
a variant of a text, a step of a follow-up sequence.

The text is the YAML of `intents/scripts/es.yaml`; each change reads it, changes the one piece
and writes it back in the same layout (comments of a hand-written file are not kept). Checking
the result is the catalogue's job (`parse_catalogue`, and the service's for the sequences):
these functions only refuse changes that cannot be expressed (an unknown intent, a malformed
id, a blank text).

A text without `sequences:` runs the factory ones (config.yaml's); the first change to a
sequence writes them all into the text (`factory`, as plain data), then changes the one step.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from intents.catalogue import BOOKABLE

_INTENT_ID = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*$")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
PARTS = ("examples", "replies")


class EditError(ValueError):
    """A change that cannot be made; `code` names why (the console words it in Spanish)."""

    def __init__(self, message: str, code: str, **details: str) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


@dataclass(frozen=True, slots=True)
class IntentView:
    id: str
    label: str
    examples: tuple[str, ...]
    replies: tuple[str, ...]
    offers: tuple[tuple[str, ...], ...] = ()  # per reply: the materials it offers
    books: tuple[str | None, ...] = ()  # per reply: what a yes to it books (call, meeting, visit)


def reply_text(item: Any) -> str:
    """The text of a reply variant, written plain or as `{text, materials}`."""
    return str(item.get("text", "")) if isinstance(item, dict) else str(item)


def reply_offers(item: Any) -> tuple[str, ...]:
    """The materials a reply variant offers (none for a plain text)."""
    if not isinstance(item, dict):
        return ()
    return tuple(str(m) for m in item.get("materials") or ())


def reply_books(item: Any) -> str | None:
    """What a yes to a reply variant books (`books:`), or None."""
    books = item.get("books") if isinstance(item, dict) else None
    return str(books) if books else None


def _variant(text: str, materials: list[str], books: str | None) -> str | dict[str, Any]:
    """A reply variant as written: plain text, or a mapping with what it offers and books."""
    if not materials and books is None:
        return text
    variant: dict[str, Any] = {"text": text}
    if materials:
        variant["materials"] = materials
    if books is not None:
        variant["books"] = books
    return variant


def read(text: str) -> dict[str, Any]:
    """The scripts as plain data: {"intents": {id: {label, examples, replies}}, "scripts": {}}."""
    try:
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 (a safe loader, C or Python)
    except yaml.YAMLError as exc:
        raise EditError(f"invalid YAML: {exc}", "yaml") from None
    if not isinstance(data, dict) or not isinstance(data.get("intents"), dict):
        raise EditError("the scripts have no 'intents:'", "yaml")
    return data


def write(data: dict[str, Any]) -> str:
    return str(
        yaml.dump(
            data,
            Dumper=_DUMPER,
            allow_unicode=True,
            sort_keys=False,
            width=1000,
            default_flow_style=False,
        )
    )


def intents(text: str) -> list[IntentView]:
    return [_view(intent, entry) for intent, entry in read(text)["intents"].items()]


def intent(text: str, intent_id: str) -> IntentView | None:
    entry = read(text)["intents"].get(intent_id)
    return _view(intent_id, entry) if isinstance(entry, dict) else None


def _view(intent_id: str, entry: Any) -> IntentView:
    entry = entry if isinstance(entry, dict) else {}
    replies = list(entry.get("replies") or ())
    return IntentView(
        id=intent_id,
        label=str(entry.get("label", "")),
        examples=tuple(str(e) for e in entry.get("examples") or ()),
        replies=tuple(reply_text(r) for r in replies),
        offers=tuple(reply_offers(r) for r in replies),
        books=tuple(reply_books(r) for r in replies),
    )


def _entry(data: dict[str, Any], intent_id: str) -> dict[str, Any]:
    entry = data["intents"].get(intent_id)
    if not isinstance(entry, dict):
        raise EditError(f"no intent {intent_id!r}", "no_intent", intent=intent_id)
    return entry


def _clean(value: str, what: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise EditError(f"empty {what}", f"empty_{what}")
    return value


def add(text: str, intent_id: str, part: str, value: str) -> str:
    """Add an example or a reply variant (`part`) to an intent; the same text twice is a no-op."""
    if part not in PARTS:
        raise EditError(f"unknown part {part!r}", "part")
    data = read(text)
    entry = _entry(data, intent_id)
    value = _clean(value, part[:-1])
    items = list(entry.get(part) or [])
    if value not in [reply_text(item) for item in items]:
        items.append(value)
    entry[part] = items
    return write(data)


def remove(text: str, intent_id: str, part: str, index: int) -> str:
    """Remove the `index`th example or reply of an intent."""
    if part not in PARTS:
        raise EditError(f"unknown part {part!r}", "part")
    data = read(text)
    entry = _entry(data, intent_id)
    items = list(entry.get(part) or [])
    if not 0 <= index < len(items):
        raise EditError(f"{intent_id} has no {part} {index}", "no_item", intent=intent_id)
    del items[index]
    entry[part] = items
    return write(data)


def set_label(text: str, intent_id: str, label: str) -> str:
    data = read(text)
    _entry(data, intent_id)["label"] = _clean(label, "label")
    return write(data)


def add_intent(
    text: str, intent_id: str, label: str, examples: list[str], replies: list[str]
) -> str:
    """A new intent, after the others (before `none` when there is one)."""
    intent_id = intent_id.strip()
    if not _INTENT_ID.match(intent_id):
        raise EditError(f"bad intent id {intent_id!r}", "intent_id", intent=intent_id)
    data = read(text)
    if intent_id in data["intents"]:
        raise EditError(f"intent {intent_id!r} exists", "intent_exists", intent=intent_id)
    entry = {
        "label": _clean(label, "label"),
        "examples": [e for e in (" ".join(x.split()) for x in examples) if e],
        "replies": [r for r in (" ".join(x.split()) for x in replies) if r],
    }
    ordered = {k: v for k, v in data["intents"].items() if k != "none"}
    ordered[intent_id] = entry
    if "none" in data["intents"]:
        ordered["none"] = data["intents"]["none"]
    data["intents"] = ordered
    return write(data)


def remove_intent(text: str, intent_id: str) -> str:
    data = read(text)
    _entry(data, intent_id)
    del data["intents"][intent_id]
    return write(data)


def texts(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """The texts not tied to one intent (`scripts:`): (script id, variants), in file order."""
    scripts = read(text).get("scripts") or {}
    return [
        (str(key), tuple(reply_text(v) for v in (value or ())))
        for key, value in scripts.items()
        if isinstance(value, list)
    ]


def add_text(text: str, script_id: str, value: str) -> str:
    """Add a variant to a text of `scripts:`; the same text twice is a no-op."""
    data = read(text)
    scripts = data.get("scripts") or {}
    if not isinstance(scripts.get(script_id), list):
        raise EditError(f"no script {script_id!r}", "no_text", script=script_id)
    value = _clean(value, "reply")
    if value not in [reply_text(item) for item in scripts[script_id]]:
        scripts[script_id].append(value)
    return write(data)


def set_materials(text: str, script_id: str, index: int, materials: list[str]) -> str:
    """Set what the `index`th reply variant of an intent (or of a text of `scripts:`) offers
    to send; an empty list offers nothing."""
    data = read(text)
    variants = _variants(data, script_id, index)
    cleaned = list(dict.fromkeys(m for m in (" ".join(x.split()) for x in materials) if m))
    item = variants[index]
    variants[index] = _variant(reply_text(item), cleaned, reply_books(item))
    return write(data)


def set_books(text: str, script_id: str, index: int, kind: str | None) -> str:
    """Set what a yes to the `index`th reply variant books (call, meeting, visit; None:
    nothing)."""
    if kind is not None and kind not in BOOKABLE:
        raise EditError(f"cannot book {kind!r}", "books", kind=kind)
    data = read(text)
    variants = _variants(data, script_id, index)
    item = variants[index]
    variants[index] = _variant(reply_text(item), list(reply_offers(item)), kind)
    return write(data)


def _variants(data: dict[str, Any], script_id: str, index: int) -> list[Any]:
    """The reply variants of an intent or of a text of `scripts:`, which has `index`."""
    entry = data["intents"].get(script_id)
    if not isinstance(entry, dict):
        return _text_variants(data, script_id, index)
    return _checked(entry.get("replies"), script_id, index)


def _text_variants(data: dict[str, Any], script_id: str, index: int) -> list[Any]:
    """The variants of a text of `scripts:`, which has `index`."""
    return _checked((data.get("scripts") or {}).get(script_id), script_id, index)


def _checked(variants: object, script_id: str, index: int) -> list[Any]:
    if not isinstance(variants, list):
        raise EditError(f"no script {script_id!r}", "no_text", script=script_id)
    if not 0 <= index < len(variants):
        raise EditError(f"{script_id} has no variant {index}", "no_item", intent=script_id)
    return variants


def remove_text(text: str, script_id: str, index: int) -> str:
    data = read(text)
    del _text_variants(data, script_id, index)[index]
    return write(data)


def set_text(text: str, script_id: str, index: int, value: str) -> str:
    """Replace the `index`th variant of a text of `scripts:`."""
    data = read(text)
    _text_variants(data, script_id, index)[index] = _clean(value, "reply")
    return write(data)


# --- follow-up sequences ----------------------------------------------------------------------

_SPAN = re.compile(r"^\d{1,5}[mhd]$")


@dataclass(frozen=True, slots=True)
class StepView:
    after: str  # counted from the sequence's start: 30m, 2h, 3d
    kind: str  # "message" (sent to the lead) or "task" (for the lead's agent)
    script: str  # the text of `scripts:` it sends, or titles the task with
    variants: tuple[str, ...]  # that text's variants (empty: the text does not exist)


@dataclass(frozen=True, slots=True)
class SequenceView:
    name: str
    tier: str | None
    stage: str | None
    steps: tuple[StepView, ...]


def sequences(text: str, factory: Mapping[str, object]) -> tuple[list[SequenceView], bool]:
    """The sequences of a scripts text (the factory ones when it has none), and whether they
    are the text's own. Steps of a malformed section are shown as far as they can be read."""
    data = read(text)
    own = data.get("sequences")
    section = own if isinstance(own, dict) else factory
    scripts = data.get("scripts") or {}
    views: list[SequenceView] = []
    for name, entry in section.items():
        entry = entry if isinstance(entry, dict) else {}
        enter = entry.get("enter")
        enter = enter if isinstance(enter, dict) else {}
        steps: list[StepView] = []
        for step in entry.get("steps") or ():
            step = step if isinstance(step, dict) else {}
            kind = "task" if "task" in step and "message" not in step else "message"
            script = str(step.get(kind) or "")
            variants = scripts.get(script) if isinstance(scripts, dict) else None
            steps.append(
                StepView(
                    str(step.get("after", "")),
                    kind,
                    script,
                    tuple(str(v) for v in variants) if isinstance(variants, list) else (),
                )
            )
        views.append(
            SequenceView(
                str(name),
                _optional(enter.get("tier")),
                _optional(enter.get("stage")),
                tuple(steps),
            )
        )
    return views, isinstance(own, dict)


def _optional(value: object) -> str | None:
    return None if value is None else str(value)


def with_sequences(text: str, factory: Mapping[str, object]) -> str:
    """The text with a `sequences:` section: unchanged when it has one, else the factory's
    appended (the rest of the text, comments included, kept as it is)."""
    if "sequences" in read(text):
        return text
    section = write({"sequences": copy.deepcopy(dict(factory))})
    heading = "\n# Follow-up sequences (config.yaml's until a version sets its own).\n"
    return text.rstrip("\n") + "\n" + heading + section


def _sequence(data: dict[str, Any], factory: Mapping[str, object], name: str) -> dict[str, Any]:
    section = data.get("sequences")
    if not isinstance(section, dict):
        section = data["sequences"] = copy.deepcopy(dict(factory))
    entry = section.get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("steps"), list):
        raise EditError(f"no sequence {name!r}", "no_sequence", sequence=name)
    return entry


def _step(entry: dict[str, Any], name: str, index: int) -> dict[str, Any]:
    steps = entry["steps"]
    if not 0 <= index < len(steps) or not isinstance(steps[index], dict):
        raise EditError(f"{name} has no step {index}", "no_step", sequence=name)
    step: dict[str, Any] = steps[index]
    return step


def _after(after: str) -> str:
    after = "".join(after.split()).lower()
    if not _SPAN.match(after):
        raise EditError(f"bad delay {after!r}", "after", after=after)
    return after


def set_after(text: str, factory: Mapping[str, object], name: str, index: int, after: str) -> str:
    """Change when the `index`th step of sequence `name` comes (counted from its start)."""
    data = read(text)
    _step(_sequence(data, factory, name), name, index)["after"] = _after(after)
    return write(data)


def add_step(text: str, factory: Mapping[str, object], name: str, after: str, message: str) -> str:
    """A new last step of sequence `name` sending `message`, as a new text of `scripts:`
    (`sequence.<name>.<n>`, the first number free)."""
    data = read(text)
    entry = _sequence(data, factory, name)
    after, message = _after(after), _clean(message, "reply")
    scripts = data.get("scripts")
    if not isinstance(scripts, dict):
        scripts = data["scripts"] = {}
    number = 1
    while f"sequence.{name}.{number}" in scripts:
        number += 1
    script = f"sequence.{name}.{number}"
    scripts[script] = [message]
    entry["steps"].append({"after": after, "message": script})
    return write(data)


def remove_step(text: str, factory: Mapping[str, object], name: str, index: int) -> str:
    """Remove a step (its text stays in `scripts:`); a sequence keeps at least one."""
    data = read(text)
    entry = _sequence(data, factory, name)
    _step(entry, name, index)
    if len(entry["steps"]) == 1:
        raise EditError(f"{name} needs a step", "last_step", sequence=name)
    del entry["steps"][index]
    return write(data)
