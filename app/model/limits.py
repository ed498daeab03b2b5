"""The concurrency limits a run is subject to (SPEC §10), read from its record."""

from __future__ import annotations

import enum

from app.model.records import ExecutionRecord

#: A concurrency key with its scope: ``(owner or "", key)``.
KeyScope = tuple[str, str]


def key_scope(record: ExecutionRecord) -> KeyScope | None:
    """The run's concurrency key in its scope (the API key's owner), if it has one."""
    key = record.concurrency_key
    return None if key is None else (record.owner or "", key)


def max_concurrency(record: ExecutionRecord) -> int | None:
    """Running runs its workflow allows at once, from the snapshot it runs (None: no
    limit)."""
    settings = record.workflow.get("settings") or {}
    limit = settings.get("max_concurrency")
    return limit if isinstance(limit, int) else None


class Claim(enum.Enum):
    """What became of an attempt to start a queued run in a shared store."""

    CLAIMED = "claimed"
    #: Not ``new`` any more (canceled while queued, or a duplicate entry).
    GONE = "gone"
    #: Held back: its workflow's ``max_concurrency`` runs are running.
    WORKFLOW_FULL = "workflow_full"
    #: Held back: another run of its concurrency key is running or waiting.
    KEY_TAKEN = "key_taken"
