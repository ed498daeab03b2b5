"""The pacer's passes: one loop callback writes every ready connection; a pass that wrote
several connections holds the next one back as long as it took (so the engine that
publishes gets the loop meanwhile), and nothing else does."""

from __future__ import annotations

import asyncio
import time

import pytest

from transports.pacer import BURST, MIN_TURN_S, Pacer


class Log(list[tuple[str, float]]):
    """Which writer a pass flushed, and when."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed = asyncio.Event()

    def append(self, item: tuple[str, float]) -> None:
        super().append(item)
        self.flushed.set()


class Writer:
    """A connection's pump as a pass sees it: records when it was flushed."""

    def __init__(self, log: Log, name: str, busy_s: float = 0.0) -> None:
        self.log, self.name, self.busy_s = log, name, busy_s

    def flush(self) -> bool:
        self.log.append((self.name, asyncio.get_running_loop().time()))
        until = time.monotonic() + self.busy_s
        while time.monotonic() < until:  # a write that keeps the loop busy
            pass
        return True


async def _settle(log: Log, count: int) -> None:
    async with asyncio.timeout(2):
        while len(log) < count:
            log.flushed.clear()
            await log.flushed.wait()


@pytest.mark.timeout(5)
async def test_one_pass_writes_every_ready_connection_in_the_order_they_became_ready() -> None:
    pacer, log = Pacer(), Log()
    writers = [Writer(log, name) for name in "cab"]
    for writer in writers:
        pacer.ready(writer)
    pacer.ready(writers[0])  # ready again before the pass: written once
    await _settle(log, 3)
    assert [name for name, _ in log] == ["c", "a", "b"]


@pytest.mark.timeout(5)
async def test_a_pass_over_several_connections_holds_the_next_back_as_long_as_it_took() -> None:
    pacer, log = Pacer(), Log()
    pacer.ready(Writer(log, "a", busy_s=0.03))
    pacer.ready(Writer(log, "b", busy_s=0.03))
    await _settle(log, 2)
    ended = asyncio.get_running_loop().time()
    pacer.ready(Writer(log, "c"))
    await _settle(log, 3)
    assert log[2][1] - ended >= 0.055


@pytest.mark.timeout(5)
async def test_a_lone_connection_is_never_held_back() -> None:
    pacer, log = Pacer(), Log()
    lone = Writer(log, "a", busy_s=0.03)
    pacer.ready(lone)
    await _settle(log, 1)
    ended = asyncio.get_running_loop().time()
    pacer.ready(lone)
    await _settle(log, 2)
    assert log[1][1] - ended < 0.02


@pytest.mark.timeout(5)
async def test_an_urgent_connection_is_written_at_once_while_passes_are_paced() -> None:
    pacer, log = Pacer(), Log()
    pacer.ready(Writer(log, "a", busy_s=0.05))
    pacer.ready(Writer(log, "b", busy_s=0.05))
    await _settle(log, 2)
    ended = asyncio.get_running_loop().time()
    pacer.ready(Writer(log, "later"))
    pacer.ready(Writer(log, "pressing"), urgent=True)
    await _settle(log, 4)
    assert [name for name, _ in log[2:]] == ["later", "pressing"]
    assert log[3][1] - ended < 0.03  # not the ~0.1 s the pass would have waited


@pytest.mark.timeout(5)
async def test_a_connection_that_left_is_not_written() -> None:
    pacer, log = Pacer(), Log()
    gone, stays = Writer(log, "gone"), Writer(log, "stays")
    pacer.ready(gone)
    pacer.ready(stays)
    pacer.leave(gone)
    await _settle(log, 1)
    await asyncio.sleep(MIN_TURN_S * 2)
    assert [name for name, _ in log] == ["stays"]


@pytest.mark.timeout(5)
async def test_a_publisher_goes_on_while_its_messages_wait_for_few_connections() -> None:
    pacer, log = Pacer(), Log()
    for name in "ab":
        pacer.ready(Writer(log, name))
    assert all(pacer.published() is None for _ in range(BURST // 2 - 1))


@pytest.mark.timeout(5)
async def test_a_publisher_waits_for_a_pass_at_once_when_a_burst_is_due() -> None:
    pacer, log = Pacer(), Log()
    pacer.ready(Writer(log, "a", busy_s=0.05))
    pacer.ready(Writer(log, "b", busy_s=0.05))
    await _settle(log, 2)  # passes are paced for about 0.1 s now
    ended = asyncio.get_running_loop().time()
    followers = BURST // 4
    for i in range(followers):
        pacer.ready(Writer(log, f"follower {i}"))
    waits = [pacer.published() for _ in range(4)]
    assert waits[:3] == [None, None, None] and waits[3] is not None
    assert pacer.published() is waits[3]  # one pass for every publisher that waits
    await asyncio.wait_for(waits[3], 2)
    assert len(log) == 2 + followers
    assert log[-1][1] - ended < 0.05  # not held back by the pacing
    assert pacer.published() is None  # counted again from the pass on
