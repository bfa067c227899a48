"""What the bot knows: the scripts it answers with, the matcher trained on their examples, and
the follow-up sequences that send some of those scripts.

The application holds one `Understanding`; publishing a new script version replaces what it
holds, atomically and while running, and every conversation after that uses the new one.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.core.errors import ConfigError
from bot.settings import SequenceSettings, SequencesInvalid, check_sequences, read_sequences
from intents import Catalogue, Matcher, NluResult, load_catalogue
from intents.catalogue import DEFAULT_SCRIPTS

log = logging.getLogger(__name__)


class Trained:
    """A catalogue's matcher, trained the first time it is asked for and kept.

    Training takes a second or two; what never matches a message (`seguibot leads import`, a
    service whose live version is not the file it started from) never pays for it.
    """

    def __init__(self, matcher: Matcher | Callable[[], Matcher]) -> None:
        self._train = matcher if callable(matcher) else None
        self._matcher = None if callable(matcher) else matcher
        self._lock = threading.Lock()  # a thread and the event loop may ask at once

    def __call__(self) -> Matcher:
        if self._matcher is None:
            with self._lock:
                if self._matcher is None:
                    assert self._train is not None
                    self._matcher = self._train()
        return self._matcher


@dataclass(frozen=True, slots=True)
class Knowledge:
    """One version of the scripts, the matcher trained on it and its follow-up sequences."""

    catalogue: Catalogue
    trained: Trained
    version: str  # the file it came from, or the published version's number
    sequences: Mapping[str, SequenceSettings]

    @property
    def matcher(self) -> Matcher:
        return self.trained()


class Understanding:
    """The current `Knowledge`: matches messages and gives the scripts' texts.

    Implements the engine's `Understanding` and the renderer's `ScriptBook`.
    """

    def __init__(self, knowledge: Knowledge) -> None:
        self._knowledge = knowledge
        self.on_replaced: Callable[[], None] | None = None  # told after each replacement

    @property
    def current(self) -> Knowledge:
        return self._knowledge

    def replace(self, knowledge: Knowledge) -> None:
        """From now on, answer with `knowledge` (one assignment: no message sees half)."""
        self._knowledge = knowledge
        log.info("nlu_replaced", extra={"version": knowledge.version})
        if self.on_replaced is not None:
            self.on_replaced()

    def match(self, text: str, now: datetime, tz: str | ZoneInfo) -> NluResult:
        return self._knowledge.matcher.match(text, now, tz)

    @property
    def intents(self) -> tuple[str, ...]:
        return self._knowledge.catalogue.intents

    def replies(self, script_id: str) -> tuple[str, ...]:
        return self._knowledge.catalogue.replies(script_id)

    def offered(self, script_id: str) -> tuple[tuple[str, ...], ...]:
        return self._knowledge.catalogue.offered(script_id)

    def booked(self, script_id: str) -> tuple[str | None, ...]:
        return self._knowledge.catalogue.booked(script_id)

    def label(self, intent: str) -> str:
        return self._knowledge.catalogue.label(intent)

    def sequences(self) -> Mapping[str, SequenceSettings]:
        """The follow-up sequences of the version held now."""
        return self._knowledge.sequences


def sequences_of(
    catalogue: Catalogue, factory: Mapping[str, SequenceSettings]
) -> Mapping[str, SequenceSettings]:
    """The sequences a scripts version runs: its own `sequences:`, or, when it has none,
    `factory` (config.yaml's), checked against the version's scripts either way.

    Raises:
        SequencesInvalid: naming the sequence and the step.
    """
    return sequences_in(catalogue.sequences, {*catalogue.scripts, *catalogue.intents}, factory)


def sequences_in(
    own: object, scripts: Set[str], factory: Mapping[str, SequenceSettings]
) -> Mapping[str, SequenceSettings]:
    """`sequences_of` for a version read as plain data: `own`, its `sequences:` (None when it
    has none), and `scripts`, the ids its steps may name.

    Raises:
        SequencesInvalid: naming the sequence and the step.
    """
    sequences = factory if own is None else read_sequences(own)
    check_sequences(sequences, scripts)
    return sequences


def from_file(
    scripts: Path | None, region: str, sequences: Mapping[str, SequenceSettings]
) -> Knowledge:
    """The scripts file (the packaged one by default), its matcher (trained when first used),
    and its sequences (`sequences`, config.yaml's, unless the file has its own).

    Training is deterministic and takes a moment, so the result for one file's content is
    kept: several apps in one process (tests, benchmarks) share it; none depends on it.

    Raises:
        intents.CatalogueError: naming the file, line and problem of a malformed scripts file.
        ConfigError: a sequence that cannot run (naming the sequence and the step).
    """
    path = scripts or DEFAULT_SCRIPTS
    stat = path.stat() if path.exists() else None
    key = (path, stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)
    catalogue = _catalogue(*key)
    try:
        chosen = sequences_of(catalogue, sequences)
    except SequencesInvalid as exc:
        where = path if catalogue.sequences is not None else "config.yaml sequences"
        raise ConfigError(f"{where}: {exc}") from None
    trained = Trained(functools.partial(_matcher, *key, region))
    return Knowledge(catalogue, trained, version=str(path), sequences=chosen)


@functools.lru_cache(maxsize=8)
def _catalogue(path: Path, mtime_ns: int, size: int) -> Catalogue:
    return load_catalogue(path)


@functools.lru_cache(maxsize=8)
def _matcher(path: Path, mtime_ns: int, size: int, region: str) -> Matcher:
    started = time.perf_counter()
    catalogue = _catalogue(path, mtime_ns, size)
    matcher = Matcher.from_catalogue(catalogue, default_region=region)
    log.info(
        "nlu_loaded",
        extra={
            "scripts": str(catalogue.path),
            "intents": len(catalogue.intents),
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return matcher
