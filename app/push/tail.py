"""The live tail of one execution: its messages once, in order, read by cursors.

Fan-out by cursor: a message of an execution is appended once to its :class:`Tail`, not
once per connection. Each connection that follows the execution live has a :class:`Lane`
on the tail. A lane is either *idle* (its connection took everything it had, so the next
message opens a :class:`Segment` at the end of the connection's outbox and wakes it) or
*reading* (the segment is open and every later message extends it at no cost). A segment
stops growing when anything else is queued on its connection or when the transport takes
it (:meth:`Segment.close`): then its messages get their ids (the pushRef's next ids, in
the resume buffer as references to the same events, or the execution ``seq`` on a
stream). So per message the work is O(1) per execution, and per connection O(1) per write.

The bound of SPEC §5.3 holds without visiting every reader per message: while a segment is
open nothing else changes its connection's byte count, so the tail's byte offset at which
the connection passes its bound (or a quarter of it, :attr:`Connection.pressing`) is fixed
when the segment opens. Segments within :data:`SCAN_BYTES` of such an offset wait in two
heaps ordered by them, checked after each append; the others are looked at once every
:data:`SCAN_BYTES` the tail grows, which is before any of them can get there.

The tail keeps only what an open segment still needs: a closed segment holds its own
slice, and the resume buffers hold the events themselves. An execution stream's items are
the same for every stream (their ids are the ``seq``): the tail makes each one once, with
its SSE event, when the first stream takes it, and every stream's segment is a slice of
them. Segments that close at the same message with the same start and the same first id
(streams, and pushRefs whose ids agree) take one :class:`~app.push.wire.Shared` list, which
transports lay out once for all of them.
"""

from __future__ import annotations

import heapq
from itertools import count
from typing import TYPE_CHECKING, Final

from app.bus.base import PushEvent
from app.messages import BINARY_TYPES, TERMINAL
from app.push.connection import OVERHEAD_BYTES, CloseCode
from app.push.wire import Outgoing, Shared, stream_item

if TYPE_CHECKING:
    from app.push.buffers import ResumeBuffer
    from app.push.connection import Connection

#: The tail drops what no open segment needs once it holds at least this many messages.
TRIM_AT: Final = 1024
#: How far the tail grows between two looks at the segments far from their offsets.
SCAN_BYTES: Final = 256 * 1024

_order = count()

#: A tail's key: (execution id, None) for subscribers and streams, or (execution id,
#: pushRef) for the connection the run was started from (its messages name it).
TailKey = tuple[str, str | None]


class Lane:
    """One connection following one tail. ``ids`` is the pushRef's resume buffer (ids are
    the pushRef's), or None on an execution stream (ids are the ``seq``). Events with a
    ``seq`` up to ``floor`` are skipped (the subscriber already has them from the log)."""

    __slots__ = ("active", "conn", "floor", "ids", "tail")

    def __init__(self, tail: Tail, conn: Connection, ids: ResumeBuffer | None, floor: int) -> None:
        self.tail = tail
        self.conn = conn
        self.ids = ids
        self.floor = floor
        self.active = True

    def commit(self, start: int, nbytes: int) -> int | None:
        """Give the tail's messages from the absolute index ``start`` on (``nbytes`` counted
        bytes) their ids: the first one, or None when the ids are the ``seq``."""
        if self.ids is None:
            return None
        tail = self.tail
        events = tail.events[start - tail.base :]
        return self.ids.extend(events, tail.now, nbytes - OVERHEAD_BYTES * len(events))


