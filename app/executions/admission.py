"""Accepting a request that starts a run (SPEC §10): its ``Idempotency-Key`` and its
``multitask_strategy`` against the runs of its ``concurrency_key``.

Stored keys make a repeated request replay the first answer; a strategy decides what
happens to an unfinished run of the same key: ``enqueue`` (the new one waits its turn,
:mod:`app.executions.concurrency`), ``reject`` (409, nothing stored), ``interrupt`` (the
older ends ``canceled``, then the new one starts) or ``rollback`` (as interrupt, and the
older is deleted).

Every run is queued through :meth:`Admission.enqueue`: stored durably first, then queued,
its queue slot reserved before it is stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from app.clock import now_ms
from app.errors import ConcurrencyConflict, IdempotencyKeyReused, QueueFull, problem
from app.executions.concurrency import Gate
from app.model.records import ExecutionRecord, IdempotencyKey
from app.queue.base import ExecutionQueue
from app.settings import Settings
from app.storage.base import ExecutionStore

Strategy = Literal["enqueue", "reject", "interrupt", "rollback"]
#: End a run ``canceled`` and wait until that is published; delete it when told to.
Replace = Callable[[str, bool], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Idempotency:
    """An ``Idempotency-Key`` and the fingerprint of the request that carries it."""

    key: str
    fingerprint: str


class Admission:
    def __init__(
        self,
        *,
        settings: Settings,
        store: ExecutionStore,
        queue: ExecutionQueue,
        gate: Gate,
        replace: Replace,
    ) -> None:
        self._settings = settings
        self._store = store
        self._queue = queue
        self._gate = gate
        self._replace = replace
        self._reserved = 0

    async def accept(
        self,
        build: Callable[[], Awaitable[ExecutionRecord]],
        answer: Callable[[ExecutionRecord], bytes],
        *,
        owner: str | None,
        idempotency: Idempotency | None = None,
        strategy: Strategy = "enqueue",
    ) -> tuple[bytes, bool]:
        """Queue the run ``build`` makes; ``answer`` of it, and False.

        With ``idempotency``, once per key and owner within ``idempotency_ttl_s``: a
        repeated request gets the first answer, and True (replayed), and starts nothing.
        Raises :class:`IdempotencyKeyReused` when the key came first with another request,
        :class:`ConcurrencyConflict` for ``reject`` while the run's key is taken."""
        scope = owner or ""
        live_since = now_ms() - int(self._settings.idempotency_ttl_s * 1000)
        first = None
        if idempotency is not None:
            first = await self._store.get_key(scope, idempotency.key, live_since=live_since)
        if first is None:
            record = await build()
            await self._make_room(record, strategy)
            key = None if idempotency is None else _key(record, scope, idempotency, answer)
            first = await self.enqueue(record, key, live_since)
            if first is None:
                return key.answer if key else answer(record), False
        assert idempotency is not None
        if first.fingerprint != idempotency.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with another request",
                [problem("Idempotency-Key", "already used with a different request body")],
            )
        return first.answer, True

    async def enqueue(
        self, record: ExecutionRecord, key: IdempotencyKey | None = None, live_since: int = 0
    ) -> IdempotencyKey | None:
        """Store ``record`` durably (with ``key`` in the same transaction), then queue it;
        the queue slot is reserved first so a stored run is never refused by the queue.
        Returns the key stored first instead, storing nothing, if another request won."""
        self._gate.queued(record)  # now: a later request of its key sees it
        self._reserve()
        try:
            if key is None:
                first = None
                await self._store.save(record)
            else:
                first = await self._store.save_keyed(record, key, live_since=live_since)
        except BaseException:
            self._gate.forget([record])
            raise
        finally:
            self._reserved -= 1
        if first is not None:
            self._gate.forget([record])
            return first
        await self._queue.put(record)
        return None

    def _reserve(self) -> None:
        bound = self._settings.queue_bound
        if self._queue.qsize() + self._reserved >= bound:
            raise QueueFull(f"{bound} runs are already queued; retry later")
        self._reserved += 1

    async def _make_room(self, record: ExecutionRecord, strategy: Strategy) -> None:
        """Apply ``strategy`` to the unfinished runs of ``record``'s concurrency key."""
        older = self._gate.holders(record)
        if not older or strategy == "enqueue":
            return
        if strategy == "reject":
            raise ConcurrencyConflict(
                f"a run with concurrency_key {record.concurrency_key!r} is not finished",
                [problem("concurrency_key", f"taken by execution {older[0]}")],
            )
        for execution_id in older:
            await self._replace(execution_id, strategy == "rollback")


def _key(
    record: ExecutionRecord,
    owner: str,
    idempotency: Idempotency,
    answer: Callable[[ExecutionRecord], bytes],
) -> IdempotencyKey:
    return IdempotencyKey(
        owner=owner,
        key=idempotency.key,
        fingerprint=idempotency.fingerprint,
        execution_id=record.id,
        created_at=now_ms(),
        answer=answer(record),
    )
