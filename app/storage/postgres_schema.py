"""The shared store's schema: its versioned migrations and the lock they run under.

:data:`MIGRATIONS` are applied in order by :func:`migrate`, under :func:`schema_lock` (a
PostgreSQL advisory lock), and recorded in ``graphpush_migrations``; instances starting
together apply each migration once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from app.storage.sql_rows import (
    RETRY_OF_INDEX,
    UNFINISHED_BY_KEY_INDEX,
    UNFINISHED_BY_WORKFLOW_INDEX,
    UNFINISHED_SQL,
)

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
    # 6: run control (SPEC §10) asks for the unfinished runs of a workflow and of a
    # concurrency key: a column for the key, and indexes of the unfinished runs only.
    f"""
    ALTER TABLE executions ADD COLUMN concurrency_key text;
    UPDATE executions SET concurrency_key = convert_from(body, 'UTF8')::jsonb ->> 'concurrency_key'
    WHERE {UNFINISHED_SQL};
    CREATE INDEX {UNFINISHED_BY_WORKFLOW_INDEX};
    CREATE INDEX {UNFINISHED_BY_KEY_INDEX};
    """,
    # 7: the event log as a row per run per group commit (app.storage.log_rows), read in
    # the order of ``position``; each entry of the old log becomes a row of its own.
    """
    CREATE TABLE execution_log (
        execution_id text NOT NULL, last_seq integer NOT NULL, entries bytea NOT NULL,
        position bigserial NOT NULL);
    CREATE INDEX execution_log_by_run ON execution_log (execution_id, last_seq);
    INSERT INTO execution_log (execution_id, last_seq, entries)
    SELECT execution_id, seq, convert_to('[[' || seq || ',' || to_json(type)::text || ',', 'UTF8')
        || payload || convert_to(']]', 'UTF8')
    FROM execution_events ORDER BY execution_id, seq;
    DROP TABLE execution_events;
    """,
)
#: ``pg_advisory_lock`` key held while the schema (ours, the checkpointer's) is migrated.
SCHEMA_LOCK = 0x67726170687075


async def migrate(pool: AsyncConnectionPool[Any]) -> None:
    """Apply the :data:`MIGRATIONS` the database lacks, in one transaction, under the lock."""
    async with schema_lock(pool), pool.connection() as conn, conn.transaction():
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS graphpush_migrations "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM graphpush_migrations")
        current = (await cursor.fetchone() or (0,))[0]
        for version, sql in enumerate(MIGRATIONS[current:], start=current + 1):
            await conn.execute(sql)
            await conn.execute("INSERT INTO graphpush_migrations VALUES (%s)", (version,))
            log.info("PostgreSQL schema migrated to version %d", version)


@asynccontextmanager
async def schema_lock(pool: AsyncConnectionPool[Any]) -> AsyncIterator[None]:
    """Hold the schema advisory lock: one process migrates at a time.

    Waiters poll instead of blocking in ``pg_advisory_lock``: a blocked statement holds
    a snapshot, and the checkpointer's ``CREATE INDEX CONCURRENTLY`` in the holder
    waits for every older snapshot, so blocked waiters would deadlock with it."""
    async with pool.connection() as conn:
        while True:
            if await _fetch_flag(conn, "SELECT pg_try_advisory_lock(%s)", SCHEMA_LOCK):
                break
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))


async def _fetch_flag(conn: psycopg.AsyncConnection[Any], sql: str, *args: Any) -> bool:
    row = await (await conn.execute(sql, args)).fetchone()
    return bool(row and row[0])
