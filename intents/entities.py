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


# An item of a list the bot offered: "la primera", "me quedo con la segunda", "la última",
# "opción 2", "lo primero". Read on normalised text (lower case, no accents, "2da" -> "2 da").
_ORDINALS = {
    "primer": 1,
    "primera": 1,
    "primero": 1,
    "segunda": 2,
    "segundo": 2,
    "tercer": 3,
    "tercera": 3,
    "tercero": 3,
    "cuarta": 4,
    "quinta": 5,
    "ultima": -1,
    "ultimo": -1,
}
_NUMERAL_SUFFIXES = frozenset({"a", "o", "ra", "ro", "da", "do", "er", "era", "ero"})
# What may come before an ordinal ("la segunda", "con la primera", "opcion 2") ...
_BEFORE = frozenset({"la", "el", "lo", "opcion", "numero"})
# ... and after it: nothing, or words that do not make it "la primera vez", "la segunda semana".
_AFTER = frozenset(
    {"opcion", "hora", "horario", "fecha", "que", "de", "por", "favor", "porfa", "plis", "esta",
     "me", "va", "ok", "gracias", "si", "?", "y", "pues", "mejor", "entonces"}
)  # fmt: skip


def find_position(normalised: str) -> int | None:
    """The position of an offered item the message picks (1-based; -1 is the last), or None.

    Conservative: the ordinal needs an article or "opción" before it (or to be the whole
    message), and nothing after it that makes it mean something else ("la primera vez").
    """
    words = normalised.split()
    if len(words) == 1 and words[0].isdigit() and len(words[0]) == 1:
        return int(words[0]) or None  # the whole message is "2"
    for i, word in enumerate(words):
        rest = words[i + 1 :]
        if word in _ORDINALS:
            position = _ORDINALS[word]
        elif word.isdigit() and len(word) == 1 and word != "0":
            position = int(word)
            if rest and rest[0] in _NUMERAL_SUFFIXES:  # "la 2 da", "la 1 ra"
                rest = rest[1:]
            elif i == 0 or words[i - 1] not in ("opcion", "numero", "la"):
                continue  # "el 3" is a day of the month, "a las 3" an hour
        else:
            continue
        alone = i == 0 and not rest
        if (alone or (i > 0 and words[i - 1] in _BEFORE)) and (not rest or rest[0] in _AFTER):
            return position
    return None


# The prospect says they already bought: past tense about buying, paying or signing up, not a
# purchase elsewhere ("ya compré otro curso" is an objection, not a customer).
_BOUGHT = re.compile(
    r"\b(?:ya|acabo de|acabamos de) (?:(?:lo|la|los|las|le|me|nos) )?"
    r"(?:compre|compramos|pague|pagamos|adquiri|contrate|contratamos|liquide|deposite|transferi"
    r"|inscribi|registre|suscribi|comprar|comprarlo|pagar|pagarlo|contratar|contratarlo"
    r"|inscribirme|registrarme|suscribirme)\b"
    r"|\bya (?:hice|realice|mande|envie|hicimos) (?:el|mi|la|nuestro) "
    r"(?:pago|deposito|transferencia|compra)\b"
    r"|\bya (?:soy|somos) (?:cliente|clientes|alumno|alumna|alumnos|miembro|miembros|socio|socia)\b"
)
_ELSEWHERE = re.compile(r"\b(?:otro|otra|otros|otras|competencia|ya no|todavia no|aun no)\b")


def says_bought(normalised: str) -> bool:
    """True when the normalised message says the prospect has already bought from us."""
    return bool(_BOUGHT.search(normalised)) and not _ELSEWHERE.search(normalised)
