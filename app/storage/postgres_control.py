"""The shared store's run control (SPEC §10): idempotency keys, claims of runs within
their limits, and retention.

Claims are decided inside PostgreSQL, so that of two API or worker processes racing for
the same key or the last free slot of a workflow, one wins, and runs start in the order
they were queued (``created_at``, then ``id``) whichever process holds them: a run waits
for the older queued runs of its key, and for those of its workflow that could start
now (not for one its own key holds back: no head-of-line blocking). Each function runs
in the caller's connection (and transaction, where it says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from app.errors import ConcurrencyConflict, Conflict
from app.model.limits import Claim, KeyScope, key_scope
from app.model.records import ExecutionRecord, IdempotencyKey
from app.storage.postgres_batch import upsert
from app.storage.sql_rows import (
    FINISHED,
    KEY_COLUMNS,
    UNFINISHED_SQL,
    key_from_row,
    key_row,
    key_runs_sql,
    prune_count,
    record_row,
)
from app.storage.staging import Staged

#: ``pg_advisory_xact_lock`` key of claims of runs with concurrency limits.
CLAIM_LOCK = 0x67726170687076
#: ``pg_advisory_xact_lock(KEY_LOCK, hashtext(key))``: a concurrency key being taken.
KEY_LOCK = 0x67707573
_RUNNING = "SELECT count(*) FROM executions WHERE workflow_id = %s AND status = 'running'"
#: Whether ``h`` holds the key before run ``o``: it is started (running or waiting) or
#: queued before it. Both use the partial indexes of unfinished runs.
_BEFORE = f"""h.concurrency_key = {{key}} AND coalesce(h.owner, '') = {{owner}}
    AND h.{UNFINISHED_SQL} AND h.id <> {{id}}
    AND (h.status <> 'new' OR (h.created_at, h.id) < ({{at}}, {{id}}))"""
_KEY_TAKEN = "SELECT count(*) FROM executions h WHERE " + _BEFORE.format(
    key="%(key)s", owner="%(owner)s", id="%(id)s", at="%(at)s"
)
_HELD_BEFORE_OLDER = _BEFORE.format(
    key="o.concurrency_key", owner="coalesce(o.owner, '')", id="o.id", at="o.created_at"
)
#: The queued runs of the workflow older than this one that could start now: none of their
#: key's runs holds it before them.
_OLDER_STARTABLE = f"""SELECT count(*) FROM executions o WHERE o.workflow_id = %(workflow)s
    AND o.status = 'new' AND (o.created_at, o.id) < (%(at)s, %(id)s)
    AND (o.concurrency_key IS NULL
         OR NOT EXISTS (SELECT 1 FROM executions h WHERE {_HELD_BEFORE_OLDER}))"""
#: Claims the key unless a live one holds it: an expired key is taken over.
_CLAIM_KEY = f"""
INSERT INTO idempotency_keys ({KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (owner, key) DO UPDATE SET fingerprint = excluded.fingerprint,
    execution_id = excluded.execution_id, created_at = excluded.created_at,
    answer = excluded.answer
WHERE idempotency_keys.created_at < %s
RETURNING 1"""
_SELECT_KEY = f"""SELECT {KEY_COLUMNS} FROM idempotency_keys
WHERE owner = %s AND key = %s AND created_at >= %s"""
_FINISHED_AGES = """SELECT count(*), count(*) FILTER (WHERE created_at < %s) FROM executions
WHERE status = ANY(%s)"""
_OLDEST_FINISHED = (
    "SELECT id FROM executions WHERE status = ANY(%s) ORDER BY created_at, id LIMIT %s"
)
#: One statement, so one short transaction per batch of ids: the run, its log, its keys,
#: its webhook deliveries.
_DELETE_RUNS = """
WITH gone AS (
    DELETE FROM executions WHERE id = ANY(%s) AND status = ANY(%s) RETURNING id),
events AS (DELETE FROM execution_log WHERE execution_id IN (SELECT id FROM gone)),
keys AS (DELETE FROM idempotency_keys WHERE execution_id IN (SELECT id FROM gone)),
hooks AS (DELETE FROM webhook_deliveries WHERE execution_id IN (SELECT id FROM gone))
SELECT count(*) FROM gone"""

Connection = psycopg.AsyncConnection[Any]


async def claim_key(
    conn: Connection, key: IdempotencyKey, *, live_since: int
) -> IdempotencyKey | None:
    """Claim ``key`` within the caller's transaction: None if claimed, else the live key
    that holds it. A racing claim of the same key waits for this transaction to end, then
    finds the conflict (READ COMMITTED)."""
    claimed = await conn.execute(_CLAIM_KEY, (*key_row(key), live_since))
    if await claimed.fetchone() is not None:
        return None
    first = await (await conn.execute(_SELECT_KEY, (key.owner, key.key, 0))).fetchone()
    if first is None:  # deleted since the conflict (pruned with its run)
        raise Conflict("the idempotency key is being released; retry the request")
    return key_from_row(first)


async def find_key(
    conn: Connection, owner: str, key: str, *, live_since: int
) -> IdempotencyKey | None:
    """The key ``owner`` gave, if it was claimed at or after ``live_since``."""
    row = await (await conn.execute(_SELECT_KEY, (owner, key, live_since))).fetchone()
    return None if row is None else key_from_row(row)


async def claim_limited(
    conn: Connection,
    record: ExecutionRecord,
    body: bytes,
    *,
    limit: int | None,
    scope: KeyScope | None,
) -> Claim:
    """Write ``record`` (its ``body``) over the stored run if that is still ``new`` and the
    run's workflow ``limit`` and concurrency key ``scope`` allow it, in the caller's
    transaction."""
    # Claims with limits take turns: each sees the runs the previous one started.
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
    run = {"id": record.id, "at": record.created_at, "workflow": record.workflow_id}
    if scope is not None:
        owner, key = scope
        if await _count(conn, _KEY_TAKEN, {**run, "owner": owner, "key": key}):
            return Claim.KEY_TAKEN
    if limit is not None:
        taken = await _count(conn, _RUNNING, (record.workflow_id,))
        if taken + await _count(conn, _OLDER_STARTABLE, run) >= limit:
            return Claim.WORKFLOW_FULL
    cursor = await conn.execute(
        "UPDATE executions SET status=%s, body=%s WHERE id=%s AND status='new'",
        (record.status.value, body, record.id),
    )
    return Claim.CLAIMED if cursor.rowcount == 1 else Claim.GONE


async def prunable(
    conn: Connection, *, created_before: int, keep: int | None, limit: int
) -> list[str]:
    """:meth:`~app.storage.base.ExecutionStore.prunable`: finished runs, oldest first."""
    row = await (await conn.execute(_FINISHED_AGES, (created_before, FINISHED))).fetchone()
    total, aged = row or (0, 0)
    count = min(limit, prune_count(total, aged, keep))
    rows = await (await conn.execute(_OLDEST_FINISHED, (FINISHED, count))).fetchall()
    return [row[0] for row in rows]


async def delete_finished(conn: Connection, execution_ids: Sequence[str]) -> int:
    """Delete the finished runs of ``execution_ids`` with their logs, keys and webhook
    deliveries; how many."""
    row = await (await conn.execute(_DELETE_RUNS, (list(execution_ids), FINISHED))).fetchone()
    return int(row[0]) if row else 0


async def store_new(
    conn: Connection,
    record: ExecutionRecord,
    key: IdempotencyKey | None,
    *,
    live_since: int,
    alone: bool,
) -> IdempotencyKey | None:
    """:meth:`~app.storage.base.ExecutionStore.save_keyed` in the caller's transaction:
    :func:`claim_key`, then (``alone``) :func:`take_key`, then the run; a
    :class:`ConcurrencyConflict` rolls back the key claimed before it."""
    first = None if key is None else await claim_key(conn, key, live_since=live_since)
    if first is None:
        scope = key_scope(record)
        if alone and scope is not None:
            await take_key(conn, scope)
        await upsert(conn, Staged([record_row(record)], [], []))
    return first


async def key_runs(conn: Connection, key: KeyScope) -> list[str]:
    """:meth:`~app.storage.base.ExecutionStore.key_runs`."""
    owner, name = key
    rows = await (await conn.execute(key_runs_sql("%s"), (name, owner))).fetchall()
    return [row[0] for row in rows]


async def take_key(conn: Connection, scope: KeyScope) -> None:
    """Raise :class:`ConcurrencyConflict` if an unfinished run of the concurrency key
    ``scope`` is stored, in the caller's transaction, which holds the key's lock until it
    ends: a racing call waits for it, then sees the run it stored (READ COMMITTED)."""
    owner, key = scope
    await conn.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (KEY_LOCK, f"{owner}\n{key}")
    )
    row = await (await conn.execute(key_runs_sql("%s") + " LIMIT 1", (key, owner))).fetchone()
    if row is not None:
        raise ConcurrencyConflict.taken(key, row[0])


async def _count(conn: Connection, sql: str, args: Any) -> int:
    row = await (await conn.execute(sql, args)).fetchone()
    return int(row[0]) if row else 0
