"""An intent matcher that understands exactly what a test tells it to.

Tests of conversation logic use it, so that retraining the real matcher (new examples, new
knobs) can never break them: the intent of each text is the test's own statement. Times are
still read by the real resolver, whose rules (`nlu/datetime.md`) are not learned, and so are
the other entities read by rules (contact details, a position in a list, a name, "ya lo compré").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from intents.entities import find_emails, find_phones, find_position, says_bought
from intents.model import NONE, NluResult
from intents.names import find_name
from intents.normalize import normalize
from intents.timeexpr import extract_time


class StubUnderstanding:
    def __init__(self, intents: Mapping[str, str]) -> None:
        self.intents = {normalize(text): intent for text, intent in intents.items()}

    def match(self, text: str, now: datetime, tz: str | ZoneInfo) -> NluResult:
        normalised = normalize(text)
        intent = self.intents.get(normalised, NONE)
        return NluResult(
            intent,
            0.0 if intent == NONE else 0.99,
            time=extract_time(normalised, now, tz),
            phones=find_phones(text),
            emails=find_emails(text),
            position=find_position(normalised),
            name=find_name(text),
            bought=says_bought(normalised),
        )
