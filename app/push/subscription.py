"""One subscriber's view of one execution: replay from the log, then live, by ``seq``.

Subscribe before reading the log: :class:`Subscription` starts in replay mode and holds
the live events that arrive meanwhile; :meth:`Subscription.replay` merges the logged
events with them in ``seq`` order, dropping duplicates, and switches to live mode. No
event is lost between the log read and the live stream, and none comes twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.bus.base import PushEvent
from app.messages import TERMINAL


class Subscription:
    """``after`` is the last ``seq`` the subscriber already has (0: the whole log)."""

    __slots__ = ("_pending", "done", "last_seq")

    def __init__(self, after: int = 0) -> None:
        self.last_seq = after
        self.done = False
        self._pending: list[PushEvent] | None = []

    @property
    def replaying(self) -> bool:
        return self._pending is not None

    def offer(self, event: PushEvent) -> bool:
        """Should a live ``event`` be emitted now? While replaying it is held instead (and
        emitted by :meth:`replay`); afterwards duplicates and events after the end are not."""
        if self._pending is not None:
            self._pending.append(event)
            return False
        return self._accept(event)

    def replay(self, logged: Iterable[PushEvent]) -> list[PushEvent]:
        """The logged events after ``after``, then the live ones held meanwhile; goes live."""
        pending, self._pending = self._pending or [], None
        return [e for e in (*logged, *pending) if self._accept(e)]

    def _accept(self, event: PushEvent) -> bool:
        if self.done:
            return False
        if event.seq == 0:  # not logged (executionRecovered): nothing to dedupe by
            return True
        if event.seq <= self.last_seq:
            return False
        self.last_seq = event.seq
        self.done = event.type == TERMINAL
        return True
