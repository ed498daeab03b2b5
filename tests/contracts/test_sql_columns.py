"""What the SQL stores put in their columns: an encoded column (a record's body and
workflow snapshot, a log row's entries), handed to the driver as a ``bytearray``, is stored
as the bytes it holds, and a ``None`` as NULL, on SQLite (where a NULL column is a literal of
the statement) and PostgreSQL alike."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from app.messages import encoder
from app.model.records import ExecutionRecord, StoredEvent
from app.model.status import ExecutionStatus
from app.storage.postgres import PostgresStore
from app.storage.sqlite import SqliteStore
from support.scaleout import fresh_schema

pytestmark = pytest.mark.timeout(30)

#: The columns read back, of a run and of its log.
RUN = "SELECT owner, body, workflow, retry_of, concurrency_key FROM executions WHERE id = {p}"
LOG = "SELECT entries FROM {table} WHERE execution_id = {p} ORDER BY last_seq"
EVENTS = [
    StoredEvent(1, "executionStarted", '{"type":"executionStarted","s":"ü ✓ \\u0000"}'.encode()),
    StoredEvent(2, "nodeExecuteBefore", b'{"data":[1,2.5,null,true]}'),
]


def run(execution_id: str, **fields: Any) -> ExecutionRecord:
    return ExecutionRecord(
        id=execution_id,
        workflow_id="wf",
        workflow_name="w",
        created_at=1,
        workflow={"name": "w", "nodes": [{"name": "A", "type": "trigger", "s": "ü"}]},
        **fields,
    )


def body(record: ExecutionRecord) -> bytes:
    return encoder.encode(msgspec.structs.replace(record, workflow={}))


def entries(events: list[StoredEvent]) -> bytes:
    return msgspec.json.encode([[e.seq, e.type, msgspec.Raw(e.payload)] for e in events])


Read = Callable[[str, str], list[tuple[Any, ...]]]


async def check_columns(store: SqliteStore | PostgresStore, read: Read) -> None:
    alone = run("run-alone")
    keyed = run("run-keyed", owner="o", retry_of="run-x", concurrency_key="k")
    await store.save(alone)
    await store.save(keyed)
    alone.status, alone.last_seq = ExecutionStatus.RUNNING, 2
    await store.save(alone, EVENTS)  # a later write passes no snapshot: the first stays

    snapshot = encoder.encode(alone.workflow)
    assert read(RUN, alone.id) == [(None, body(alone), snapshot, None, None)]
    assert read(RUN, keyed.id) == [("o", body(keyed), snapshot, "run-x", "k")]
    assert read(LOG, alone.id) == [(entries(EVENTS),)]
    assert await store.read_events(alone.id) == EVENTS


async def test_sqlite_stores_encoded_columns_as_their_bytes_and_none_as_null(
    tmp_path: Path,
) -> None:
    path = tmp_path / "columns.sqlite"

    def read(sql: str, execution_id: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(path)) as db:
            query = sql.format(p="?", table="event_log")
            return db.execute(query, (execution_id,)).fetchall()

    async with SqliteStore(path) as store:
        await check_columns(store, read)
        types = "SELECT typeof(body), typeof(workflow), typeof(owner) FROM executions"
        assert set(read(f"{types} WHERE id = ?", "run-alone")) == {("blob", "blob", "null")}


async def test_postgres_stores_encoded_columns_as_their_bytes_and_none_as_null() -> None:
    url = fresh_schema()

    def read(sql: str, execution_id: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url) as conn:
            query = sql.format(p="%s", table="execution_log")
            return conn.execute(query, (execution_id,)).fetchall()

    async with PostgresStore(url) as store:
        await check_columns(store, read)
