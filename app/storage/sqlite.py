"""The embedded store: executions, their event logs and workflows in one SQLite file.

Statements run on the event loop's own thread. A thread pool was tried and lost: each row
handed the GIL back and forth with a busy loop (5 ms switch interval), so a batch of a few
hundred rows took hundreds of milliseconds, while a WAL commit with ``synchronous=NORMAL``
costs tens of microseconds here. Writes are staged and flushed together once per loop
iteration (group commit), so many runs share one transaction; reads flush first, so they
see everything staged before them.

Staged writes nobody waits for are flushed within :data:`FLUSH_DELAY_S`. A ``commit`` asks
for a flush at the next loop iteration, or after its ``linger_s`` when the caller is busy
and prefers sharing a transaction (a commit costs 100 to 250 µs of write syscalls here, a
run's rows about as much again). A process that dies loses at most the staged node events
of that window, never a status a client was told about (SPEC §4 rule 6).

A write that fails for want of space stays staged and is retried (:mod:`app.storage.health`);
the WAL checkpoint runs on a thread of its own (:mod:`app.storage.wal`).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import msgspec

from app.errors import BackendUnavailable, Conflict
from app.model.records import (
    ExecutionPage,
    ExecutionQuery,
    ExecutionRecord,
    IdempotencyKey,
    JsonObject,
    StoredEvent,
)
from app.storage.health import StoreHealth, refusing, transient, unavailable
from app.storage.sql_rows import (
    FINISHED,
    KEY_COLUMNS,
    RETRY_OF_INDEX,
    KeyRow,
    json_object,
    key_from_row,
    key_row,
    prune_count,
    record_from_row,
)
from app.storage.sql_rows import where as sql_where
from app.storage.sqlite_outbox import INSERT_WEBHOOK, SqliteOutbox
from app.storage.staging import SqlStaging, Staged
from app.storage.wal import WalCheckpointer

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, status TEXT NOT NULL,
    created_at INTEGER NOT NULL, owner TEXT, body BLOB NOT NULL, workflow BLOB, retry_of TEXT);
CREATE INDEX IF NOT EXISTS executions_by_workflow ON executions (workflow_id, created_at);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, created_at);
-- The list of every run, newest first, reads 50 rows, not the whole history (bench/history.py).
CREATE INDEX IF NOT EXISTS executions_by_time ON executions (created_at, id);
-- A rowid table: its rows (whole push messages, often over 1 KB) are too big for WITHOUT ROWID.
CREATE TABLE IF NOT EXISTS events (
    execution_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY (execution_id, seq));
-- The webhook outbox (SPEC §11): written in the transaction of the status it reports.
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY, execution_id TEXT NOT NULL, status TEXT NOT NULL, due INTEGER,
    body BLOB NOT NULL, claimed_until INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS webhooks_due ON webhooks (status, due);
CREATE INDEX IF NOT EXISTS webhooks_by_execution ON webhooks (execution_id);
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY, body BLOB NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    owner TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,
    execution_id TEXT NOT NULL, created_at INTEGER NOT NULL, answer BLOB NOT NULL,
    PRIMARY KEY (owner, key));
CREATE INDEX IF NOT EXISTS idempotency_keys_by_execution ON idempotency_keys (execution_id);
"""

#: How long staged writes may wait for others to share their transaction.
FLUSH_DELAY_S = 0.005

#: The workflow snapshot is written with the run's first row only (see app.sql_rows).
_UPSERT = """INSERT INTO executions VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET
    status=excluded.status, body=excluded.body, workflow=coalesce(excluded.workflow, workflow)"""
_FINISHED_IN = f"status IN ({','.join('?' * len(FINISHED))})"
#: Runs, then their logs and keys, deleted by id (a JSON array: no limit on how many).
_DELETE_RUNS = f"""DELETE FROM executions WHERE id IN (SELECT value FROM json_each(?))
    AND {_FINISHED_IN} RETURNING id"""
_DELETE_LOGS = (
    "DELETE FROM events WHERE execution_id IN (SELECT value FROM json_each(?))",
    "DELETE FROM idempotency_keys WHERE execution_id IN (SELECT value FROM json_each(?))",
    "DELETE FROM webhooks WHERE execution_id IN (SELECT value FROM json_each(?))",
)
_UPSERT_KEY = f"INSERT OR REPLACE INTO idempotency_keys ({KEY_COLUMNS}) VALUES (?,?,?,?,?,?)"


def _reclaim_space(db: sqlite3.Connection) -> None:
    """Make deletes give space back to the file (``auto_vacuum=INCREMENTAL``, then
    ``PRAGMA incremental_vacuum`` after each prune). A database made without it is
    converted once, by a ``VACUUM`` (it rewrites the file)."""
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        return
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        log.info("converting the database to incremental vacuum: a one-time VACUUM")
        db.execute("VACUUM")


