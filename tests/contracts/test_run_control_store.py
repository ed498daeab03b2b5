"""The store's part of run control (SPEC §10), on every backend: idempotency keys stored with
their run."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.model.records import ExecutionRecord, IdempotencyKey
from app.storage.memory import MemoryStore
from app.storage.sqlite import SqliteStore
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
    opened: list[Any] = []

    async def open_store() -> Any:
        store = BACKENDS[name](tmp_path)
        await store.open()
        opened.append(store)
        return store

    yield open_store
    for store in reversed(opened):
        await store.close()


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
