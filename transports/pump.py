"""One connection's life, the same for both transports: moving the core's output to the
socket, reading the peer, and ending it however it ends.

:meth:`Pump.run` drives a transport's :class:`Peer`: its writer in the request's task, its
reader in a second one; the first to finish stops the other (a reader that sees the peer
leave, or fails, aborts the connection, which cancels the writer; the writer's end cancels
the reader). The connection is deregistered however it ends, then, unless the peer left,
ended with its close code (WebSocket close frame, end of the SSE body).

The core calls :meth:`Pump.wake` (the ``wakeup`` callback) when it queued bytes or changed
the connection's state; the pump then asks the app's :class:`~transports.pacer.Pacer` for
a pass, which takes what is queued (:meth:`Pump.flush`) and writes it with the peer's
:data:`Flush`, a write that never waits, while the writer's task sleeps in
:meth:`Pump.next_batch`. That task only wakes for what a pass could not do: the rest of a
batch the socket did not take (it waits for the socket to drain with :meth:`Pump.write`,
then writes it), every batch of a peer that has no such write (another server), and the
end. When the core aborts the connection (slow consumer, replaced, frame too big, a write
that blocked too long), :meth:`wake` cancels the writer, so a write blocked on a full
socket stops at once.

:class:`Pumps` is the lifespan-owned side: the pacer every writer of the app shares, and
the server's shutdown, which reaches every open connection through it.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Final, Literal, Protocol

from starlette.types import Message, Send

from app.push.connection import CloseCode, Connection
from app.push.wire import Outgoing
from app.settings import Settings
from transports.pacer import Pacer

#: What one write hands the transport at most, besides one message larger than this: a
#: peer that stops reading leaves the transport holding about this much (and its buffer's
#: high-water mark) of its own; everything else it is sent is the bytes all clients share.
CHUNK_BYTES: Final = 256 * 1024


def write_timeout_s(settings: Settings) -> float:
    """How long one write may block before the peer counts as gone (two missed pings)."""
    return max(10.0, 2 * settings.ping_interval_s)


#: A peer's write that never waits: it writes a batch while the socket takes it and returns
#: True, or returns False once the socket is full, keeping the rest, which its writer writes
#: once :meth:`Pump.next_batch` returns (waiting for the socket to drain first).
Flush = Callable[[list[Outgoing]], bool]


class _Nothing(enum.Enum):
    NOTHING = enum.auto()


NOTHING: Final = _Nothing.NOTHING


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

    def __init__(
        self, settings: Settings, observe: Callable[[float, int], None] | None = None
    ) -> None:
        """``observe``: the :class:`~transports.pacer.Pacer`'s, told each pass's length."""
        self.pacer = Pacer(observe)
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
    """Hands a connection's queue to the pacer's passes, wakes its writer for what they
    cannot write, and cuts it off when the core aborts the connection. Call :meth:`stop`
    when the writer is done."""

    __slots__ = (
        "_cancel",
        "_cancelled",
        "_conn",
        "_direct",
        "_handed",
        "_pacer",
        "_poked",
        "_pumps",
        "_waiter",
        "_watchdog",
        "_write_started",
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
        self._direct: Flush | None = None
        #: What the next :meth:`next_batch` returns: a batch, None (the end) or a failure.
        self._handed: list[Outgoing] | BaseException | Literal[_Nothing.NOTHING] | None = NOTHING
        self._waiter: asyncio.Future[None] | None = None
        self._poked = False
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
        if conn is None:
            return
        if conn.aborted:
            if self._cancel is not None:
                cancel, self._cancel = self._cancel, None
                self._cancelled = True
                cancel()
            return
        self._pacer.ready(self, urgent=conn.pressing)

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

    def poke(self) -> None:
        """Have the next pass write even with nothing queued (e.g. a ping is due)."""
        self._poked = True
        self._pacer.ready(self)

    async def next_batch(self, direct: Flush | None = None) -> list[Outgoing] | None:
        """What the writer must write itself, waiting for it; None once the connection is
        closed and flushed. With ``direct``, the passes write every batch with it, and this
        returns ``[]`` when the writer must write the rest ``direct`` kept, or must write
        after :meth:`poke` with nothing queued; without, it returns every batch."""
        self._direct = direct
        self._pacer.ready(self)  # what was queued meanwhile goes at the next pass
        while self._handed is NOTHING:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        handed, self._handed = self._handed, NOTHING
        if isinstance(handed, BaseException):
            raise handed
        return handed

    def flush(self) -> bool:
        """The pass's part (:class:`~transports.pacer.Writer`): if the writer waits in
        :meth:`next_batch`, take what is queued and write it, or hand it what it must write
        itself. Did it write?"""
        if self._waiter is None or self._handed is not NOTHING:
            return False  # starting, or writing a rest: next_batch asks for a pass again
        conn = self.conn
        batch = conn.data_to_send()
        poked, self._poked = self._poked, False
        direct = self._direct
        if direct is None or not batch:
            if batch or poked:
                self._hand(batch)
            elif not conn.open:
                self._hand(None)
            return False
        try:
            if not direct(batch):
                self._hand([])
        except Exception as exc:  # uvicorn's ClientDisconnected among them: the task's end
            self._hand(exc)
            return False
        if not conn.open:
            self._pacer.ready(self)  # the end, once nothing more is queued
        return True

    def _hand(self, handed: list[Outgoing] | BaseException | None) -> None:
        self._handed = handed
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def write(self, send: Send, message: Message) -> None:
        """``await send(message)``; if it blocks for ``write_timeout_s`` the connection is
        aborted as a slow consumer (which cancels the writer).

        One watchdog timer per connection checks the write in progress, instead of a
        timeout scope around every write: that scope cost more than the write itself."""
        loop = asyncio.get_running_loop()
        self._write_started = loop.time()
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.write_timeout_s, self._check)
        try:
            await send(message)
        finally:
            self._write_started = None

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
