"""``RunExecutor``: how one run executes, for the workers of
:class:`~app.executions.workers.ExecutionManager`.

It compiles the run, stages it ``running`` with ``executionStarted``, streams its graph's
events through the run's :class:`~app.executions.recorder.RunRecorder` (each node event
logged with the record it updated, then published), within the run's time limit, and
hands the status the run ends (or pauses) with to the manager's finish, which produces
the terminal message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from app.bus.base import EventBus, PushEvent
from app.executions.active import ActiveExecution
from app.executions.pacing import Flush, run_events
from app.executions.recorder import RunRecorder
from app.executions.retry import run_state
from app.executions.runner import GraphRunner, NodeStreamed, TaskStarted
from app.model.records import ExecutionRecord, StoredEvent
from app.model.status import ExecutionStatus, check_transition
from app.storage.base import ExecutionStore
from app.workflows.compiler import CompiledWorkflow

#: The graph a run executes, from its record (the workflows package compiles it).
Compile = Callable[[ExecutionRecord], Awaitable[CompiledWorkflow]]
#: End (or pause) a run with a status: the manager's one producer of terminal messages.
Finish = Callable[[RunRecorder, ExecutionStatus], Awaitable[None]]


class RunExecutor:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        bus: EventBus,
        compile: Compile,
        runner: GraphRunner,
        recorder: Callable[..., RunRecorder],
        timeout_s: float,
        finish: Finish,
    ) -> None:
        """``timeout_s``: the longest a run may execute (0: no limit), unless its
        workflow's ``settings.timeout_s`` is shorter."""
        self._store = store
        self._bus = bus
        self._compile = compile
        self._runner = runner
        self._recorder = recorder  # with the run's stream options (SPEC §8)
        self._timeout_s = timeout_s
        self._finish = finish

    async def _emit(self, record: ExecutionRecord, events: list[StoredEvent]) -> None:
        """Append ``events`` to the log with the record they updated, then publish them.
        The stored record thus always matches its log (what recovery relies on)."""
        self._store.stage_live(record, events)
        for event in events:
            await self._bus.publish(push_event(record, event))

    async def execute(self, active: ActiveExecution) -> None:
        """Execute the run ``active`` holds, which then ends (or pauses) by the finish."""
        if active.cancel_event.is_set():  # canceled after a worker took it, before it began
            await self._finish(RunRecorder(active.record, {}, {}), ExecutionStatus.CANCELED)
            return
        recorder, compiled, resuming = await self._start(active.record)
        status = ExecutionStatus.ERROR
        try:
            if compiled is not None:
                status = await self._outcome(active, recorder, compiled, resuming)
        except asyncio.CancelledError:  # not asked for: the event loop is closing
            status = ExecutionStatus.CANCELED
            raise
        finally:
            # Whatever happened above, the run ends here: never left ``running`` (SPEC §10).
            await self._finish(recorder, status)

    async def _outcome(
        self,
        active: ActiveExecution,
        recorder: RunRecorder,
        compiled: CompiledWorkflow,
        resuming: bool,
    ) -> ExecutionStatus:
        """Run the graph within its time limit; the status the run ends (or pauses) with."""
        limit = time_limit(compiled.settings.get("timeout_s"), self._timeout_s)
        scope = asyncio.timeout(limit)
        try:
            active.streaming = True
            if active.cancel_event.is_set():  # canceled while it began
                raise asyncio.CancelledError
            async with scope:
                return await self._stream(recorder, compiled, resuming)
        except asyncio.CancelledError:
            if not active.cancel_event.is_set():
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            return ExecutionStatus.CANCELED
        except Exception as exc:  # a node's error, or the engine's own
            if isinstance(exc, TimeoutError) and scope.expired():
                # n8n ends a timed-out run ``canceled``, with an error that says why.
                recorder.time_out(f"the execution timed out after {limit:g} s")
                return ExecutionStatus.CANCELED
            if active.record.error is None:  # no node reported it: the graph itself failed
                recorder.fail_run(str(exc) or type(exc).__name__, type(exc).__name__)
            return ExecutionStatus.ERROR

    async def _start(
        self, record: ExecutionRecord
    ) -> tuple[RunRecorder, CompiledWorkflow | None, bool]:
        """Compile the run and stage it ``running`` with ``executionStarted`` (not on a
        resume). A run that cannot compile gets its error and no graph."""
        compiled: CompiledWorkflow | None = None
        try:
            compiled = await self._compile(record)
        except Exception as exc:  # e.g. a registered graph that is not registered any more
            failure = f"cannot run this workflow: {exc}", type(exc).__name__
        recorder = self._recorder(
            record, compiled.nodes if compiled else {}, compiled.predecessors if compiled else {}
        )
        check_transition(record.status, ExecutionStatus.RUNNING)
        record.status = ExecutionStatus.RUNNING
        resuming, record.resume_pending = record.resume_pending, False
        await self._emit(record, [] if resuming else [recorder.execution_started()])
        if compiled is None:
            recorder.fail_run(*failure)
        return recorder, compiled, resuming

    async def _stream(
        self, recorder: RunRecorder, compiled: CompiledWorkflow, resuming: bool
    ) -> ExecutionStatus:
        record = recorder.record
        waiting = False
        state = run_state(record)
        async for event in run_events(self._runner, compiled, recorder, resuming, state):
            if isinstance(event, Flush | NodeStreamed):
                if flushed := recorder.streamed(event):  # most chunks only wait
                    await self._emit(record, flushed)
            elif isinstance(event, TaskStarted):
                before = recorder.node_started(event.task_id, event.name)
                await self._emit(record, [before] if before else [])
            else:
                waiting = waiting or bool(event.interrupts)
                await self._emit(record, recorder.node_finished(event))
        return ExecutionStatus.WAITING if waiting else ExecutionStatus.SUCCESS


def time_limit(workflow_s: float | None, server_s: float) -> float | None:
    """The time limit of a run: the smaller of its workflow's and the server's (0: none)."""
    limits = [limit for limit in (workflow_s, server_s) if limit]
    return min(limits) if limits else None


def push_event(record: ExecutionRecord, event: StoredEvent) -> PushEvent:
    """The bus event of a run's log entry."""
    return PushEvent(
        record.id,
        event.seq,
        event.type,
        event.payload,
        push_ref=record.push_ref,
        owner=record.owner,
        workflow_id=record.workflow_id,
    )
