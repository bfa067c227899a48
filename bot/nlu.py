"""Loading the intent matcher and its scripts once per process."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

from intents import Catalogue, Matcher, load_catalogue

log = logging.getLogger(__name__)


@functools.cache
def load(scripts: Path | None, region: str) -> tuple[Catalogue, Matcher]:
    """The catalogue and a matcher trained from it (cached: training takes a moment).

    Raises:
        intents.CatalogueError: naming the file, line and problem of a malformed scripts file.
    """
    started = time.perf_counter()
    catalogue = load_catalogue(scripts) if scripts else load_catalogue()
    matcher = Matcher.from_catalogue(catalogue, default_region=region)
    log.info(
        "nlu_loaded",
        extra={
            "scripts": str(catalogue.path),
            "intents": len(catalogue.intents),
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return catalogue, matcher
