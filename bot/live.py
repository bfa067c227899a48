"""Live signals: which things changed, for pages that show them as they happen.

A service says `changed("queue")` or `changed("conversation:12")` after its transaction
commits; a page's event stream waits on the topics it shows and re-reads them from the database
when woken. A signal carries no data, so losing one costs only a moment (streams also look
again every few seconds).

With PostgreSQL, `relay_to` sends every change to the other processes as well (LISTEN/NOTIFY,
`storage/notify.py`), and what they send arrives through `wake`: a page connected to any
process, on any machine, hears of a change made by any other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence

QUEUE = "queue"
SCRIPTS = "scripts"  # a script version was published: load it now, not at the next poll
MATERIALS = "materials"  # a material changed: forget the active ones kept


def conversation(conversation_id: int) -> str:
    return f"conversation:{conversation_id}"


def agent(agent_id: int) -> str:
    return f"agent:{agent_id}"


WEBCHAT = "webchat:"


def webchat(session_id: str) -> str:
    """Something was sent to a web chat session, or the session wrote (its other tabs)."""
    return WEBCHAT + session_id


class Signals:
    """In-process fan-out of change signals to whoever listens."""

    def __init__(self) -> None:
        self._listeners: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._forwards: list[tuple[str, Callable[[str], None]]] = []
        self._relay: Callable[[Sequence[str]], None] | None = None

    def changed(self, *topics: str) -> None:
        """Wake this process's listeners, and the other processes' through the relay."""
        self.wake(topics)
        if self._relay is not None and topics:
            self._relay(topics)

    def wake(self, topics: Iterable[str]) -> None:
        """Wake this process's listeners only (what another process signalled)."""
        for topic in topics:
            for event in self._listeners.get(topic, ()):
                event.set()
            for prefix, forward in self._forwards:
                if topic.startswith(prefix):
                    forward(topic.removeprefix(prefix))

    def relay_to(self, publish: Callable[[Sequence[str]], None] | None) -> None:
        """Send every change to other processes too (None: this process only)."""
        self._relay = publish

    def forward(self, prefix: str, wake: Callable[[str], None]) -> None:
        """Topics that start with `prefix` also call `wake(rest)` (the web chat's own hub)."""
        self._forwards.append((prefix, wake))

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
