"""The writes of one group commit on PostgreSQL: every staged row of a batch in two
statements, whatever its size."""

from __future__ import annotations

from typing import Any

import psycopg

from app.storage.sql_rows import EventRow, RecordRow

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


async def upsert(
    conn: psycopg.AsyncConnection[Any], records: list[RecordRow], events: list[EventRow]
) -> None:
    """Write (insert or replace) ``records`` and ``events`` on ``conn``, in the caller's
    transaction; a record's workflow snapshot is kept when its row carries none."""
    # Binary parameters: payloads go as they are, not hex-encoded.
    if records:
        columns = [list(column) for column in zip(*records, strict=True)]
        await conn.execute(_UPSERT_RECORDS, columns, binary=True)
    if events:
        columns = [list(column) for column in zip(*events, strict=True)]
        await conn.execute(_UPSERT_EVENTS, columns, binary=True)
