"""``ActiveExecution``: a run executing in this process, as the registry of active executions
(:class:`~app.executions.workers.ExecutionManager`, n8n's ``ActiveExecutions``) holds it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from app.model.records import ExecutionRecord
from app.model.status import ExecutionStatus


@dataclass(slots=True)
class ActiveExecution:
    """A run executing in this process; its record is the live one the worker updates."""

    record: ExecutionRecord
    #: When this process took the run (epoch ms).
    started_at: int
    task: asyncio.Task[None] | None = None
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    #: True once its graph runs: a cancel then interrupts the task. Before, while it is
    #: being stored and announced, the worker looks at ``cancel_event`` itself, so that no
    #: cancel can cut a run short of its terminal message.
    streaming: bool = False

    @property
    def status(self) -> ExecutionStatus:
        return self.record.status

    @property
    def push_ref(self) -> str | None:
        return self.record.push_ref
