"""Phone numbers: E.164 via phonenumbers, and the spellings that name one person's number."""

from __future__ import annotations

import phonenumbers

# Mobile prefixes some countries dropped or never used in E.164, which WhatsApp and imported
# lists still mix: Mexico's "+52 1 ..." (dropped in 2019) and Argentina's "+54 9 ..." (the
# mobile marker that E.164 mobile numbers carry but many lists omit). Both spellings are one
# person; treating them as two splits one lead into two records.
_MOBILE_MARKERS = {"52": "1", "54": "9"}
MOBILE_MARKERS = _MOBILE_MARKERS  # for the queries that find one number spelled twice


def to_e164(raw: str, region: str) -> str | None:
    """`raw` in E.164, or None when it is not a plausible phone number.

    `region` (ISO 3166 code such as "MX") applies to numbers written without a country code.
    A legacy spelling that is no longer a possible number ("+52 1 55 ...") comes back in its
    current form ("+52 55 ...").
    """
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    for spelling in spellings(e164):
        if phonenumbers.is_possible_number(phonenumbers.parse(spelling)):
            return spelling
    return None


def spellings(e164: str) -> tuple[str, ...]:
    """Every E.164 spelling of the same line, this one first.

    >>> spellings("+5215512345678")
    ('+5215512345678', '+525512345678')
    """
    for country, marker in _MOBILE_MARKERS.items():
        prefix = "+" + country
        if not e164.startswith(prefix):
            continue
        national = e164[len(prefix) :]
        if national.startswith(marker) and len(national) == 11:
            return (e164, prefix + national[1:])
        if len(national) == 10:
            return (e164, prefix + marker + national)
    return (e164,)


def readable(e164: str) -> str:
    """How a person writes the number: "+52 55 1234 5678"."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
