"""The background tasks of a lifespan resource: started, logged when they fail, cancelled."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.background import Background, every

log = logging.getLogger("test.background")


async def test_aclose_cancels_every_running_task_and_waits_for_it() -> None:
    tasks = Background(log)
    stopped: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(name)

    first = tasks.start(forever("a"), name="a")
    tasks.start(forever("b"))
    await asyncio.sleep(0)
    assert len(tasks) == 2
    async with asyncio.timeout(5):
        await tasks.aclose()
    assert sorted(stopped) == ["a", "b"]
    assert first.cancelled()
    assert len(tasks) == 0


async def test_a_task_that_fails_is_logged_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    tasks = Background(log)

    async def broken() -> None:
        raise RuntimeError("boom")

    async with asyncio.timeout(5):
        task = tasks.start(broken(), name="broken")
        await asyncio.wait([task])
        await asyncio.sleep(0)  # the done callbacks run on the next turn of the loop
    [record] = [r for r in caplog.records if r.name == "test.background"]
    assert record.getMessage() == "background task broken failed"
    assert record.exc_info is not None and str(record.exc_info[1]) == "boom"
    assert len(tasks) == 0
    await tasks.aclose()


async def test_every_goes_on_after_a_turn_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    turns: list[int] = []
    third = asyncio.Event()

    async def turn() -> None:
        turns.append(len(turns))
        if len(turns) == 3:
            third.set()
        if len(turns) == 1:
            raise OSError("store down")

    tasks = Background(log)
    tasks.start(every(0.001, turn, log=log, what="pruning"))
    async with asyncio.timeout(5):
        await third.wait()
    await tasks.aclose()
    assert turns[:3] == [0, 1, 2]
    failed = [r.getMessage() for r in caplog.records if r.name == "test.background"]
    assert failed == ["pruning failed; next try in 0 s"]


async def test_aclose_with_a_timeout_leaves_a_task_that_swallowed_its_cancel() -> None:
    tasks = Background(log)
    release = asyncio.Event()

    async def stubborn() -> None:  # as a client call that lost the cancel request
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()

    task = tasks.start(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await tasks.aclose(timeout_s=0.01)
    assert not task.done()
    assert len(tasks) == 1
    release.set()
    async with asyncio.timeout(5):
        await asyncio.wait([task])
