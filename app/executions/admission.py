"""Accepting a request that starts a run (SPEC §10): its ``Idempotency-Key`` and its
``multitask_strategy`` against the runs of its ``concurrency_key``.

Stored keys make a repeated request replay the first answer; a strategy decides what
happens to an unfinished run of the same key: ``enqueue`` (the new one waits its turn,
:mod:`app.executions.concurrency`), ``reject`` (409, nothing stored), ``interrupt`` (the
older ends ``canceled``, then the new one starts) or ``rollback`` (as interrupt, and the
older is deleted).

Every run is queued through :meth:`Admission.enqueue`: stored durably first, then queued,
its queue slot reserved before it is stored.

A strategy acts on the unfinished runs of the key that the store holds (every API
instance's, and this process's staged ones) and on those this instance accepted before and
is still storing. Two requests of one key racing on two instances are ordered by the
store: of two ``reject`` requests, or a ``reject`` and a run stored before it, the store
decides (``save_keyed(alone=True)``: a PostgreSQL lock of the key), so exactly one is
stored; a run of another strategy stored at the same moment as a ``reject`` one may be
stored alongside it, and then waits its turn (the key's order is the runs' ``created_at``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from app.clock import now_ms
from app.errors import ConcurrencyConflict, IdempotencyKeyReused, QueueFull, problem
from app.executions.concurrency import Gate
from app.model.limits import key_scope
from app.model.records import ExecutionRecord, IdempotencyKey
from app.queue.base import ExecutionQueue
from app.settings import Settings
from app.storage.base import ExecutionStore

Strategy = Literal["enqueue", "reject", "interrupt", "rollback"]
#: End runs ``canceled`` and wait until that is published; delete them when told to.
Replace = Callable[[list[str], bool], Awaitable[None]]


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
        #: Runs accepted here and not answered yet, in order of acceptance.
        self._accepting: dict[str, ExecutionRecord] = {}

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
            self._accepting[record.id] = record
            try:
                await self._make_room(record, strategy)
                key = None if idempotency is None else _key(record, scope, idempotency, answer)
                first = await self.enqueue(record, key, live_since, alone=strategy == "reject")
            finally:
                del self._accepting[record.id]
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
        self,
        record: ExecutionRecord,
        key: IdempotencyKey | None = None,
        live_since: int = 0,
        *,
        alone: bool = False,
    ) -> IdempotencyKey | None:
        """Store ``record`` durably (with ``key`` in the same transaction), then queue it;
        the queue slot is reserved first so a stored run is never refused by the queue.
        Returns the key stored first instead, storing nothing, if another request won.
        ``alone``: raise :class:`ConcurrencyConflict` instead if an unfinished run of its
        concurrency key is stored (decided by the store, whichever instance stored it)."""
        self._gate.queued(record)  # now: a later run of its key queues behind it
        self._reserve()
        try:
            if key is None and not alone:
                first = None
                await self._store.save(record)
            else:
                first = await self._store.save_keyed(
                    record, key, live_since=live_since, alone=alone
                )
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
        if strategy == "enqueue":
            return
        older = await self._older(record)
        if older and strategy == "reject":
            raise ConcurrencyConflict.taken(record.concurrency_key or "", older[0])
        if older:
            await self._replace(older, strategy == "rollback")

    async def _older(self, record: ExecutionRecord) -> list[str]:
        """The unfinished runs of ``record``'s key: those stored (by any instance), then
        those accepted here before it and not stored yet, oldest first."""
        scope = key_scope(record)
        if scope is None:
            return []
        stored = await self._store.key_runs(scope)
        accepted = list(self._accepting)
        before = accepted[: accepted.index(record.id)] if record.id in accepted else accepted
        local = [i for i in before if key_scope(self._accepting[i]) == scope]
        return [i for i in dict.fromkeys([*stored, *local]) if i != record.id]


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
