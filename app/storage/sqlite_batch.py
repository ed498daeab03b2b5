"""The writes of one group commit on SQLite: every staged row of a batch, in one
transaction."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from app.storage.sql_rows import KEY_COLUMNS, KeyRow, RecordRow
from app.storage.sqlite_outbox import INSERT_WEBHOOK
from app.storage.staging import Staged

#: The workflow snapshot is written with the run's first row only (see app.sql_rows).
_UPSERT = """INSERT INTO executions (
    id, workflow_id, status, created_at, owner, body, workflow, retry_of, concurrency_key)
VALUES ({values}) ON CONFLICT (id) DO UPDATE SET status=excluded.status,
    body=excluded.body, workflow=coalesce(excluded.workflow, workflow)"""
#: The columns of a :data:`~app.storage.sql_rows.RecordRow` that may be NULL: ``owner``,
#: ``workflow``, ``retry_of``, ``concurrency_key``.
_NULLABLE = (4, 6, 7, 8)
#: A key replaced here had expired (``save_keyed`` checked it on this thread).
_UPSERT_KEY = f"INSERT OR REPLACE INTO idempotency_keys ({KEY_COLUMNS}) VALUES (?,?,?,?,?,?)"


def write_batch(db: sqlite3.Connection, batch: Staged, keys: list[KeyRow]) -> None:
    """Write (insert or replace) the rows in one transaction; nothing of it if it raises."""
    writes: list[tuple[str, Sequence[Sequence[Any]]]] = [
        *_upserts(batch.records),
        ("INSERT INTO event_log VALUES (?,?,?)", batch.logs),
        (INSERT_WEBHOOK, batch.webhooks),
        (_UPSERT_KEY, keys),
    ]
    db.execute("BEGIN")
    try:
        for sql, rows in writes:
            if rows:  # most commits have no webhook or key rows
                db.executemany(sql, rows)
        db.execute("COMMIT")  # in WAL mode the pages are written here: it can fail too
    except BaseException:
        if db.in_transaction:  # SQLITE_FULL, among others, has rolled it back already
            db.execute("ROLLBACK")
        raise


def _upserts(rows: list[RecordRow]) -> Iterator[tuple[str, list[list[Any]]]]:
    """The upserts of ``rows``, each with the parameters of its rows. A NULL column is a
    literal of the statement, not a parameter: Python 3.11's ``sqlite3`` binds ``None``
    through its adapter protocol (two ``AttributeError`` raised and cleared each time)."""
    by_nulls: dict[tuple[bool, ...], list[list[Any]]] = {}
    for row in rows:
        nulls = tuple(row[column] is None for column in _NULLABLE)
        by_nulls.setdefault(nulls, []).append([value for value in row if value is not None])
    for nulls, params in by_nulls.items():
        yield _upsert(nulls), params


@functools.cache
def _upsert(nulls: tuple[bool, ...]) -> str:
    """The upsert of the rows whose :data:`_NULLABLE` columns are NULL as ``nulls`` says."""
    values = ["?"] * 9
    for column, null in zip(_NULLABLE, nulls, strict=True):
        if null:
            values[column] = "NULL"
    return _UPSERT.format(values=",".join(values))
