"""The flush passes of one app's connections.

One loop callback, a *pass*, writes every connection that has something queued: each
connection's backlog goes to its socket in one call, in the same callback as every other
connection's, with no task switch per connection or per write (a connection's task only
wakes when its socket is full, to wait for it to drain, or when the connection ends).

Pacing: under fan-out the writes, not the messages, are what costs (a system call each). A
pass that wrote more than one connection is followed by a pause at least as long as it
took (and :data:`MIN_TURN_S`), in which the engine that publishes runs: the next pass then
sends everything that piled up meanwhile in one write per connection, and writing takes at
most about half of the loop's time. A lone connection (a canvas watching its run) is
written at the next loop iteration, never held back, and so is one whose queue is
:attr:`~app.push.connection.Connection.pressing`.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

#: The shortest pause after a pass that wrote several connections (the latency it may add).
MIN_TURN_S: Final = 0.002


class Writer(Protocol):
    """What a pass writes: one connection's pump."""

    def flush(self) -> bool:
        """Write what is queued if the connection's writer is free; did it write?"""


class Pacer:
    """The passes of one app's writers: :meth:`ready` asks for one, :meth:`leave` forgets a
    writer that is done."""

    def __init__(self) -> None:
        self._ready: dict[Writer, None] = {}  # in the order they became ready
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._soon = False  # the pass asked for runs at the next loop iteration
        self._not_before = 0.0  # the loop time before which a paced pass does not start

    def ready(self, writer: Writer, *, urgent: bool = False) -> None:
        """Write ``writer`` at the next pass; ``urgent``: at the next loop iteration even
        while passes are paced."""
        self._ready[writer] = None
        if self._handle is not None and (self._soon or not urgent):
            return
        loop = asyncio.get_running_loop()
        if self._handle is not None:
            self._handle.cancel()
        if urgent or loop.time() >= self._not_before:
            self._handle, self._soon = loop.call_soon(self._pass), True
        else:
            self._handle, self._soon = loop.call_at(self._not_before, self._pass), False

    def leave(self, writer: Writer) -> None:
        self._ready.pop(writer, None)

    def _pass(self) -> None:
        self._handle = None
        ready, self._ready = self._ready, {}
        loop = asyncio.get_running_loop()
        started = loop.time()
        wrote = 0
        for writer in ready:
            wrote += writer.flush()
        if wrote > 1:
            ended = loop.time()
            self._not_before = ended + max(MIN_TURN_S, ended - started)
