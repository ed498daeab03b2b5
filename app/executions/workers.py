"""``ExecutionManager``: workers that take queued runs and execute them, and the registry of
active executions (n8n's ``ActiveExecutions``).

Per run, in order: ``running`` is staged with ``executionStarted``; each node event is
appended to the log, then published; the terminal message is published only once the
final status is durable (SPEC §4 rule 6), without holding the worker: the next run starts
while the store commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from app.bus.base import EventBus, PushEvent
from app.clock import now_ms
from app.executions.recorder import RunRecorder
from app.executions.runner import GraphRunner, TaskStarted
from app.model.records import ExecutionRecord, StoredEvent
from app.model.status import ExecutionStatus, check_transition
from app.queue.base import ExecutionQueue
from app.storage.base import ExecutionStore
from app.workflows.compiled import CompiledWorkflow

log = logging.getLogger("graphpush.engine")

#: How long a busy server lets a finished run's final write wait for others (group commit).
LINGER_S = 0.005

Compile = Callable[[ExecutionRecord], Awaitable[CompiledWorkflow]]


@dataclass(slots=True)
class ActiveExecution:
    record: ExecutionRecord
    started_at: int
    push_ref: str | None
    task: asyncio.Task[None] | None = None
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def status(self) -> ExecutionStatus:
        return self.record.status


class ExecutionManager:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        bus: EventBus,
        queue: ExecutionQueue,
        compile: Compile,
        workers: int = 1,
        runner: GraphRunner | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.queue = queue
        self._compile = compile
        self._runner = runner or GraphRunner()
        self._worker_count = workers
        self._workers: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self.active: dict[str, ActiveExecution] = {}
        #: Runs ended by this process, by final status (``/metrics``).
        self.finished: Counter[str] = Counter()
        #: Runs canceled while queued: a worker that takes one drops it.
        self.dropped: set[str] = set()

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(self._worker_count)
        ]

    async def _work(self) -> None:
        while True:
            record = await self.queue.get()
            await self.store.wait_writable()  # a run starts once its states can be stored
            if record.id in self.dropped:
                self.dropped.discard(record.id)
                continue
            # asyncio.wait, unlike await, leaves the run alone when the worker is cancelled:
            # shutdown decides separately how long running executions may go on.
            await asyncio.wait([self._begin(record)])

    def _begin(self, record: ExecutionRecord) -> asyncio.Task[None]:
        active = ActiveExecution(record, now_ms(), record.push_ref)
        self.active[record.id] = active
        task = asyncio.create_task(self._execute(active), name=f"run-{record.id}")
        active.task = task
        task.add_done_callback(lambda t: self._ended(record.id, t))
        return task

    def _ended(self, execution_id: str, task: asyncio.Task[None]) -> None:
        self.active.pop(execution_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "execution %s failed inside the engine", execution_id, exc_info=task.exception()
            )

    def cancel(self, execution_id: str) -> bool:
        """Stop a running execution; it ends ``canceled``. False if it is not running here."""
        active = self.active.get(execution_id)
        if active is None or active.task is None:
            return False
        if active.status not in (ExecutionStatus.NEW, ExecutionStatus.RUNNING):
            return False  # it has just ended (or paused): the caller's transition check decides
        active.cancel_event.set()
        active.task.cancel()
        return True

    # ---- one run ---------------------------------------------------------------------

    async def emit(self, record: ExecutionRecord, events: list[StoredEvent]) -> None:
        """Append ``events`` to the log, then publish them."""
        self.store.stage_events(record.id, events)
        for event in events:
            await self.bus.publish(_push_event(record, event))

    async def _execute(self, active: ActiveExecution) -> None:
        record = active.record
        compiled: CompiledWorkflow | None = None
        try:
            compiled = await self._compile(record)
        except Exception as exc:  # e.g. a registered graph that is not registered any more
            failure = f"cannot run this workflow: {exc}", type(exc).__name__
        recorder = RunRecorder(
            record, compiled.nodes if compiled else {}, compiled.predecessors if compiled else {}
        )
        check_transition(record.status, ExecutionStatus.RUNNING)
        record.status = ExecutionStatus.RUNNING
        resuming, record.resume_pending = record.resume_pending, False
        started = [] if resuming else [recorder.execution_started()]
        self.store.stage(record)
        await self.emit(record, started)
        if compiled is None:
            recorder.fail_run(*failure)
            await self.finish(recorder, ExecutionStatus.ERROR)
            return
        try:
            status = await self._stream(recorder, compiled, resuming)
        except asyncio.CancelledError:
            if not active.cancel_event.is_set():
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            status = ExecutionStatus.CANCELED
        except TimeoutError:
            recorder.fail_run(f"timed out after {compiled.settings.get('timeout_s')} s", "timeout")
            status = ExecutionStatus.CANCELED
        except Exception as exc:
            if record.error is None:  # no node reported it: the graph itself failed
                recorder.fail_run(str(exc) or type(exc).__name__, type(exc).__name__)
            status = ExecutionStatus.ERROR
        await self.finish(recorder, status)

    async def _stream(
        self, recorder: RunRecorder, compiled: CompiledWorkflow, resuming: bool
    ) -> ExecutionStatus:
        record = recorder.record
        waiting = False
        timeout = compiled.settings.get("timeout_s")
        async with asyncio.timeout(float(timeout) if timeout else None):
            async for event in self._runner.stream(
                compiled,
                thread_id=record.id,
                input=record.input,
                resume=record.resume_value,
                resuming=resuming,
            ):
                if isinstance(event, TaskStarted):
                    before = recorder.node_started(event.task_id, event.name)
                    await self.emit(record, [before] if before else [])
                else:
                    waiting = waiting or bool(event.interrupts)
                    await self.emit(record, recorder.node_finished(event))
        return ExecutionStatus.WAITING if waiting else ExecutionStatus.SUCCESS

    async def finish(self, recorder: RunRecorder, status: ExecutionStatus) -> None:
        """Store the run's final (or waiting) state with its message, then publish that
        message once it is durable. Returns before the commit; see :meth:`drain`."""
        record = recorder.record
        check_transition(record.status, status)
        record.status = status
        record.resume_value = None
        if status.finished:
            self.finished[status.value] += 1
        if status is ExecutionStatus.WAITING:
            event = recorder.execution_waiting()
        else:
            event = recorder.execution_finished(status.value)
        self.store.stage(record, [event])
        self.spawn(self._publish_durable(record, event))

    async def _publish_durable(self, record: ExecutionRecord, event: StoredEvent) -> None:
        # While runs wait in the queue, the next ones' terminal writes may share this commit;
        # an idle server commits at once, so a lone client sees its run end without delay.
        await self.store.commit(LINGER_S if self.queue.qsize() else 0.0)
        await self.bus.publish(_push_event(record, event))
        await self.queue.done(record.id)  # a shared queue forgets the run only now

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Future[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a terminal message was not published", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait until every terminal message handed to :meth:`spawn` has been published."""
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
        tasks = [a.task for a in self.active.values() if a.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        # Phase 3: the rest are canceled, and end like any canceled run.
        for execution_id in list(self.active):
            self.cancel(execution_id)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, *self._workers, return_exceptions=True)
        # Phase 4: every terminal message is stored and published; a store that cannot
        # write (a full disk) gets the same grace, then what it holds is lost with the
        # process (its runs are marked crashed at the next start).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.drain()
                await self.store.commit()


def _push_event(record: ExecutionRecord, event: StoredEvent) -> PushEvent:
    return PushEvent(
        record.id,
        event.seq,
        event.type,
        event.payload,
        push_ref=record.push_ref,
        owner=record.owner,
    )
