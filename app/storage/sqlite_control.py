"""The embedded store's run control (SPEC §10): idempotency keys, the runs of a
concurrency key, and retention.

Each function runs on the store's connection, on the event loop's thread; the store has
flushed its staged writes first, so they are seen.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from app.errors import ConcurrencyConflict
from app.model.limits import KeyScope, key_scope
from app.model.records import ExecutionRecord, IdempotencyKey
from app.storage.sql_rows import (
    FINISHED,
    KEY_COLUMNS,
    UNFINISHED_TERMS,
    key_from_row,
    key_runs_sql,
    prune_count,
)

_SELECT_KEY = (
    f"SELECT {KEY_COLUMNS} FROM idempotency_keys WHERE owner=? AND key=? AND created_at>=?"
)
_FINISHED_IN = f"status IN ({','.join('?' * len(FINISHED))})"
#: Runs, then their logs, keys and webhook deliveries, deleted by id (a JSON array: no
#: limit on how many).
_DELETE_RUNS = f"""DELETE FROM executions WHERE id IN (SELECT value FROM json_each(?))
    AND {_FINISHED_IN} RETURNING id"""
_DELETE_LOGS = (
    "DELETE FROM event_log WHERE execution_id IN (SELECT value FROM json_each(?))",
    "DELETE FROM idempotency_keys WHERE execution_id IN (SELECT value FROM json_each(?))",
    "DELETE FROM webhooks WHERE execution_id IN (SELECT value FROM json_each(?))",
)


def find_key(
    db: sqlite3.Connection, owner: str, key: str, *, live_since: int
) -> IdempotencyKey | None:
    """The key ``owner`` gave, if it was claimed at or after ``live_since``."""
    row = db.execute(_SELECT_KEY, (owner, key, live_since)).fetchone()
    return None if row is None else key_from_row(row)


def key_runs(db: sqlite3.Connection, key: KeyScope) -> list[str]:
    """:meth:`~app.storage.base.ExecutionStore.key_runs`."""
    owner, name = key
    return [row[0] for row in db.execute(key_runs_sql("?", UNFINISHED_TERMS), (name, owner))]


def admit_new(
    db: sqlite3.Connection,
    record: ExecutionRecord,
    key: IdempotencyKey | None,
    *,
    live_since: int,
    alone: bool,
) -> IdempotencyKey | None:
    """What :meth:`~app.storage.base.ExecutionStore.save_keyed` decides before it stores:
    the live key stored first, if any (then store nothing); with ``alone``,
    :class:`ConcurrencyConflict` while an unfinished run of ``record``'s concurrency key
    is stored."""
    if key is not None:
        first = find_key(db, key.owner, key.key, live_since=live_since)
        if first is not None:
            return first
    scope = key_scope(record)
    holders = key_runs(db, scope) if alone and scope is not None else []
    if scope is not None and holders:
        raise ConcurrencyConflict.taken(scope[1], holders[0])
    return None


def prunable(
    db: sqlite3.Connection, *, created_before: int, keep: int | None, limit: int
) -> list[str]:
    """:meth:`~app.storage.base.ExecutionStore.prunable`: finished runs, oldest first."""
    total, aged = db.execute(
        f"SELECT count(*), count(*) FILTER (WHERE created_at < ?) FROM executions "
        f"WHERE {_FINISHED_IN}",
        (created_before, *FINISHED),
    ).fetchone()
    count = min(limit, prune_count(total, aged, keep))
    rows = db.execute(
        f"SELECT id FROM executions WHERE {_FINISHED_IN} ORDER BY created_at, id LIMIT ?",
        (*FINISHED, count),
    ).fetchall()
    return [row[0] for row in rows]


def delete_finished(db: sqlite3.Connection, execution_ids: Sequence[str]) -> int:
    """Delete the finished runs of ``execution_ids`` with their logs, keys and webhook
    deliveries in one transaction, then give their pages back to the file; how many runs."""
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
    return len(msgspec.json.decode(ids))