class Segment:
    """A run of a tail's messages queued on one connection, open while it may still grow."""

    __slots__ = ("closed", "cut_at", "items", "lane", "press_at", "start", "start_bytes",
                 "watched")  # fmt: skip

    def __init__(self, lane: Lane, start: int, start_bytes: int) -> None:
        self.lane = lane
        self.start = start
        self.start_bytes = start_bytes
        self.cut_at = self.press_at = 0
        self.watched = False  # in the tail's heaps
        self.closed = False
        self.items: list[Outgoing] = []  # once closed

    def watch(self, cut_at: int, press_at: int) -> None:
        self.cut_at, self.press_at = cut_at, press_at
        self.lane.tail.watch(self)

    @property
    def nbytes(self) -> int:
        """The counted bytes of the segment so far (payloads and bookkeeping)."""
        return self.lane.tail.total - self.start_bytes

    def close(self) -> int:
        """Stop growing: take the messages, give them their ids; returns their bytes."""
        tail, lane = self.lane.tail, self.lane
        nbytes = self.nbytes
        self.closed = True
        tail.opened.discard(self)
        if lane.active:
            tail.idle.append(lane)
        first_id = lane.commit(self.start, nbytes)
        if first_id is None:
            self.items = tail.streamed(self.start)
        else:
            self.items = tail.numbered(self.start, first_id)
        return nbytes

    def outgoing(self) -> list[Outgoing]:
        """The closed segment as the transport's items, each with its id: a
        :class:`~app.push.wire.Shared` list, the same for every connection that took the
        same messages with the same ids."""
        items, self.items = self.items, []  # a closed segment may wait in a heap
        return items


