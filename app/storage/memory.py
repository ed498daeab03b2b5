"""A store that keeps nothing across restarts: for tests and throwaway servers.

Records are kept encoded, so a caller mutating a record after ``stage`` changes nothing
stored, exactly as with :class:`~app.storage.sqlite.SqliteStore`.
"""

from __future__ import annotations

import bisect
import builtins
import itertools
from collections.abc import Sequence
from operator import attrgetter
from types import TracebackType
from typing import Self

import msgspec

from app.errors import ConcurrencyConflict, Conflict
from app.messages import encoder
from app.model.limits import KeyScope, key_scope
from app.model.records import (
    ExecutionPage,
    ExecutionQuery,
    ExecutionRecord,
    IdempotencyKey,
    JsonObject,
    StoredEvent,
)
from app.model.webhooks import WebhookDelivery
from app.model.webhooks import decode_delivery as webhook_from_body
from app.storage.sql_rows import prune_count

_decode = msgspec.json.Decoder(ExecutionRecord).decode


class MemoryStore:
    """:class:`~app.storage.base.ExecutionStore` and :class:`~app.storage.base.WorkflowStore`
    in dicts."""

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}
        self._events: dict[str, list[StoredEvent]] = {}
        self._workflows: dict[str, JsonObject] = {}
        #: webhook id -> (encoded delivery, claimed until), in creation order.
        self._webhooks: dict[str, tuple[bytes, int]] = {}
        self._keys: dict[tuple[str, str], IdempotencyKey] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def stage(self, record: ExecutionRecord, events: Sequence[StoredEvent] = ()) -> None:
        self._records[record.id] = encoder.encode(record)
        self.stage_events(record.id, events)

    def stage_live(self, record: ExecutionRecord, events: Sequence[StoredEvent] = ()) -> None:
        self.stage(record, events)  # nothing waits for a commit here: a copy now

    def stage_events(self, execution_id: str, events: Sequence[StoredEvent]) -> None:
        log = self._events.setdefault(execution_id, [])
        for event in events:  # a re-staged seq replaces its entry, as in the SQL stores
            if not log or log[-1].seq < event.seq:
                log.append(event)
                continue
            at = bisect.bisect_left(log, event.seq, key=attrgetter("seq"))
            if log[at].seq == event.seq:
                log[at] = event
            else:
                log.insert(at, event)

    def stage_webhooks(self, deliveries: Sequence[WebhookDelivery]) -> None:
        for delivery in deliveries:
            self._webhooks.setdefault(delivery.id, (msgspec.json.encode(delivery), 0))

    async def list_webhooks(self, execution_id: str) -> builtins.list[WebhookDelivery]:
        every = (webhook_from_body(body) for body, _ in self._webhooks.values())
        return [d for d in every if d.execution_id == execution_id]

    async def claim_webhooks(
        self, now: int, lease_ms: int, limit: int
    ) -> builtins.list[WebhookDelivery]:
        due = []
        for body, claimed_until in self._webhooks.values():
            delivery = webhook_from_body(body)
            ready = delivery.next_attempt_at is not None and delivery.next_attempt_at <= now
            if delivery.status == "pending" and ready and claimed_until <= now:
                due.append(delivery)
        due.sort(key=lambda d: d.next_attempt_at or 0)
        for delivery in due[:limit]:
            self._webhooks[delivery.id] = (self._webhooks[delivery.id][0], now + lease_ms)
        return due[:limit]

    async def save_webhook(self, delivery: WebhookDelivery) -> None:
        self._webhooks[delivery.id] = (msgspec.json.encode(delivery), 0)

    async def release_webhook_claims(self) -> None:
        self._webhooks = {k: (body, 0) for k, (body, _) in self._webhooks.items()}

    async def commit(self, linger_s: float = 0.0) -> None:
        return None

    async def save(self, record: ExecutionRecord, events: Sequence[StoredEvent] = ()) -> None:
        self.stage(record, events)

    async def wait_writable(self) -> None:
        return None

    async def save_keyed(
        self,
        record: ExecutionRecord,
        key: IdempotencyKey | None,
        *,
        live_since: int = 0,
        alone: bool = False,
    ) -> IdempotencyKey | None:
        if key is not None and (
            first := await self.get_key(key.owner, key.key, live_since=live_since)
        ):
            return first
        scope = key_scope(record)
        if alone and scope is not None and (holders := await self.key_runs(scope)):
            raise ConcurrencyConflict.taken(scope[1], holders[0])
        if key is not None:
            self._keys[key.owner, key.key] = key
        self.stage(record)
        return None

    async def key_runs(self, key: KeyScope) -> builtins.list[str]:
        unfinished = sorted(
            (r.created_at, r.id)
            for r in map(_decode, self._records.values())
            if not r.status.finished and key_scope(r) == key
        )
        return [execution_id for _, execution_id in unfinished]

    async def get_key(self, owner: str, key: str, *, live_since: int) -> IdempotencyKey | None:
        found = self._keys.get((owner, key))
        return found if found is not None and found.created_at >= live_since else None

    async def prunable(
        self, *, created_before: int, keep: int | None, limit: int
    ) -> builtins.list[str]:
        finished = sorted(
            (r.created_at, r.id) for r in map(_decode, self._records.values()) if r.status.finished
        )
        aged = sum(1 for created_at, _ in finished if created_at < created_before)
        count = min(limit, prune_count(len(finished), aged, keep))
        return [execution_id for _, execution_id in finished[:count]]

    async def delete(self, execution_ids: Sequence[str]) -> int:
        gone = {i for i in execution_ids if (r := await self.get(i)) and r.status.finished}
        for execution_id in gone:
            del self._records[execution_id]
            self._events.pop(execution_id, None)
        self._keys = {k: v for k, v in self._keys.items() if v.execution_id not in gone}
        for webhook_id, (body, _) in list(self._webhooks.items()):
            if webhook_from_body(body).execution_id in gone:
                del self._webhooks[webhook_id]
        return len(gone)

    async def get(self, execution_id: str) -> ExecutionRecord | None:
        body = self._records.get(execution_id)
        return None if body is None else _decode(body)

    async def list(self, query: ExecutionQuery) -> ExecutionPage:
        records = [
            r
            for r in map(_decode, self._records.values())
            if (query.workflow_id is None or r.workflow_id == query.workflow_id)
            and (query.status is None or r.status == query.status)
            and (query.owner is None or r.owner == query.owner)
            and (query.retry_of is None or r.retry_of == query.retry_of)
        ]
        records.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        page = list(itertools.islice(records, query.offset, query.offset + query.limit))
        if not query.snapshots:
            page = [msgspec.structs.replace(r, workflow={}) for r in page]
        return ExecutionPage(page, len(records))

    async def read_events(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[StoredEvent]:
        events = [e for e in self._events.get(execution_id, ()) if e.seq > after]
        return events if limit is None else events[:limit]

    async def create_workflow(self, workflow_id: str, body: JsonObject) -> None:
        if workflow_id in self._workflows:
            raise Conflict(f"workflow {workflow_id!r} already exists")
        self._workflows[workflow_id] = body

    async def put_workflow(self, workflow_id: str, body: JsonObject) -> None:
        if workflow_id in self._workflows:
            self._workflows[workflow_id] = body

    async def get_workflow(self, workflow_id: str) -> JsonObject | None:
        return self._workflows.get(workflow_id)

    async def list_workflows(self) -> builtins.list[JsonObject]:
        return list(self._workflows.values())

    async def delete_workflow(self, workflow_id: str) -> bool:
        return self._workflows.pop(workflow_id, None) is not None

    async def close(self) -> None:
        return None
