"""The store's part of run control (SPEC §10), on every backend: idempotency keys stored with
their run, and retention (which runs are past it, and deleting them with all they left)."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.errors import ConcurrencyConflict
from app.model.records import ExecutionRecord, IdempotencyKey, StoredEvent
from app.model.status import ExecutionStatus
from app.storage.memory import MemoryStore
from app.storage.sql_rows import (
    UNFINISHED_BY_KEY_INDEX,
    UNFINISHED_BY_WORKFLOW_INDEX,
    UNFINISHED_TERMS,
    key_runs_sql,
)
from app.storage.sqlite import SqliteStore
from app.storage.sqlite_schema import SCHEMA
from support.scaleout import postgres_store

pytestmark = pytest.mark.timeout(30)

Make = Callable[[Path], Any]
BACKENDS: dict[str, Make] = {
    "memory": lambda _: MemoryStore(),
    "sqlite": lambda d: SqliteStore(d / "graphpush.sqlite"),
    "postgres": lambda d: postgres_store(f"control:{d}"),
}
#: The backends whose data outlives the store object (a restart).
PERSISTENT = ["sqlite", "postgres"]
_ids = itertools.count()


async def _opener(name: str, tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    async with contextlib.AsyncExitStack() as stack:

        async def open_store() -> Any:
            return await stack.enter_async_context(BACKENDS[name](tmp_path))

        yield open_store


@pytest.fixture(params=list(BACKENDS))
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async for open_store in _opener(request.param, tmp_path):
        yield open_store


@pytest.fixture(params=PERSISTENT)
async def reopener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async for open_store in _opener(request.param, tmp_path):
        yield open_store


@pytest.fixture
async def store(opener: Callable[[], Awaitable[Any]]) -> Any:
    return await opener()


def record(**fields: Any) -> ExecutionRecord:
    n = next(_ids)
    values: dict[str, Any] = {
        "id": f"run-{n:04d}",
        "workflow_id": "wf",
        "workflow_name": "Workflow",
        "created_at": 1_700_000_000_000 + n,
    }
    return ExecutionRecord(**{**values, **fields})


def key_of(
    run: ExecutionRecord, name: str = "k", *, at: int = 1_000, owner: str = ""
) -> IdempotencyKey:
    return IdempotencyKey(
        owner=owner,
        key=name,
        fingerprint=f"fp-{run.id}",
        execution_id=run.id,
        created_at=at,
        answer=f'{{"execution_id":"{run.id}"}}'.encode(),
    )


async def test_a_keyed_run_is_stored_with_its_key(store: Any) -> None:
    run = record()
    assert await store.save_keyed(run, key_of(run), live_since=0) is None
    assert (await store.get(run.id)).id == run.id
    assert await store.get_key("", "k", live_since=0) == key_of(run)


async def test_a_live_key_keeps_its_first_run_and_stores_nothing_new(store: Any) -> None:
    first, second = record(), record()
    await store.save_keyed(first, key_of(first), live_since=0)

    found = await store.save_keyed(second, key_of(second), live_since=0)

    assert found == key_of(first)
    assert await store.get(second.id) is None


async def test_an_expired_key_is_taken_by_the_next_run(store: Any) -> None:
    first, second = record(), record()
    await store.save_keyed(first, key_of(first, at=1_000), live_since=0)

    assert await store.get_key("", "k", live_since=1_001) is None
    assert await store.save_keyed(second, key_of(second, at=2_000), live_since=1_001) is None
    assert await store.get_key("", "k", live_since=0) == key_of(second, at=2_000)


async def test_keys_of_two_owners_are_apart(store: Any) -> None:
    first, second = record(), record()
    await store.save_keyed(first, key_of(first, owner="a"), live_since=0)
    assert await store.save_keyed(second, key_of(second, owner="b"), live_since=0) is None


async def test_a_key_survives_reopening_the_store(reopener: Any) -> None:
    run = record()
    store = await reopener()
    await store.save_keyed(run, key_of(run), live_since=0)
    await store.close()
    assert await (await reopener()).get_key("", "k", live_since=0) == key_of(run)


# ---- concurrency keys ----------------------------------------------------------------------


async def test_key_runs_are_the_unfinished_runs_of_a_key_in_its_scope_oldest_first(
    store: Any,
) -> None:
    runs = [
        record(concurrency_key="k", status=S.WAITING),
        record(concurrency_key="k", status=S.SUCCESS),
        record(concurrency_key="k", status=S.NEW),
        record(concurrency_key="k", status=S.RUNNING, owner="alice"),
        record(concurrency_key="other", status=S.NEW),
        record(status=S.NEW),
        record(concurrency_key="k", status=S.CANCELED),
        record(concurrency_key="k", status=S.RUNNING),
    ]
    for run in reversed(runs):  # stored in another order than created
        await store.save(run)

    assert await store.key_runs(("", "k")) == [runs[0].id, runs[2].id, runs[7].id]
    assert await store.key_runs(("alice", "k")) == [runs[3].id]
    assert await store.key_runs(("", "none")) == []


async def test_a_run_stored_alone_is_refused_while_its_key_is_taken(store: Any) -> None:
    done, holder = record(concurrency_key="k", status=S.SUCCESS), record(concurrency_key="k")
    await store.save(done)
    assert await store.save_keyed(holder, None, alone=True) is None
    late = record(concurrency_key="k")

    with pytest.raises(ConcurrencyConflict) as refused:
        await store.save_keyed(late, key_of(late), live_since=0, alone=True)

    assert holder.id in refused.value.details[0]["message"]
    assert await store.get(late.id) is None
    assert await store.get_key("", "k", live_since=0) is None  # the key claimed is undone
    assert await store.save_keyed(record(concurrency_key="j"), None, alone=True) is None


async def _older_file(path: Path, queued: ExecutionRecord, script: str) -> None:
    """A SQLite file holding ``queued``, made older by ``script`` (after its key index goes)."""
    async with SqliteStore(path) as store:
        await store.save(queued)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(f"DROP INDEX executions_key_unfinished; {script}")


async def test_a_sqlite_file_from_before_keys_gains_the_keys_of_its_unfinished_runs(
    tmp_path: Path,
) -> None:
    path, queued = tmp_path / "old.sqlite", record(concurrency_key="k")
    await _older_file(path, queued, "ALTER TABLE executions DROP COLUMN concurrency_key;")
    async with SqliteStore(path) as store:
        assert await store.key_runs(("", "k")) == [queued.id]


async def test_a_sqlite_file_from_before_trades_its_indexes_of_unfinished_runs(
    tmp_path: Path,
) -> None:
    path, queued = tmp_path / "old.sqlite", record(concurrency_key="k")
    older = (UNFINISHED_BY_WORKFLOW_INDEX, UNFINISHED_BY_KEY_INDEX)  # PostgreSQL's, still
    await _older_file(path, queued, "".join(f"CREATE INDEX {index};" for index in older))
    async with SqliteStore(path) as store:
        queued.status = ExecutionStatus.RUNNING
        await store.save(queued)
        assert await store.key_runs(("", "k")) == [queued.id]
        plan = store.db.execute(
            f"EXPLAIN QUERY PLAN {key_runs_sql('?', UNFINISHED_TERMS)}", ("k", "")
        )
        assert "USING INDEX executions_key_unfinished" in plan.fetchall()[0][3]
    with contextlib.closing(sqlite3.connect(path)) as db:
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"executions_unfinished", "executions_unfinished_by_key"}.isdisjoint(indexes)


# ---- retention ---------------------------------------------------------------------------

S = ExecutionStatus
UNFINISHED = [S.NEW, S.RUNNING, S.WAITING]


async def saved(store: Any, status: ExecutionStatus, created_at: int) -> ExecutionRecord:
    run = record(status=status, created_at=created_at)
    await store.save(run, [StoredEvent(1, "executionStarted", b"{}")])
    return run


async def test_retention_by_count_selects_the_oldest_finished_runs(store: Any) -> None:
    runs = [await saved(store, S.SUCCESS, at) for at in (5, 1, 3, 2, 4)]
    oldest = [r.id for r in sorted(runs, key=lambda r: r.created_at)]

    ids = await store.prunable(created_before=0, keep=2, limit=100)

    assert ids == oldest[:3]
    assert await store.prunable(created_before=0, keep=2, limit=2) == oldest[:2]
    assert await store.prunable(created_before=0, keep=None, limit=100) == []


async def test_retention_by_age_selects_runs_created_before_the_cutoff(store: Any) -> None:
    runs = [await saved(store, S.ERROR, at) for at in (10, 20, 30)]
    assert await store.prunable(created_before=25, keep=None, limit=100) == [
        runs[0].id,
        runs[1].id,
    ]
    assert await store.prunable(created_before=25, keep=1, limit=100) == [runs[0].id, runs[1].id]
    assert await store.prunable(created_before=15, keep=1, limit=100) == [runs[0].id, runs[1].id]


async def test_unfinished_runs_are_never_pruned_nor_counted(store: Any) -> None:
    for status in UNFINISHED:
        await saved(store, status, 1)
    done = await saved(store, S.CANCELED, 2)

    assert await store.prunable(created_before=1 << 60, keep=0, limit=100) == [done.id]
    assert await store.prunable(created_before=0, keep=1, limit=100) == []


async def test_deleting_a_run_takes_its_log_and_keys_and_spares_unfinished_runs(
    store: Any,
) -> None:
    done = record(status=S.SUCCESS)
    await store.save_keyed(done, key_of(done), live_since=0)
    await store.save(done, [StoredEvent(1, "executionFinished", b"{}")])
    waiting = await saved(store, S.WAITING, 1)

    assert await store.delete([done.id, waiting.id, "unknown"]) == 1

    assert await store.get(done.id) is None
    assert await store.read_events(done.id) == []
    assert await store.get_key("", "k", live_since=0) is None
    assert (await store.get(waiting.id)).status is S.WAITING
    assert len(await store.read_events(waiting.id)) == 1


async def test_a_pruned_sqlite_database_file_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "graphpush.sqlite"
    payload = b"x" * 4000
    runs = [record(status=S.SUCCESS) for _ in range(300)]
    async with SqliteStore(path) as store:
        for run in runs:
            store.stage(run, [StoredEvent(seq, "nodeExecuteAfterData", payload) for seq in (1, 2)])
        await store.commit()
    full = path.stat().st_size

    async with SqliteStore(path) as store:
        assert await store.delete([run.id for run in runs]) == len(runs)

    assert path.stat().st_size < full / 4, (full, path.stat().st_size)


async def test_an_sqlite_database_made_before_incremental_vacuum_is_converted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "graphpush.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(SCHEMA)  # as an older release made it: auto_vacuum off
        assert old.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    async with SqliteStore(path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
