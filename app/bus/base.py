"""The event bus seam: the engine publishes each stored push message once; the push hub
(and anything else) subscribes. The in-process bus calls subscribers synchronously, in
publish order, so per-execution order is kept end to end.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
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
    #: The run's workflow: a connection holding a token scoped to a workflow sees its runs.
    workflow_id: str | None = None


Subscriber = Callable[[PushEvent], None]
#: Called when events may have been missed (a shared bus lost its connection for a while).
Gap = Callable[[], None]

log = logging.getLogger("graphpush.bus")


class EventBus(Protocol):
    async def publish(self, event: PushEvent) -> None:
        """Deliver ``event`` to every subscriber; events of one execution keep their order."""
        ...

    def subscribe(self, subscriber: Subscriber, *, on_gap: Gap | None = None) -> Callable[[], None]:
        """Call ``subscriber`` for every published event, and ``on_gap`` (if given) after the
        bus may have lost some (never, in process); returns the unsubscribe function."""
        ...


class Subscribers:
    """The subscribers of one bus, called in order of subscription."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._gaps: list[Gap] = []

    def deliver(self, event: PushEvent) -> None:
        """Call every subscriber; one that raises is logged and does not stop the others."""
        for subscriber in list(self._subscribers):  # one may unsubscribe while called
            try:
                subscriber(event)
            except Exception:
                log.exception("push subscriber failed on %s", event.type)

    def gap(self) -> None:
        """Tell every subscriber that events may have been missed."""
        for on_gap in list(self._gaps):
            try:
                on_gap()
            except Exception:
                log.exception("push subscriber failed on a gap")

    def subscribe(self, subscriber: Subscriber, on_gap: Gap | None = None) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        gaps = [on_gap] if on_gap is not None else []
        self._gaps.extend(gaps)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
            for gap in gaps:
                if gap in self._gaps:
                    self._gaps.remove(gap)

        return unsubscribe


class LocalEventBus:
    """In-process bus: ``publish`` calls each subscriber before it returns."""

    def __init__(self) -> None:
        self._subscribers = Subscribers()
        #: Called with each event after :meth:`publish` delivered it: what the publisher
        #: waits for, if anything (the app's writers, when a run has more followers than
        #: they can write at once).
        self.pace: Callable[[PushEvent], Awaitable[None] | None] = lambda event: None

    def subscribe(self, subscriber: Subscriber, *, on_gap: Gap | None = None) -> Callable[[], None]:
        return self._subscribers.subscribe(subscriber)  # nothing is ever missed in process

    async def publish(self, event: PushEvent) -> None:
        self._subscribers.deliver(event)
        if (wait := self.pace(event)) is not None:
            await wait

    def publish_nowait(self, event: PushEvent) -> None:
        self._subscribers.deliver(event)
