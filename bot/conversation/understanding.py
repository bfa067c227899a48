"""What the bot knows: the scripts it answers with and the matcher trained on their examples.

The application holds one `Understanding`; publishing a new script version replaces what it
holds, atomically and while running, and every conversation after that uses the new one.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from intents import Catalogue, Matcher, NluResult, load_catalogue
from intents.catalogue import DEFAULT_SCRIPTS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Knowledge:
    """One version of the scripts and the matcher trained on it."""

    catalogue: Catalogue
    matcher: Matcher
    version: str  # the file it came from, or the published version's number


class Understanding:
    """The current `Knowledge`: matches messages and gives the scripts' texts.

    Implements the engine's `Understanding` and the renderer's `ScriptBook`.
    """

    def __init__(self, knowledge: Knowledge) -> None:
        self._knowledge = knowledge

    @property
    def current(self) -> Knowledge:
        return self._knowledge

    def replace(self, knowledge: Knowledge) -> None:
        """From now on, answer with `knowledge` (one assignment: no message sees half)."""
        self._knowledge = knowledge
        log.info("nlu_replaced", extra={"version": knowledge.version})

    def match(self, text: str, now: datetime, tz: str | ZoneInfo) -> NluResult:
        return self._knowledge.matcher.match(text, now, tz)

    @property
    def intents(self) -> tuple[str, ...]:
        return self._knowledge.catalogue.intents

    def replies(self, script_id: str) -> tuple[str, ...]:
        return self._knowledge.catalogue.replies(script_id)

    def offered(self, script_id: str) -> tuple[tuple[str, ...], ...]:
        return self._knowledge.catalogue.offered(script_id)

    def label(self, intent: str) -> str:
        return self._knowledge.catalogue.label(intent)


def from_file(scripts: Path | None, region: str) -> Knowledge:
    """The scripts file (the packaged one by default) and a matcher trained on it.

    Training is deterministic and takes a moment, so the result for one file's content is
    kept: several apps in one process (tests, benchmarks) share it; none depends on it.

    Raises:
        intents.CatalogueError: naming the file, line and problem of a malformed scripts file.
    """
    path = scripts or DEFAULT_SCRIPTS
    stat = path.stat() if path.exists() else None
    return _trained(path, stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0, region)


@functools.lru_cache(maxsize=8)
def _trained(path: Path, mtime_ns: int, size: int, region: str) -> Knowledge:
    started = time.perf_counter()
    catalogue = load_catalogue(path)
    matcher = Matcher.from_catalogue(catalogue, default_region=region)
    log.info(
        "nlu_loaded",
        extra={
            "scripts": str(catalogue.path),
            "intents": len(catalogue.intents),
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return Knowledge(catalogue, matcher, version=str(path))
