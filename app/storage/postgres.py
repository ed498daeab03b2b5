"""The shared store: executions, their event logs and workflows on PostgreSQL (psycopg 3).

Every process of a scaled-out deployment reads and writes here, so a run's log can be read
from any API instance wherever its worker runs. The group-commit contract is the embedded
store's: ``stage`` returns at once, and one writer task commits everything staged in one
transaction per batch (two ``INSERT ... SELECT FROM unnest(...)`` statements, pipelined),
while the next batch gathers behind it; batches commit in staging order. Reads and
:meth:`PostgresStore.swap` first wait for what this process staged, so they see it.

The schema is versioned: :data:`MIGRATIONS` are applied in order at :meth:`open`, under an
advisory lock, and recorded in ``graphpush_migrations``; instances starting together apply
each migration once.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import msgspec
import psycopg
from psycopg_pool import AsyncConnectionPool

from app.errors import Conflict
from app.messages import encoder
from app.model.limits import Claim, key_scope, max_concurrency
from app.model.records import (
    ExecutionPage,
    ExecutionQuery,
    ExecutionRecord,
    IdempotencyKey,
    JsonObject,
    StoredEvent,
)
from app.model.status import ExecutionStatus
from app.storage.postgres_outbox import INSERT_WEBHOOKS, PostgresOutbox
from app.storage.sql_rows import (
    FINISHED,
    KEY_COLUMNS,
    RETRY_OF_INDEX,
    json_object,
    key_from_row,
    key_row,
    prune_count,
    record_from_row,
    record_row,
)
from app.storage.sql_rows import where as sql_where
from app.storage.staging import SqlStaging, Staged

log = logging.getLogger(__name__)

#: One entry per schema version, applied in order and never edited once released.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE executions (
        id text PRIMARY KEY, workflow_id text NOT NULL, status text NOT NULL,
        created_at bigint NOT NULL, owner text, body bytea NOT NULL, workflow bytea);
    CREATE INDEX executions_by_workflow ON executions (workflow_id, created_at);
    CREATE INDEX executions_by_status ON executions (status, created_at);
    CREATE TABLE execution_events (
        execution_id text NOT NULL, seq integer NOT NULL, type text NOT NULL,
        payload bytea NOT NULL, PRIMARY KEY (execution_id, seq));
    CREATE TABLE workflows (
        id text PRIMARY KEY, body bytea NOT NULL, position bigserial NOT NULL);
    """,
    f"ALTER TABLE executions ADD COLUMN retry_of text; CREATE INDEX {RETRY_OF_INDEX}",
    # 3: Idempotency-Key (SPEC §10); the primary key decides a race between instances.
    """
    CREATE TABLE idempotency_keys (
        owner text NOT NULL, key text NOT NULL, fingerprint text NOT NULL,
        execution_id text NOT NULL, created_at bigint NOT NULL, answer bytea NOT NULL,
        PRIMARY KEY (owner, key));
    CREATE INDEX idempotency_keys_by_execution ON idempotency_keys (execution_id);
    """,
    # 4: the list of every run, newest first, reads one page, not the whole history.
    "CREATE INDEX executions_by_time ON executions (created_at, id);",
    # 5: the webhook outbox (SPEC §11)
    """
    CREATE TABLE webhook_deliveries (
        id text PRIMARY KEY, execution_id text NOT NULL, status text NOT NULL, due bigint,
        body bytea NOT NULL, claimed_until bigint NOT NULL DEFAULT 0,
        position bigserial NOT NULL);
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, due);
    CREATE INDEX webhook_deliveries_by_execution ON webhook_deliveries (execution_id);
    """,
)
#: A dropped connection (server restart, ``pg_terminate_backend``) is replaced: the pool checks
#: each one it hands out, and a group commit that fails on its connection is written again
#: (upserts) after this many seconds, doubling up to RETRY_MAX_S: no staged write is dropped.
RETRY_S = 0.05
RETRY_MAX_S = 2.0
#: ``pg_advisory_xact_lock`` key of claims of runs with concurrency limits.
CLAIM_LOCK = 0x67726170687076
_RUNNING = "SELECT count(*) FROM executions WHERE workflow_id = %s AND status = 'running'"
_KEY_TAKEN = """SELECT count(*) FROM executions WHERE status IN ('running', 'waiting')
    AND id <> %s AND coalesce(owner, '') = %s
    AND convert_from(body, 'UTF8')::jsonb ->> 'concurrency_key' = %s"""
