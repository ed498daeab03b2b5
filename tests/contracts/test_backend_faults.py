"""The shared backends through faults an operator meets: a Redis restarted without
persistence (every stream, group and key gone), and PostgreSQL connections dropped
(``pg_terminate_backend``). PostgreSQL is the source of truth; Redis is a transport, so
what Redis loses is queued again from PostgreSQL, and a dropped connection is replaced."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from redis.asyncio import Redis

from app.bus.base import PushEvent
from app.bus.pubsub import PubSub
from app.bus.redis import RedisBus
from app.errors import BackendUnavailable
from app.model.records import ExecutionQuery, ExecutionRecord, StoredEvent
from app.model.status import ExecutionStatus
from app.push.size import fit
from app.queue.redis import RedisQueue
from app.storage.postgres import PostgresStore
from support.redis_server import RedisServer, redis_server
from support.scaleout import POSTGRES_URL, fresh_schema
from support.wait import eventually

pytestmark = pytest.mark.timeout(60)
S = ExecutionStatus
_ids = itertools.count()


def record(**fields: Any) -> ExecutionRecord:
    return ExecutionRecord(
        id=f"fault-{next(_ids):05d}", workflow_id="w", workflow_name="w", created_at=1, **fields
    )


@pytest.fixture
def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


@pytest.fixture
async def store(stack: AsyncExitStack) -> PostgresStore:
    return await stack.enter_async_context(PostgresStore(fresh_schema()))


async def queue_on(
    stack: AsyncExitStack, server: RedisServer, store: PostgresStore, prefix: str = "gp"
) -> RedisQueue:
    """A queue of one process (a client of its own) on ``server``."""
    client = Redis.from_url(server.url)
    stack.push_async_callback(client.aclose)
    queue = RedisQueue(client, store=store, prefix=prefix, claim_idle_s=1.0)
    return await stack.enter_async_context(queue)


async def restart_empty(server: RedisServer) -> None:
    server.kill()
    await asyncio.sleep(0.3)  # the processes notice it is gone
    server.start()


# ---- Redis restarted without persistence --------------------------------------------------


async def test_a_run_queued_after_redis_restarted_empty_is_taken(
    server: RedisServer, store: PostgresStore, stack: AsyncExitStack
) -> None:
    api = await queue_on(stack, server, store)
    worker = await queue_on(stack, server, store)
    await restart_empty(server)
    run = record()
    await store.save(run)
    await api.put(run)  # the stream and its group are gone: recreated, not NOGROUP
    taken = await asyncio.wait_for(worker.get(), 10)
    assert taken.id == run.id


async def test_a_waiting_worker_takes_runs_again_after_redis_restarted_empty(
    server: RedisServer, store: PostgresStore, stack: AsyncExitStack
) -> None:
    api = await queue_on(stack, server, store)
    worker = await queue_on(stack, server, store)
    taking = asyncio.ensure_future(worker.get())
    await asyncio.sleep(0.5)  # it is reading (and taking over) when Redis goes
    await restart_empty(server)
    await asyncio.sleep(1.0)
    run = record()
    await store.save(run)
    await api.put(run)
    assert (await asyncio.wait_for(taking, 10)).id == run.id


async def test_runs_postgres_holds_as_new_are_queued_again_when_redis_lost_them(
    server: RedisServer, store: PostgresStore, stack: AsyncExitStack
) -> None:
    api = await queue_on(stack, server, store)
    worker = await queue_on(stack, server, store)
    runs = [record() for _ in range(3)]
    for run in runs:
        await store.save(run)
        await api.put(run)
    await restart_empty(server)
    taken = [await asyncio.wait_for(worker.get(), 10) for _ in runs]
    assert sorted(r.id for r in taken) == sorted(r.id for r in runs)
    for run in taken:
        await worker.done(run.id)


async def test_a_run_stored_while_redis_is_down_is_queued_once_it_is_back(
    server: RedisServer, store: PostgresStore, stack: AsyncExitStack
) -> None:
    api = await queue_on(stack, server, store)
    worker = await queue_on(stack, server, store)
    server.kill()
    run = record()
    await store.save(run)
    await api.put(run)  # Redis is down: PostgreSQL has it, the queue takes it later
    server.start()
    assert (await asyncio.wait_for(worker.get(), 10)).id == run.id


async def test_canceling_a_running_run_while_redis_is_down_asks_to_retry(
    server: RedisServer, store: PostgresStore, stack: AsyncExitStack
) -> None:
    queue = await queue_on(stack, server, store)
    running = record(status=S.RUNNING)
    await store.save(running)
    server.kill()
    with pytest.raises(BackendUnavailable) as refused:  # 503 with Retry-After, not a 500
        await queue.cancel(running)
    assert refused.value.retry_after_s >= 1


async def test_an_instance_hears_of_what_it_missed_while_redis_was_away(
    server: RedisServer, stack: AsyncExitStack
) -> None:
    client = Redis.from_url(server.url)
    stack.push_async_callback(client.aclose)
    pubsub = await stack.enter_async_context(PubSub(client))
    bus = RedisBus(
        client,
        channel="gp:events",
        trim=partial(fit, limit=1 << 20),
        durable=_nothing,
        listen=pubsub,
    )
    await stack.enter_async_context(bus)
    got: list[PushEvent] = []
    gaps: list[int] = []
    bus.subscribe(got.append, on_gap=lambda: gaps.append(1))
    await restart_empty(server)
    await eventually(lambda: gaps == [1], within=10)
    event = PushEvent("e", 1, "executionStarted", b"{}")
    await bus.publish(event)
    await eventually(lambda: got == [event], within=5)


async def _nothing() -> None:
    return None


# ---- PostgreSQL connections dropped ------------------------------------------------------


def terminate(application_name: str) -> int:
    """``pg_terminate_backend`` every connection of ``application_name``; how many."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name=%s",
            (application_name,),
        ).fetchall()
    return len(rows)


async def test_the_store_reconnects_after_its_connections_are_dropped(
    stack: AsyncExitStack,
) -> None:
    name = f"gp-faults-{next(_ids)}"
    url = f"{fresh_schema()}&application_name={name}"
    store = await stack.enter_async_context(PostgresStore(url))
    kept = record()
    await store.save(kept, [StoredEvent(1, "executionStarted", b"{}")])
    assert terminate(name) >= 1
    assert await store.get(kept.id) == kept
    assert [e.seq for e in await store.read_events(kept.id)] == [1]
    assert terminate(name) >= 1
    later = record()
    await store.save(later)  # a commit on a dropped connection is written again
    assert (await store.list(ExecutionQuery(status=S.NEW))).total == 2
