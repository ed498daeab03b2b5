"""The SQLite store's WAL under commits that never pause (``app.storage.wal``): it stays
bounded; a checkpoint holds the store's writes only while it runs, and a commit or a read
issued meanwhile completes after it; a checkpoint that fails or hangs gives the writes back.

Real files in ``tmp_path``; the checkpoint interval and the WAL's limit are made small. A
checkpoint run during a hold can be made to wait at a gate or to fail, on its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.model.records import ExecutionRecord
from app.storage import wal
from app.storage.sqlite import SqliteStore
from app.storage.wal import Checkpointed, WalCheckpointer
from support.wait import eventually

pytestmark = pytest.mark.timeout(60)

#: The WAL's limit here (``wal.WAL_RESTART_BYTES``): 32 frames of 4 KB pages.
LIMIT = 128 * 1024
#: The least a commit adds to the WAL: a frame (a 4 KB page and its header).
FRAME = 4096 + 24


def _record(n: int) -> ExecutionRecord:
    return ExecutionRecord(
        id=f"run-{n}", workflow_id="w", workflow_name="w", created_at=n, input={"n": n}
    )


def _stored(path: Path, execution_id: str) -> bool:
    """Whether the file holds the run (read on a connection of its own: no flush, no hold)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT 1 FROM executions WHERE id=?", (execution_id,)).fetchone()
    return row is not None


class Checkpoints:
    """Counts the checkpoints run, on the checkpoint thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        checkpoint = WalCheckpointer._checkpoint

        def counted(checkpointer: WalCheckpointer, mode: str) -> Checkpointed:
            self.count += 1
            return checkpoint(checkpointer, mode)

        monkeypatch.setattr(WalCheckpointer, "_checkpoint", counted)

    async def next(self) -> None:
        """Wait for the next checkpoint to run."""
        after = self.count
        await eventually(lambda: self.count, until=lambda n: n > after, what="a checkpoint")


class Holds:
    """The checkpoints the store runs during a hold of its writes: each waits at
    :attr:`gate` (open unless closed), then raises :attr:`error` if there is one."""

    def __init__(self, store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        #: Checkpoints run to their end during a hold.
        self.done = 0
        #: The frames in the WAL as the last checkpoint outside a hold found them.
        self.found = 0
        self.gate = threading.Event()
        self.gate.set()
        #: A checkpoint is waiting at the closed gate.
        self.waiting = threading.Event()
        self.error: Exception | None = None
        self._holding = threading.Event()
        hold, release = store.hold_writes, store.release_writes

        def hold_writes() -> None:
            self.count += 1
            self._holding.set()
            hold()

        def release_writes() -> None:
            self._holding.clear()
            release()

        checkpoint = WalCheckpointer._checkpoint

        def held_checkpoint(checkpointer: WalCheckpointer, mode: str) -> Checkpointed:
            if self._holding.is_set():
                self.waiting.set()
                self.gate.wait(timeout=30)
                self.waiting.clear()
                if self.error is not None:
                    raise self.error
                done = checkpoint(checkpointer, mode)
                self.done += 1
                return done
            done = checkpoint(checkpointer, mode)
            self.found = done.frames
            return done

        monkeypatch.setattr(store, "hold_writes", hold_writes)
        monkeypatch.setattr(store, "release_writes", release_writes)
        monkeypatch.setattr(WalCheckpointer, "_checkpoint", held_checkpoint)


class Stream:
    """A task saving runs back to back, each as soon as the one before is committed."""

    def __init__(self, store: SqliteStore) -> None:
        self.saved = 0
        self._store = store
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._store.save(_record(self.saved))
            self.saved += 1

    async def more(self, count: int) -> None:
        """Wait until ``count`` more runs are saved."""
        target = self.saved + count
        await eventually(lambda: self.saved, until=lambda n: n >= target, what="runs saved")

    async def stop(self) -> None:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


@pytest.fixture(autouse=True)
def small_wal(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(wal, "CHECKPOINT_INTERVAL_S", 0.01)
    monkeypatch.setattr(wal, "WAL_RESTART_BYTES", LIMIT)
    monkeypatch.setattr(wal, "HOLD_MAX_S", 30.0)
    yield


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "graphpush.sqlite") as store:
        yield store


async def test_the_wal_stays_bounded_under_commits_that_never_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The WAL file (it never shrinks until ``close``) stays far smaller than what was
    committed: each commit lands during a checkpoint, so without holds SQLite would never
    start the WAL over and the file would hold every frame committed."""
    checkpoints = Checkpoints(monkeypatch)
    path = tmp_path / "graphpush.sqlite"
    async with SqliteStore(path) as store:
        stream = Stream(store)
        # Three hundred checkpoints, whatever the machine's pace: many times the bound below.
        await eventually(lambda: checkpoints.count, until=lambda n: n >= 300, within=30)
        wal_bytes = os.stat(f"{path}-wal").st_size
        await stream.stop()
    committed = stream.saved * FRAME  # at least
    assert committed > 16 * LIMIT
    assert wal_bytes < committed / 2, f"{wal_bytes} bytes of WAL after {stream.saved} commits"


