"""The event log of the SQL stores, a row per run per group commit (``app.storage.log_rows``):
how rows read back as entries, and stores made by older versions (a row per entry) that keep
their history readable once upgraded."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import msgspec
import psycopg
import pytest

from app.model.records import ExecutionQuery, ExecutionRecord, StoredEvent
from app.model.status import ExecutionStatus
from app.storage.log_rows import LogEntry, log_row, read_log, row_entries
from app.storage.postgres import PostgresStore
from app.storage.postgres_schema import MIGRATIONS
from app.storage.sqlite import SqliteStore
from support.scaleout import fresh_schema

pytestmark = pytest.mark.timeout(30)

#: Messages of an older version's log, with what JSON escapes and non-ASCII text.
OLD_LOG = [
    StoredEvent(1, "executionStarted", b'{"type":"executionStarted","data":{}}'),
    StoredEvent(2, "nodeExecuteBefore", '{"data":{"s":"ü \\u0000 \\"q\\" ✓"}}'.encode()),
    StoredEvent(3, "nodeExecuteAfter", b'{"data":[1,2.5,null,true]}'),
]
NEXT = [StoredEvent(4, "executionFinished", b'{"type":"executionFinished"}')]


def log_entry(event: StoredEvent) -> LogEntry:
    return LogEntry(event.seq, event.type, msgspec.Raw(event.payload))


def row(execution_id: str, *events: StoredEvent) -> bytes:
    return log_row(execution_id, {e.seq: log_entry(e) for e in events})[2]


def event(seq: int, text: str) -> StoredEvent:
    return StoredEvent(seq, "nodeExecuteBefore", f'{{"n":"{text}"}}'.encode())


def test_rows_read_back_as_their_entries_in_seq_order() -> None:
    rows = [row("r", event(1, "a"), event(2, "b")), row("r", event(3, "c"), event(4, "d"))]

    assert read_log(rows, 0, None) == [event(1, "a"), event(2, "b"), event(3, "c"), event(4, "d")]
    assert read_log(rows, 1, None) == [event(2, "b"), event(3, "c"), event(4, "d")]
    assert read_log(rows, 1, 2) == [event(2, "b"), event(3, "c")]
    assert read_log(rows, 4, None) == []


def test_an_entry_logged_again_reads_as_the_row_written_last_holds_it() -> None:
    first = row("r", event(1, "a"), event(2, "b"), event(3, "c"))
    again = row("r", event(2, "again"))

    assert read_log([first, again], 0, None) == [event(1, "a"), event(2, "again"), event(3, "c")]
    assert read_log([first, again, first], 0, None) == [event(1, "a"), event(2, "b"), event(3, "c")]


def test_a_row_written_twice_reads_as_once() -> None:
    twice = row("r", event(1, "a"), event(2, "b"))

    assert read_log([twice, twice], 0, None) == [event(1, "a"), event(2, "b")]


def test_a_limited_read_decodes_no_row_after_its_page() -> None:
    rows = [row("r", event(1, "a"), event(2, "b")), row("r", event(3, "c"), event(4, "d"))]
    undecodable = b"[[5,not JSON"

    assert read_log([*rows, undecodable], 1, 2) == [event(2, "b"), event(3, "c")]
    assert read_log([*rows, undecodable, undecodable], 0, 4) == read_log(rows, 0, None)


def test_a_limited_read_takes_an_entry_logged_again_after_its_page() -> None:
    rows = [row("r", event(1, "a"), event(2, "b")), row("r", event(3, "c"), event(4, "d"))]
    again = row("r", event(2, "again"), event(5, "e"))

    assert read_log([*rows, again], 0, 2) == [event(1, "a"), event(2, "again")]
    assert read_log([*rows, again], 1, 3) == [event(2, "again"), event(3, "c"), event(4, "d")]


def test_a_row_holds_its_entries_in_seq_order_and_its_greatest_seq() -> None:
    entries = {e.seq: log_entry(e) for e in (event(5, "e"), event(3, "c"))}

    execution_id, last_seq, written = log_row("r", entries)

    assert (execution_id, last_seq) == ("r", 5)
    assert [entry.seq for entry in row_entries(written)] == [3, 5]


# ---- upgrades ----------------------------------------------------------------------------


def finished(execution_id: str) -> ExecutionRecord:
    return ExecutionRecord(
        id=execution_id,
        workflow_id="wf",
        workflow_name="w",
        created_at=1,
        status=ExecutionStatus.SUCCESS,
        last_seq=len(OLD_LOG),
    )


async def test_a_sqlite_file_from_before_keeps_its_log_readable(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    run, other = finished("run-old"), finished("run-other")
    async with SqliteStore(path) as store:
        await store.save(run)
        await store.save(other)
    with contextlib.closing(sqlite3.connect(path)) as db:  # the log as older versions kept it
        db.executescript(
            "DROP TABLE event_log; CREATE TABLE events (execution_id TEXT NOT NULL, "
            "seq INTEGER NOT NULL, type TEXT NOT NULL, payload BLOB NOT NULL, "
            "PRIMARY KEY (execution_id, seq));"
        )
        rows = [(r.id, e.seq, e.type, e.payload) for r in (run, other) for e in OLD_LOG]
        db.executemany("INSERT INTO events VALUES (?,?,?,?)", rows)
        db.commit()

    async with SqliteStore(path) as store:
        assert await store.read_events(run.id) == OLD_LOG
        assert await store.read_events(run.id, 1, limit=1) == OLD_LOG[1:2]
        store.stage_events(run.id, NEXT)
        assert await store.read_events(run.id, 2) == [*OLD_LOG[2:], *NEXT]
        assert await store.delete([other.id]) == 1
        assert await store.read_events(other.id) == []
    async with SqliteStore(path) as store:  # opened again: moved once
        assert await store.read_events(run.id) == [*OLD_LOG, *NEXT]
        assert (await store.list(ExecutionQuery())).total == 1


async def test_a_postgres_database_from_before_keeps_its_log_readable() -> None:
    url = fresh_schema()
    run = finished("run-old")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE graphpush_migrations "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, sql in enumerate(MIGRATIONS[:6], start=1):  # the log a row per entry
            await conn.execute(sql)
            await conn.execute("INSERT INTO graphpush_migrations VALUES (%s)", (version,))
        async with conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO execution_events VALUES (%s, %s, %s, %s)",
                [(run.id, e.seq, e.type, e.payload) for e in OLD_LOG],
            )

    async with PostgresStore(url) as store:
        assert await store.read_events(run.id) == OLD_LOG
        assert await store.read_events(run.id, 1, limit=1) == OLD_LOG[1:2]
        await store.save(run, NEXT)
        assert await store.read_events(run.id, 2) == [*OLD_LOG[2:], *NEXT]
        assert await store.delete([run.id]) == 1
        assert await store.read_events(run.id) == []
