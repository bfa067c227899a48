from __future__ import annotations

from bot.delivery.dispatcher import backoff
from bot.settings import load_settings


def test_backoff_doubles_with_jitter_and_caps() -> None:
    outbox = load_settings(environ={}).outbox.model_copy(
        update={"backoff_base": 2.0, "backoff_max": 60.0}
    )
    assert backoff(1, outbox, rng=lambda: 0.0) == 1.0  # half the delay is always kept
    assert backoff(1, outbox, rng=lambda: 1.0) == 2.0
    assert backoff(3, outbox, rng=lambda: 1.0) == 8.0
    assert backoff(20, outbox, rng=lambda: 1.0) == 60.0
