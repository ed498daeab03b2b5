"""The pacer's passes: one loop callback writes every ready connection; a pass that wrote
several connections holds the next one back as long as it took, up to a write's cost per
connection written (so the engine that publishes gets the loop meanwhile), and nothing
else does.

Holding back is checked against a timer, by order, not by measuring time: a pass held back
comes after a timer set for a shorter delay, one that is not comes before it."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.bus.base import PushEvent
from app.metrics import PushPasses
from transports.pacer import BURST, BURST_MESSAGES, MIN_TURN_S, WRITE_S, Pacer

STEP = PushEvent("e1", 2, "nodeExecuteBefore", b"{}")


class Log(list[str]):
    """Which writer a pass flushed, in order, and the timers that went off between."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def append(self, name: str) -> None:
        super().append(name)
        self.changed.set()

    def timer(self, delay_s: float) -> None:
        """Log ``"timer"`` ``delay_s`` from now."""
        asyncio.get_running_loop().call_later(delay_s, self.append, "timer")

    async def settle(self, count: int) -> None:
        async with asyncio.timeout(2):
            while len(self) < count:
                self.changed.clear()
                await self.changed.wait()


class Writer:
    """A connection's pump as a pass sees it: logs its flushes; ``busy_s``: each keeps the
    loop busy that long, as a write does."""

    def __init__(self, log: Log, name: str, busy_s: float = 0.0, *, writes: bool = True) -> None:
        self.log, self.name, self.busy_s, self.writes = log, name, busy_s, writes

    def flush(self) -> bool:
        self.log.append(self.name)
        until = time.monotonic() + self.busy_s
        while time.monotonic() < until:
            pass
        return self.writes


def busy_pass(pacer: Pacer, log: Log, seconds: float, writers: int | None = None) -> int:
    """Ask for a pass that takes ``seconds`` over ``writers`` connections (by default as many
    as it takes for its writes alone to cost ``seconds``); returns how many."""
    count = writers or round(seconds / WRITE_S)
    for i in range(count):
        pacer.ready(Writer(log, f"w{i}", busy_s=seconds / count))
    return count


@pytest.mark.timeout(5)
async def test_one_pass_writes_every_ready_connection_in_the_order_they_became_ready() -> None:
    pacer, log = Pacer(), Log()
    writers = [Writer(log, name) for name in "cab"]
    for writer in writers:
        pacer.ready(writer)
    pacer.ready(writers[0])  # ready again before the pass: written once
    await log.settle(3)
    assert log == ["c", "a", "b"]


@pytest.mark.timeout(5)
async def test_a_pass_over_several_connections_holds_the_next_back_as_long_as_it_took() -> None:
    pacer, log = Pacer(), Log()
    count = busy_pass(pacer, log, 0.1)
    await log.settle(count)
    log.timer(0.05)  # the next pass may not start before 0.1 s from now
    pacer.ready(Writer(log, "c"))
    await log.settle(count + 2)
    assert log[count:] == ["timer", "c"]


@pytest.mark.timeout(5)
async def test_a_pass_that_wrote_what_a_run_published_holds_the_next_back() -> None:
    pacer, log = Pacer(), Log()
    assert pacer.published(STEP) is None  # the in-process bus reports what runs publish
    count = busy_pass(pacer, log, 0.1)
    await log.settle(count)
    log.timer(0.05)
    pacer.ready(Writer(log, "c"))
    await log.settle(count + 2)
    assert log[count:] == ["timer", "c"]


@pytest.mark.timeout(5)
async def test_a_pass_that_wrote_nothing_a_run_published_holds_nothing_back() -> None:
    """Replies to commands, a subscriber's backlog: no run is publishing that a pause would
    give the loop to."""
    pacer, log = Pacer(), Log()
    assert pacer.published(STEP) is None
    pacer.ready(Writer(log, "lone"))  # a pass that takes the published message
    await log.settle(1)
    count = busy_pass(pacer, log, 0.1)
    await log.settle(1 + count)
    log.timer(0.05)
    pacer.ready(Writer(log, "c"))
    await log.settle(1 + count + 2)
    assert log[1 + count :] == ["c", "timer"]


@pytest.mark.timeout(5)
async def test_a_long_pass_over_few_connections_holds_the_next_back_for_its_writes_only() -> None:
    """Large messages (or a core taken away) made the pass long: waiting as long again would
    only make the next pass longer."""
    pacer, log = Pacer(), Log()
    busy_pass(pacer, log, 0.1, writers=2)
    await log.settle(2)
    log.timer(0.05)
    pacer.ready(Writer(log, "c"))
    await log.settle(4)
    assert log[2:] == ["c", "timer"]


@pytest.mark.timeout(5)
async def test_a_lone_connection_is_never_held_back() -> None:
    pacer, log = Pacer(), Log()
    lone = Writer(log, "lone", busy_s=0.1)
    pacer.ready(lone)
    await log.settle(1)
    log.timer(0.05)
    pacer.ready(lone)
    await log.settle(3)
    assert log[1:] == ["lone", "timer"]


