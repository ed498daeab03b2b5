"""The writes of one group commit on PostgreSQL: every staged row of a batch in two
statements, whatever its size."""

from __future__ import annotations

from typing import Any

import psycopg

from app.storage.postgres_outbox import INSERT_WEBHOOKS
from app.storage.staging import Staged

_UPSERT_RECORDS = """
INSERT INTO executions (
    id, workflow_id, status, created_at, owner, body, workflow, retry_of, concurrency_key)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[],
                     %s::bytea[], %s::bytea[], %s::text[], %s::text[])
ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body,
    workflow = coalesce(excluded.workflow, executions.workflow)"""
#: A batch written again (its commit's outcome was lost with the connection) adds its log
#: rows twice: readers take either copy of an entry (app.storage.log_rows).
_INSERT_LOGS = """
INSERT INTO execution_log (execution_id, last_seq, entries)
SELECT * FROM unnest(%s::text[], %s::integer[], %s::bytea[])"""


async def upsert(conn: psycopg.AsyncConnection[Any], batch: Staged) -> None:
    """Write (insert or replace) the rows of ``batch`` on ``conn``, in the caller's
    transaction; a record's workflow snapshot is kept when its row carries none, a webhook
    delivery already stored is left as it is."""
    # Binary parameters: payloads go as they are, not hex-encoded.
    for sql, rows in (
        (_UPSERT_RECORDS, batch.records),
        (_INSERT_LOGS, batch.logs),
        (INSERT_WEBHOOKS, batch.webhooks),
    ):
        if rows:
            columns = [list(column) for column in zip(*rows, strict=True)]
            await conn.execute(sql, columns, binary=True)
