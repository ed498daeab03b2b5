"""The per-pushRef resume buffer (SPEC §5.4): the last messages sent to a pushRef, by id.

Ids count 1, 2, 3, ... per pushRef and never repeat while the buffer lives. Entries leave
the buffer by count, by age and by total bytes (whichever bound is hit first); a client
whose last id is older than the oldest entry cannot resume and is told so.
"""

from __future__ import annotations

from collections import deque
from itertools import islice

from app.bus import PushEvent


class ResumeBuffer:
    """Bounded by ``max_count`` entries, ``max_age_s`` seconds and ``max_bytes`` of payload."""

    __slots__ = ("_bytes", "_entries", "max_age_s", "max_bytes", "max_count", "next_id")

    def __init__(self, *, max_count: int, max_age_s: float, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.next_id = 1
        self._entries: deque[tuple[int, float, PushEvent]] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def last_id(self) -> int:
        return self.next_id - 1

    def append(self, event: PushEvent, now: float) -> int:
        """Keep ``event`` and return its id."""
        event_id = self.next_id
        self.next_id += 1
        self._entries.append((event_id, now, event))
        self._bytes += len(event.payload)
        self.evict(now)
        return event_id

    def evict(self, now: float) -> None:
        """Drop entries past any bound (the newest entry may stay alone over ``max_bytes``)."""
        entries = self._entries
        while entries and (
            len(entries) > self.max_count
            or now - entries[0][1] > self.max_age_s
            or (self._bytes > self.max_bytes and len(entries) > 1)
        ):
            self._bytes -= len(entries.popleft()[2].payload)

    def after(self, last_id: int, now: float) -> list[tuple[int, PushEvent]] | None:
        """The entries after ``last_id``, or None when the buffer no longer covers that gap
        (or ``last_id`` was never handed out, as after a server restart)."""
        self.evict(now)
        if last_id > self.last_id:
            return None
        first_id = self._entries[0][0] if self._entries else self.next_id
        if last_id + 1 < first_id:
            return None
        start = last_id + 1 - first_id
        return [(event_id, event) for event_id, _, event in islice(self._entries, start, None)]
