"""The flush passes of one app's connections.

One loop callback, a *pass*, writes every connection that has something queued: each
connection's backlog goes to its socket in one call, in the same callback as every other
connection's, with no task switch per connection or per write (a connection's task only
wakes when its socket is full, to wait for it to drain, or when the connection ends).

Pacing: under fan-out the writes, not the messages, are what costs (a system call each). A
pass that wrote more than one connection is followed by a pause as long as it took (at
least :data:`MIN_TURN_S`), in which the engine that publishes runs: the next pass then
sends everything that piled up meanwhile in one write per connection, and writing takes at
most about half of the loop's time. The pause is capped at :data:`WRITE_S` per connection
the pass wrote: what a pass costs beyond its writes is bytes (large messages, a busy
machine that took the core away), which a longer pause does not save; it would only let
the backlog, and so the next pass and the next pause, grow. With a publisher that reports
its messages (:meth:`Pacer.published`, the in-process bus), a pass that wrote none of them
(replies to commands, a subscriber's backlog) is followed by no pause: no run is
publishing that it would give the loop to. A lone connection (a canvas watching its run)
is written at the next loop iteration, never held back, and so is one whose queue is
:attr:`~app.push.connection.Connection.pressing`.

Bursts: a run followed by many connections publishes far faster than they can be sent and
read (62 messages in ~10 ms, to 1,000 sockets). When the messages published since the last
pass, times the connections waiting for the next one, reach :data:`BURST` (and are at
least :data:`BURST_MESSAGES`), the publisher waits (:meth:`Pacer.published`, the
in-process bus's ``pace``) for a pass that runs at once: the run's messages then go out in
bursts that the clients take in stride, a few writes per connection per run, instead of
all at once after it ends. A slow client never holds a pass (its rest waits in its own
task), so it never holds the run either. A run that stops publishing (its
``executionFinished``, or ``executionWaiting`` at a wait node) has a pass run at once:
nothing more is coming that its last messages could share the writes with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, Protocol

from app.bus.base import PushEvent
from app.messages import TERMINAL

#: The shortest pause after a pass that wrote several connections (the latency it may add).
MIN_TURN_S: Final = 0.002
#: The longest pause per connection a pass wrote: about what a pass spends on a connection
#: besides its bytes (the ``send`` system call, 10-17 µs on loopback here, and the Python
#: around it).
WRITE_S: Final = 40e-6
#: How many deliveries (messages published since the last pass, times connections waiting for
#: the next) a publisher may leave unwritten before it waits for the pass...
BURST: Final = 8192
#: ...and how many messages at least: however many connections wait, a pass writes a few
#: messages to each (a write costs the same for one message or ten).
BURST_MESSAGES: Final = 8
#: The messages after which a run publishes nothing more for now.
LAST: Final = frozenset({TERMINAL, "executionWaiting"})


class Writer(Protocol):
    """What a pass writes: one connection's pump."""

    def flush(self) -> bool:
        """Write what is queued if the connection's writer is free; did it write?"""


class Pacer:
    """The passes of one app's writers: :meth:`ready` asks for one, :meth:`leave` forgets a
    writer that is done."""

    def __init__(self, observe: Callable[[float, int], None] | None = None) -> None:
        """``observe(seconds, writes)``: told the length of every pass that wrote, and how
        many connections it wrote (``/metrics``)."""
        self._observe = observe
        self._ready: dict[Writer, None] = {}  # in the order they became ready
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._soon = False  # the pass asked for runs at the next loop iteration
        self._not_before = 0.0  # the loop time before which a paced pass does not start
        self._published = 0  # messages published since the last pass
        self._publisher = False  # does a publisher report its messages?
        self._passed: asyncio.Future[None] | None = None  # done when the next pass has run

    def ready(self, writer: Writer, *, urgent: bool = False) -> None:
        """Write ``writer`` at the next pass; ``urgent``: at the next loop iteration even
        while passes are paced."""
        self._ready[writer] = None
        self._schedule(at_once=urgent)

    def published(self, event: PushEvent) -> asyncio.Future[None] | None:
        """``event`` was published: None, or, once the messages published since the last
        pass would reach :data:`BURST` deliveries (and :data:`BURST_MESSAGES`), a future
        done when the next pass (made to run at once) has written them, for the publisher to
        wait on. So a run followed by many connections does not outrun what they are sent:
        its messages go out in bursts the clients take in stride, not all at once after it
        ends. After a run's :data:`LAST` message the next pass runs at once."""
        self._published += 1
        self._publisher = True
        if self._passed is None:
            if event.type in LAST:
                self._schedule(at_once=True)
                return None
            published = self._published
            if published < BURST_MESSAGES or published * len(self._ready) < BURST:
                return None
            self._passed = asyncio.get_running_loop().create_future()
            self._schedule(at_once=True)
        return self._passed

    def _schedule(self, *, at_once: bool) -> None:
        """Have a pass run: when the pacing allows, or at the next loop iteration."""
        if self._handle is not None and (self._soon or not at_once):
            return
        loop = asyncio.get_running_loop()
        if self._handle is not None:
            self._handle.cancel()
        if at_once or loop.time() >= self._not_before:
            self._handle, self._soon = loop.call_soon(self._pass), True
        else:
            self._handle, self._soon = loop.call_at(self._not_before, self._pass), False

    def leave(self, writer: Writer) -> None:
        self._ready.pop(writer, None)

    def _pass(self) -> None:
        self._handle = None
        published, self._published = self._published, 0
        ready, self._ready = self._ready, {}
        passed, self._passed = self._passed, None
        # Timed by the clock, not loop.time(): uvloop's counts whole milliseconds.
        started = time.perf_counter()
        wrote = 0
        try:
            for writer in ready:
                wrote += writer.flush()
        finally:  # a publisher never waits for a pass that failed
            if passed is not None:
                passed.set_result(None)
        if not wrote:
            return
        took = time.perf_counter() - started
        if self._observe is not None:
            self._observe(took, wrote)
        if wrote > 1 and (published or not self._publisher):
            pause = max(MIN_TURN_S, min(took, wrote * WRITE_S))
            self._not_before = asyncio.get_running_loop().time() + pause
