"""One connection's life, the same for both transports: moving the core's output to the
socket, reading the peer, and ending it however it ends.

:meth:`Pump.run` drives a transport's :class:`Peer`: its writer in the request's task, its
reader in a second one; the first to finish stops the other (a reader that sees the peer
leave, or fails, aborts the connection, which cancels the writer; the writer's end cancels
the reader). The connection is deregistered however it ends, then, unless the peer left,
ended with its close code (WebSocket close frame, end of the SSE body).

The core calls :meth:`Pump.wake` (the ``wakeup`` callback) when it queued bytes or changed
the connection's state; the writer loops on :meth:`Pump.next_batch` and sends each batch
with :meth:`Pump.write` (or :meth:`Pump.write_now`). When the core aborts the connection
(slow consumer, replaced, frame too big, a write that blocked too long), :meth:`wake`
cancels the writer, so a write blocked on a full socket stops at once. Writes are paced by
the app's :class:`~transports.pacer.Pacer`.

:class:`Pumps` is the lifespan-owned side: the pacer every writer of the app shares, and
the server's shutdown, which reaches every open connection through it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Final, Protocol, TypeVar

from starlette.types import Message, Send

from app.push.connection import CloseCode, Connection
from app.push.wire import Outgoing
from app.settings import Settings
from transports.pacer import Pacer

_T = TypeVar("_T")

#: What one write hands the transport at most, besides one message larger than this: a
#: peer that stops reading leaves the transport holding about this much (and its buffer's
#: high-water mark) of its own; everything else it is sent is the bytes all clients share.
CHUNK_BYTES: Final = 256 * 1024


def write_timeout_s(settings: Settings) -> float:
    """How long one write may block before the peer counts as gone (two missed pings)."""
    return max(10.0, 2 * settings.ping_interval_s)


class Peer(Protocol):
    """A transport's side of one connection, driven by :meth:`Pump.run`."""

    async def write(self) -> None:
        """Write every batch of :meth:`Pump.next_batch` until it returns None."""

    async def read(self) -> bool:
        """Read the peer until it leaves (return True) or until reading is over (False)."""

    async def end(self, code: int, reason: str) -> None:
        """End the connection with ``code`` (a peer that left is not ended)."""


class Pumps:
    """The pumps of one app, owned by its lifespan: the pacer their writers share, and
    :meth:`shut_down`, which the server calls when it starts to stop (uvicorn waits for
    open responses before it runs the lifespan's shutdown, and a stream never ends on its
    own)."""

    def __init__(self, settings: Settings) -> None:
        self.pacer = Pacer()
        self.write_timeout_s = write_timeout_s(settings)
        self.stopping = False
        self._running: set[Connection] = set()

    def pump(self) -> Pump:
        """A pump for a new connection: attach the connection, then :meth:`Pump.run` it."""
        return Pump(self)

    def shut_down(self) -> None:
        """Close every running connection once what is queued on it is sent (1001, SSE end),
        and each one that starts from now on at once."""
        self.stopping = True
        for conn in list(self._running):
            conn.close(CloseCode.GOING_AWAY, "server shutting down")

    def add(self, conn: Connection) -> None:
        self._running.add(conn)
        if self.stopping:
            conn.close(CloseCode.GOING_AWAY, "server shutting down")

    def discard(self, conn: Connection) -> None:
        self._running.discard(conn)


class Pump:
    """Wakes a connection's writer, paces and times its writes, and cuts it off when the
    core aborts the connection. Call :meth:`stop` when the writer is done."""

    __slots__ = (
        "_cancel",
        "_cancelled",
        "_conn",
        "_pacer",
        "_poked",
        "_pumps",
        "_ready",
        "_resting",
        "_waiter",
        "_watchdog",
        "_write_started",
        "_wrote",
        "peer_left",
        "write_timeout_s",
    )

    def __init__(self, pumps: Pumps) -> None:
        self.write_timeout_s = pumps.write_timeout_s
        self.peer_left = False
        self._pacer = pumps.pacer
        self._pumps = pumps
        self._cancel: Callable[[], object] | None = None
        self._cancelled = False
        self._conn: Connection | None = None
        self._ready = False  # an asyncio.Event costs ~1 KiB per idle connection
        self._waiter: asyncio.Future[None] | None = None
        self._poked = False
        self._wrote = False
        self._resting = False
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

    async def run(self, peer: Peer, on_close: Callable[[], None]) -> None:
        """The connection's whole life (see the module docstring); ``on_close`` deregisters
        it and runs however it ends. A reader's failure is re-raised after the cleanup."""
        conn = self.conn
        self._pumps.add(conn)
        reader = asyncio.get_running_loop().create_task(self._read(peer))
        try:
            await self._run_writer(peer.write)
        except OSError:  # uvicorn's ClientDisconnected: the peer left mid-write
            self.peer_left = True
        finally:
            reader.cancel()
            self.stop()
            self._pumps.discard(conn)
            on_close()
        with suppress(asyncio.CancelledError):
            await reader
        if not self.peer_left:
            await peer.end(conn.close_code, conn.close_reason)

    async def _read(self, peer: Peer) -> None:
        try:
            left = await peer.read()
        except Exception:
            self.conn.abort(CloseCode.INTERNAL_ERROR, "internal error")
            raise
        if left:
            self.peer_left = True
            self.conn.abort(CloseCode.GOING_AWAY, "client went away")

    async def _run_writer(self, writer: Callable[[], Awaitable[None]]) -> None:
        """Run ``writer`` in this task until it returns or until the core aborts the
        connection, which cancels it. Other cancellations propagate."""
        task = asyncio.current_task()
        assert task is not None
        self._cancel = task.cancel
        try:
            if not self.conn.aborted:
                await writer()
        except asyncio.CancelledError:
            if not self._cancelled or task.uncancel() > 0:
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
        if self._wrote:
            self._wrote = False
            if self._pacer.crowded():
                self._resting = True
                self._pacer.rest(self)
        while True:
            if self._resting and (conn.pressing or not conn.open):
                self._resting = False
                self._pacer.leave(self)
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

    def write_now(self, write: Callable[[_T], int], data: _T) -> int:
        """``write(data)``, a write that never blocks: it writes what the socket takes at once
        and returns how much (of the caller's units); the caller waits for the rest."""
        started = time.monotonic()
        written = write(data)
        if written:
            self._wrote = True
            self._pacer.spent(self, time.monotonic() - started)
        return written

    def stop(self) -> None:
        """Disarm the watchdog and leave the pacer (the writer is done)."""
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
