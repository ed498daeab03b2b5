"""Which store, queue, bus and checkpointer a process uses: built from settings in one place,
for the app's lifespan and for ``graphpush worker`` alike (docs/deploy.md).

    settings                      store + checkpointer        queue + bus
    (default)                     SQLite (or memory)          in-process
    database_url                  PostgreSQL                  in-process (one process)
    database_url + redis_url      PostgreSQL                  Redis stream + pub/sub (many)

Every backend is an async context manager entered on the caller's exit stack, so each is
closed in reverse order of opening: the bus sends what it still holds while Redis and the
store are open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from app.bus.base import EventBus, LocalEventBus
from app.executions.runner import LangGraphRunner
from app.executions.service import ExecutionService
from app.push.hub import PushHub
from app.push.size import fit
from app.queue.base import ExecutionQueue, LocalQueue
from app.settings import Settings
from app.storage.base import ExecutionStore, WorkflowStore
from app.storage.health import StoreHealth
from app.storage.memory import MemoryStore
from app.storage.sqlite import SqliteStore
from app.webhooks.outbox import Outbox
from app.workflows.service import WorkflowService

# PostgreSQL and Redis modules are imported only by processes that use them: the embedded
# default starts as before.
if TYPE_CHECKING:
    from app.bus.pubsub import PubSub
    from app.queue.redis import RedisQueue
    from app.storage.postgres import PostgresStore


class Store(ExecutionStore, WorkflowStore, Protocol):
    pass


#: Raises unless its backend answers (in a second at most).
Probe = Callable[[], Awaitable[object]]
PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class Redis:
    """The shared queue and this process's pub/sub connection (scale-out only)."""

    queue: RedisQueue
    pubsub: PubSub
    #: This process runs workers: cancel requests for the runs it holds reach it.
    consume: bool


@dataclass(frozen=True, slots=True)
class Backends:
    store: Store
    queue: ExecutionQueue
    bus: EventBus
    checkpointer: BaseCheckpointSaver[Any]
    redis: Redis | None = None
    #: The shared backends to check for ``/readyz``, by name.
    probes: dict[str, Probe] = field(default_factory=dict)
    #: What the embedded store reports of its writes (``/healthz``, ``/metrics``).
    health: StoreHealth = field(default_factory=StoreHealth)

    async def service(self, settings: Settings, outbox: Outbox | None = None) -> ExecutionService:
        """The execution service on these backends (cancel requests routed to its workers),
        writing webhook deliveries to ``outbox`` (one of its own if not given: a process
        that sends none still writes them, for a process that does)."""
        workflows = WorkflowService(
            store=self.store,
            checkpointer=self.checkpointer,
            python_modules=settings.python_modules,
            default_recursion_limit=settings.default_recursion_limit,
            webhook_allow_private=settings.webhook_allow_private,
        )
        service = ExecutionService(
            settings=settings,
            store=self.store,
            workflows=workflows,
            bus=self.bus,
            queue=self.queue,
            runner=LangGraphRunner(),
            outbox=outbox or Outbox(),
            checkpointer=self.checkpointer,
        )
        if self.redis is not None and self.redis.consume:
            cancel = service.manager.cancel

            def on_cancel(execution_id: bytes) -> None:
                cancel(execution_id.decode())

            await self.redis.pubsub.subscribe(self.redis.queue.control, on_cancel)
        return service

    async def readiness(self) -> dict[str, str]:
        """Each shared backend's state: ``"ok"``, or why it is not."""
        names = list(self.probes)
        results = await asyncio.gather(
            *(asyncio.wait_for(self.probes[n](), PROBE_TIMEOUT_S) for n in names),
            return_exceptions=True,
        )
        states = [_failure(r) if isinstance(r, BaseException) else "ok" for r in results]
        return dict(zip(names, states, strict=True))

    def subscribe_hub(self, hub: PushHub) -> Callable[[], None]:
        """Hand every bus event to ``hub``; returns the unsubscribe function."""
        if self.redis is None:
            return self.bus.subscribe(hub.on_event)
        return hub.shared.subscribe_to(self.bus)


