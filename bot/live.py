"""Live signals: which things changed, for pages that show them as they happen.

A service says `changed("queue")` or `changed("conversation:12")` after its transaction
commits; a page's event stream waits on the topics it shows and re-reads them from the database
when woken. A signal carries no data, so losing one costs only a moment (streams also look
again every few seconds, which is how a change made by another process shows up).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable, Iterator

QUEUE = "queue"


def conversation(conversation_id: int) -> str:
    return f"conversation:{conversation_id}"


def agent(agent_id: int) -> str:
    return f"agent:{agent_id}"


class Signals:
    """In-process fan-out of change signals to whoever listens."""

    def __init__(self) -> None:
        self._listeners: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def changed(self, *topics: str) -> None:
        for topic in topics:
            for event in self._listeners.get(topic, ()):
                event.set()

    def wake_all(self) -> None:
        """Wake every listener (shutdown: streams end instead of waiting)."""
        for events in list(self._listeners.values()):
            for event in events:
                event.set()

    @contextlib.contextmanager
    def listen(self, topics: Iterable[str]) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        watched = tuple(topics)
        for topic in watched:
            self._listeners[topic].add(event)
        try:
            yield event
        finally:
            for topic in watched:
                self._listeners[topic].discard(event)
                if not self._listeners[topic]:
                    del self._listeners[topic]
