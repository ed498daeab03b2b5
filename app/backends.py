"""Which store, queue, bus and checkpointer a process uses: built from settings in one place,
for the app's lifespan and for ``graphpush worker`` alike (docs/deploy.md).

    settings                      store + checkpointer        queue + bus
    (default)                     SQLite (or memory)          in-process
    database_url                  PostgreSQL                  in-process (one process)
    database_url + redis_url      PostgreSQL                  Redis stream + pub/sub (many)

Each resource is closed by the exit stack in reverse order of opening: the bus sends what
it still holds while Redis and the store are open.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from app.bus.base import EventBus, LocalEventBus, Subscriber
from app.executions.runner import LangGraphRunner
from app.executions.service import ExecutionService
from app.queue.base import ExecutionQueue, LocalQueue
from app.settings import Settings
from app.storage.base import ExecutionStore, WorkflowStore
from app.storage.memory import MemoryStore
from app.storage.sqlite import SqliteStore
from app.webhooks.outbox import Outbox
from app.workflows.service import WorkflowService

# PostgreSQL and Redis modules are imported only by processes that use them: the embedded
# default starts as before.
if TYPE_CHECKING:
    from app.push.hub import PushHub
    from app.queue.redis import RedisQueue
    from app.storage.postgres import PostgresStore


class Store(ExecutionStore, WorkflowStore, Protocol):
    pass


@dataclass(frozen=True, slots=True)
class Backends:
    store: Store
    queue: ExecutionQueue
    bus: EventBus
    checkpointer: BaseCheckpointSaver[Any]
    #: The queue again when it is shared (it then needs the service bound to it).
    shared_queue: RedisQueue | None = None

    def service(self, settings: Settings, outbox: Outbox | None = None) -> ExecutionService:
        """The execution service on these backends (a shared queue bound to its workers),
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
        )
        if self.shared_queue is not None:
            manager = service.manager
            self.shared_queue.bind(recover=manager.recover, cancel=manager.cancel)
        return service

    def push_subscriber(self, hub: PushHub) -> Subscriber:
        """What to subscribe to the bus for ``hub``."""
        if isinstance(self.bus, LocalEventBus):
            return hub.on_event
        from app.bus.redis import held_push_refs

        return held_push_refs(hub)


async def open_backends(stack: AsyncExitStack, settings: Settings, *, push: bool) -> Backends:
    """Open what ``settings`` asks for; ``push``: this process serves push connections."""
    if settings.database_url is None:
        store, checkpointer = await _embedded(stack, settings)
        return Backends(store, LocalQueue(settings.queue_bound), LocalEventBus(), checkpointer)
    postgres, checkpointer = await _postgres(stack, settings.database_url)
    if settings.redis_url is None:
        return Backends(postgres, LocalQueue(settings.queue_bound), LocalEventBus(), checkpointer)
    return await _redis(stack, settings, postgres, checkpointer, push=push)


async def _embedded(
    stack: AsyncExitStack, settings: Settings
) -> tuple[Store, BaseCheckpointSaver[Any]]:
    if settings.database == "memory":
        return MemoryStore(), InMemorySaver()
    store = SqliteStore(settings.sqlite_path)
    await store.open()
    stack.push_async_callback(store.close)
    saver = await stack.enter_async_context(
        AsyncSqliteSaver.from_conn_string(str(settings.checkpoint_path))
    )
    return store, saver


async def _postgres(
    stack: AsyncExitStack, url: str
) -> tuple[PostgresStore, BaseCheckpointSaver[Any]]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import AsyncConnection
    from psycopg.rows import DictRow, dict_row
    from psycopg_pool import AsyncConnectionPool

    from app.storage.postgres import PostgresStore

    store = PostgresStore(url)
    await store.open()
    stack.push_async_callback(store.close)
    # The checkpointer wants its own connection settings (dict rows, no prepared statements).
    pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=4,
        open=False,
        connection_class=AsyncConnection[DictRow],
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
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
    from redis.asyncio import BlockingConnectionPool, Redis

    from app.bus.redis import RedisBus
    from app.queue.redis import RedisQueue

    assert settings.redis_url is not None
    # Bounded, and waiting for a free connection rather than failing: each worker blocks
    # one connection in XREADGROUP, pub/sub takes one per channel, requests share the rest.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=64 + 2 * settings.workers, timeout=10
    )
    redis = Redis.from_pool(pool)  # closes the pool with the client
    stack.push_async_callback(redis.aclose)
    queue = RedisQueue(
        redis, store=store, prefix=settings.redis_prefix, claim_idle_s=settings.claim_idle_s
    )
    await queue.open(consume=settings.workers > 0)
    stack.push_async_callback(queue.aclose)
    bus = RedisBus(
        redis,
        channel=f"{settings.redis_prefix}:events",
        max_message_bytes=settings.max_message_bytes,
        durable=store.commit,
    )
    await bus.open(listen=push)
    stack.push_async_callback(bus.aclose)
    return Backends(store, queue, bus, checkpointer, shared_queue=queue)
