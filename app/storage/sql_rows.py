"""How execution records map to SQL rows, shared by the SQLite and PostgreSQL stores.

An ``executions`` row is ``(id, workflow_id, status, created_at, owner, body, workflow,
retry_of, concurrency_key)``: ``body`` is the record without its workflow snapshot, and
``workflow`` the snapshot, written with the run's first row only (later writes pass
``None`` and keep the stored one); the other columns are copies of record fields that
queries filter on.

Encoded columns are ``bytearray``: both drivers store one as the ``bytes`` it holds, and
Python 3.11's ``sqlite3`` binds it directly, where it passes each ``bytes`` through its
adapter protocol (two ``AttributeError`` raised and cleared per parameter).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from app.messages import encoder
from app.model.records import ExecutionQuery, ExecutionRecord, IdempotencyKey
from app.model.status import ExecutionStatus
from app.model.webhooks import WebhookDelivery, decode_delivery

RecordRow = tuple[
    str, str, str, int, str | None, bytearray, bytearray | None, str | None, str | None
]
#: Where a :data:`RecordRow` holds the run's workflow snapshot.
SNAPSHOT_COLUMN: Final = 6

#: The index behind ``GET /agents/executions?retry_of=`` in both SQL stores. PostgreSQL's
#: released migration 2 uses it: never change it, add a migration.
RETRY_OF_INDEX = "executions_by_retry_of ON executions (retry_of) WHERE retry_of IS NOT NULL"
#: The statuses of runs not finished: those that hold (or wait for) their concurrency key.
UNFINISHED = ("new", "running", "waiting")
#: The SQL predicate of the unfinished runs, the same text in both stores' partial indexes
#: and in the queries that use them (SQLite matches a partial index by its terms).
UNFINISHED_SQL = "status IN ('new', 'running', 'waiting')"
#: The same predicate as SQLite evaluates it cheaply: its ``IN`` of three or more constants
#: builds a temporary b-tree each time, which a partial index pays at every write of a row.
UNFINISHED_TERMS = "(status = 'new' OR status = 'running' OR status = 'waiting')"
#: The partial indexes behind run control (SPEC §10), oldest first: a workflow's unfinished
#: runs (its running count and oldest queued runs, which PostgreSQL's claims ask) and a
#: concurrency key's. They hold only unfinished runs, so their size does not grow with the
#: history. PostgreSQL's released migration 6 uses them: never change them, add a migration.
UNFINISHED_BY_WORKFLOW_INDEX = (
    f"executions_unfinished ON executions (workflow_id, created_at, id) WHERE {UNFINISHED_SQL}"
)
UNFINISHED_BY_KEY_INDEX = (
    "executions_unfinished_by_key ON executions (concurrency_key, created_at, id) "
    f"WHERE concurrency_key IS NOT NULL AND {UNFINISHED_SQL}"
)


def key_runs_sql(placeholder: str, unfinished: str = UNFINISHED_SQL) -> str:
    """The ids of the unfinished runs of a concurrency key (arguments: key, owner or
    ``""``), oldest first; ``unfinished`` is the predicate of the store's partial index."""
    p = placeholder
    return (
        f"SELECT id FROM executions WHERE concurrency_key = {p} AND coalesce(owner, '') = {p} "
        f"AND {unfinished} ORDER BY created_at, id"
    )


#: An ``idempotency_keys`` row: ``(owner, key, fingerprint, execution_id, created_at, answer)``.
KeyRow = tuple[str, str, str, str, int, bytes]
#: The columns of :data:`KeyRow`, in order.
KEY_COLUMNS = "owner, key, fingerprint, execution_id, created_at, answer"

_record_decoder = msgspec.json.Decoder(ExecutionRecord)
json_object = msgspec.json.Decoder(dict[str, Any]).decode


def encoded(value: Any) -> bytearray:
    """``value`` in JSON (the push messages' encoder), as a column's bytes."""
    column = bytearray()
    encoder.encode_into(value, column)
    return column


def record_row(record: ExecutionRecord, carried: bytearray | None = None) -> RecordRow:
    """The row to write for ``record``; ``carried`` is the workflow snapshot of its row
    still waiting to be written (a first write must not lose it to a later one)."""
    workflow = encoded(record.workflow) if record.last_seq == 0 else carried
    return (
        record.id,
        record.workflow_id,
        record.status.value,
        record.created_at,
        record.owner,
        encoded(msgspec.structs.replace(record, workflow={})),
        workflow,
        record.retry_of,
        record.concurrency_key,
    )


def record_from_row(body: bytes, workflow: bytes | None) -> ExecutionRecord:
    record = _record_decoder.decode(body)
    if workflow is not None:
        record.workflow = json_object(workflow)
    return record


def where(query: ExecutionQuery, placeholder: str) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (or ``""``) and its arguments for ``query``'s filters."""
    clauses, args = [], []
    for column, value in (
        ("workflow_id", query.workflow_id),
        ("status", query.status.value if query.status else None),
        ("owner", query.owner),
        ("retry_of", query.retry_of),
    ):
        if value is not None:
            clauses.append(f"{column}={placeholder}")
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def page_sql(query: ExecutionQuery, where: str, placeholder: str) -> str:
    """The rows ``(body, workflow snapshot or NULL)`` of a page, newest first; its
    arguments are ``where``'s, then limit and offset."""
    snapshot = "workflow" if query.snapshots else "NULL"
    return (
        f"SELECT body, {snapshot} FROM executions{where} "
        f"ORDER BY created_at DESC, id DESC LIMIT {placeholder} OFFSET {placeholder}"
    )


def key_row(key: IdempotencyKey) -> KeyRow:
    return (key.owner, key.key, key.fingerprint, key.execution_id, key.created_at, key.answer)


def key_from_row(row: Any) -> IdempotencyKey:
    owner, key, fingerprint, execution_id, created_at, answer = row
    return IdempotencyKey(
        owner=owner,
        key=key,
        fingerprint=fingerprint,
        execution_id=execution_id,
        created_at=int(created_at),
        answer=bytes(answer),
    )


#: The statuses of finished runs, the only ones retention deletes.
FINISHED = [status.value for status in ExecutionStatus if status.finished]


def prune_count(total: int, aged: int, keep: int | None) -> int:
    """How many of the oldest finished runs are past retention: ``total`` finished, of
    which ``aged`` are too old, and at most ``keep`` may stay (both select a prefix of the
    finished runs ordered oldest first)."""
    return max(aged, 0 if keep is None else total - keep)


#: A webhook outbox row: ``(id, execution_id, status, due, body)``; ``due`` is the next
#: attempt's time (NULL once delivered or failed), ``body`` the encoded delivery.
WebhookRow = tuple[str, str, str, int | None, bytes]
webhook_from_body = decode_delivery


def webhook_row(delivery: WebhookDelivery) -> WebhookRow:
    d = delivery
    return (d.id, d.execution_id, d.status, d.next_attempt_at, msgspec.json.encode(d))
