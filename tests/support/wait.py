"""Waiting until something holds, bounded in time: the one polling loop of the suite.

:func:`eventually` is for async tests, :func:`eventually_blocking` for code that runs no event
loop of its own (Playwright's sync API, subprocess servers, uvicorn in a thread). Both call
``probe`` until ``until`` holds for its value, return that value, and fail with an
``AssertionError`` naming the last value once ``within`` seconds have passed; ``what``
(text, or a function called only then, to attach a log) says what was awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")
What = str | Callable[[], str]

#: Seconds between two calls of a probe.
INTERVAL_S = 0.02


class _Patience:
    """A deadline, a test of the probed value, and what to say when the deadline passes."""

    def __init__(self, until: Callable[[Any], object], within: float, what: What) -> None:
        self.until = until
        self.deadline = time.monotonic() + within
        self.within = within
        self.what = what

    def settled(self, value: object) -> bool:
        """True once ``value`` passes; raises once the deadline has passed."""
        if self.until(value):
            return True
        if time.monotonic() > self.deadline:
            what = self.what() if callable(self.what) else self.what
            raise AssertionError(f"{what}: still {value!r} after {self.within} s")
        return False


async def eventually(
    probe: Callable[[], T | Awaitable[T]],
    *,
    until: Callable[[T], object] = bool,
    within: float = 5.0,
    what: What = "condition",
) -> T:
    """The first value of ``probe()`` (awaited when it is awaitable) that ``until`` accepts."""
    patience = _Patience(until, within, what)
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if patience.settled(value):
            return cast(T, value)
        await asyncio.sleep(INTERVAL_S)


def eventually_blocking(
    probe: Callable[[], T],
    *,
    until: Callable[[T], object] = bool,
    within: float = 5.0,
    what: What = "condition",
) -> T:
    """The first value of ``probe()`` that ``until`` accepts, sleeping the thread between calls."""
    patience = _Patience(until, within, what)
    while not patience.settled(value := probe()):
        time.sleep(INTERVAL_S)
    return value
