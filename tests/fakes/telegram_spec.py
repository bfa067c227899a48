"""The Telegram Bot API as data: load the spec, decode wire parameters, validate calls and objects.

The spec is PaulSonOfLars/telegram-bot-api-spec's `api.json` (Bot API 10.1), kept in
`tests/data/specs/` (a copy of the one given in shared/channels/specs). It lists every method
and type with its fields, each field with `types` ("Integer", "Array of String",
"InlineKeyboardMarkup", ...) and `required`.

Telegram accepts a call's parameters as a query string, a form, multipart or JSON. In the first
three every value arrives as a string, and the server decodes it by the parameter's declared type,
so `"123"` is an Integer for `message_id` but stays a String for `text`. `decode_params` does the
same; `validate_call` then checks the decoded values strictly, nested objects included.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from tests.paths import TELEGRAM_SPEC

SPEC_PATH: Final = TELEGRAM_SPEC

_SCALARS: Final = frozenset({"Integer", "Float", "Boolean", "String", "InputFile"})
_INTEGER = re.compile(r"-?\d{1,19}")
_FLOAT = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
# Subtypes of an abstract type name themselves in one field: `Type of the reaction, always
# "emoji"`, `The member's status in the chat, always "kicked"`, `Scope type, must be chat`.
_DISCRIMINATOR_FIELDS: Final = ("type", "status", "source")
_CONSTANT = re.compile(r'(?:always|must be) "?([a-z0-9_]+)"?\s*$', re.IGNORECASE)
_ARRAY_OF: Final = "Array of "


class SpecNotFoundError(FileNotFoundError):
    """The spec file is not where the tests expect it."""


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file part of a multipart request, as the server received it."""

    name: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class FieldDef:
    name: str
    types: tuple[str, ...]
    required: bool
    description: str


@dataclass(frozen=True, slots=True)
class TypeDef:
    """An object type. Abstract ones (`ChatMember`) have `subtypes` and no fields of their own."""

    name: str
    fields: Mapping[str, FieldDef]
    subtypes: tuple[str, ...]
    # For a subtype: the field and value that tell it apart, e.g. ("status", "kicked").
    constant: tuple[str, str] | None


@dataclass(frozen=True, slots=True)
class MethodDef:
    name: str
    fields: Mapping[str, FieldDef]
    returns: tuple[str, ...]


def _fields(raw: list[dict[str, object]]) -> dict[str, FieldDef]:
    fields: dict[str, FieldDef] = {}
    for entry in raw:
        types = entry["types"]
        assert isinstance(types, list)
        fields[str(entry["name"])] = FieldDef(
            name=str(entry["name"]),
            types=tuple(str(t) for t in types),
            required=bool(entry["required"]),
            description=str(entry.get("description", "")),
        )
    return fields


def _constant(fields: Mapping[str, FieldDef]) -> tuple[str, str] | None:
    for name in _DISCRIMINATOR_FIELDS:
        field = fields.get(name)
        if field is not None and (match := _CONSTANT.search(field.description.rstrip("."))):
            return name, match.group(1)
    return None


def _describe(value: object) -> str:
    """A short, JSON-looking rendering of a wrong value for an error description."""
    if isinstance(value, UploadedFile):
        return f"an uploaded file ({value.filename!r})"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_label(types: tuple[str, ...]) -> str:
    return " or ".join(types)


def _is_shape_problem(problem: str, path: str) -> bool:
    """An unknown or missing field directly under `path`: a sign of the wrong union member."""
    if problem.startswith(f"{path}: unknown field "):
        return True
    head, _, rest = problem.partition(": ")
    return rest.startswith("required field") and head.rpartition(".")[0] == path


