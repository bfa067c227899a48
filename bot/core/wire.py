"""Reading what arrives over the wire: JSON documents, urlencoded forms, ids. Pure.

Nothing here trusts the input: a body that is not UTF-8, a charset nobody knows, JSON nested
a hundred thousand deep or a number of five thousand digits all end as a 400 with a short
reason, never as a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from bot.core.errors import WebhookRejected

# More fields than any channel posts (Twilio sends about 25, plus 4 per media item).
MAX_FORM_FIELDS = 200
# Database ids are 64-bit; 18 decimal digits always fit.
_ID = re.compile(r"[0-9]{1,18}")


def parse_form(body: bytes) -> dict[str, list[str]]:
    """The fields of an urlencoded body; empty when it is not valid UTF-8 or has too many."""
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError:  # UnicodeDecodeError is one; so is "too many fields"
        return {}
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def parse_json(body: bytes) -> Any:
    """The JSON document in `body`.

    Raises:
        WebhookRejected: 400 when it is not UTF-8 JSON that Python can hold (too deep, a
            number too long to convert).
    """
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError too
        raise WebhookRejected(400, f"invalid JSON: {_short(exc)}") from None


def parse_id(text: str) -> int | None:
    """A database id written in ASCII digits, or None (never an int64 overflow)."""
    return int(text) if _ID.fullmatch(text) else None


def is_id(value: object) -> bool:
    """A database id as JSON gives it: a positive integer that fits in 64 bits."""
    return type(value) is int and 0 < value < 2**63


def _short(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deep"
    return str(exc).split("\n")[0][:120]