def _add_retry_of(db: sqlite3.Connection) -> None:
    """Give a file made before retries existed its ``retry_of`` column (and index)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(executions)")}
    if "retry_of" not in columns:
        db.execute("ALTER TABLE executions ADD COLUMN retry_of TEXT")
    db.execute(f"CREATE INDEX IF NOT EXISTS {RETRY_OF_INDEX}")


class SqliteStore(SqlStaging, SqliteOutbox):
    """:class:`~app.storage.base.ExecutionStore` and :class:`~app.storage.base.WorkflowStore`
    on SQLite; ``async with`` opens (creating the file and schema) and closes it."""

    def __init__(self, path: Path | str, *, health: StoreHealth | None = None) -> None:
        super().__init__()
        self._path = str(path)
        self.health = health or StoreHealth()
        self._db: sqlite3.Connection | None = None
        self._keys: list[KeyRow] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_due = 0.0
        #: Resolved when the staged writes are committed (created by the first ``commit``).
        self._committed: asyncio.Future[None] | None = None
        #: A write failed; the flush scheduled is its retry (nothing may bring it forward).
        self._retrying = False
        self._wal = WalCheckpointer(self._path, self.health)

    async def __aenter__(self) -> Self:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, isolation_level=None)
        _reclaim_space(db)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA wal_autocheckpoint=0")  # see app.storage.wal
        db.executescript(SCHEMA)
        _add_retry_of(db)
        self._db = db
        if self._path != ":memory:":
            self._wal.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "SqliteStore used outside its `async with`"
        return self._db

    # ---- group commit ----------------------------------------------------------------

    def _staged(self) -> None:
        self._schedule_flush(asyncio.get_running_loop().time() + FLUSH_DELAY_S)

    def _schedule_flush(self, due: float) -> None:
        if self._retrying:
            return
        if self._flush_handle is not None:
            if self._flush_due <= due:
                return
            self._flush_handle.cancel()
        self._flush_due = due
        self._flush_handle = asyncio.get_running_loop().call_at(due, self._flush)

    async def commit(self, linger_s: float = 0.0) -> None:
        """Return once everything staged so far is written, retrying failed writes."""
        while self.has_staged:
            try:
                await self._attempt(linger_s)
            except BackendUnavailable:
                continue  # staged again; its retry is scheduled
            return

    async def _attempt(self, linger_s: float) -> None:
        """Wait for the next write of what is staged; ``BackendUnavailable`` if it fails."""
        loop = asyncio.get_running_loop()
        if self._committed is None:
            self._committed = loop.create_future()
        self._schedule_flush(loop.time() + linger_s)
        await asyncio.shield(self._committed)

    async def save(self, record: ExecutionRecord, events: Sequence[StoredEvent] = ()) -> None:
        """``stage`` then write; refused (:class:`BackendUnavailable`, nothing of it kept) if
        that write fails or a failed one awaits its retry: no run is accepted unstored."""
        if self._retrying:
            raise BackendUnavailable(f"the store cannot write ({self.health.last_error})")
        previous = self._records.get(record.id)
        self.stage(record, events)
        try:
            await self._attempt(0.0)
        except BackendUnavailable:
            if self._records.pop(record.id, None) is None:
                return  # written by a retry in the meantime
            if previous is not None:
                self._records[record.id] = previous
            for event in events:
                self._events.pop((record.id, event.seq), None)
            raise

    async def wait_writable(self) -> None:
        if self._retrying:
            await self.commit()

    def _flush(self) -> None:
        """Commit everything staged (if anything) in one transaction and wake whoever awaits
        it. Reads call it first, so they see every staged write (unless a retry is due)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._retrying = False
        batch, done = self.take_staged(), self._committed
        keys, self._keys = self._keys, []
        self._committed = None
        try:
            if any(batch):
                self._write(batch, keys)
                self._wal.written()
                self.health.wrote()
        except Exception as exc:
            if transient(exc):
                self._keys[:0] = keys  # written again with their runs
                self._retry(batch, exc)
            elif done is None:
                raise
            if done is not None:
                done.set_exception(unavailable(exc) if transient(exc) else exc)
        else:
            if done is not None:
                done.set_result(None)

    def _retry(self, batch: Staged, exc: Exception) -> None:
        """Stage a failed write again (``_flush`` did not yield) and schedule its retry."""
        self.restage(batch)
        delay = self.health.write_failed(exc, sum(len(rows) for rows in batch))
        self._schedule_flush(asyncio.get_running_loop().time() + delay)
        self._retrying = True  # from now on only that flush writes

    def _write(self, batch: Staged, keys: list[KeyRow]) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(_UPSERT, batch.records)
            db.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?,?)", batch.events)
            db.executemany(INSERT_WEBHOOK, batch.webhooks)
            # A key replaced here had expired (save_keyed checked it on this thread).
            db.executemany(_UPSERT_KEY, keys)
            db.execute("COMMIT")  # in WAL mode the pages are written here: it can fail too
        except BaseException:
            if db.in_transaction:  # SQLITE_FULL, among others, has rolled it back already
                db.execute("ROLLBACK")
            raise

    # ---- executions ------------------------------------------------------------------

    def _query_one(self, sql: str, *args: Any) -> Any:
        if not self._retrying:
            self._flush()
        return self.db.execute(sql, args).fetchone()

    def _query_all(self, sql: str, *args: Any) -> builtins.list[Any]:
        if not self._retrying:
            self._flush()
        return self.db.execute(sql, args).fetchall()

    async def save_keyed(
        self, record: ExecutionRecord, key: IdempotencyKey, *, live_since: int
    ) -> IdempotencyKey | None:
        # The look-up flushes what is staged, and nothing runs between it and the staging
        # below (no await): this process is the file's one writer, so a race is decided here.
        first = await self.get_key(key.owner, key.key, live_since=live_since)
        if first is not None:
            return first
        self._keys.append(key_row(key))
        self.stage(record)
        await self.commit()
        return None

    async def get_key(self, owner: str, key: str, *, live_since: int) -> IdempotencyKey | None:
        row = self._query_one(
            f"SELECT {KEY_COLUMNS} FROM idempotency_keys WHERE owner=? AND key=? AND created_at>=?",
            owner,
            key,
            live_since,
        )
        return None if row is None else key_from_row(row)

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        row = self._query_one("SELECT body, workflow FROM executions WHERE id=?", execution_id)
        return None if row is None else record_from_row(*row)

    async def list(self, query: ExecutionQuery) -> ExecutionPage:
        where, args = sql_where(query, "?")
        total = self._query_one(f"SELECT count(*) FROM executions{where}", *args)
        rows = self._query_all(
            f"SELECT body, workflow FROM executions{where} "
            "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            *args,
            query.limit,
            query.offset,
        )
        return ExecutionPage([record_from_row(*r) for r in rows], int(total[0]))

    async def read_events(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[StoredEvent]:
        rows = self._query_all(
            "SELECT seq, type, payload FROM events WHERE execution_id=? AND seq>? "
            "ORDER BY seq LIMIT ?",
            execution_id,
            after,
            -1 if limit is None else limit,
        )
        return [StoredEvent(seq, type_, bytes(payload)) for seq, type_, payload in rows]

    async def prunable(
        self, *, created_before: int, keep: int | None, limit: int
    ) -> builtins.list[str]:
        total, aged = self._query_one(
            f"SELECT count(*), count(*) FILTER (WHERE created_at < ?) FROM executions "
            f"WHERE {_FINISHED_IN}",
            created_before,
            *FINISHED,
        )
        count = min(limit, prune_count(total, aged, keep))
        rows = self._query_all(
            f"SELECT id FROM executions WHERE {_FINISHED_IN} ORDER BY created_at, id LIMIT ?",
            *FINISHED,
            count,
        )
        return [row[0] for row in rows]

    async def delete(self, execution_ids: Sequence[str]) -> int:
        self._flush()  # a staged write of these runs must not bring them back
        db = self.db
        db.execute("BEGIN")
        try:
            gone = db.execute(_DELETE_RUNS, (msgspec.json.encode(execution_ids), *FINISHED))
            ids = msgspec.json.encode([row[0] for row in gone.fetchall()])
            for statement in _DELETE_LOGS:
                db.execute(statement, (ids,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        # As a script: execute() steps a pragma once, which frees a single page. The file
        # shrinks at the next checkpoint.
        db.executescript("PRAGMA incremental_vacuum;")
        self._wal.written()
        return len(msgspec.json.decode(ids))

    # ---- workflows -------------------------------------------------------------------

    def _execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        """A write of its own (workflows); one that fails for now is refused (503)."""
        with refusing():
            return self.db.execute(sql, args)

    async def create_workflow(self, workflow_id: str, body: JsonObject) -> None:
        try:
            self._execute(
                "INSERT INTO workflows VALUES (?,?,strftime('%s','now'))",
                workflow_id,
                msgspec.json.encode(body),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"workflow {workflow_id!r} already exists") from None

    async def put_workflow(self, workflow_id: str, body: JsonObject) -> None:
        self._execute(
            "UPDATE workflows SET body=? WHERE id=?", msgspec.json.encode(body), workflow_id
        )

    async def get_workflow(self, workflow_id: str) -> JsonObject | None:
        row = self._query_one("SELECT body FROM workflows WHERE id=?", workflow_id)
        return None if row is None else json_object(row[0])

    async def list_workflows(self) -> builtins.list[JsonObject]:
        rows = self._query_all("SELECT body FROM workflows ORDER BY created_at, rowid")
        return [json_object(r[0]) for r in rows]

    async def delete_workflow(self, workflow_id: str) -> bool:
        return self._execute("DELETE FROM workflows WHERE id=?", workflow_id).rowcount > 0

    async def close(self) -> None:
        self._flush()
        if self._retrying and self._flush_handle is not None:
            self._flush_handle.cancel()
            self.health.abandoned(len(self._records) + len(self._events))
        await self._wal.close()
        if self._db is not None:
            self._db.close()
            self._db = None
