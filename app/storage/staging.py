"""Staged writes of the SQL stores: the ``stage``/``save`` half of the group-commit contract
(:mod:`app.storage.base`), shared by :class:`~app.storage.sqlite.SqliteStore` and
:class:`~app.storage.postgres.PostgresStore`.

A staged record or log entry waits here, keyed by run (and ``seq``), so staging one again
before it is written replaces the earlier version, until the store's writer takes every
staged row as one batch (:meth:`SqlStaging.take_staged`) and commits it in one transaction:
a run's entries then become one log row (:mod:`app.storage.log_rows`). Webhook outbox rows
staged with them (SPEC §11) go in the same batch, hence the same transaction as the status
they report.

A record staged with ``stage`` is encoded at once (a copy of it as it was then); one staged
with ``stage_live`` is encoded when the batch is taken, so a running execution staged at
each of its events is encoded once per commit, not once per event.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from msgspec import Raw

from app.model.records import ExecutionRecord, StoredEvent
from app.model.webhooks import WebhookDelivery
from app.storage.log_rows import LogEntry, LogRow, log_row, row_entries
from app.storage.sql_rows import (
    SNAPSHOT_COLUMN,
    RecordRow,
    WebhookRow,
    record_row,
    webhook_row,
)


class Staged(NamedTuple):
    """One batch of staged rows, written in one transaction."""

    records: list[RecordRow]
    logs: list[LogRow]
    webhooks: list[WebhookRow]


@dataclass(slots=True)
class _Live:
    """A record staged live, and the workflow snapshot of the row it replaced (if any)."""

    record: ExecutionRecord
    carried: bytearray | None


class SqlStaging(ABC):
    def __init__(self) -> None:
        self._records: dict[str, RecordRow | _Live] = {}
        #: The log entries staged, by run and ``seq``.
        self._events: dict[str, dict[int, LogEntry]] = {}
        self._webhooks: list[WebhookRow] = []

    def stage(self, record: ExecutionRecord, events: Sequence[StoredEvent] = ()) -> None:
        self._records[record.id] = record_row(record, self._carried(record.id))
        self.stage_events(record.id, events)

    def stage_live(self, record: ExecutionRecord, events: Sequence[StoredEvent] = ()) -> None:
        self._records[record.id] = _Live(record, self._carried(record.id))
        self.stage_events(record.id, events)

    def _carried(self, execution_id: str) -> bytearray | None:
        """The workflow snapshot of the record row staged for ``execution_id``, if any: a
        first write must not lose it to a later one."""
        staged = self._records.get(execution_id)
        if staged is None:
            return None
        return staged.carried if isinstance(staged, _Live) else staged[SNAPSHOT_COLUMN]

    def stage_events(self, execution_id: str, events: Sequence[StoredEvent]) -> None:
        if events:
            log = self._events.get(execution_id)
            if log is None:
                log = self._events[execution_id] = {}
            for event in events:
                log[event.seq] = LogEntry(event.seq, event.type, Raw(event.payload))
        self._staged()

    def unstage_events(self, execution_id: str, events: Sequence[StoredEvent]) -> None:
        """Take back staged ``events`` of ``execution_id`` (a refused write's)."""
        log = self._events.get(execution_id, {})
        for event in events:
            log.pop(event.seq, None)
        if not log:
            self._events.pop(execution_id, None)

    @property
    def staged_count(self) -> int:
        """How many records, log entries and webhook rows are staged."""
        entries = sum(len(log) for log in self._events.values())
        return len(self._records) + entries + len(self._webhooks)

    def stage_webhooks(self, deliveries: Sequence[WebhookDelivery]) -> None:
        self._webhooks.extend(webhook_row(d) for d in deliveries)
        self._staged()

    async def save(self, record: ExecutionRecord, events: Sequence[StoredEvent] = ()) -> None:
        self.stage(record, events)
        await self.commit()

    @abstractmethod
    def _staged(self) -> None:
        """Called after each ``stage``: see that the staged rows get written."""

    @abstractmethod
    async def commit(self, linger_s: float = 0.0) -> None: ...

    @property
    def has_staged(self) -> bool:
        return bool(self._records or self._events or self._webhooks)

    def take_staged(self) -> Staged:
        """Every staged row, in staging order, now no longer staged (live records encoded
        as they are now, each run's entries as one log row)."""
        records = [
            record_row(row.record, row.carried) if isinstance(row, _Live) else row
            for row in self._records.values()
        ]
        logs = [log_row(execution_id, log) for execution_id, log in self._events.items()]
        batch = Staged(records, logs, self._webhooks)
        self._records, self._events, self._webhooks = {}, {}, []
        return batch

    def restage(self, batch: Staged) -> None:
        """Put back the rows a failed write took with :meth:`take_staged` (before anything
        else is staged)."""
        restaged: dict[str, RecordRow | _Live] = {row[0]: row for row in batch.records}
        self._records = restaged | self._records
        for execution_id, _, entries in batch.logs:  # the entries staged since replace them
            log = {entry.seq: entry for entry in row_entries(entries)}
            self._events[execution_id] = log | self._events.get(execution_id, {})
        self._webhooks = batch.webhooks + self._webhooks
