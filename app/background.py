"""Background tasks owned by a lifespan resource: started with it, cancelled when it closes.

    class Pruner:
        async def __aenter__(self) -> Self:
            self._tasks = Background(log)
            self._tasks.start(every(60.0, self.prune, log=log, what="pruning"), name="pruner")
            return self

        async def __aexit__(self, *exc: object) -> None:
            await self._tasks.aclose()

A task that ends by an exception is logged when it ends (an unawaited task's exception
would otherwise wait, unseen, for whoever awaits it at shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

#: How long a canceled task that awaits a client library (redis-py) gets to end: one was
#: seen to lose a cancel request that came as its call completed.
CANCEL_WAIT_S = 2.0


class Background:
    """The running tasks of one owner; :meth:`aclose` cancels them and waits for them."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self, work: Coroutine[Any, Any, None], *, name: str | None = None
    ) -> asyncio.Task[None]:
        """Run ``work`` as a task until it returns or :meth:`aclose` cancels it."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def __len__(self) -> int:
        """How many of the tasks are still running."""
        return len(self._tasks)

    async def aclose(self, timeout_s: float | None = None) -> None:
        """Cancel every running task and wait until each has ended, or for ``timeout_s`` at
        most (:data:`CANCEL_WAIT_S` where a client library may lose a cancel request)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._log.error("background task %s failed", task.get_name(), exc_info=exc)


async def every(
    interval_s: float,
    turn: Callable[[], Awaitable[object]],
    *,
    log: logging.Logger,
    what: str,
) -> None:
    """Await ``turn()`` now and then every ``interval_s``, forever; a turn that raises is
    logged and the next one comes all the same (a store down now may be up then)."""
    while True:
        try:
            await turn()
        except Exception:
            log.exception("%s failed; next try in %.0f s", what, interval_s)
        await asyncio.sleep(interval_s)
