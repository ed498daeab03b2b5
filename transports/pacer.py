"""The turns of the writers of one app's connections.

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
from typing import Final, Protocol

#: The shortest pause between two writes of one connection (the latency it may add).
MIN_TURN_S: Final = 0.002


class Writer(Protocol):
    """What the pacer paces: a connection's writer, told when its turn has come."""

    def turn(self) -> None: ...


class Pacer:
    """The turns of one app's writers: each turn starts at least as long after the
    previous one as writing took since then (and :data:`MIN_TURN_S`), so writing takes at
    most about half of the loop's time while the rest goes to the engine and routing."""

    def __init__(self) -> None:
        self._resting: set[Writer] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._spent = 0.0
        #: The writers that wrote in the current window of :data:`MIN_TURN_S`.
        self._writers: set[Writer] = set()
        self._window_end = 0.0

    def spent(self, writer: Writer, seconds: float) -> None:
        """Count a write of ``writer`` and the time it spent writing."""
        self._spent += seconds
        now = time.monotonic()
        if now >= self._window_end:
            self._writers.clear()
            self._window_end = now + MIN_TURN_S
        self._writers.add(writer)

    def crowded(self) -> bool:
        """Did more than one connection write lately? Only then do writers take turns."""
        return len(self._writers) > 1 and time.monotonic() < self._window_end

    def rest(self, writer: Writer) -> None:
        """Call ``writer.turn()`` at the next turn."""
        self._resting.add(writer)
        if self._timer is None:
            delay, self._spent = max(MIN_TURN_S, self._spent), 0.0
            self._timer = asyncio.get_running_loop().call_later(delay, self._turn)

    def leave(self, writer: Writer) -> None:
        self._resting.discard(writer)
        self._writers.discard(writer)

    def _turn(self) -> None:
        self._timer = None
        resting, self._resting = self._resting, set()
        for writer in resting:
            writer.turn()
