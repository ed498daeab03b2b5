"""Staged writes of the SQL stores: the ``stage``/``save`` half of the group-commit contract
(:mod:`app.storage.base`), shared by :class:`~app.storage.sqlite.SqliteStore` and
:class:`~app.storage.postgres.PostgresStore`.

A staged record or log entry waits here, keyed by run (and ``seq``), so staging one again
before it is written replaces the earlier version, until the store's writer takes every
staged row as one batch (:meth:`SqlStaging.take_staged`) and commits it in one transaction.
Webhook outbox rows staged with them (SPEC §11) go in the same batch, hence the same
transaction as the status they report.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

from app.model.records import ExecutionRecord, StoredEvent
from app.model.webhooks import WebhookDelivery
from app.storage.sql_rows import EventRow, RecordRow, WebhookRow, record_row, webhook_row


class Staged(NamedTuple):
    """One batch of staged rows, written in one transaction."""

    records: list[RecordRow]
    events: list[EventRow]
    webhooks: list[WebhookRow]


class SqlStaging(ABC):
    def __init__(self) -> None:
        self._records: dict[str, RecordRow] = {}
        self._events: dict[tuple[str, int], EventRow] = {}
        self._webhooks: list[WebhookRow] = []

    def stage(self, record: ExecutionRecord, events: Sequence[StoredEvent] = ()) -> None:
        self._records[record.id] = record_row(record, self._records.get(record.id))
        self.stage_events(record.id, events)

    def stage_events(self, execution_id: str, events: Sequence[StoredEvent]) -> None:
        for e in events:
            self._events[execution_id, e.seq] = (execution_id, e.seq, e.type, e.payload)
        self._staged()

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
        """Every staged row, in staging order, now no longer staged."""
        batch = Staged(list(self._records.values()), list(self._events.values()), self._webhooks)
        self._records, self._events, self._webhooks = {}, {}, []
        return batch

    def restage(self, batch: Staged) -> None:
        """Put back the rows a failed write took with :meth:`take_staged` (before anything
        else is staged)."""
        self._records = {row[0]: row for row in batch.records} | self._records
        self._events = {row[:2]: row for row in batch.events} | self._events
        self._webhooks = batch.webhooks + self._webhooks
