"""The embedded store's schema: its tables, and how a file is opened and brought up to
date (files made by older versions gain what they lack)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from app.storage.sql_rows import RETRY_OF_INDEX, UNFINISHED_SQL, UNFINISHED_TERMS
from app.storage.sqlite_pages import add_counts

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, status TEXT NOT NULL,
    created_at INTEGER NOT NULL, owner TEXT, body BLOB NOT NULL, workflow BLOB, retry_of TEXT,
    concurrency_key TEXT);
CREATE INDEX IF NOT EXISTS executions_by_workflow ON executions (workflow_id, created_at);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, created_at);
-- The list of every run, newest first, reads 50 rows, not the whole history (bench/history.py).
CREATE INDEX IF NOT EXISTS executions_by_time ON executions (created_at, id);
-- The runs' event logs, a row per run per group commit (app.storage.log_rows). Rows are
-- read in rowid order, which is the order they were written: a new rowid is above every
-- rowid in the table.
CREATE TABLE IF NOT EXISTS event_log (
    execution_id TEXT NOT NULL, last_seq INTEGER NOT NULL, entries BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS event_log_by_run ON event_log (execution_id, last_seq);
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


def open_database(path: str) -> sqlite3.Connection:
    """Open (creating the file and its directory) the database at ``path`` in autocommit
    mode, in WAL mode without automatic checkpoints (:mod:`app.storage.wal` runs them), with
    the :data:`SCHEMA`."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    _reclaim_space(db)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA wal_autocheckpoint=0")  # see app.storage.wal
    db.executescript(SCHEMA)
    _add_columns(db)
    _move_events(db)
    add_counts(db)
    return db


#: The log of older versions (table ``events``, a row per entry) moved into ``event_log``:
#: each entry becomes a row of its own, its message byte for byte.
_MOVE_EVENTS = """
INSERT INTO event_log (execution_id, last_seq, entries)
    SELECT execution_id, seq, CAST(
        '[[' || seq || ',' || json_quote(type) || ',' || CAST(payload AS TEXT) || ']]' AS BLOB)
    FROM events ORDER BY execution_id, seq;
DROP TABLE events;
"""


def _move_events(db: sqlite3.Connection) -> None:
    """Move the log of a file made by an older version into ``event_log``, once."""
    old = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'")
    if old.fetchone() is not None:
        log.info("moving the event log to a row per run and commit: a one-time copy")
        db.executescript(f"BEGIN; {_MOVE_EVENTS} COMMIT;")


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


#: The index of a concurrency key's unfinished runs (SPEC §10), oldest first; the query of
#: ``app.storage.sqlite_control.key_runs`` repeats its predicate, term for term.
KEY_INDEX = (
    "executions_key_unfinished ON executions (concurrency_key, created_at, id) "
    f"WHERE concurrency_key IS NOT NULL AND {UNFINISHED_TERMS}"
)


def _add_columns(db: sqlite3.Connection) -> None:
    """Give a file made by an older version the columns (and indexes) it lacks: ``retry_of``
    and ``concurrency_key`` (copied from the bodies of its unfinished runs); and drop the
    indexes of unfinished runs that older versions made with ``status IN`` three constants
    (:data:`~app.storage.sql_rows.UNFINISHED_TERMS`).

    The index of each workflow's unfinished runs is gone for good: one process uses the
    file and holds each workflow's running count in memory (PostgreSQL's claims use it),
    yet every write that moved a run's status maintained it, at a third of the write's CPU
    instructions (the temporary b-tree of its ``IN``)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(executions)")}
    if "retry_of" not in columns:
        db.execute("ALTER TABLE executions ADD COLUMN retry_of TEXT")
    if "concurrency_key" not in columns:
        db.execute("ALTER TABLE executions ADD COLUMN concurrency_key TEXT")
        db.execute(
            "UPDATE executions SET concurrency_key = "
            f"json_extract(CAST(body AS TEXT), '$.concurrency_key') WHERE {UNFINISHED_SQL}"
        )
    db.execute("DROP INDEX IF EXISTS executions_unfinished")
    db.execute("DROP INDEX IF EXISTS executions_unfinished_by_key")
    for index in (RETRY_OF_INDEX, KEY_INDEX):
        db.execute(f"CREATE INDEX IF NOT EXISTS {index}")