@pytest.mark.timeout(5)
async def test_an_urgent_connection_is_written_at_once_while_passes_are_paced() -> None:
    pacer, log = Pacer(), Log()
    count = busy_pass(pacer, log, 0.1)
    await log.settle(count)
    log.timer(0.05)
    pacer.ready(Writer(log, "later"))
    pacer.ready(Writer(log, "pressing"), urgent=True)
    await log.settle(count + 3)
    assert log[count:] == ["later", "pressing", "timer"]


@pytest.mark.timeout(5)
async def test_a_connection_that_left_is_not_written() -> None:
    pacer, log = Pacer(), Log()
    gone, stays = Writer(log, "gone"), Writer(log, "stays")
    pacer.ready(gone)
    pacer.ready(stays)
    pacer.leave(gone)
    log.timer(MIN_TURN_S * 2)
    await log.settle(2)
    assert log == ["stays", "timer"]


@pytest.mark.timeout(5)
async def test_a_publisher_goes_on_while_its_messages_wait_for_few_connections() -> None:
    pacer, log = Pacer(), Log()
    for name in "ab":
        pacer.ready(Writer(log, name))
    assert all(pacer.published(STEP) is None for _ in range(BURST // 2 - 1))


@pytest.mark.timeout(5)
async def test_a_pass_over_very_many_connections_writes_several_messages_to_each() -> None:
    pacer, log = Pacer(), Log()
    for i in range(2 * BURST):
        pacer.ready(Writer(log, f"follower {i}"))
    waits = [pacer.published(STEP) for _ in range(BURST_MESSAGES)]
    assert set(waits[:-1]) == {None} and waits[-1] is not None
    await asyncio.wait_for(waits[-1], 2)
    assert len(log) == 2 * BURST


@pytest.mark.timeout(5)
async def test_a_publisher_waits_for_a_pass_at_once_when_a_burst_is_due() -> None:
    pacer, log = Pacer(), Log()
    count = busy_pass(pacer, log, 0.1)
    await log.settle(count)  # passes are held back for 0.1 s now
    log.timer(0.05)
    followers = BURST // BURST_MESSAGES
    for i in range(followers):
        pacer.ready(Writer(log, f"follower {i}"))
    waits = [pacer.published(STEP) for _ in range(BURST_MESSAGES)]
    assert set(waits[:-1]) == {None} and waits[-1] is not None
    assert pacer.published(STEP) is waits[-1]  # one pass for every publisher that waits
    await asyncio.wait_for(waits[-1], 2)
    assert len(log) == count + followers and "timer" not in log  # not held back
    assert pacer.published(STEP) is None  # counted again from the pass on


@pytest.mark.parametrize("last", ["executionFinished", "executionWaiting"])
@pytest.mark.timeout(5)
async def test_a_run_that_stops_publishing_has_its_rest_written_at_once(last: str) -> None:
    pacer, log = Pacer(), Log()
    count = busy_pass(pacer, log, 0.1)
    await log.settle(count)  # passes are held back for 0.1 s now
    log.timer(0.05)
    pacer.ready(Writer(log, "follower"))
    assert pacer.published(STEP) is None
    assert pacer.published(PushEvent("e1", 3, last, b"{}")) is None  # nothing to wait for
    await log.settle(count + 2)
    assert log[count:] == ["follower", "timer"]


@pytest.mark.timeout(5)
async def test_each_pass_that_wrote_reports_its_length_and_its_connections() -> None:
    passes: list[tuple[float, int]] = []
    pacer, log = Pacer(lambda seconds, writes: passes.append((seconds, writes))), Log()
    pacer.ready(Writer(log, "a", busy_s=0.02))
    pacer.ready(Writer(log, "idle", writes=False))  # nothing queued: not counted as written
    pacer.ready(Writer(log, "b"))
    await log.settle(3)
    pacer.ready(Writer(log, "idle", writes=False))  # a pass that wrote nothing: not reported
    await log.settle(4)
    pacer.ready(Writer(log, "c"))
    await log.settle(5)
    assert [writes for _, writes in passes] == [2, 1]
    assert passes[0][0] >= 0.02 > passes[1][0]


def test_the_push_pass_metrics_count_every_pass_and_keep_the_longest_per_scrape() -> None:
    passes = PushPasses()
    for seconds, writes in ((0.004, 10), (0.030, 1000), (0.002, 3)):
        passes.passed(seconds, writes)
    assert passes.counters() == pytest.approx(
        {"push_passes_total": 3, "push_pass_seconds_total": 0.036, "push_pass_writes_total": 1013}
    )
    assert passes.gauges() == {"push_pass_seconds": 0.002, "push_pass_max_seconds": 0.030}
    assert passes.gauges()["push_pass_max_seconds"] == 0.002  # the worst is per scrape
