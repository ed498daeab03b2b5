"""The persistence seams: execution records with their event logs, and workflows.

Writes are staged and committed in groups (one transaction for many runs' events): a
:class:`ExecutionStore` ``stage`` call returns at once, ``commit`` returns once everything
staged before it is durable. Reads see everything staged before them. Every store is an
async context manager: ``async with`` opens it and closes it (``close`` closes it early).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Protocol

from app.model.limits import KeyScope
from app.model.records import (
    ExecutionPage,
    ExecutionQuery,
    ExecutionRecord,
    IdempotencyKey,
    JsonObject,
    StoredEvent,
)
from app.model.webhooks import WebhookDelivery


class WebhookStore(Protocol):
    """The webhook outbox: rows staged with the runs' statuses, claimed by the senders.

    A claim holds a row for ``lease_ms``: no other claim returns it meanwhile, so of several
    processes sharing the store exactly one sends it; a sender that dies loses its claims
    when they expire (or at once, :meth:`release_webhook_claims`, where it was alone)."""

    async def list_webhooks(self, execution_id: str) -> builtins.list[WebhookDelivery]:
        """The run's deliveries, oldest first."""
        ...

    async def claim_webhooks(
        self, now: int, lease_ms: int, limit: int
    ) -> builtins.list[WebhookDelivery]:
        """Up to ``limit`` pending deliveries due by ``now`` (epoch ms), oldest due first,
        now claimed until ``now + lease_ms``."""
        ...

    async def save_webhook(self, delivery: WebhookDelivery) -> None:
        """Store a claimed delivery after an attempt, and release its claim."""
        ...

    async def release_webhook_claims(self) -> None:
        """Release every claim: the caller is the only sender and has just started."""
        ...


class ExecutionStore(WebhookStore, Protocol):
    """Execution records and their ordered event logs (the ``ExecutionRepository``)."""

    def stage(self, record: ExecutionRecord, events: Sequence[StoredEvent] = ()) -> None:
        """Queue a write of ``record`` (whole) and of ``events`` appended to its log."""
        ...

    def stage_events(self, execution_id: str, events: Sequence[StoredEvent]) -> None:
        """Queue ``events`` appended to the log of ``execution_id`` (record unchanged)."""
        ...

    def stage_webhooks(self, deliveries: Sequence[WebhookDelivery]) -> None:
        """Queue new outbox rows. Called right after the ``stage`` of the status they report,
        with no ``await`` between, they commit in the same transaction (SPEC §11)."""
        ...

    async def commit(self, linger_s: float = 0.0) -> None:
        """Return once everything staged so far is durable. ``linger_s`` lets the store wait
        up to that long for more writes to share the transaction (a busy caller's choice)."""
        ...

    async def save(self, record: ExecutionRecord, events: Sequence[StoredEvent] = ()) -> None:
        """``stage`` then ``commit``. A store that cannot write it now may refuse instead:
        :class:`~app.errors.BackendUnavailable`, keeping nothing of this call (a run is
        refused, not accepted and lost)."""
        ...

    async def wait_writable(self) -> None:
        """Return once the store can write (at once, unless failed writes await a retry):
        a worker waits here before it starts a run."""
        ...

    async def save_keyed(
        self,
        record: ExecutionRecord,
        key: IdempotencyKey | None,
        *,
        live_since: int = 0,
        alone: bool = False,
    ) -> IdempotencyKey | None:
        """Store ``record`` (a new run) and ``key`` (if any) in one transaction, unless the
        owner's key of that name created at or after ``live_since`` is stored: then store
        nothing and return that key. Of two racing calls (any processes), exactly one
        stores. With ``alone``, store nothing either while an unfinished run of the
        record's concurrency key is stored: raise
        :class:`~app.errors.ConcurrencyConflict`; of two racing such calls for one key
        (any processes), exactly one stores."""
        ...

    async def key_runs(self, key: KeyScope) -> builtins.list[str]:
        """The ids of the unfinished (``new``, ``running``, ``waiting``) runs of the
        concurrency ``key`` (in its scope), oldest first."""
        ...

    async def get_key(self, owner: str, key: str, *, live_since: int) -> IdempotencyKey | None:
        """The owner's key of that name if it was created at or after ``live_since``."""
        ...

    async def get(self, execution_id: str) -> ExecutionRecord | None: ...

    async def prunable(
        self, *, created_before: int, keep: int | None, limit: int
    ) -> builtins.list[str]:
        """Ids of up to ``limit`` finished runs past retention, oldest first: those created
        before ``created_before``, and those beyond the ``keep`` newest finished runs."""
        ...

    async def delete(self, execution_ids: Sequence[str]) -> int:
        """Delete those of these runs that are finished, with their event logs and
        idempotency keys, and reclaim the space; returns how many were deleted."""
        ...

    async def list(self, query: ExecutionQuery) -> ExecutionPage:
        """Newest first, with the total matching ``query`` before ``limit``/``offset``."""
        ...

    async def read_events(
        self, execution_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[StoredEvent]:
        """The log entries with ``seq > after``, in order."""
        ...

    async def close(self) -> None: ...


class WorkflowStore(Protocol):
    """Workflows as validated ``AgentWorkflowDto`` JSON objects, by id."""

    async def create_workflow(self, workflow_id: str, body: JsonObject) -> None:
        """Raises ``Conflict`` if the id exists."""
        ...

    async def put_workflow(self, workflow_id: str, body: JsonObject) -> None: ...

    async def get_workflow(self, workflow_id: str) -> JsonObject | None: ...

    async def list_workflows(self) -> builtins.list[JsonObject]: ...

    async def delete_workflow(self, workflow_id: str) -> bool: ...
