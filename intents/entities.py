"""Contact details a prospect types: phone numbers (E.164) and e-mail addresses."""

from __future__ import annotations

import re

import phonenumbers

# Practical, not RFC 5322: what people type in chats, without trailing punctuation.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# phonenumbers scans every digit run; cap the work on pathological input.
_MAX_CHARS = 2000


def find_phones(text: str, region: str = "MX") -> tuple[str, ...]:
    """Valid phone numbers in `text`, in E.164, first seen first, without repeats.

    Numbers without a country code are read as numbers of `region` (ISO 3166 alpha-2).
    """
    found: dict[str, None] = {}
    for match in phonenumbers.PhoneNumberMatcher(text[:_MAX_CHARS], region.upper()):
        if phonenumbers.is_valid_number(match.number):
            found[phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)] = (
                None
            )
    return tuple(found)


def find_emails(text: str) -> tuple[str, ...]:
    """E-mail addresses in `text`, lower-cased, first seen first, without repeats."""
    return tuple(dict.fromkeys(m.group(0).lower() for m in _EMAIL.finditer(text[:_MAX_CHARS])))
