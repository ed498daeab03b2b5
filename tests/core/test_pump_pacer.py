"""The pacer charges writers for the loop time their writes took, not for waiting on a
socket: a client that stops reading must not hold every other writer back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from app.settings import Settings
from transports.pump import Pumps


async def _next_turn_after(write: Any) -> float:
    """Seconds from a write's end to the pacer's next turn for another writer."""
    loop = asyncio.get_running_loop()
    pumps = Pumps(Settings(load_examples=False))
    pump = pumps.pump()
    await pump.write(write, {"type": "websocket.send", "bytes": b""})
    turned: asyncio.Future[float] = loop.create_future()

    class Other:
        def turn(self) -> None:
            turned.set_result(loop.time())

    start = loop.time()
    pumps.pacer.rest(Other())
    try:
        return await asyncio.wait_for(turned, 2) - start
    finally:
        pump.stop()


@pytest.mark.timeout(5)
async def test_a_write_that_waited_for_the_socket_does_not_delay_the_next_turn() -> None:
    async def drains_slowly(message: Any) -> None:
        await asyncio.sleep(0.3)  # the loop is free meanwhile

    assert await _next_turn_after(drains_slowly) < 0.1


@pytest.mark.timeout(5)
async def test_a_write_that_kept_the_loop_busy_delays_the_next_turn_as_long() -> None:
    async def busy(message: Any) -> None:
        until = time.monotonic() + 0.05
        while time.monotonic() < until:
            pass

    assert await _next_turn_after(busy) >= 0.045
