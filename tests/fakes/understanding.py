"""An intent matcher that understands exactly what a test tells it to.

Tests of conversation logic use it, so that retraining the real matcher (new examples, new
knobs) can never break them: the intent of each text is the test's own statement. Times are
still read by the real resolver, whose rules (`nlu/datetime.md`) are not learned.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from intents.model import NONE, NluResult
from intents.normalize import normalize
from intents.timeexpr import extract_time


class StubUnderstanding:
    def __init__(self, intents: Mapping[str, str]) -> None:
        self.intents = {normalize(text): intent for text, intent in intents.items()}

    def match(self, text: str, now: datetime, tz: str | ZoneInfo) -> NluResult:
        intent = self.intents.get(normalize(text), NONE)
        return NluResult(intent, 0.0 if intent == NONE else 0.99, time=extract_time(text, now, tz))
