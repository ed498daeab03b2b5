"""``ExecutionManager``: workers that take queued runs and execute them, and the registry of
active executions (n8n's ``ActiveExecutions``).

It is the one producer of terminal messages: the runs it executes, those the service asks
it to :meth:`~ExecutionManager.end` and those it must :meth:`~ExecutionManager.recover`.

Per run, in order: ``running`` is staged with ``executionStarted``; each node event is
logged with the record it updated, then published (:mod:`app.executions.executor`); the
terminal message is published once the final status is durable (SPEC §4 rule 6), while the
worker goes on to the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from msgspec.json import decode as _decode

from app.bus.base import EventBus, PushEvent
from app.clock import now_ms
from app.executions.active import ActiveExecution
from app.executions.concurrency import Gate
from app.executions.executor import Compile, RunExecutor, push_event
from app.executions.recorder import RunRecorder
from app.executions.runner import GraphRunner
from app.messages import ExecutionRecovered, ExecutionRecoveredData, encode, encoder
from app.model.records import ExecutionRecord, StoredEvent
from app.model.status import ExecutionStatus, check_transition
from app.model.webhooks import Outbox
from app.queue.base import ExecutionQueue
from app.storage.base import ExecutionStore

log = logging.getLogger("graphpush.engine")

#: How long a busy server lets a finished run's final write wait for others (group commit).
LINGER_S = 0.005
#: The run-level error of a run whose process died (SPEC §6).
CRASHED_REASON = "the process running this execution stopped"


class ExecutionManager:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        bus: EventBus,
        queue: ExecutionQueue,
        compile: Compile,
        runner: GraphRunner,
        workers: int = 1,
        outbox: Outbox | None = None,
        timeout_s: float = 0.0,
        recorder: Callable[..., RunRecorder] = RunRecorder,
    ) -> None:
        """``timeout_s``, ``compile``, ``runner`` and ``recorder``: how each run executes
        (:class:`~app.executions.executor.RunExecutor`)."""
        self.store = store
        self.bus = bus
        self.queue = queue
        self._worker_count = workers
        self._outbox = outbox
        self._executor = RunExecutor(
            store=store,
            bus=bus,
            compile=compile,
            runner=runner,
            recorder=recorder,
            timeout_s=timeout_s,
            finish=self._finish,
        )
        self._workers: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._active: dict[str, ActiveExecution] = {}
        #: Runs ended by this process, by final status (``/metrics``).
        self.finished: Counter[str] = Counter()
        #: What a queued run waits for before it may start (SPEC §10).
        self.gate = Gate(keys=not queue.shared)

    @property
    def active_count(self) -> int:  # a gauge of /metrics
        return len(self._active)

    def holds(self, execution_id: str) -> bool:
        """True while the run executes in this process."""
        return execution_id in self._active

    def snapshot(self, execution_id: str) -> ExecutionRecord | None:
        """A copy of the live record of a run executing here (None if it is not): the
        worker goes on updating its own."""
        active = self._active.get(execution_id)
        return (
            None if active is None else _decode(encoder.encode(active.record), type=ExecutionRecord)
        )

    async def wait_ended(self, execution_id: str) -> None:
        """Return once the run, if it executes here, has ended, and every terminal message
        of a run ended so far is published."""
        active = self._active.get(execution_id)
        if active is not None and active.task is not None:
            await asyncio.wait([active.task])
        await self.drain()

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(self._worker_count)
        ]

    async def _work(self) -> None:
        while True:
            await self.store.wait_writable()  # a run starts once its states can be stored
            record = await self.queue.get(self.gate.admits)
            if record.status is ExecutionStatus.RUNNING:  # its process died
                try:
                    await self.recover([record])
                except Exception:  # e.g. the store is unreachable: this worker goes on
                    log.exception("recovering execution %s failed", record.id)
                continue
            self.gate.started(record)
            # asyncio.wait, unlike await, leaves the run alone when the worker is cancelled:
            # shutdown decides separately how long running executions may go on.
            await asyncio.wait([self._begin(record)])

    def _begin(self, record: ExecutionRecord) -> asyncio.Task[None]:
        active = ActiveExecution(record, now_ms())
        self._active[record.id] = active
        task = asyncio.create_task(self._executor.execute(active), name=f"run-{record.id}")
        active.task = task
        task.add_done_callback(lambda t: self._ended(record.id, t))
        return task

    def _ended(self, execution_id: str, task: asyncio.Task[None]) -> None:
        self._active.pop(execution_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "execution %s failed inside the engine", execution_id, exc_info=task.exception()
            )

    def cancel(self, execution_id: str) -> bool:
        """Stop a running execution; it ends ``canceled``. False if it is not running here."""
        active = self._active.get(execution_id)
        if active is None or active.task is None:
            return False
        if active.status not in (ExecutionStatus.NEW, ExecutionStatus.RUNNING):
            return False  # it has just ended (or paused): the caller's transition check decides
        active.cancel_event.set()
        if active.streaming:
            active.task.cancel()
        return True

    async def end(
        self, record: ExecutionRecord, status: ExecutionStatus, reason: str | None = None
    ) -> None:
        """End a run not executing here (canceled while queued or waiting, left ``running``
        by a dead process) with its terminal message; ``reason``: its run-level error, typed
        by ``status``. Raises :class:`IllegalTransition` if it cannot move to ``status``."""
        check_transition(record.status, status)
        recorder = RunRecorder(record, {}, {})
        if reason is not None:
            recorder.fail_run(reason, status.value)
        await self._finish(recorder, status)

    async def recover(self, records: list[ExecutionRecord]) -> None:
        """End ``running`` runs whose process died: each becomes ``crashed``, its log ends
        with ``executionFinished{crashed}``, then ``executionRecovered`` is broadcast."""
        for record in records:
            await self.end(record, ExecutionStatus.CRASHED, CRASHED_REASON)
        await self.drain()
        for record in records:
            message = encode(ExecutionRecovered(ExecutionRecoveredData(record.id)))
            event = PushEvent(
                record.id,
                0,
                "executionRecovered",
                message,
                broadcast=True,
                workflow_id=record.workflow_id,
            )
            await self.bus.publish(event)

    # ---- the end of a run -----------------------------------------------------------

    async def _finish(self, recorder: RunRecorder, status: ExecutionStatus) -> None:
        """Store the run's final (or waiting) state with its message, then publish that
        message once it is durable. Returns before the commit; see :meth:`drain`."""
        record = recorder.record
        check_transition(record.status, status)
        self.gate.stopped(record, status)
        self.queue.notify()  # the runs it held back may start
        record.status = status
        record.resume_value = None
        if status.finished:
            self.finished[status.value] += 1
        if status is ExecutionStatus.WAITING:
            event = recorder.execution_waiting()
        else:
            event = recorder.execution_finished(status.value)
        self.store.stage(record, [event])
        announced = self._outbox.deliveries(record) if self._outbox else []
        self.store.stage_webhooks(announced)  # right after: the same transaction
        self._spawn(self._publish_durable(record, event, bool(announced)))

    async def _publish_durable(
        self, record: ExecutionRecord, event: StoredEvent, announced: bool
    ) -> None:
        # While runs wait in the queue, the next ones' terminal writes may share this commit;
        # an idle server commits at once, so a lone client sees its run end without delay.
        await self.store.commit(LINGER_S if self.queue.qsize() else 0.0)
        if announced and self._outbox is not None:
            self._outbox.committed()
        await self.bus.publish(push_event(record, event))
        await self.queue.done(record.id)  # a shared queue forgets the run only now

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait until every terminal message of a run ended so far has been published."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def shutdown(self, timeout_s: float) -> None:
        """Stop taking runs; let running ones finish for ``timeout_s``, then cancel them
        (each ends with ``executionFinished{canceled}`` pushed). Queued and waiting runs stay
        stored as they are and continue after the next start."""
        # Phase 1: no new run starts.
        for worker in self._workers:
            worker.cancel()
        # Phase 2: running executions get their grace period.
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        # Phase 3: the rest are canceled, and end like any canceled run.
        for execution_id in list(self._active):
            self.cancel(execution_id)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, *self._workers, return_exceptions=True)
        # Phase 4: every terminal message is stored and published, in the grace (full disk).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), timeout_s)
