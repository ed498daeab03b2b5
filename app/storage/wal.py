"""The SQLite store's WAL checkpoints, on a thread of their own with their own connection.

A checkpoint copies the WAL into the database file and fsyncs it: done on the event loop, it
stalled every run for tens of milliseconds whenever the WAL filled. It can fail (a full
disk: the database file cannot grow); the loop then logs it, counts it in
:class:`~app.storage.health.StoreHealth` and tries again at its next tick, so the WAL is
checkpointed again as soon as space returns.

Every :data:`CHECKPOINT_INTERVAL_S` a ``PASSIVE`` checkpoint copies what was committed,
without taking SQLite's write lock, so the loop keeps committing meanwhile. SQLite starts
the WAL over (the next commit writes from its beginning) only after a checkpoint that
copied every frame with no commit landing during it; under sustained load a commit always
lands, and the WAL grew by 25 to 35 KB per run, appending each frame to new blocks of the file
(bench/README.md, *The WAL under sustained load*). So once more than
:data:`WAL_RESTART_BYTES` of it is in use, the checkpointer asks the store to hold its
writes (:meth:`Writer.hold_writes`: they stay staged, their commits wait) and checkpoints
again, a second ``PASSIVE`` one with only the frames committed since the first to copy; it
then releases the store, which commits what piled up at once, and its next commit starts
the WAL over. The hold ends when that checkpoint ends, fails (tried again at the next tick)
or has taken :data:`HOLD_MAX_S`, whichever comes first. That checkpoint takes no lock a
commit waits for (a ``RESTART`` one would take the write lock, and a commit on the loop that
came after the hold ended would wait for it in SQLite's busy handler): a hold that ended
early only leaves the WAL as it was, until the next try.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Protocol

from app.background import Background
from app.storage.health import StoreHealth

log = logging.getLogger(__name__)

#: How often the WAL is checkpointed into the database file (when something was written).
CHECKPOINT_INTERVAL_S = 0.5
#: How much of the WAL may be in use before a checkpoint holds the store's writes so that
#: SQLite can start it over: the WAL file reaches about this plus what one interval
#: commits, and a hold (commits wait for a checkpoint's two ``fdatasync`` calls) comes once
#: per this many bytes committed, about every 2 s at 300 runs/s.
WAL_RESTART_BYTES = 16 * 1024 * 1024
#: The longest the store's writes are held for a checkpoint: commits wait for it, and a
#: checkpoint slower than this (a slow disk) is left to finish on its own.
HOLD_MAX_S = 0.1
#: What a WAL frame adds to its page: its header (sqlite.org/fileformat.html, 4.1).
_FRAME_HEADER = 24


class Checkpointed(NamedTuple):
    """What a checkpoint found: the frames in the WAL, and how many of them are copied."""

    frames: int
    copied: int


class Writer(Protocol):
    """The store whose commits go into the WAL, as the checkpointer holds them."""

    def hold_writes(self) -> None:
        """Write nothing until :meth:`release_writes`: staged writes stay staged."""

    def release_writes(self) -> None:
        """Write again, and commit at once what came due during the hold."""


class WalCheckpointer:
    """Call :meth:`written` after each commit; :meth:`start` in the store's ``open`` and
    :meth:`close` (which truncates the WAL) in its ``close``."""

    def __init__(self, path: str, health: StoreHealth, writer: Writer) -> None:
        self._path = path
        self._health = health
        self._writer = writer
        self._pending = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._db: sqlite3.Connection | None = None
        self._frame_bytes = 0
        self._ticking = Background(log)

    def start(self) -> None:
        self._ticking.start(self._loop(), name="sqlite-checkpoint")

    def written(self) -> None:
        self._pending = True

    async def _loop(self) -> None:
        restart_at = WAL_RESTART_BYTES
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            if self._pending:
                self._pending = False
                done = await self._run("PASSIVE")
                in_use = 0 if done is None else done.frames * self._frame_bytes
                if in_use > restart_at:
                    # Doubled after a hold that could not end in a restart (a disk too slow
                    # for HOLD_MAX_S, or failing), so such a disk is not held at each tick.
                    restarts = await self._run_held()
                    restart_at = WAL_RESTART_BYTES if restarts else 2 * in_use

    async def _run(self, mode: str) -> Checkpointed | None:
        return await self._outcome(self._submit(mode))

    async def _run_held(self) -> bool:
        """A ``PASSIVE`` checkpoint with the writer's writes held, for :data:`HOLD_MAX_S` at
        most; whether it copied every frame within the hold: then the writer's next commit
        starts the WAL over."""
        self._writer.hold_writes()
        checkpoint = self._submit("PASSIVE")
        try:
            done, _ = await asyncio.wait([checkpoint], timeout=HOLD_MAX_S)
        finally:
            self._writer.release_writes()
            held = await self._outcome(checkpoint)
        return bool(done) and held is not None and held.copied == held.frames

    def _submit(self, mode: str) -> asyncio.Future[Checkpointed]:
        return asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint, mode)

    async def _outcome(self, checkpoint: asyncio.Future[Checkpointed]) -> Checkpointed | None:
        """What ``checkpoint`` found; ``None`` if it failed."""
        try:
            done = await checkpoint
        except Exception as exc:  # kept alive whatever failed: the next tick tries again
            self._pending = True
            self._health.checkpoint_failed(exc)
            return None
        self._health.checkpointed()
        return done

    def _checkpoint(self, mode: str) -> Checkpointed:
        """On the checkpoint thread: copy the WAL into the database file."""
        if self._db is None:
            self._db = sqlite3.connect(self._path, isolation_level=None)
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._frame_bytes = page_size + _FRAME_HEADER
        _, frames, copied = self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return Checkpointed(frames, copied)

    async def close(self) -> None:
        if self._ticking:  # started (its loop never ends by itself): stop it, empty the WAL
            await self._ticking.aclose()
            await self._run("TRUNCATE")
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)
