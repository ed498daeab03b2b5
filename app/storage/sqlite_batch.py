"""The writes of one group commit on SQLite: every staged row of a batch, in one
transaction."""

from __future__ import annotations

import sqlite3

from app.storage.sql_rows import KEY_COLUMNS, KeyRow
from app.storage.sqlite_outbox import INSERT_WEBHOOK
from app.storage.staging import Staged

#: The workflow snapshot is written with the run's first row only (see app.sql_rows).
_UPSERT = """INSERT INTO executions (
    id, workflow_id, status, created_at, owner, body, workflow, retry_of, concurrency_key)
VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET status=excluded.status,
    body=excluded.body, workflow=coalesce(excluded.workflow, workflow)"""
#: A key replaced here had expired (``save_keyed`` checked it on this thread).
_UPSERT_KEY = f"INSERT OR REPLACE INTO idempotency_keys ({KEY_COLUMNS}) VALUES (?,?,?,?,?,?)"


def write_batch(db: sqlite3.Connection, batch: Staged, keys: list[KeyRow]) -> None:
    """Write (insert or replace) the rows in one transaction; nothing of it if it raises."""
    db.execute("BEGIN")
    try:
        for sql, rows in (
            (_UPSERT, batch.records),
            ("INSERT INTO event_log VALUES (?,?,?)", batch.logs),
            (INSERT_WEBHOOK, batch.webhooks),
            (_UPSERT_KEY, keys),
        ):
            if rows:  # most commits have no webhook or key rows
                db.executemany(sql, rows)
        db.execute("COMMIT")  # in WAL mode the pages are written here: it can fail too
    except BaseException:
        if db.in_transaction:  # SQLITE_FULL, among others, has rolled it back already
            db.execute("ROLLBACK")
        raise