class TelegramSpec:
    """Methods and types of one Bot API version, with validation against them."""

    def __init__(self, document: Mapping[str, object]) -> None:
        self.version = str(document.get("version", "?"))
        raw_methods = document["methods"]
        raw_types = document["types"]
        assert isinstance(raw_methods, dict) and isinstance(raw_types, dict)
        self.methods: dict[str, MethodDef] = {
            name: MethodDef(
                name=name,
                fields=_fields(entry.get("fields", [])),
                returns=tuple(entry.get("returns", [])),
            )
            for name, entry in raw_methods.items()
        }
        self.types: dict[str, TypeDef] = {}
        for name, entry in raw_types.items():
            fields = _fields(entry.get("fields", []))
            self.types[name] = TypeDef(
                name=name,
                fields=fields,
                subtypes=tuple(entry.get("subtypes", [])),
                constant=_constant(fields) if entry.get("subtype_of") else None,
            )
        # Bot API method names are case-insensitive: /bot<token>/SENDMESSAGE works.
        self._method_by_lower = {name.lower(): name for name in self.methods}

    def method(self, name: str) -> MethodDef | None:
        """The method called `name`, matched case-insensitively as Telegram does."""
        canonical = self._method_by_lower.get(name.lower())
        return None if canonical is None else self.methods[canonical]

    # --- decoding ------------------------------------------------------------------------------

    def decode_params(self, method: str, raw: Mapping[str, object]) -> dict[str, object]:
        """Turn wire values into Python values by each parameter's declared types.

        Strings are decoded for non-String parameters (`"true"` -> True, `"42"` -> 42, JSON text
        -> list/dict), the way the Bot API server reads form fields. Values that are already typed
        (from a JSON body) and strings that do not decode are kept as they are, so that
        `validate_call` reports them. Unknown parameters are kept too.
        """
        definition = self.method(method)
        decoded: dict[str, object] = {}
        for name, value in raw.items():
            field = definition.fields.get(name) if definition else None
            decoded[name] = (
                self._decode_string(field.types, value)
                if field is not None and isinstance(value, str)
                else value
            )
        return decoded

    @staticmethod
    def _decode_string(types: tuple[str, ...], text: str) -> object:
        for type_name in types:
            if type_name in ("String", "InputFile"):
                continue
            if type_name == "Integer" and _INTEGER.fullmatch(text.strip()):
                return int(text)
            if type_name == "Float" and _FLOAT.fullmatch(text.strip()):
                return float(text)
            if type_name == "Boolean" and text.strip().lower() in ("true", "false", "1", "0"):
                return text.strip().lower() in ("true", "1")
            if type_name not in _SCALARS:
                try:
                    return json.loads(text)
                except ValueError:
                    continue
        return text

    # --- validation ----------------------------------------------------------------------------

    def validate_call(self, method: str, params: Mapping[str, object]) -> list[str]:
        """Problems with a call whose parameters are already decoded; empty when it is valid.

        Reports unknown methods and parameters, missing required parameters and wrong types,
        nested objects included, as sentences fit for a `Bad Request: ...` description.
        """
        definition = self.method(method)
        if definition is None:
            return [f"unknown method {method!r}"]
        problems = [
            f'unknown parameter "{name}" for method {definition.name}'
            for name in params
            if name not in definition.fields
        ]
        for field in definition.fields.values():
            if field.name not in params:
                if field.required:
                    problems.append(f'parameter "{field.name}" is required')
                continue
            problems.extend(self._check(field.types, params[field.name], field.name))
        return problems

    def validate_result(self, method: str, result: object) -> list[str]:
        """Problems with `result` as what `method` returns (e.g. Message or Boolean)."""
        definition = self.method(method)
        if definition is None:
            return [f"unknown method {method!r}"]
        return self._check(definition.returns, result, f"{definition.name} result")

    def validate_object(self, type_name: str, data: object, path: str = "") -> list[str]:
        """Problems with `data` as an instance of `type_name`; empty when it is valid.

        Strict: a field the spec does not list is a problem, so recorded payloads cannot drift
        from the API without a test noticing.
        """
        if type_name not in self.types:
            raise KeyError(f"the spec has no type {type_name!r}")
        return self._check((type_name,), data, path or type_name)

    def _check(self, types: tuple[str, ...], value: object, path: str) -> list[str]:
        if len(types) == 1:
            return self._check_one(types[0], value, path)
        # A union: the value is fine if any member accepts it. Otherwise report the member whose
        # shape fits best (fewest unknown or missing fields at this level), since "expected A or
        # B or C" would hide which nested field was wrong.
        candidates: list[tuple[int, int, list[str]]] = []
        for type_name in types:
            problems = self._check_one(type_name, value, path)
            if not problems:
                return []
            if len(problems) == 1 and problems[0].startswith(f"{path}: expected "):
                continue  # not even the right kind of value (e.g. a string for an object)
            shape_misses = sum(_is_shape_problem(problem, path) for problem in problems)
            candidates.append((shape_misses, len(problems), problems))
        if candidates:
            return min(candidates, key=lambda c: (c[0], c[1]))[2]
        return [f"{path}: expected {_type_label(types)}, got {_describe(value)}"]

    def _check_one(self, type_name: str, value: object, path: str) -> list[str]:
        mismatch = [f"{path}: expected {type_name}, got {_describe(value)}"]
        if type_name.startswith(_ARRAY_OF):
            if not isinstance(value, list):
                return mismatch
            inner = type_name.removeprefix(_ARRAY_OF)
            problems: list[str] = []
            for index, item in enumerate(value):
                problems.extend(self._check_one(inner, item, f"{path}[{index}]"))
            return problems
        if type_name == "Integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
            return [] if ok else mismatch
        if type_name == "Float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            return [] if ok else mismatch
        if type_name == "Boolean":
            return [] if isinstance(value, bool) else mismatch
        if type_name == "String":
            return [] if isinstance(value, str) else mismatch
        if type_name == "InputFile":
            return [] if isinstance(value, UploadedFile) else mismatch
        return self._check_object(type_name, value, path, mismatch)

    def _check_object(
        self, type_name: str, value: object, path: str, mismatch: list[str]
    ) -> list[str]:
        definition = self.types.get(type_name)
        if definition is None:
            return [f"{path}: the spec has no type {type_name}"]
        if not isinstance(value, dict):
            return mismatch
        if definition.subtypes:
            return self._check_subtypes(definition, value, path)
        if not definition.fields:
            return []  # placeholders such as CallbackGame carry no information
        problems = [
            f'{path}: unknown field "{key}" for {type_name}'
            for key in value
            if key not in definition.fields
        ]
        for field in definition.fields.values():
            field_path = f"{path}.{field.name}"
            if field.name not in value:
                if field.required:
                    problems.append(f"{field_path}: required field of {type_name} is missing")
                continue
            problems.extend(self._check(field.types, value[field.name], field_path))
        if definition.constant is not None:
            key, expected = definition.constant
            actual = value.get(key)
            if isinstance(actual, str) and actual != expected:
                problems.append(f'{path}.{key}: {type_name} needs "{expected}", got "{actual}"')
        return problems

    def _check_subtypes(
        self, definition: TypeDef, value: dict[str, object], path: str
    ) -> list[str]:
        for name in definition.subtypes:
            constant = self.types[name].constant
            if constant is not None and value.get(constant[0]) == constant[1]:
                return self._check_one(name, value, path)
        attempts = [self._check_one(name, value, path) for name in definition.subtypes]
        if any(not problems for problems in attempts):
            return []
        keys = sorted({c[0] for n in definition.subtypes if (c := self.types[n].constant)})
        if keys:
            allowed = sorted(c[1] for n in definition.subtypes if (c := self.types[n].constant))
            return [
                f"{path}: {definition.name} needs {keys[0]} in {allowed}, "
                f"got {_describe(value.get(keys[0]))}"
            ]
        return min(attempts, key=len)


@functools.cache
def load_spec(path: Path = SPEC_PATH) -> TelegramSpec:
    """Read and index the spec once per path.

    Raises:
        SpecNotFoundError: the file is missing; tests should skip (see `require_spec`).
    """
    if not path.is_file():
        raise SpecNotFoundError(f"Telegram Bot API spec not found at {path}")
    return TelegramSpec(json.loads(path.read_text(encoding="utf-8")))


def require_spec(path: Path = SPEC_PATH) -> TelegramSpec:
    """The spec, or skip the calling test with a reason that names the missing path."""
    try:
        return load_spec(path)
    except SpecNotFoundError:
        pytest.skip(f"Telegram Bot API spec not found at {path}")


def validate_call(method: str, params: Mapping[str, object]) -> list[str]:
    """`TelegramSpec.validate_call` on the project's spec file."""
    return load_spec().validate_call(method, params)


def validate_object(type_name: str, data: object) -> list[str]:
    """`TelegramSpec.validate_object` on the project's spec file."""
    return load_spec().validate_object(type_name, data)
