"""Moving one core connection's output to its socket (shared by both transports).

The core calls :meth:`Pump.wake` (the ``wakeup`` callback) when it queued bytes or changed
the connection's state; the transport's writer loops on :meth:`Pump.next_batch`. When the
core aborts the connection (slow consumer, replaced, frame too big), :meth:`wake` cancels
the scope the transport registered, so a write blocked on a full socket stops at once.
"""

from __future__ import annotations

import asyncio

import anyio

from app.push.connection import Connection
from app.push.wire import Outgoing
from app.settings import Settings


def write_timeout_s(settings: Settings) -> float:
    """How long one write may block before the peer counts as gone (two missed pings)."""
    return max(10.0, 2 * settings.ping_interval_s)


class Pump:
    """Wakes a connection's writer and cuts it off when the core aborts the connection."""

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._ready = asyncio.Event()
        self.scope: anyio.CancelScope | None = None

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
        self._ready.set()
        if self._conn is not None and self._conn.aborted and self.scope is not None:
            self.scope.cancel()

    async def next_batch(self) -> list[Outgoing] | None:
        """Everything queued, waiting for some if needed; None once closed and flushed."""
        conn = self.conn
        while True:
            batch = conn.data_to_send()
            if batch:
                return batch
            if not conn.open:
                return None
            await self._ready.wait()
            self._ready.clear()
