"""Understanding prospects' messages: intents, times and contact details, in Spanish first.

`match(text, now, tz)` uses the packaged scripts, loaded on first use; build a `Matcher` from
your own `Catalogue` for anything else.
"""

from __future__ import annotations

import threading
from datetime import datetime
from zoneinfo import ZoneInfo

from intents.catalogue import Catalogue, CatalogueError, load_catalogue, parse_catalogue
from intents.matcher import Matcher
from intents.model import NONE, NluResult, TimeMention

__all__ = [
    "NONE",
    "Catalogue",
    "CatalogueError",
    "Matcher",
    "NluResult",
    "TimeMention",
    "default_matcher",
    "load_catalogue",
    "match",
    "parse_catalogue",
]

_lock = threading.Lock()
_default: Matcher | None = None


def default_matcher() -> Matcher:
    """The matcher of the packaged scripts, built once on first use (thread-safe)."""
    global _default  # one lazily built, process-wide matcher is the point
    with _lock:
        if _default is None:
            _default = Matcher.from_catalogue(load_catalogue())
        return _default


def match(text: str, now: datetime, tz: str | ZoneInfo) -> NluResult:
    """Understand one message with the packaged scripts. See `Matcher.match`."""
    return default_matcher().match(text, now, tz)
