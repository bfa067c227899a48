"""How good a version of the scripts is, before it goes live: warnings on its examples,
leave-one-out accuracy, and the impact on last week's real messages (live vs draft).

Blocking (CPU-bound) functions: the console runs them in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

from bot.conversation.understanding import Knowledge
from intents import NONE
from storage.scripts import Inbound


@dataclass(frozen=True, slots=True)
class Change:
    """A message the draft would understand or answer differently."""

    message: Inbound
    before: str
    after: str
    reply_changed: bool  # same intent, different reply variants


def warnings(knowledge: Knowledge, few: int) -> dict[str, Any]:
    """Examples that, left out, go to another intent; intents with fewer than `few` examples."""
    catalogue = knowledge.catalogue
    thin = [
        (intent, len(catalogue.examples(intent)))
        for intent in catalogue.intents
        if len(catalogue.examples(intent)) < few
    ]
    crossed = [
        {"text": text, "intent": intent, "predicted": predicted}
        for text, intent, predicted in knowledge.matcher.leave_one_out()
        if predicted != intent
    ]
    # Examples that read the same once normalised, in two intents (or twice in one).
    return {"thin": thin, "crossed": crossed, "duplicates": list(catalogue.warnings)}


def accuracy(knowledge: Knowledge) -> float:
    """Share of examples the others classify right (leave-one-out)."""
    rows = knowledge.matcher.leave_one_out()
    return sum(intent == predicted for _, intent, predicted in rows) / max(len(rows), 1)


def accuracy_pair(live: Knowledge, draft: Knowledge) -> tuple[float, float]:
    return accuracy(live), (accuracy(live) if draft is live else accuracy(draft))


def impact(
    live: Knowledge, draft: Knowledge, messages: Sequence[Inbound], tz: ZoneInfo | str
) -> dict[str, Any]:
    """Each message matched again with the live version and the draft: those whose intent or
    reply would change, and how many more (or fewer) would go to `none`."""
    changes: list[Change] = []
    none_before = none_after = 0
    for message in messages:
        now = message.at if message.at.tzinfo else message.at.replace(tzinfo=UTC)
        before = live.matcher.match(message.text, now, tz).intent
        after = draft.matcher.match(message.text, now, tz).intent
        none_before += before == NONE
        none_after += after == NONE
        if before != after:
            changes.append(Change(message, before, after, False))
        elif _replies(live, before) != _replies(draft, after):
            changes.append(Change(message, before, after, True))
    return {
        "changes": changes,
        "total": len(messages),
        "none_before": none_before,
        "none_after": none_after,
    }


def _replies(knowledge: Knowledge, intent: str) -> tuple[str, ...]:
    try:
        return knowledge.catalogue.replies(intent)
    except KeyError:
        return ()
