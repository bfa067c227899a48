"""Keeping the garbage collector off what a serving process holds for good.

A service holds a large heap for its whole life: the trained matcher (hundreds of thousands of
small objects), the scripts, the app. CPython's full collection walks all of it: 130-160 ms
on the 2-core benchmark machine, a pause for every request in flight, and it comes more often
the more requests are in flight (their objects outlive the young collections). `settle` moves
what is alive into the permanent generation (`gc.freeze`), which collections skip: a full one
then takes ~10 ms. `seguibot serve` settles once the service is ready and again after each
change of scripts, first handing back to the collector what was frozen, so the old matcher can
go. Objects made later (each message's) are collected as before.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def settle() -> None:
    """Collect, then keep what is alive now out of every later collection."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.info(
        "heap_settled",
        extra={
            "objects": gc.get_freeze_count(),
            "ms": round((time.perf_counter() - started) * 1000),
        },
    )
