"""The event bus seam: the engine publishes each stored push message once; the push hub
(and anything else) subscribes. The in-process bus calls subscribers synchronously, in
publish order, so per-execution order is kept end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec


class PushEvent(msgspec.Struct, frozen=True, gc=False):
    """One encoded push message on its way to connections.

    ``seq`` is the message's position in the execution's stored log (1, 2, ...), or 0 for a
    message that is not logged (``executionRecovered``). ``push_ref`` is the connection the
    run was started from, if any; ``broadcast`` sends to every connection.
    """

    execution_id: str
    seq: int
    type: str
    payload: bytes
    push_ref: str | None = None
    broadcast: bool = False
    owner: str | None = None


Subscriber = Callable[[PushEvent], None]


class EventBus(Protocol):
    async def publish(self, event: PushEvent) -> None:
        """Deliver ``event`` to every subscriber; events of one execution keep their order."""
        ...

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` for every published event; returns the unsubscribe function."""
        ...


class LocalEventBus:
    """In-process bus: ``publish`` calls each subscriber before it returns."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    async def publish(self, event: PushEvent) -> None:
        self.publish_nowait(event)

    def publish_nowait(self, event: PushEvent) -> None:
        for subscriber in self._subscribers:
            subscriber(event)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe
