"""Moving one core connection's output to its socket (shared by both transports).

The core calls :meth:`Pump.wake` (the ``wakeup`` callback) when it queued bytes or changed
the connection's state; the transport's writer, run by :meth:`Pump.run_writer`, loops on
:meth:`Pump.next_batch` and sends each batch with :meth:`Pump.write`. When the core aborts
the connection (slow consumer, replaced, frame too big, a write that blocked too long),
:meth:`wake` cancels the writer, so a write blocked on a full socket stops at once.

Pacing: a writer that has just written waits for the :class:`Pacer`'s next turn before it
writes again, and then sends everything that piled up meanwhile in one write. Under fan-out
the writes, not the messages, are what costs (a system call and a task switch each): if
every burst of messages woke every writer for one small write, 1,000 writers would keep the
event loop busy and starve the engine that publishes, which then publishes even fewer
messages per write. A quiet connection writes at once; a busy one at most once per turn,
and only while other connections write too: a lone canvas watching its run is never held
back (pacing it only added the turn to its latency).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from starlette.types import Message, Send

from app.push.connection import CloseCode, Connection
from app.push.wire import Outgoing
from app.settings import Settings

_T = TypeVar("_T")

#: The shortest pause between two writes of one connection (the latency it may add).
MIN_TURN_S: Final = 0.002


def write_timeout_s(settings: Settings) -> float:
    """How long one write may block before the peer counts as gone (two missed pings)."""
    return max(10.0, 2 * settings.ping_interval_s)


class Pacer:
    """The turns of one event loop's writers: each turn starts at least as long after the
    previous one as writing took since then (and :data:`MIN_TURN_S`), so writing takes at
    most about half of the loop's time while the rest goes to the engine and routing."""

    def __init__(self) -> None:
        self._resting: set[Pump] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._spent = 0.0
        #: The writers that wrote in the current window of :data:`MIN_TURN_S`.
        self._writers: set[Pump] = set()
        self._window_end = 0.0

    def spent(self, pump: Pump, seconds: float) -> None:
        """Count a write of ``pump`` and the time it spent writing."""
        self._spent += seconds
        now = time.monotonic()
        if now >= self._window_end:
            self._writers.clear()
            self._window_end = now + MIN_TURN_S
        self._writers.add(pump)

    def crowded(self) -> bool:
        """Did more than one connection write lately? Only then do writers take turns."""
        return len(self._writers) > 1 and time.monotonic() < self._window_end

    def rest(self, pump: Pump) -> None:
        """Call ``pump.turn()`` at the next turn."""
        self._resting.add(pump)
        if self._timer is None:
            delay, self._spent = max(MIN_TURN_S, self._spent), 0.0
            self._timer = asyncio.get_running_loop().call_later(delay, self._turn)

    def leave(self, pump: Pump) -> None:
        self._resting.discard(pump)
        self._writers.discard(pump)

    def _turn(self) -> None:
        self._timer = None
        resting, self._resting = self._resting, set()
        for pump in resting:
            pump.turn()


_PACERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pacer] = weakref.WeakKeyDictionary()


def pacer() -> Pacer:
    """The running event loop's :class:`Pacer` (all its connections share it)."""
    loop = asyncio.get_running_loop()
    found = _PACERS.get(loop)
    if found is None:
        found = _PACERS[loop] = Pacer()
    return found


class Pump:
    """Wakes a connection's writer, paces and times its writes, and cuts it off when the
    core aborts the connection. Call :meth:`stop` when the writer is done."""

    __slots__ = (
        "_cancel",
        "_cancelled",
        "_conn",
        "_pacer",
        "_poked",
        "_ready",
        "_resting",
        "_waiter",
        "_watchdog",
        "_write_started",
        "_wrote",
        "write_timeout_s",
    )

    def __init__(self, write_timeout_s: float) -> None:
        self.write_timeout_s = write_timeout_s
        self._cancel: Callable[[], object] | None = None
        self._cancelled = False
        self._conn: Connection | None = None
        self._ready = False  # an asyncio.Event costs ~1 KiB per idle connection
        self._waiter: asyncio.Future[None] | None = None
        self._poked = False
        self._wrote = False
        self._resting = False
        self._pacer: Pacer | None = None
        self._write_started: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "attach() the connection first"
        return self._conn

    def attach(self, conn: Connection) -> Connection:
        """Bind the connection created with ``wakeup=self.wake``; returns it."""
        self._conn = conn
        self.wake()
        return conn

    def wake(self) -> None:
        conn = self._conn
        if not self._resting or conn is None or conn.pressing or not conn.open:
            self._set_ready()
        if conn is not None and conn.aborted and self._cancel is not None:
            cancel, self._cancel = self._cancel, None
            self._cancelled = True
            cancel()

    async def run_writer(self, writer: Callable[[], Awaitable[None]]) -> bool:
        """Run ``writer`` in this task until it returns (True) or until the core aborts the
        connection, which cancels it (False). Other cancellations propagate."""
        task = asyncio.current_task()
        assert task is not None
        self._cancel = task.cancel
        try:
            if self.conn.aborted:
                return False
            await writer()
            return True
        except asyncio.CancelledError:
            if self._cancelled and task.uncancel() == 0:
                return False
            raise
        finally:
            self._cancel = None

    def turn(self) -> None:
        """The pacer's turn: a resting writer may write again."""
        self._resting = False
        self._set_ready()

    def poke(self) -> None:
        """Make :meth:`next_batch` return even with nothing queued (e.g. a ping is due)."""
        self._poked = True
        self._set_ready()

    async def next_batch(self) -> list[Outgoing] | None:
        """Everything queued, waiting for some if needed (``[]`` after :meth:`poke`); None
        once closed and flushed. After a write, waits for the pacer's next turn first,
        unless the queue is :attr:`~app.push.connection.Connection.pressing`."""
        conn = self.conn
        if self._wrote and self._pacer is not None:
            self._wrote = False
            if self._pacer.crowded():
                self._resting = True
                self._pacer.rest(self)
        while True:
            if self._resting and (conn.pressing or not conn.open):
                self._resting = False
                self._pacer.leave(self)  # type: ignore[union-attr]
            if not self._resting:
                batch = conn.data_to_send()
                if batch or self._poked:
                    self._poked = False
                    return batch
                if not conn.open:
                    return None
            if not self._ready:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            self._ready = False

    def _set_ready(self) -> None:
        self._ready = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def write(self, send: Send, message: Message) -> None:
        """``await send(message)``; if it blocks for ``write_timeout_s`` the connection is
        aborted as a slow consumer (which cancels the writer).

        One watchdog timer per connection checks the write in progress, instead of a
        timeout scope around every write: that scope cost more than the write itself."""
        loop = asyncio.get_running_loop()
        if self._pacer is None:
            self._pacer = pacer()
        started = self._write_started = loop.time()
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.write_timeout_s, self._check)
        # A write that waited for the socket to drain gave the loop back meanwhile: charging
        # that wait to the pacer held every writer back as long (seconds, for a client that
        # stopped reading; bench/slow_consumer.py). Only a write that never yielded counts.
        yielded: list[bool] = []
        marker = loop.call_soon(yielded.append, True)
        try:
            await send(message)
        finally:
            marker.cancel()
            self._write_started = None
            self._wrote = True
            self._pacer.spent(self, 0.0 if yielded else loop.time() - started)

    def write_now(self, write: Callable[[_T], bool], data: _T) -> bool:
        """``write(data)``, a write that never blocks: it writes at once and returns True, or
        returns False (nothing written) and the caller falls back to :meth:`write`."""
        if self._pacer is None:
            self._pacer = pacer()
        started = time.monotonic()
        if not write(data):
            return False
        self._wrote = True
        self._pacer.spent(self, time.monotonic() - started)
        return True

    def stop(self) -> None:
        """Disarm the watchdog and leave the pacer (the writer is done)."""
        if self._pacer is not None:
            self._pacer.leave(self)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _check(self) -> None:
        self._watchdog = None
        started = self._write_started
        if started is None:  # not writing: re-armed by the next write
            return
        loop = asyncio.get_running_loop()
        blocked = loop.time() - started
        if blocked >= self.write_timeout_s:
            self.conn.abort(CloseCode.SLOW_CONSUMER, "write timed out")
        else:
            self._watchdog = loop.call_later(self.write_timeout_s - blocked, self._check)
