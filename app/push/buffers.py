"""The per-pushRef resume buffer (SPEC §5.4): the last messages sent to a pushRef, by id.

Ids count 1, 2, 3, ... per pushRef and never repeat while the buffer lives. Entries leave
the buffer by count, by age and by total bytes (whichever bound is hit first); a client
whose last id is older than the oldest entry cannot resume and is told so.
"""

from __future__ import annotations

from collections import deque
from itertools import islice, repeat

from app.bus.base import PushEvent
from app.settings import Settings

#: The shared stand-ins of a buffer that never held anything (never appended to).
_EMPTY: deque[PushEvent] = deque(maxlen=0)
_NO_TIMES: deque[float] = deque(maxlen=0)


class ResumeBuffer:
    """Bounded by ``max_count`` entries, ``max_age_s`` seconds and ``max_bytes`` of payload.

    Entries are two parallel deques (events, times) and ids are implicit (the oldest entry's
    id + position): the events are the ones every connection shares, a run of them is added
    in one call (:meth:`extend`) when a connection's transport takes it, and no tuple per
    entry is made to be collected.
    The deques (760 bytes each when empty) are made at the first message: most connections
    sit idle.
    """

    __slots__ = ("_bytes", "_events", "_times", "max_age_s", "max_bytes", "max_count", "next_id")

    def __init__(self, *, max_count: int, max_age_s: float, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.next_id = 1
        self._events: deque[PushEvent] = _EMPTY
        self._times: deque[float] = _NO_TIMES
        self._bytes = 0

    @classmethod
    def of(cls, settings: Settings) -> ResumeBuffer:
        """A pushRef's buffer as the settings bound it."""
        return cls(
            max_count=settings.resume_buffer_count,
            max_age_s=settings.resume_buffer_age_s,
            max_bytes=settings.connection_buffer_bytes,
        )

    def __len__(self) -> int:
        return len(self._events)

    @property
    def last_id(self) -> int:
        return self.next_id - 1

    def append(self, event: PushEvent, now: float) -> int:
        """Keep ``event`` and return its id."""
        event_id = self.next_id
        self.next_id += 1
        if self._events is _EMPTY:
            self._events, self._times = deque(), deque()
        self._events.append(event)
        self._times.append(now)
        self._bytes += len(event.payload)
        if (
            len(self._events) > self.max_count
            or self._bytes > self.max_bytes
            or now - self._times[0] > self.max_age_s
        ):
            self.evict(now)
        return event_id

    def extend(self, events: list[PushEvent], now: float, nbytes: int) -> int:
        """Keep ``events`` (``nbytes`` of payload in all) and return the first one's id."""
        first_id = self.next_id
        self.next_id += len(events)
        if self._events is _EMPTY:
            self._events, self._times = deque(), deque()
        self._events.extend(events)
        self._times.extend(repeat(now, len(events)))
        self._bytes += nbytes
        if (
            len(self._events) > self.max_count
            or self._bytes > self.max_bytes
            or now - self._times[0] > self.max_age_s
        ):
            self.evict(now)
        return first_id

    def evict(self, now: float) -> None:
        """Drop entries past any bound (the newest entry may stay alone over ``max_bytes``)."""
        events, times = self._events, self._times
        while events and (
            len(events) > self.max_count
            or now - times[0] > self.max_age_s
            or (self._bytes > self.max_bytes and len(events) > 1)
        ):
            times.popleft()
            self._bytes -= len(events.popleft().payload)

    def after(self, last_id: int, now: float) -> list[tuple[int, PushEvent]] | None:
        """The entries after ``last_id``, or None when the buffer no longer covers that gap
        (or ``last_id`` was never handed out, as after a server restart)."""
        self.evict(now)
        if last_id > self.last_id:
            return None
        first_id = self.next_id - len(self._events)
        if last_id + 1 < first_id:
            return None
        start = last_id + 1 - first_id
        return list(enumerate(islice(self._events, start, None), start=last_id + 1))
