"""The shared store: executions, their event logs and workflows on PostgreSQL (psycopg 3).

Every process of a scaled-out deployment reads and writes here, so a run's log can be read
from any API instance wherever its worker runs. The group-commit contract is the embedded
store's: ``stage`` returns at once, and one writer task commits everything staged in one
transaction per batch (two ``INSERT ... SELECT FROM unnest(...)`` statements, pipelined),
while the next batch gathers behind it; batches commit in staging order. Reads and
:meth:`PostgresStore.swap` first wait for what this process staged, so they see it.

The schema is versioned (:mod:`app.storage.postgres_schema`, migrated at ``async with``);
its run control (idempotency keys, claims within limits, retention) is in
:mod:`app.storage.postgres_control`.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Self

import msgspec
import psycopg
from psycopg_pool import AsyncConnectionPool

from app.errors import Conflict
from app.messages import encoder
from app.model.limits import Claim, KeyScope, key_scope, max_concurrency
from app.model.records import (
    ExecutionPage,
    ExecutionQuery,
    ExecutionRecord,
    IdempotencyKey,
    JsonObject,
    StoredEvent,
)
from app.model.status import ExecutionStatus
from app.storage.log_rows import read_log
from app.storage.postgres_batch import upsert
from app.storage.postgres_control import (
    claim_limited,
    delete_finished,
    find_key,
    key_runs,
    prunable,
    store_new,
)
from app.storage.postgres_outbox import PostgresOutbox
from app.storage.postgres_schema import migrate, schema_lock
from app.storage.sql_rows import json_object, page_sql, record_from_row
from app.storage.sql_rows import where as sql_where
from app.storage.staging import SqlStaging, Staged

log = logging.getLogger(__name__)

#: A dropped connection (server restart, ``pg_terminate_backend``) is replaced: the pool checks
#: each one it hands out, and a group commit that fails on its connection is written again
#: (upserts) after this many seconds, doubling up to RETRY_MAX_S: no staged write is dropped.
RETRY_S = 0.05
RETRY_MAX_S = 2.0


class PostgresStore(SqlStaging, PostgresOutbox):
    """:class:`~app.storage.base.ExecutionStore` and :class:`~app.storage.base.WorkflowStore`
    on PostgreSQL; ``async with`` opens its pool and migrates the schema. ``url`` is a libpq
    URL; ``?options=-csearch_path%3Dname`` picks a schema."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        super().__init__()
        self._pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            kwargs={"autocommit": True},
            check=AsyncConnectionPool.check_connection,  # see RETRY_S
        )
        #: Resolved when the staged writes are committed; then the batch being written.
        self._batch: asyncio.Future[None] | None = None
        self._writing: asyncio.Future[None] | None = None
        self._writing_ids: frozenset[str] = frozenset()
        self._writer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._pool.open(wait=True, timeout=10)
        await migrate(self._pool)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def schema_lock(self) -> AbstractAsyncContextManager[None]:
        """Hold the schema advisory lock (:func:`~app.storage.postgres_schema.schema_lock`)."""
        return schema_lock(self._pool)

    async def close(self) -> None:
        await self.commit()
        await self._pool.close()

    # ---- group commit ----------------------------------------------------------------

    def _staged(self) -> None:
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_batches(), name="postgres-commit")

    async def commit(self, linger_s: float = 0.0) -> None:
        # Batches form on their own while a transaction is in flight: no need to linger.
        done = self._batch if self.has_staged else self._writing
        if done is not None:
            await asyncio.shield(done)

    async def wait_writable(self) -> None:
        return None  # a failed commit is retried by its writer, which the worker need not wait for

    async def _write_batches(self) -> None:
        """Commit the staged writes batch after batch until nothing is staged."""
        try:
            while self.has_staged:
                done, self._writing = self._batch, self._batch
                self._writing_ids = frozenset(self._records)
                batch = self.take_staged()
                self._batch = None
                try:
                    await self._write_until_stored(batch)
                except Exception as exc:
                    log.exception("PostgreSQL commit of %d records failed", len(batch.records))
                    if done is not None:
                        done.set_exception(exc)
                        done.exception()  # logged above; awaiting callers still raise
                else:
                    if done is not None:
                        done.set_result(None)
        finally:
            self._writer = self._writing = None
            self._writing_ids = frozenset()

    async def _write_until_stored(self, batch: Staged) -> None:
        delay = RETRY_S
        while True:
            try:
                return await self._write(batch)
            except psycopg.OperationalError:  # the connection, not the rows: write again
                log.warning("PostgreSQL commit failed; again in %.2f s", delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _write(self, batch: Staged) -> None:
        async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            await upsert(conn, batch)

    # ---- executions ------------------------------------------------------------------

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection that sees everything this process staged."""
        await self.commit()
        async with self._pool.connection() as conn:
            yield conn

    async def _fetch(self, sql: str, *args: Any) -> builtins.list[Any]:
        async with self._reading() as conn:
            return await (await conn.execute(sql, args)).fetchall()

    async def save_keyed(
        self,
        record: ExecutionRecord,
        key: IdempotencyKey | None,
        *,
        live_since: int = 0,
        alone: bool = False,
    ) -> IdempotencyKey | None:
        # One transaction of its own, outside the group commit: a lost race must not fail
        # the batch of other runs (store_new says how a race between processes ends).
        async with self._pool.connection() as conn, conn.transaction():
            return await store_new(conn, record, key, live_since=live_since, alone=alone)

    async def key_runs(self, key: KeyScope) -> builtins.list[str]:
        async with self._reading() as conn:
            return await key_runs(conn, key)

    async def get_key(self, owner: str, key: str, *, live_since: int) -> IdempotencyKey | None:
        async with self._reading() as conn:
            return await find_key(conn, owner, key, live_since=live_since)

    async def prunable(
        self, *, created_before: int, keep: int | None, limit: int
    ) -> builtins.list[str]:
        async with self._reading() as conn:
            return await prunable(conn, created_before=created_before, keep=keep, limit=limit)

    async def delete(self, execution_ids: Sequence[str]) -> int:
        async with self._reading() as conn:
            return await delete_finished(conn, execution_ids)

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        rows = await self._fetch("SELECT body, workflow FROM executions WHERE id=%s", execution_id)
        return record_from_row(*rows[0]) if rows else None

    async def list(self, query: ExecutionQuery) -> ExecutionPage:
        where, args = sql_where(query, "%s")
        total = await self._fetch(f"SELECT count(*) FROM executions{where}", *args)
        rows = await self._fetch(page_sql(query, where, "%s"), *args, query.limit, query.offset)
        return ExecutionPage([record_from_row(*r) for r in rows], int(total[0][0]))

    async def read_events(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[StoredEvent]:
        rows = await self._fetch(
            "SELECT entries FROM execution_log WHERE execution_id=%s AND last_seq>%s "
            "ORDER BY position",
            execution_id,
            after,
        )
        return read_log((row[0] for row in rows), after, limit)

    async def new_run_ids(self, created_before: int) -> builtins.list[str]:
        sql = "SELECT id FROM executions WHERE status='new' AND created_at<%s ORDER BY created_at"
        return [row[0] for row in await self._fetch(sql, created_before)]

    async def ping(self) -> None:
        """Raises unless PostgreSQL answers within a second."""
        async with self._pool.connection(timeout=1.0) as conn:
            await conn.execute("SELECT 1")

    async def _body_after_staged(self, record: ExecutionRecord) -> bytes:
        """``record``'s body without its snapshot, once its staged write is committed."""
        if record.id in self._records or record.id in self._writing_ids:
            await self.commit()
        return encoder.encode(msgspec.structs.replace(record, workflow={}))

    async def swap(self, record: ExecutionRecord, expected: ExecutionStatus) -> bool:
        """Write ``record`` (not its workflow snapshot) only if the stored run's status is
        still ``expected``; False if it is not (or the run is unknown). Atomic across
        processes: of two swaps from one status, one wins. Waits for this process's own
        staged write of the record, if any (not for the rest of the group commit)."""
        body = await self._body_after_staged(record)
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "UPDATE executions SET status=%s, body=%s WHERE id=%s AND status=%s",
                (record.status.value, body, record.id, expected.value),
            )
            return cursor.rowcount == 1

    async def claim(self, record: ExecutionRecord) -> Claim:
        """:meth:`swap` from ``new`` to ``record`` (``running``) within the run's limits
        (SPEC §10), atomic across processes."""
        limit, scope = max_concurrency(record), key_scope(record)
        if limit is None and scope is None:
            claimed = await self.swap(record, ExecutionStatus.NEW)
            return Claim.CLAIMED if claimed else Claim.GONE
        body = await self._body_after_staged(record)
        async with self._pool.connection() as conn, conn.transaction():
            return await claim_limited(conn, record, body, limit=limit, scope=scope)

    # ---- workflows -------------------------------------------------------------------

    async def _run(self, sql: str, *args: Any) -> int:
        async with self._pool.connection() as conn:
            return (await conn.execute(sql, args)).rowcount

    async def create_workflow(self, workflow_id: str, body: JsonObject) -> None:
        try:
            await self._run(
                "INSERT INTO workflows (id, body) VALUES (%s, %s)",
                workflow_id,
                msgspec.json.encode(body),
            )
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"workflow {workflow_id!r} already exists") from None

    async def put_workflow(self, workflow_id: str, body: JsonObject) -> None:
        await self._run(
            "UPDATE workflows SET body=%s WHERE id=%s", msgspec.json.encode(body), workflow_id
        )

    async def get_workflow(self, workflow_id: str) -> JsonObject | None:
        rows = await self._fetch("SELECT body FROM workflows WHERE id=%s", workflow_id)
        return json_object(rows[0][0]) if rows else None

    async def list_workflows(self) -> builtins.list[JsonObject]:
        rows = await self._fetch("SELECT body FROM workflows ORDER BY position")
        return [json_object(r[0]) for r in rows]

    async def delete_workflow(self, workflow_id: str) -> bool:
        return await self._run("DELETE FROM workflows WHERE id=%s", workflow_id) > 0
