"""Retention (SPEC §10, n8n's pruning): finished runs past ``history_max_age_s`` or beyond
the ``history_max_count`` newest finished ones are deleted, oldest first, with their event
logs, checkpoints and idempotency keys. ``new``, ``running`` and ``waiting`` runs are never
touched. A :class:`Pruner` used as ``async with`` (by the lifespan) prunes at start and then
every ``prune_interval_s``; ``graphpush executions prune`` asks for a prune at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from app.background import Background, every
from app.clock import now_ms
from app.settings import Settings
from app.storage.base import ExecutionStore

log = logging.getLogger("graphpush.retention")

#: Runs deleted per transaction: short ones, so runs go on writing in between.
BATCH = 500


async def forget(
    store: ExecutionStore,
    checkpointer: BaseCheckpointSaver[Any] | None,
    execution_ids: Sequence[str],
) -> int:
    """Delete these finished runs with their logs, idempotency keys and checkpoints; how
    many runs there were."""
    deleted = await store.delete(execution_ids)
    if checkpointer is not None:
        for execution_id in execution_ids:  # the thread id of a run is its execution id
            await checkpointer.adelete_thread(execution_id)
    return deleted


class Pruner:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        checkpointer: BaseCheckpointSaver[Any],
        settings: Settings,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.checkpointer = checkpointer
        self.settings = settings
        #: Epoch milliseconds now (tests inject their own).
        self.clock = clock
        #: Runs deleted by retention since start (``/metrics``).
        self.pruned_total = 0
        self._tasks = Background(log)

    async def prune(self, *, dry_run: bool = False) -> int:
        """Delete the finished runs past retention, oldest first, in batches; how many were
        deleted (with ``dry_run``: how many would be, deleting nothing)."""
        max_age_ms = int(self.settings.history_max_age_s * 1000)
        before = self.clock() - max_age_ms if max_age_ms else 0
        keep = self.settings.history_max_count or None
        if dry_run:
            return len(await self.store.prunable(created_before=before, keep=keep, limit=1 << 62))
        pruned = 0
        while ids := await self.store.prunable(created_before=before, keep=keep, limit=BATCH):
            deleted = await self.forget(ids)
            self.pruned_total += deleted
            pruned += deleted
            if deleted < BATCH:
                break
            await asyncio.sleep(0)  # runs go on between batches
        return pruned

    async def forget(self, execution_ids: Sequence[str]) -> int:
        """Delete these finished runs with everything kept about them; how many there were."""
        return await forget(self.store, self.checkpointer, execution_ids)

    async def __aenter__(self) -> Pruner:
        turns = every(
            self.settings.prune_interval_s, self._turn, log=log, what="pruning the history"
        )
        self._tasks.start(turns, name="pruner")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._tasks.aclose()

    async def _turn(self) -> None:
        if pruned := await self.prune():
            log.info("pruned %d finished runs", pruned)

    def counters(self) -> dict[str, float]:
        return {"executions_pruned_total": self.pruned_total}