async def test_a_commit_and_a_read_during_a_hold_complete_after_it(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holds = Holds(store, monkeypatch)
    holds.gate.clear()
    stream = Stream(store)
    await eventually(holds.waiting.is_set, what="a checkpoint during a hold")
    saving = asyncio.create_task(store.save(_record(-1)))
    reading = asyncio.create_task(store.get("run--1"))
    await asyncio.sleep(0.05)  # long enough for the commit's flush to come due
    assert not saving.done() and not reading.done()
    assert not _stored(tmp_path / "graphpush.sqlite", "run--1")

    holds.gate.set()
    await saving
    assert await reading is not None
    assert _stored(tmp_path / "graphpush.sqlite", "run--1")
    record = await store.get("run--1")
    assert record is not None and record.input == {"n": -1}
    await stream.more(10)
    await stream.stop()


async def test_a_failing_checkpoint_gives_the_writes_back_and_is_tried_again(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    holds = Holds(store, monkeypatch)
    holds.error = sqlite3.OperationalError("disk I/O error")
    stream = Stream(store)
    await eventually(lambda: store.health.checkpoint_failures, until=lambda n: n >= 3)
    assert holds.count >= 3 and holds.done == 0
    await stream.more(20)
    assert store.health.writable

    holds.error = None
    await eventually(lambda: holds.done, what="a checkpoint during a hold that succeeds")
    await stream.more(20)
    await stream.stop()


async def test_a_checkpoint_that_hangs_holds_the_writes_for_hold_max_s_at_most(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal, "HOLD_MAX_S", 0.05)
    holds = Holds(store, monkeypatch)
    holds.gate.clear()
    stream = Stream(store)
    await eventually(holds.waiting.is_set, what="a checkpoint during a hold")
    await stream.more(20)
    assert holds.waiting.is_set()  # still hanging
    holds.gate.set()
    await stream.stop()


async def test_after_a_hold_cut_short_the_next_waits_for_twice_as_much_wal(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal, "HOLD_MAX_S", 0.05)
    checkpoints = Checkpoints(monkeypatch)
    holds = Holds(store, monkeypatch)
    holds.gate.clear()
    for n in range(2000):  # one commit, many times the limit
        store.stage(_record(n))
    await store.commit()
    await eventually(holds.waiting.is_set, what="a checkpoint during a hold")
    first = holds.found  # the WAL of that hold
    assert first > 4 * LIMIT // FRAME
    await store.save(_record(-1))  # after the hold, cut short
    ran = checkpoints.count
    holds.gate.set()
    await eventually(lambda: checkpoints.count, until=lambda n: n >= ran + 2)  # and save's

    # The next commit starts the WAL over and goes past the limit, not past twice the WAL of
    # that hold: no hold.
    for n in range(1000):
        store.stage(_record(10_000 + n))
    await store.commit()
    await checkpoints.next()
    assert LIMIT // FRAME < holds.found < 2 * first
    await store.save(_record(-2))
    await checkpoints.next()  # run after the decision on the one before
    assert holds.count == 1


async def test_closing_during_a_hold_writes_everything_staged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "graphpush.sqlite"
    store = await SqliteStore(path).__aenter__()
    holds = Holds(store, monkeypatch)
    holds.gate.clear()
    stream = Stream(store)
    await eventually(holds.waiting.is_set, what="a checkpoint during a hold")
    await stream.stop()  # its last run stays staged, as the one below
    store.stage(_record(-1))
    closing = asyncio.create_task(store.close())
    await eventually(lambda: _stored(path, "run--1"), what="written by close")
    holds.gate.set()
    await closing

    async with SqliteStore(path) as reopened:
        assert await reopened.get("run--1") is not None
        assert await reopened.get(f"run-{stream.saved}") is not None