#: ``pg_advisory_lock`` key held while the schema (ours, the checkpointer's) is migrated.
SCHEMA_LOCK = 0x67726170687075

_UPSERT_RECORDS = """
INSERT INTO executions (id, workflow_id, status, created_at, owner, body, workflow, retry_of)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[],
                     %s::bytea[], %s::bytea[], %s::text[])
ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body,
    workflow = coalesce(excluded.workflow, executions.workflow)"""
_UPSERT_EVENTS = """
INSERT INTO execution_events (execution_id, seq, type, payload)
SELECT * FROM unnest(%s::text[], %s::integer[], %s::text[], %s::bytea[])
ON CONFLICT (execution_id, seq) DO UPDATE SET type = excluded.type, payload = excluded.payload"""
#: Claims the key unless a live one holds it: an expired key is taken over.
_CLAIM_KEY = f"""
INSERT INTO idempotency_keys ({KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (owner, key) DO UPDATE SET fingerprint = excluded.fingerprint,
    execution_id = excluded.execution_id, created_at = excluded.created_at,
    answer = excluded.answer
WHERE idempotency_keys.created_at < %s
RETURNING 1"""
#: One statement, so one short transaction per batch of ids: the run, its log, its keys.
_DELETE_RUNS = """
WITH gone AS (
    DELETE FROM executions WHERE id = ANY(%s) AND status = ANY(%s) RETURNING id),
events AS (DELETE FROM execution_events WHERE execution_id IN (SELECT id FROM gone)),
keys AS (DELETE FROM idempotency_keys WHERE execution_id IN (SELECT id FROM gone)),
hooks AS (DELETE FROM webhook_deliveries WHERE execution_id IN (SELECT id FROM gone))
SELECT count(*) FROM gone"""
_SELECT_KEY = f"""SELECT {KEY_COLUMNS} FROM idempotency_keys
WHERE owner = %s AND key = %s AND created_at >= %s"""


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
        async with self.schema_lock(), self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS graphpush_migrations "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cursor = await conn.execute(
                "SELECT coalesce(max(version), 0) FROM graphpush_migrations"
            )
            current = (await cursor.fetchone() or (0,))[0]
            for version, sql in enumerate(MIGRATIONS[current:], start=current + 1):
                await conn.execute(sql)
                await conn.execute("INSERT INTO graphpush_migrations VALUES (%s)", (version,))
                log.info("PostgreSQL schema migrated to version %d", version)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def schema_lock(self) -> AsyncIterator[None]:
        """Hold the schema advisory lock: one process migrates at a time.

        Waiters poll instead of blocking in ``pg_advisory_lock``: a blocked statement holds
        a snapshot, and the checkpointer's ``CREATE INDEX CONCURRENTLY`` in the holder
        waits for every older snapshot, so blocked waiters would deadlock with it."""
        async with self._pool.connection() as conn:
            while True:
                if await _fetch_flag(conn, "SELECT pg_try_advisory_lock(%s)", SCHEMA_LOCK):
                    break
                await asyncio.sleep(0.05)
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

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
        # Binary parameters: payloads go as they are, not hex-encoded.
        async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            for sql, rows in (
                (_UPSERT_RECORDS, batch.records),
                (_UPSERT_EVENTS, batch.events),
                (INSERT_WEBHOOKS, batch.webhooks),
            ):
                if rows:
                    columns = [list(column) for column in zip(*rows, strict=True)]
                    await conn.execute(sql, columns, binary=True)

    # ---- executions ------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> builtins.list[Any]:
        await self.commit()
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, args)
            return await cursor.fetchall()

    async def save_keyed(
        self, record: ExecutionRecord, key: IdempotencyKey, *, live_since: int
    ) -> IdempotencyKey | None:
        # One transaction of its own, outside the group commit: a lost race must not fail
        # the batch of other runs. A racing insert of the same key waits for this one to
        # end, then finds the conflict (READ COMMITTED) and stores nothing.
        row = record_row(record)
        columns = [[value] for value in row]
        async with self._pool.connection() as conn, conn.transaction():
            claimed = await conn.execute(_CLAIM_KEY, (*key_row(key), live_since))
            if await claimed.fetchone() is None:
                first = await (await conn.execute(_SELECT_KEY, (key.owner, key.key, 0))).fetchone()
                if first is None:  # deleted since the conflict (pruned with its run)
                    raise Conflict("the idempotency key is being released; retry the request")
                return key_from_row(first)
            await conn.execute(_UPSERT_RECORDS, columns, binary=True)
        return None

    async def get_key(self, owner: str, key: str, *, live_since: int) -> IdempotencyKey | None:
        rows = await self._fetch(_SELECT_KEY, owner, key, live_since)
        return key_from_row(rows[0]) if rows else None

    async def prunable(
        self, *, created_before: int, keep: int | None, limit: int
    ) -> builtins.list[str]:
        ((total, aged),) = await self._fetch(
            "SELECT count(*), count(*) FILTER (WHERE created_at < %s) FROM executions "
            "WHERE status = ANY(%s)",
            created_before,
            FINISHED,
        )
        rows = await self._fetch(
            "SELECT id FROM executions WHERE status = ANY(%s) ORDER BY created_at, id LIMIT %s",
            FINISHED,
            min(limit, prune_count(total, aged, keep)),
        )
        return [row[0] for row in rows]

    async def delete(self, execution_ids: Sequence[str]) -> int:
        rows = await self._fetch(_DELETE_RUNS, list(execution_ids), FINISHED)
        return int(rows[0][0])

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        rows = await self._fetch("SELECT body, workflow FROM executions WHERE id=%s", execution_id)
        return record_from_row(*rows[0]) if rows else None

    async def list(self, query: ExecutionQuery) -> ExecutionPage:
        where, args = sql_where(query, "%s")
        total = await self._fetch(f"SELECT count(*) FROM executions{where}", *args)
        rows = await self._fetch(
            f"SELECT body, workflow FROM executions{where} "
            "ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
            *args,
            query.limit,
            query.offset,
        )
        return ExecutionPage([record_from_row(*r) for r in rows], int(total[0][0]))

    async def read_events(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[StoredEvent]:
        rows = await self._fetch(
            "SELECT seq, type, payload FROM execution_events WHERE execution_id=%s AND seq>%s "
            "ORDER BY seq LIMIT %s",
            execution_id,
            after,
            limit,
        )
        return [StoredEvent(seq, type_, bytes(payload)) for seq, type_, payload in rows]

    async def new_run_ids(self, created_before: int) -> builtins.list[str]:
        sql = "SELECT id FROM executions WHERE status='new' AND created_at<%s ORDER BY created_at"
        return [row[0] for row in await self._fetch(sql, created_before)]

    async def ping(self) -> None:
        """Raises unless PostgreSQL answers within a second."""
        async with self._pool.connection(timeout=1.0) as conn:
            await conn.execute("SELECT 1")

    async def swap(self, record: ExecutionRecord, expected: ExecutionStatus) -> bool:
        """Write ``record`` (not its workflow snapshot) only if the stored run's status is
        still ``expected``; False if it is not (or the run is unknown). Atomic across
        processes: of two swaps from one status, one wins. Waits for this process's own
        staged write of the record, if any (not for the rest of the group commit)."""
        if record.id in self._records or record.id in self._writing_ids:
            await self.commit()
        body = encoder.encode(msgspec.structs.replace(record, workflow={}))
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
        if record.id in self._records or record.id in self._writing_ids:
            await self.commit()
        body = encoder.encode(msgspec.structs.replace(record, workflow={}))
        async with self._pool.connection() as conn, conn.transaction():
            # Claims with limits take turns: each sees the runs the previous one started.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
            if limit is not None and await _count(conn, _RUNNING, record.workflow_id) >= limit:
                return Claim.WORKFLOW_FULL
            if scope is not None and await _count(conn, _KEY_TAKEN, record.id, *scope):
                return Claim.KEY_TAKEN
            cursor = await conn.execute(
                "UPDATE executions SET status=%s, body=%s WHERE id=%s AND status='new'",
                (record.status.value, body, record.id),
            )
            return Claim.CLAIMED if cursor.rowcount == 1 else Claim.GONE

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


async def _count(conn: psycopg.AsyncConnection[Any], sql: str, *args: Any) -> int:
    row = await (await conn.execute(sql, args)).fetchone()
    return int(row[0]) if row else 0


async def _fetch_flag(conn: psycopg.AsyncConnection[Any], sql: str, *args: Any) -> bool:
    row = await (await conn.execute(sql, args)).fetchone()
    return bool(row and row[0])
