"""What the matcher returns: the contract between `intents` and the rest of Seguibot."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time

NONE = "none"


@dataclass(frozen=True, slots=True)
class TimeMention:
    """A time expression as the prospect said it, before or after resolution.

    `day` and `clock` are the parts the message names (either may be missing), so a
    dialogue can complete one message's day with the next message's hour. `when` is
    the resolved moment (timezone-aware, minute precision) or None when the bot must ask.
    """

    day: date | None = None
    clock: time | None = None
    when: datetime | None = None

    @property
    def needs_clarification(self) -> bool:
        return self.when is None


@dataclass(frozen=True, slots=True)
class NluResult:
    """One message understood.

    `intent` is an id from `nlu/intents.md` (or `none`), `confidence` is calibrated in
    [0, 1]. `candidates` are the best intents with their confidences, best first; when
    `ambiguous` is set the two best are too close to tell apart and the bot should ask.

    Besides the time and contact details, rules (not the trained matcher) read: `position`, an
    item of a list the bot offered ("la segunda" 2, "la última" -1); `name`, the name the
    prospect introduces themselves with ("hola, soy Pedro"); `bought`, the prospect says they
    already bought ("ya lo compré", "ya hice el pago"). `normalised` is the message as the
    matcher read it (`intents.normalize`), for rules of the rest of Seguibot that compare
    words with it; empty for a result not read from text (a button).
    """

    intent: str
    confidence: float
    time: TimeMention | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    candidates: tuple[tuple[str, float], ...] = field(default=())
    ambiguous: bool = False
    position: int | None = None
    name: str | None = None
    bought: bool = False
    normalised: str = ""

    @property
    def when(self) -> datetime | None:
        return self.time.when if self.time else None

    @property
    def needs_clarification(self) -> bool:
        """A scheduling message that names no usable moment."""
        return (
            self.intent.startswith("schedule.")
            and self.when is None
            and (self.intent != "schedule.cancel")
        )