async def open_backends(stack: AsyncExitStack, settings: Settings, *, push: bool) -> Backends:
    """Open what ``settings`` asks for; ``push``: this process serves push connections."""
    probes: dict[str, Probe] = {}  # the embedded store lives in this process
    health = StoreHealth()  # only the embedded store reports here
    if settings.database_url is None:
        store, checkpointer = await _embedded(stack, settings, health)
    else:
        postgres, checkpointer = await _postgres(stack, settings.database_url)
        if settings.redis_url is not None:
            return await _redis(stack, settings, postgres, checkpointer, push=push)
        store, probes = postgres, {"postgres": postgres.ping}
    queue = await stack.enter_async_context(LocalQueue(settings.queue_bound, store=store))
    return Backends(store, queue, LocalEventBus(), checkpointer, probes=probes, health=health)


async def _embedded(
    stack: AsyncExitStack, settings: Settings, health: StoreHealth
) -> tuple[Store, BaseCheckpointSaver[Any]]:
    if settings.database == "memory":
        return await stack.enter_async_context(MemoryStore()), InMemorySaver()
    store = await stack.enter_async_context(SqliteStore(settings.sqlite_path, health=health))
    saver = await stack.enter_async_context(
        AsyncSqliteSaver.from_conn_string(str(settings.checkpoint_path))
    )
    await saver.setup()  # its tables, which retention deletes from before any run pauses
    return store, saver


async def _postgres(
    stack: AsyncExitStack, url: str
) -> tuple[PostgresStore, BaseCheckpointSaver[Any]]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import AsyncConnection
    from psycopg.rows import DictRow, dict_row
    from psycopg_pool import AsyncConnectionPool

    from app.storage.postgres import PostgresStore

    store = await stack.enter_async_context(PostgresStore(url))
    # The checkpointer wants its own connection settings (dict rows, no prepared statements).
    pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=4,
        open=False,
        connection_class=AsyncConnection[DictRow],
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        check=AsyncConnectionPool.check_connection,  # a dropped connection is replaced
    )
    await pool.open(wait=True, timeout=10)
    stack.push_async_callback(pool.close)
    saver = AsyncPostgresSaver(pool)
    async with store.schema_lock():  # its setup() is not safe against a concurrent one
        await saver.setup()
    return store, saver


async def _redis(
    stack: AsyncExitStack,
    settings: Settings,
    store: PostgresStore,
    checkpointer: BaseCheckpointSaver[Any],
    *,
    push: bool,
) -> Backends:
    from redis.asyncio import BlockingConnectionPool
    from redis.asyncio import Redis as Client

    from app.bus.pubsub import PubSub
    from app.bus.redis import RedisBus
    from app.queue.redis import RedisQueue

    assert settings.redis_url is not None
    # Bounded, and waiting for a free connection rather than failing: each worker blocks
    # one connection in XREADGROUP, pub/sub takes one, requests share the rest.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=64 + 2 * settings.workers, timeout=10
    )
    client = Client.from_pool(pool)  # closes the pool with the client
    stack.push_async_callback(client.aclose)
    pubsub = await stack.enter_async_context(PubSub(client))
    prefix = settings.redis_prefix
    queue = RedisQueue(client, store=store, prefix=prefix, claim_idle_s=settings.claim_idle_s)
    await stack.enter_async_context(queue)
    bus = RedisBus(
        client,
        channel=f"{prefix}:events",
        trim=partial(fit, limit=settings.max_message_bytes),
        durable=store.commit,
        listen=pubsub if push else None,
    )
    await stack.enter_async_context(bus)
    probes: dict[str, Probe] = {"postgres": store.ping, "redis": client.ping}
    redis = Redis(queue, pubsub, settings.workers > 0)
    return Backends(store, queue, bus, checkpointer, redis, probes)


def _failure(result: BaseException) -> str:
    if isinstance(result, TimeoutError):
        return "no answer"
    return f"{type(result).__name__}: {result}"
