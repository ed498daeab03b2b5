"""The embedded store: executions, their event logs and workflows in one SQLite file.

One thread owns the connection. Writes are staged on the event loop and a writer task
commits everything staged meanwhile in one transaction (group commit), so many runs share
one commit. Reads first wait for staged writes, then run on the same thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from app.errors import Conflict
from app.messages import encoder
from app.store import ExecutionPage, StatusUpdates, ExecutionQuery, ExecutionRecord, JsonObject, StoredEvent

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, status TEXT NOT NULL,
    created_at INTEGER NOT NULL, owner TEXT, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS executions_by_workflow ON executions (workflow_id, created_at);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, created_at);
CREATE TABLE IF NOT EXISTS events (
    execution_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY (execution_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY, body BLOB NOT NULL, created_at INTEGER NOT NULL);
"""

_record_decoder = msgspec.json.Decoder(ExecutionRecord)
_json_decoder = msgspec.json.Decoder(dict[str, Any])
_RecordRow = tuple[str, str, str, int, str | None, bytes]


class SqliteStore(StatusUpdates):
    """:class:`~app.store.ExecutionStore` and :class:`~app.store.WorkflowStore` on SQLite."""

    def __init__(self, path: Path | str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._path = str(path)
        self._db: sqlite3.Connection | None = None
        self._records: dict[str, _RecordRow] = {}
        self._events: list[tuple[str, int, str, bytes]] = []
        self._next_batch: asyncio.Future[None] | None = None
        self._inflight: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self._run(self._connect)
        self._writer = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    def _connect(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        self._db = db

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "SqliteStore.open() was not awaited"
        return self._db

    # ---- group commit ----------------------------------------------------------------

    def stage(self, record: ExecutionRecord, events: Sequence[StoredEvent] = ()) -> None:
        row = (record.id, record.workflow_id, record.status.value, record.created_at,
               record.owner, encoder.encode(record))  # fmt: skip
        self._records[record.id] = row
        self.stage_events(record.id, events)

    def stage_events(self, execution_id: str, events: Sequence[StoredEvent]) -> None:
        self._events.extend((execution_id, e.seq, e.type, e.payload) for e in events)
        self._wake.set()

    async def commit(self) -> None:
        if self._records or self._events:
            if self._next_batch is None:
                self._next_batch = asyncio.get_running_loop().create_future()
            self._wake.set()
            await asyncio.shield(self._next_batch)
        elif self._inflight is not None:
            await asyncio.shield(self._inflight)

    async def save(self, record: ExecutionRecord, events: Sequence[StoredEvent] = ()) -> None:
        self.stage(record, events)
        await self.commit()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not (self._records or self._events):
                continue
            records, events = list(self._records.values()), self._events
            self._records, self._events = {}, []
            done = self._next_batch or asyncio.get_running_loop().create_future()
            self._next_batch, self._inflight = None, done
            try:
                await self._run(self._write, records, events)
            except Exception as exc:  # every waiter of this batch learns it failed
                done.set_exception(exc)
                done.exception()  # a batch nobody awaited must not warn as unretrieved
            else:
                done.set_result(None)
            finally:
                self._inflight = None

    def _write(self, records: list[_RecordRow], events: list[tuple[str, int, str, bytes]]) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR REPLACE INTO executions VALUES (?,?,?,?,?,?)", records)
            db.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?,?)", events)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ---- executions ------------------------------------------------------------------

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        await self.commit()
        row = await self._run(self._query_one, "SELECT body FROM executions WHERE id=?", execution_id)
        return None if row is None else _record_decoder.decode(row[0])

    def _query_one(self, sql: str, *args: Any) -> Any:
        return self.db.execute(sql, args).fetchone()

    def _query_all(self, sql: str, *args: Any) -> list[Any]:
        return self.db.execute(sql, args).fetchall()

    async def list(self, query: ExecutionQuery) -> ExecutionPage:
        await self.commit()
        where, args = _where(query)
        total = await self._run(self._query_one, f"SELECT count(*) FROM executions{where}", *args)
        rows = await self._run(
            self._query_all,
            f"SELECT body FROM executions{where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            *args, query.limit, query.offset,  # fmt: skip
        )
        return ExecutionPage([_record_decoder.decode(r[0]) for r in rows], int(total[0]))

    async def read_events(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        await self.commit()
        rows = await self._run(
            self._query_all,
            "SELECT seq, type, payload FROM events WHERE execution_id=? AND seq>? "
            "ORDER BY seq LIMIT ?",
            execution_id, after, -1 if limit is None else limit,  # fmt: skip
        )
        return [StoredEvent(seq, type_, bytes(payload)) for seq, type_, payload in rows]

    # ---- workflows -------------------------------------------------------------------

    async def create_workflow(self, workflow_id: str, body: JsonObject) -> None:
        try:
            await self._run(
                self._execute, "INSERT INTO workflows VALUES (?,?,strftime('%s','now'))",
                workflow_id, msgspec.json.encode(body),  # fmt: skip
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"workflow {workflow_id!r} already exists") from None

    async def put_workflow(self, workflow_id: str, body: JsonObject) -> None:
        await self._run(
            self._execute, "UPDATE workflows SET body=? WHERE id=?",
            msgspec.json.encode(body), workflow_id,  # fmt: skip
        )

    def _execute(self, sql: str, *args: Any) -> int:
        return self.db.execute(sql, args).rowcount

    async def get_workflow(self, workflow_id: str) -> JsonObject | None:
        row = await self._run(self._query_one, "SELECT body FROM workflows WHERE id=?", workflow_id)
        return None if row is None else _json_decoder.decode(row[0])

    async def list_workflows(self) -> list[JsonObject]:
        rows = await self._run(self._query_all, "SELECT body FROM workflows ORDER BY created_at, rowid")
        return [_json_decoder.decode(r[0]) for r in rows]

    async def delete_workflow(self, workflow_id: str) -> bool:
        count = await self._run(self._execute, "DELETE FROM workflows WHERE id=?", workflow_id)
        return count > 0

    async def close(self) -> None:
        await self.commit()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._db is not None:
            await self._run(self._db.close)
        self._executor.shutdown(wait=True)


def _where(query: ExecutionQuery) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for column, value in (
        ("workflow_id", query.workflow_id),
        ("status", query.status.value if query.status else None),
        ("owner", query.owner),
    ):
        if value is not None:
            clauses.append(f"{column}=?")
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
