"""Prometheus text exposition for ``GET /metrics``, and the event loop's lag."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from app.background import Background

log = logging.getLogger("graphpush.metrics")


def prometheus(gauges: Mapping[str, float], counters: Mapping[str, float] | None = None) -> str:
    """``graphpush_``-prefixed series; a counter name may carry labels (``runs{status="x"}``)."""
    lines: list[str] = []
    for kind, series in (("gauge", gauges), ("counter", counters or {})):
        declared: set[str] = set()
        for name, value in series.items():
            base = name.partition("{")[0]
            if base not in declared:
                declared.add(base)
                lines.append(f"# TYPE graphpush_{base} {kind}")
            lines.append(f"graphpush_{name} {value}")
    return "\n".join(lines) + "\n"


class LoopLag:
    """How late the event loop runs a timer: its lag, a gauge of ``/metrics`` (SPEC §10).

    A task sleeps ``interval_s`` again and again; each wake-up later than asked is lag, the
    time a callback held the loop (a blocking call in a node, a long synchronous step).
    Used as ``async with LoopLag():`` by the lifespan, which owns the task."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self._interval_s = interval_s
        self._tasks = Background(log)
        #: The lag of the last wake-up, and the largest since the last :meth:`gauges`.
        self.last_s = 0.0
        self.max_s = 0.0

    async def __aenter__(self) -> LoopLag:
        self._tasks.start(self._measure(), name="loop-lag")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._tasks.aclose()

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            self.last_s = max(0.0, loop.time() - asked)
            self.max_s = max(self.max_s, self.last_s)

    def gauges(self) -> dict[str, float]:
        """The last lag and the largest since the previous call (each scrape sees the worst
        stall of its interval), in seconds."""
        worst, self.max_s = self.max_s, self.last_s
        return {"event_loop_lag_seconds": self.last_s, "event_loop_lag_max_seconds": worst}


class PushPasses:
    """The push passes (``transports.pacer``), for ``/metrics``: how long one pass over the
    connections with something to write takes. Every connection of a pass is written in
    it, one after the other, so a pass's length is how late its last connection gets a
    message: the floor of a fan-out's latency, which grows with the connections
    (bench/README.md, fan-out). :meth:`passed` is the pacer's ``observe``."""

    __slots__ = ("_count", "_seconds", "_writes", "last_s", "max_s")

    def __init__(self) -> None:
        self._count = 0
        self._seconds = 0.0
        self._writes = 0
        #: The last pass's length, and the longest since the last :meth:`gauges`.
        self.last_s = 0.0
        self.max_s = 0.0

    def passed(self, seconds: float, writes: int) -> None:
        """A pass that wrote ``writes`` connections took ``seconds``."""
        self._count += 1
        self._seconds += seconds
        self._writes += writes
        self.last_s = seconds
        self.max_s = max(self.max_s, seconds)

    def gauges(self) -> dict[str, float]:
        """The last pass's length and the longest since the previous call (each scrape sees
        the worst pass of its interval), in seconds."""
        worst, self.max_s = self.max_s, self.last_s
        return {"push_pass_seconds": self.last_s, "push_pass_max_seconds": worst}

    def counters(self) -> dict[str, float]:
        """Passes that wrote, their seconds and the connections they wrote, since start:
        ``rate(seconds) / rate(passes)`` is the mean pass."""
        return {
            "push_passes_total": self._count,
            "push_pass_seconds_total": self._seconds,
            "push_pass_writes_total": self._writes,
        }