class Tail:
    """The messages of one execution since its oldest open segment, and its lanes."""

    __slots__ = ("_cut", "_ends", "_items", "_press", "_scan_at", "_taken", "_trim_at", "base",
                 "events", "idle", "lanes", "last_seq", "now", "opened")  # fmt: skip

    def __init__(self) -> None:
        self.events: list[PushEvent] = []
        self.base = 0  # the absolute index of events[0]
        self._ends = [0]  # _ends[i]: the counted bytes of every message before events[i]
        self._items: list[Outgoing] = []  # _items[i]: events[i] as a stream's item, if made
        #: What segments closed since the last message took, by (start, first id or None).
        self._taken: dict[tuple[int, int | None], Shared] = {}
        self.last_seq = 0
        self.now = 0.0
        self.lanes: dict[object, Lane] = {}
        self.idle: list[Lane] = []
        self.opened: set[Segment] = set()
        self._cut: list[tuple[int, int, Segment]] = []
        self._press: list[tuple[int, int, Segment]] = []
        self._trim_at = TRIM_AT
        self._scan_at = SCAN_BYTES

    @property
    def total(self) -> int:
        return self._ends[-1]

    def join(self, key: object, conn: Connection, ids: ResumeBuffer | None, floor: int) -> None:
        """Follow live from the next message on (``key``: one lane per reader)."""
        self.leave(key)
        lane = self.lanes[key] = Lane(self, conn, ids, floor)
        self.idle.append(lane)

    def leave(self, key: object) -> None:
        """Stop following; what was queued already stays queued."""
        lane = self.lanes.pop(key, None)
        if lane is not None:
            lane.active = False
            lane.conn.settle()

    def close(self) -> None:
        """The execution is over here: every lane stops (what is queued stays)."""
        for key in list(self.lanes):
            self.leave(key)

    def append(self, event: PushEvent, now: float) -> None:
        """Add ``event`` (a duplicate ``seq`` is dropped) and queue it for every lane."""
        if event.seq:
            if event.seq <= self.last_seq:
                return
            self.last_seq = event.seq
        self.now = now
        if self._taken:
            self._taken.clear()  # a segment closed from now on ends at this message
        index = self.base + len(self.events)
        start_bytes = self.total
        self.events.append(event)
        self._ends.append(start_bytes + len(event.payload) + OVERHEAD_BYTES)
        if self.idle:
            idle, self.idle = self.idle, []
            for lane in idle:
                if lane.active:
                    self._open(lane, event, index, start_bytes)
        if self.total >= self._scan_at:
            self._scan()
        if self._cut:
            self._check()
        if len(self.events) >= self._trim_at:
            self._trim()

    def streamed(self, start: int) -> Shared:
        """The messages from the absolute index ``start`` on as an execution stream's items,
        each made once for every stream (:func:`~app.push.wire.stream_item`), in one list
        for every stream that takes the same ones."""
        shared = self._taken.get((start, None))
        if shared is None:
            items = self._items
            for event in self.events[len(items) :]:
                items.append(stream_item(event.seq, event.payload))
            shared = self._taken[start, None] = Shared(items[start - self.base :])
        return shared

    def numbered(self, start: int, first_id: int) -> Shared:
        """The messages from the absolute index ``start`` on with the ids from ``first_id``
        on, in one list for every connection that takes the same ones with the same ids."""
        shared = self._taken.get((start, first_id))
        if shared is None:
            events = self.events[start - self.base :]
            shared = self._taken[start, first_id] = Shared(
                Outgoing(e.payload, e.type in BINARY_TYPES, i)
                for i, e in enumerate(events, first_id)
            )
        return shared

    def watch(self, segment: Segment) -> None:
        """Cut ``segment``'s connection off once the tail passes ``segment.cut_at`` bytes, and
        wake it once the tail reaches ``segment.press_at``, unless the segment closes first."""
        self.opened.add(segment)
        if min(segment.cut_at, segment.press_at) - self.total < SCAN_BYTES:
            self._heap(segment)

    def _heap(self, segment: Segment) -> None:
        segment.watched = True
        n = next(_order)
        heapq.heappush(self._cut, (segment.cut_at, n, segment))
        heapq.heappush(self._press, (segment.press_at, n, segment))

    def _scan(self) -> None:
        """Put the open segments that may reach an offset before the next scan in the heaps."""
        total = self.total
        self._scan_at = total + SCAN_BYTES
        for segment in self.opened:
            if not segment.watched and min(segment.cut_at, segment.press_at) - total < SCAN_BYTES:
                self._heap(segment)

    def _open(self, lane: Lane, event: PushEvent, index: int, start_bytes: int) -> None:
        if lane.floor:
            if event.seq and event.seq <= lane.floor:  # the subscriber has it from the log
                self.idle.append(lane)
                return
            lane.floor = 0
        if not lane.conn.follow(Segment(lane, index, start_bytes)):
            # a connection on its way out: the pushRef still keeps the message for resume
            self.idle.append(lane)
            lane.commit(index, self.total - start_bytes)

    def _check(self) -> None:
        total = self.total
        cut, press = self._cut, self._press
        while press and (press[0][2].closed or press[0][0] <= total):
            segment = heapq.heappop(press)[2]
            if not segment.closed:
                segment.lane.conn.press()
        while cut and (cut[0][2].closed or cut[0][0] < total):
            segment = heapq.heappop(cut)[2]
            if not segment.closed:
                segment.lane.conn.abort(
                    CloseCode.SLOW_CONSUMER, "slow consumer: outbound buffer full"
                )

    def _trim(self) -> None:
        low = min((s.start for s in self.opened), default=self.base + len(self.events))
        drop = low - self.base
        if drop:
            del self.events[:drop]
            del self._ends[:drop]
            del self._items[:drop]  # its prefix: still events[i] at _items[i]
            self.base = low
        self._trim_at = max(TRIM_AT, 2 * len(self.events))


class Tails(dict[TailKey, Tail]):
    """The tails of one registry."""

    def get_or_make(self, key: TailKey) -> Tail:
        tail = self.get(key)
        if tail is None:
            tail = self[key] = Tail()
        return tail

    def append(self, key: TailKey, event: PushEvent, now: float) -> Tail | None:
        """Append ``event`` to the tail ``key`` if there is one; the tail if ``event`` ended
        it (it is removed then: its owner closes it)."""
        tail = self.get(key)
        if tail is None:
            return None
        tail.append(event, now)
        if event.type != TERMINAL:
            return None
        del self[key]
        return tail

    def sweep(self) -> None:
        """Forget the tails nobody follows."""
        for key, tail in list(self.items()):
            if not tail.lanes:
                del self[key]
