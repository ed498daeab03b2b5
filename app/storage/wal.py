"""The SQLite store's WAL checkpoints, on a thread of their own with their own connection.

A checkpoint copies the WAL into the database file and fsyncs it: done on the event loop, it
stalled every run for tens of milliseconds whenever the WAL filled. It can fail (a full
disk: the database file cannot grow); the loop then logs it, counts it in
:class:`~app.storage.health.StoreHealth` and tries again at its next tick, so the WAL is
checkpointed again as soon as space returns.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from app.background import Background
from app.storage.health import StoreHealth

log = logging.getLogger(__name__)

#: How often the WAL is checkpointed into the database file (when something was written).
CHECKPOINT_INTERVAL_S = 0.5


class WalCheckpointer:
    """Call :meth:`written` after each commit; :meth:`start` in the store's ``open`` and
    :meth:`close` (which truncates the WAL) in its ``close``."""

    def __init__(self, path: str, health: StoreHealth) -> None:
        self._path = path
        self._health = health
        self._pending = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._db: sqlite3.Connection | None = None
        self._ticking = Background(log)

    def start(self) -> None:
        self._ticking.start(self._loop(), name="sqlite-checkpoint")

    def written(self) -> None:
        self._pending = True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            if self._pending:
                self._pending = False
                await self._run("PASSIVE")

    async def _run(self, mode: str) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint, mode)
        except Exception as exc:  # kept alive whatever failed: the next tick tries again
            self._pending = True
            self._health.checkpoint_failed(exc)
        else:
            self._health.checkpointed()

    def _checkpoint(self, mode: str) -> None:
        """On the checkpoint thread: copy the WAL into the database file."""
        if self._db is None:
            self._db = sqlite3.connect(self._path, isolation_level=None)
        self._db.execute(f"PRAGMA wal_checkpoint({mode})")

    async def close(self) -> None:
        if self._ticking:  # started (its loop never ends by itself): stop it, empty the WAL
            await self._ticking.aclose()
            await self._run("TRUNCATE")
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)
