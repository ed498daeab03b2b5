"""The event bus and execution queue contracts, against the in-process backends and Redis;
then what only the shared backends promise (exactly-one claim, take-over of a stopped
process's runs, cancel routed to the holder, the size rule at the Redis hop)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.bus.base import EventBus, LocalEventBus, PushEvent
from app.bus.pubsub import PubSub
from app.bus.redis import RedisBus
from app.clock import now_ms
from app.model.records import ExecutionRecord
from app.model.status import ExecutionStatus
from app.push.hub import PushHub
from app.push.size import fit
from app.queue.base import ExecutionQueue, LocalQueue
from app.queue.redis import RedisQueue
from app.queue.restore import Restorer
from app.settings import Settings
from app.storage.memory import MemoryStore
from app.storage.postgres import PostgresStore
from support.push import FakeService
from support.scaleout import REDIS_URL, fresh_prefix, fresh_schema
from support.tcp_proxy import TcpProxy, tcp_proxy
from support.wait import eventually

pytestmark = pytest.mark.timeout(30)
S = ExecutionStatus
_ids = itertools.count()


def record(**fields: Any) -> ExecutionRecord:
    return ExecutionRecord(
        id=f"run-{next(_ids):05d}", workflow_id="w", workflow_name="w", created_at=1, **fields
    )


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    fresh_prefix()  # skips (fails on CI) when Redis does not answer
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def store() -> AsyncIterator[PostgresStore]:
    async with PostgresStore(fresh_schema()) as store:
        yield store


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def redis_bus(
    stack: AsyncExitStack,
    client: Redis,
    channel: str,
    *,
    limit: int = 5 << 20,
    durable: Callable[[], Awaitable[None]] | None = None,
) -> RedisBus:
    """A listening bus on ``channel`` with a pub/sub connection of its own (one process's)."""
    pubsub = await stack.enter_async_context(PubSub(client))
    bus = RedisBus(
        client,
        channel=channel,
        trim=partial(fit, limit=limit),
        durable=durable or _nothing,
        listen=pubsub,
    )
    return await stack.enter_async_context(bus)


async def _nothing() -> None:
    return None


# ---- the bus contract --------------------------------------------------------------------

BusFactory = Callable[..., Awaitable[EventBus]]


@pytest.fixture(params=["local", "redis"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Makes buses of one kind sharing one channel, as the processes of a deployment do."""
    if request.param == "local":
        local = LocalEventBus()

        async def make_local(**_: Any) -> EventBus:
            return local

        yield make_local
        return
    prefix = fresh_prefix()
    client = Redis.from_url(REDIS_URL)
    async with AsyncExitStack() as stack:

        async def make_redis() -> EventBus:
            return await redis_bus(stack, client, f"{prefix}:events")

        yield make_redis
    await client.aclose()


def event(execution_id: str, seq: int, payload: bytes = b"{}") -> PushEvent:
    return PushEvent(execution_id, seq, "nodeExecuteBefore", payload)


async def test_every_subscriber_gets_each_event_once_in_publish_order(make_bus: BusFactory) -> None:
    publisher, other = await make_bus(), await make_bus()
    got_here: list[PushEvent] = []
    got_there: list[PushEvent] = []
    publisher.subscribe(got_here.append)
    other.subscribe(got_there.append)
    sent = [event(f"e{i % 3}", i // 3 + 1) for i in range(300)]  # three runs, interleaved
    for e in sent:
        await publisher.publish(e)
    await eventually(lambda: len(got_here) >= 300 and len(got_there) >= 300)
    await asyncio.sleep(0.05)  # nothing more comes
    assert got_here == sent
    assert got_there == sent


async def test_an_unsubscribed_subscriber_gets_nothing_more(make_bus: BusFactory) -> None:
    bus = await make_bus()
    kept: list[PushEvent] = []
    dropped: list[PushEvent] = []
    bus.subscribe(kept.append)
    unsubscribe = bus.subscribe(dropped.append)
    await bus.publish(event("a", 1))
    await eventually(lambda: len(dropped) == 1)
    unsubscribe()
    unsubscribe()  # idempotent
    await bus.publish(event("a", 2))
    await eventually(lambda: len(kept) == 2)
    assert [e.seq for e in dropped] == [1]


# ---- what the Redis bus adds -------------------------------------------------------------


async def test_the_redis_bus_publishes_only_what_the_store_has_committed(
    redis: Redis, stack: AsyncExitStack
) -> None:
    committed = asyncio.Event()

    async def durable() -> None:
        await committed.wait()

    bus = await redis_bus(stack, redis, f"{fresh_prefix()}:events", limit=1000, durable=durable)
    got: list[PushEvent] = []
    bus.subscribe(got.append)
    await bus.publish(event("a", 1))
    await asyncio.sleep(0.2)
    assert got == []
    committed.set()
    await eventually(lambda: len(got) == 1)


async def test_the_redis_bus_trims_an_oversized_message_before_the_hop(
    redis: Redis, stack: AsyncExitStack
) -> None:
    bus = await redis_bus(stack, redis, f"{fresh_prefix()}:events", limit=2000)
    got: list[PushEvent] = []
    bus.subscribe(got.append)
    item = {"json": {"blob": "x" * 5000}, "pairedItem": {"item": 0}}
    message = {"type": "nodeExecuteAfterData", "data": {"data": {"data": {"main": [[item]]}}}}
    big = PushEvent("a", 1, "nodeExecuteAfterData", msgspec.json.encode(message))
    await bus.publish(big)
    await eventually(lambda: len(got) == 1)
    assert len(got[0].payload) <= 2000
    assert b"__isTrimmedManualExecutionDataItem" in got[0].payload


async def test_an_instance_buffers_only_the_push_refs_it_holds() -> None:
    hub = PushHub(settings=Settings(), service=FakeService(LocalEventBus()))
    held = hub.connect("held-here", None, None, lambda: None)
    on_event = hub.shared.on_event
    on_event(PushEvent("e1", 1, "executionStarted", b"{}", push_ref="held-here"))
    on_event(PushEvent("e2", 1, "executionStarted", b"{}", push_ref="held-elsewhere"))
    assert [frame.event_id for frame in held.data_to_send()] == [1]
    assert set(hub.registry.sessions) == {"held-here"}  # no buffer for another's pushRef
    hub.disconnect(held)


# ---- the queue contract ------------------------------------------------------------------

QueueFactory = Callable[[], Awaitable[ExecutionQueue]]


@pytest.fixture(params=["local", "redis"])
async def queued(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[QueueFactory, Callable[[ExecutionRecord], Awaitable[None]]]]:
    """(make a queue sharing the others' runs, store a new run) for one kind of queue."""
    if request.param == "local":
        local = LocalQueue(100, store=MemoryStore())

        async def make_local() -> ExecutionQueue:
            return local

        async def keep(record: ExecutionRecord) -> None:
            return None

        yield make_local, keep
        return
    prefix = fresh_prefix()
    client = Redis.from_url(REDIS_URL)
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(PostgresStore(fresh_schema()))

        async def make_redis() -> ExecutionQueue:
            queue = RedisQueue(client, store=store, prefix=prefix, claim_idle_s=1.0)
            return await stack.enter_async_context(queue)

        yield make_redis, store.save
    await client.aclose()


async def test_runs_come_out_first_in_first_out(queued: Any) -> None:
    make, keep = queued
    queue = await make()
    runs = [record() for _ in range(5)]
    for run in runs:
        await keep(run)
        await queue.put(run)
    assert queue.qsize() == 5
    got = [await asyncio.wait_for(queue.get(), 5) for _ in runs]
    assert [r.id for r in got] == [r.id for r in runs]
    assert all(r.status is S.NEW for r in got)  # as queued; the worker moves it on
    for run in got:
        await queue.done(run.id)
    await eventually(lambda: queue.qsize() == 0)


async def test_get_waits_while_nothing_is_queued(queued: Any) -> None:
    make, keep = queued
    queue = await make()
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0.3)
    assert not waiting.done()
    run = record()
    await keep(run)
    await queue.put(run)
    assert (await asyncio.wait_for(waiting, 5)).id == run.id


async def test_each_run_goes_to_exactly_one_taker(queued: Any) -> None:
    make, keep = queued
    first, second = await make(), await make()
    runs = [record() for _ in range(20)]
    for run in runs:
        await keep(run)
        await first.put(run)
    takers = [asyncio.ensure_future(q.get()) for q in (first, second) for _ in range(15)]
    await eventually(lambda: sum(t.done() for t in takers) == 20)
    await asyncio.sleep(0.3)  # no run comes twice
    taken = [t.result().id for t in takers if t.done()]
    for t in takers:
        t.cancel()
    await asyncio.gather(*takers, return_exceptions=True)
    assert sorted(taken) == sorted(r.id for r in runs)


# ---- what the Redis queue adds -----------------------------------------------------------


@pytest.fixture
async def cluster_queues(
    redis: Redis, store: PostgresStore, stack: AsyncExitStack
) -> Callable[..., Awaitable[RedisQueue]]:
    """Makes queues of one deployment, each a process's; ``cancel`` gets the cancel requests
    for the runs it holds (``app/backends.py`` wires its workers' ``cancel`` the same way)."""
    prefix = fresh_prefix()

    async def make(cancel: Callable[[str], object] | None = None) -> RedisQueue:
        queue = RedisQueue(redis, store=store, prefix=prefix, claim_idle_s=1.0)
        await stack.enter_async_context(queue)
        if cancel is not None:
            pubsub = await stack.enter_async_context(PubSub(redis))
            await pubsub.subscribe(queue.control, lambda data: cancel(data.decode()))
        return queue

    return make


async def test_a_taken_run_is_running_in_the_store(
    store: PostgresStore, cluster_queues: Any
) -> None:
    queue = await cluster_queues()
    run = record()
    await store.save(run)
    await queue.put(run)
    await asyncio.wait_for(queue.get(), 5)
    stored = await store.get(run.id)
    assert stored is not None and stored.status is S.RUNNING


async def test_a_run_canceled_while_queued_is_never_handed_out(
    store: PostgresStore, cluster_queues: Any
) -> None:
    queue = await cluster_queues()
    canceled, kept = record(), record()
    for run in (canceled, kept):
        await store.save(run)
        await queue.put(run)
    assert await queue.cancel(canceled) is True  # nobody held it: the caller ends it
    assert (await asyncio.wait_for(queue.get(), 5)).id == kept.id
    stored = await store.get(canceled.id)
    assert stored is not None and stored.status is S.CANCELED


async def test_cancel_of_a_running_run_reaches_the_process_holding_it(
    store: PostgresStore, cluster_queues: Any
) -> None:
    asked: list[str] = []
    holder = await cluster_queues(cancel=lambda eid: asked.append(eid) or True)
    api = await cluster_queues()
    run = record()
    await store.save(run)
    await api.put(run)
    await asyncio.wait_for(holder.get(), 5)
    running = await store.get(run.id)
    assert running is not None
    assert await api.cancel(running) is False  # its holder ends it
    await eventually(lambda: asked == [run.id])


async def test_a_stopped_holders_running_run_is_handed_to_another_process_to_end(
    store: PostgresStore, cluster_queues: Any
) -> None:
    doomed = await cluster_queues()
    survivor = await cluster_queues()
    run = record()
    await store.save(run)
    await doomed.put(run)
    await asyncio.wait_for(doomed.get(), 5)
    await doomed.aclose()  # stops heartbeating, as a killed process does
    taken = await asyncio.wait_for(survivor.get(), 6)
    assert taken.id == run.id and taken.status is S.RUNNING  # as stored: to end crashed
    await survivor.done(run.id)
    assert await survivor._redis.xlen(survivor._runs.key) == 0


async def test_a_run_a_stopped_process_never_started_runs_elsewhere(
    redis: Redis, store: PostgresStore, cluster_queues: Any
) -> None:
    survivor = await cluster_queues()
    run = record()
    await store.save(run)
    await survivor.put(run)
    stream = survivor._runs.key
    # A process reads the entry and dies before claiming it.
    await redis.xreadgroup("workers", "dead-process", {stream: ">"}, count=1)
    taken = await asyncio.wait_for(survivor.get(), 6)
    assert taken.id == run.id


async def test_the_depth_is_shared_by_every_process(
    store: PostgresStore, cluster_queues: Any
) -> None:
    api, other = await cluster_queues(), await cluster_queues()
    for _ in range(3):
        run = record()
        await store.save(run)
        await api.put(run)
    assert api.qsize() == 3
    await eventually(lambda: other.qsize() == 3, within=3)


# ---- queuing again what Redis lost (app/queue/restore.py) ----------------------------------


class CutWhileReading:
    """A sweep's store whose first read of a run takes the sweep's Redis connection away, as
    a Redis restart in the middle of a sweep does."""

    def __init__(self, store: PostgresStore, proxy: TcpProxy) -> None:
        self._store, self._proxy, self._cut = store, proxy, False

    async def new_run_ids(self, created_before: int) -> list[str]:
        return await self._store.new_run_ids(created_before)

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        if not self._cut:
            self._cut = True
            self._proxy.cut()
        return await self._store.get(execution_id)


@pytest.fixture
async def cut_off() -> AsyncIterator[tuple[TcpProxy, Redis]]:
    """A Redis client through a proxy that the test can cut and restore."""
    fresh_prefix()  # skips (fails on CI) when Redis does not answer
    url = urlsplit(REDIS_URL)
    with tcp_proxy((url.hostname or "127.0.0.1", url.port or 6379)) as proxy:
        db = int(url.path.lstrip("/") or 0)  # no retries: a cut fails the call at once
        client = Redis(host="127.0.0.1", port=proxy.port, db=db, retry=Retry(NoBackoff(), 0))
        yield proxy, client
        await client.aclose()


async def queued_runs(redis: Redis, restorer: Restorer) -> list[str]:
    """The ids of the runs in the stream's entries, in order."""
    entries = await redis.xrange(restorer.stream)
    return [msgspec.json.decode(fields[b"record"])["id"] for _, fields in entries]


async def test_a_run_whose_requeue_lost_its_connection_is_queued_by_the_next_sweep(
    redis: Redis, store: PostgresStore, cut_off: tuple[TcpProxy, Redis]
) -> None:
    """Marked queued and appended in one step: a sweep cut off in the middle leaves the run
    unmarked, not marked without an entry, which no sweep would ever queue again."""
    proxy, through_proxy = cut_off
    prefix = fresh_prefix()
    run = record()
    await store.save(run)  # stored while Redis was unreachable: new, in no queue
    cut = Restorer(through_proxy, store=CutWhileReading(store, proxy), prefix=prefix, every_s=1)
    await cut.create_group()
    with pytest.raises((RedisError, OSError)):
        await cut.sweep(grace_ms=0)
    proxy.restore()
    other = Restorer(redis, store=store, prefix=prefix, every_s=1)
    await other.sweep(grace_ms=0)
    assert await queued_runs(redis, other) == [run.id]
    await other.sweep(grace_ms=0)  # queued: not again
    assert await queued_runs(redis, other) == [run.id]


async def test_a_failed_sweep_for_a_lost_group_is_made_again_at_the_next_heartbeat(
    redis: Redis, store: PostgresStore, cut_off: tuple[TcpProxy, Redis]
) -> None:
    proxy, through_proxy = cut_off
    prefix = fresh_prefix()
    run = msgspec.structs.replace(record(), created_at=now_ms())  # newer than a periodic
    await store.save(run)  # sweep's grace: only the owed one takes it
    restorer = Restorer(
        through_proxy, store=CutWhileReading(store, proxy), prefix=prefix, every_s=60
    )
    with pytest.raises((RedisError, OSError)):
        await restorer.recreate()
    proxy.restore()
    await restorer.sweep_if_due()
    assert await queued_runs(redis, restorer) == [run.id]
