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
the WAL checkpoint runs on a thread of its own (:mod:`app.storage.wal`). Under sustained load
it holds the store's writes for one short checkpoint now and then (``hold_writes``), so that
SQLite can start the WAL over: a flush that comes due meanwhile waits for ``release_writes``,
which commits it at once; reads and the writes made outside the group commit wait for the
release too (a read still sees every write staged before it). Only ``close`` writes during a
hold. The schema is in :mod:`app.storage.sqlite_schema`, the run control (idempotency keys,
retention) in :mod:`app.storage.sqlite_control`, the workflows in
:mod:`app.storage.sqlite_workflows`.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from app.errors import BackendUnavailable
from app.model.limits import KeyScope
from app.model.records import (
    ExecutionPage,
    ExecutionQuery,
    ExecutionRecord,
    IdempotencyKey,
    StoredEvent,
)
from app.storage.health import StoreHealth, transient, unavailable
from app.storage.log_rows import read_log
from app.storage.sql_rows import KeyRow, key_row, record_from_row
from app.storage.sqlite_batch import write_batch
from app.storage.sqlite_control import admit_new, delete_finished, find_key, key_runs, prunable
from app.storage.sqlite_outbox import SqliteOutbox
from app.storage.sqlite_pages import list_page
from app.storage.sqlite_schema import open_database
from app.storage.sqlite_workflows import SqliteWorkflows
from app.storage.staging import SqlStaging, Staged
from app.storage.wal import WalCheckpointer

#: How long staged writes may wait for others to share their transaction.
FLUSH_DELAY_S = 0.005


class SqliteStore(SqlStaging, SqliteOutbox, SqliteWorkflows):
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
        #: Set unless a WAL checkpoint holds the writes (``hold_writes``).
        self._released = asyncio.Event()
        self._released.set()
        self._wal = WalCheckpointer(self._path, self.health, self)

    async def __aenter__(self) -> Self:
        self._db = open_database(self._path)
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
        # A flush scheduled already is due within FLUSH_DELAY_S (no commit lingers longer):
        # a running execution stages at each of its events.
        if self._flush_handle is None:
            self._schedule_flush(asyncio.get_running_loop().time() + FLUSH_DELAY_S)

    def _schedule_flush(self, due: float) -> None:
        if self._retrying:
            return
        if self._flush_handle is not None:
            if self._flush_due <= due:
                return
            self._flush_handle.cancel()
        self._arm(due)

    def _arm(self, due: float) -> None:
        self._flush_due = due
        self._flush_handle = asyncio.get_running_loop().call_at(due, self._flush_unless_held)

    def _flush_unless_held(self) -> None:
        """A scheduled flush; one that comes due during a hold is left to the release."""
        if self._released.is_set():
            self._flush()

    def hold_writes(self) -> None:
        """Write nothing (reads and writes wait, staged rows stay staged) until
        :meth:`release_writes`: see :mod:`app.storage.wal`."""
        self._released.clear()

    def release_writes(self) -> None:
        """End a hold: a flush that came due during it (a commit's, or a retry's) runs now."""
        self._released.set()
        now = asyncio.get_running_loop().time()
        if self._flush_handle is not None and self._flush_due <= now:
            self._flush_handle.cancel()
            self._arm(now)

    async def _connection(self) -> sqlite3.Connection:
        """The connection, once no WAL checkpoint holds the writes."""
        while not self._released.is_set():
            await self._released.wait()
        return self.db

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
        self._schedule_flush(loop.time() + min(linger_s, FLUSH_DELAY_S))
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
            self.unstage_events(record.id, events)
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
                write_batch(self.db, batch, keys)
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

    # ---- executions ------------------------------------------------------------------

    async def _reading(self) -> sqlite3.Connection:
        """The connection, once everything staged is written (unless a retry is due)."""
        db = await self._connection()
        if not self._retrying:
            self._flush()
        return db

    async def _query_one(self, sql: str, *args: Any) -> Any:
        return (await self._reading()).execute(sql, args).fetchone()

    async def _query_all(self, sql: str, *args: Any) -> builtins.list[Any]:
        return (await self._reading()).execute(sql, args).fetchall()

    async def save_keyed(
        self,
        record: ExecutionRecord,
        key: IdempotencyKey | None,
        *,
        live_since: int = 0,
        alone: bool = False,
    ) -> IdempotencyKey | None:
        # The look-ups flush what is staged, and nothing runs between them and the staging
        # below (no await): this process is the file's one writer, so a race is decided here.
        first = admit_new(await self._reading(), record, key, live_since=live_since, alone=alone)
        if first is None:
            if key is not None:
                self._keys.append(key_row(key))
            self.stage(record)
            await self.commit()
        return first

    async def key_runs(self, key: KeyScope) -> builtins.list[str]:
        return key_runs(await self._reading(), key)

    async def get_key(self, owner: str, key: str, *, live_since: int) -> IdempotencyKey | None:
        return find_key(await self._reading(), owner, key, live_since=live_since)

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        row = await self._query_one(
            "SELECT body, workflow FROM executions WHERE id=?", execution_id
        )
        return None if row is None else record_from_row(*row)

    async def list(self, query: ExecutionQuery) -> ExecutionPage:
        return list_page(await self._reading(), query)

    async def read_events(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[StoredEvent]:
        rows = await self._query_all(
            "SELECT entries FROM event_log WHERE execution_id=? AND last_seq>? ORDER BY rowid",
            execution_id,
            after,
        )
        return read_log((row[0] for row in rows), after, limit)

    async def prunable(
        self, *, created_before: int, keep: int | None, limit: int
    ) -> builtins.list[str]:
        return prunable(
            await self._reading(), created_before=created_before, keep=keep, limit=limit
        )

    async def delete(self, execution_ids: Sequence[str]) -> int:
        db = await self._connection()
        self._flush()  # a staged write of these runs must not bring them back
        count = delete_finished(db, execution_ids)
        self._wal.written()
        return count

    async def close(self) -> None:
        self._flush()  # held or not: a checkpoint's hold never blocks a write
        if self._retrying and self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
            self.health.abandoned(self.staged_count)
        await self._wal.close()
        if self._db is not None:
            self._db.close()
            self._db = None
