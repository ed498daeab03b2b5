"""``Cancellation``: how runs are canceled — one run, the runs a bulk cancel names, and the
older runs of a concurrency key that a run's strategy replaces (SPEC §10).

Every canceled run ends with its one ``executionFinished{canceled}``, produced by the
:class:`~app.executions.workers.ExecutionManager` of the process that ends it. A run that
another process holds is ended there: a replaced run is then watched in the store until it
has ended (its terminal message stored with its status).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from app.errors import (
    BackendUnavailable,
    IllegalTransition,
    NotFound,
    ValidationFailed,
    problem,
)
from app.executions.retention import forget
from app.executions.workers import ExecutionManager
from app.model.records import ExecutionQuery, ExecutionRecord
from app.model.status import ExecutionStatus, check_transition
from app.queue.base import EVERYTHING, ExecutionQueue
from app.storage.base import ExecutionStore

S = ExecutionStatus
#: The statuses of runs not finished, which a cancel ends.
UNFINISHED = (S.NEW, S.RUNNING, S.WAITING)
#: How often the store is read while another process ends a replaced run.
POLL_S = 0.02
#: The freshest view of a run of an owner (``ExecutionService.get_execution``).
Get = Callable[[str, str | None], Awaitable[ExecutionRecord]]


class Cancellation:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        queue: ExecutionQueue,
        manager: ExecutionManager,
        checkpointer: BaseCheckpointSaver[Any] | None,
        get: Get,
        replace_wait_s: float,
    ) -> None:
        """``replace_wait_s``: how long a replaced run held by another process may take to
        end (that process may have died: its runs end ``crashed`` once taken over)."""
        self._store = store
        self._replace_wait_s = replace_wait_s
        self._queue = queue
        self._manager = manager
        self._checkpointer = checkpointer
        self._get = get

    async def cancel(self, execution_id: str, owner: str | None = None) -> ExecutionRecord:
        """See :meth:`ExecutionService.cancel_execution
        <app.executions.service.ExecutionService.cancel_execution>`."""
        record = await self._get(execution_id, owner)
        if self._manager.cancel(execution_id):
            return record
        check_transition(record.status, S.CANCELED)
        if await self._queue.cancel(record):  # else held by another process: it ends it there
            await self._manager.end(record, S.CANCELED)
        return record

    async def cancel_many(
        self,
        *,
        workflow_id: str | None,
        statuses: Sequence[ExecutionStatus] | None,
        owner: str | None,
    ) -> int:
        """See :meth:`ExecutionService.cancel_executions
        <app.executions.service.ExecutionService.cancel_executions>`."""
        if workflow_id is None and statuses is None:
            raise ValidationFailed(
                "name the runs to cancel",
                [problem("", "expected at least one of workflow_id, status")],
            )
        canceled = 0
        for status in dict.fromkeys(statuses or UNFINISHED):
            query = ExecutionQuery(
                workflow_id=workflow_id,
                status=status,
                owner=owner,
                limit=EVERYTHING,
                snapshots=False,
            )
            page = await self._store.list(query)
            for record in page.items:
                with contextlib.suppress(IllegalTransition, NotFound):
                    await self.cancel(record.id, owner)
                    canceled += 1
        return canceled

    async def replace(self, execution_ids: list[str], delete: bool) -> None:
        """End the older runs of a concurrency key ``canceled`` (SPEC §10 ``interrupt``) and
        wait until that is published; with ``delete`` (``rollback``) they
        are then deleted. Every one is canceled before any is waited for, newest first: a
        queued run cannot start in the slot an older one leaves."""
        for execution_id in reversed(execution_ids):
            with contextlib.suppress(IllegalTransition, NotFound):  # it ended meanwhile
                await self.cancel(execution_id)
        for execution_id in execution_ids:
            await self._manager.wait_ended(execution_id)
            await self._wait_stored_end(execution_id)
        if delete:
            await forget(self._store, self._checkpointer, execution_ids)

    async def _wait_stored_end(self, execution_id: str) -> None:
        """Return once the run is stored finished (or is gone): ended by another process."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._replace_wait_s
        while (record := await self._store.get(execution_id)) and not record.status.finished:
            if loop.time() >= deadline:
                raise BackendUnavailable(
                    f"execution {execution_id} did not end within {self._replace_wait_s:g} s"
                )
            await asyncio.sleep(POLL_S)
