"""The embedded store's pages of runs, newest first, and their totals: how many runs each
workflow has per status and owner is kept by triggers in the transactions that write the
runs, so the ``total`` of a page of ``GET /agents/executions`` is a sum over a few rows,
not a count of the whole history.

Counting 100,000 runs of one workflow (or one API key's) took 7 to 14 ms on SQLite
(bench/README.md, history); this takes microseconds whatever the history. A filter on
``retry_of`` is not counted here: its partial index holds only retries.
"""

from __future__ import annotations

import sqlite3

from app.model.records import ExecutionPage, ExecutionQuery
from app.storage.sql_rows import page_sql, record_from_row
from app.storage.sql_rows import where as sql_where

#: A count's key: its workflow, status and owner (a NULL owner apart from every other, ""
#: included). Unique, so that a trigger adds a run in one upsert.
_KEY = "workflow_id, status, ifnull(owner, ''), owner IS NULL"
_ADD = f"""
    INSERT INTO execution_counts VALUES (NEW.workflow_id, NEW.status, NEW.owner, 1)
    ON CONFLICT ({_KEY}) DO UPDATE SET n = n + 1;"""
_REMOVE = """
    UPDATE execution_counts SET n = n - 1
    WHERE workflow_id = OLD.workflow_id AND status = OLD.status AND owner IS OLD.owner;"""
_COUNTS_TABLE = """
CREATE TABLE execution_counts (
    workflow_id TEXT NOT NULL, status TEXT NOT NULL, owner TEXT, n INTEGER NOT NULL);
INSERT INTO execution_counts
    SELECT workflow_id, status, owner, count(*) FROM executions GROUP BY 1, 2, 3;"""
#: A run's workflow and owner never change; its status does (an upsert that leaves it as
#: it was changes no count).
_COUNTERS = f"""
CREATE UNIQUE INDEX execution_counts_key ON execution_counts ({_KEY});
CREATE TRIGGER executions_counted AFTER INSERT ON executions BEGIN {_ADD}
END;
CREATE TRIGGER executions_uncounted AFTER DELETE ON executions BEGIN {_REMOVE}
END;
CREATE TRIGGER executions_recounted AFTER UPDATE OF status ON executions
WHEN OLD.status IS NOT NEW.status BEGIN {_REMOVE} {_ADD}
END;"""
#: What older versions counted with: triggers of two statements where one upsert does, and
#: an index the key replaces.
_OLD_COUNTERS = """
DROP INDEX execution_counts_by_workflow; DROP TRIGGER executions_counted;
DROP TRIGGER executions_uncounted; DROP TRIGGER executions_recounted;"""


def add_counts(db: sqlite3.Connection) -> None:
    """Create the counts (of the runs stored so far) and their triggers, unless the file
    has them; a file of an older version gets the triggers of this one."""

    def exists(kind: str, name: str) -> bool:
        found = db.execute("SELECT 1 FROM sqlite_master WHERE type = ? AND name = ?", (kind, name))
        return found.fetchone() is not None

    # in one transaction: the counts match the runs
    if not exists("table", "execution_counts"):
        db.executescript(f"BEGIN; {_COUNTS_TABLE} {_COUNTERS} COMMIT;")
    elif not exists("index", "execution_counts_key"):
        db.executescript(f"BEGIN; {_OLD_COUNTERS} {_COUNTERS} COMMIT;")


def list_page(db: sqlite3.Connection, query: ExecutionQuery) -> ExecutionPage:
    """:meth:`~app.storage.base.ExecutionStore.list`."""
    where, args = sql_where(query, "?")
    if query.retry_of is None:
        total = f"SELECT coalesce(sum(n), 0) FROM execution_counts{where}"
    else:
        total = f"SELECT count(*) FROM executions{where}"
    rows = db.execute(page_sql(query, where, "?"), (*args, query.limit, query.offset)).fetchall()
    counted = db.execute(total, args).fetchone()
    return ExecutionPage([record_from_row(*r) for r in rows], int(counted[0]))
