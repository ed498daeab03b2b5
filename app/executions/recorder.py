"""``RunRecorder``: turns one run's lifecycle and node events into the push messages of
SPEC §4, in order, each encoded once and numbered with the execution's log ``seq``.

It also keeps the run's :class:`GraphState`, its per-node run metadata and outputs in the
:class:`ExecutionRecord`, so the record always matches the last message built.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from app import messages as m
from app.clock import iso, now_ms
from app.executions.flatted import NO_RUN_DATA, prior_run_data, stringify
from app.executions.graph_state import GraphState
from app.executions.node_errors import node_operation_error
from app.executions.pacing import Flush
from app.executions.run_data import node_output, output_index, remember, sources
from app.executions.runner import NodeStreamed, TaskFinished
from app.executions.streams import Chunk, StreamBuffers, flushed
from app.model.records import ExecutionRecord, StoredEvent
from app.workflows.node_types import NodeInfo


@dataclass(slots=True)
class _Task:
    name: str
    start: m.TaskStartedData
    #: A waiting node run again by a resume: its events were sent before the pause.
    silent: bool


class RunRecorder:
    """Builds the messages of one execution. Call order: ``execution_started`` once (not on
    resume), then per task ``node_started``, any number of ``streamed`` (SPEC §8: chunks
    wait in buffers until due by ``clock``) and ``node_finished`` (which sends the node's
    unsent chunks first); then exactly one of ``execution_waiting`` or
    ``execution_finished``."""

    def __init__(
        self,
        record: ExecutionRecord,
        nodes: dict[str, NodeInfo],
        predecessors: dict[str, list[tuple[str, int]]],
        *,
        stream_flush_ms: float = 25,
        max_message_bytes: int = 5 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.record = record
        self._buffers = StreamBuffers(stream_flush_ms, clock)
        self._max_bytes = max_message_bytes
        self.nodes = nodes
        self.predecessors = predecessors
        self.graph_state = (
            GraphState.from_frontend_format(record.graph_state)
            if record.graph_state
            else GraphState(nodes)
        )
        self._tasks: dict[str, _Task] = {}
        #: The output each node took, from the runs recorded before (a resume, a retry).
        self._routes = {n: output_index(runs[-1]) for n, runs in record.outputs.items() if runs}

    def _event(self, message: m.ExecutionMessage, type_: str) -> StoredEvent:
        return self._logged(m.encode(message), type_)

    def _logged(self, payload: bytes, type_: str) -> StoredEvent:
        self.record.last_seq += 1
        return StoredEvent(self.record.last_seq, type_, payload)

    def _node_sequence(self) -> int:
        number = self.record.next_sequence_number
        self.record.next_sequence_number += 1
        return number

    def execution_started(self) -> StoredEvent:
        record = self.record
        record.started_at = record.started_at or now_ms()
        data = m.ExecutionStartedData(
            executionId=record.id,
            mode=record.mode,
            startedAt=iso(record.started_at),
            workflowId=record.workflow_id,
            workflowName=record.workflow_name,
            flattedRunData=stringify(prior_run_data(record)) if record.outputs else NO_RUN_DATA,
            graph_state=self._snapshot(),
        )
        if record.retry_of is not None:
            data.retryOf = record.retry_of
        return self._event(m.ExecutionStarted(data), "executionStarted")

    def node_started(self, task_id: str, name: str) -> StoredEvent | None:
        silent = self.graph_state.status_of(name) == "waiting"
        start = m.TaskStartedData(
            startTime=now_ms(),
            executionIndex=self.record.next_execution_index,
            source=self._source(name),
            hints=[],
        )
        self._tasks[task_id] = _Task(name, start, silent)
        if silent:
            return None
        self.record.next_execution_index += 1
        self.graph_state.mark_node_started(name, start.startTime)
        data = m.NodeExecuteBeforeData(
            executionId=self.record.id,
            nodeName=name,
            sequenceNumber=self._node_sequence(),
            data=start,
            graph_state=self._snapshot(),
        )
        return self._event(m.NodeExecuteBefore(data), "nodeExecuteBefore")

    def streamed(self, event: NodeStreamed | Flush) -> list[StoredEvent]:
        """Buffer a node's chunks (a custom payload LangGraph does not attribute goes to the
        running node that started last); return the ``nodeExecuteStream`` messages due."""
        if isinstance(event, NodeStreamed):
            task_id = event.task_id or next(reversed(self._tasks), None)
            task = self._tasks.get(task_id) if task_id else None
            if task_id and task and not task.silent:  # a silent one's end was sent before
                self._buffers.add(task_id, event.chunks)
        return [
            message
            for task_id, chunks in self._buffers.due()
            for message in self._stream(self._tasks[task_id].name, chunks)
        ]

    def stream_deadline(self) -> float | None:
        """When :meth:`streamed` has something to send (``clock`` time), or None."""
        return self._buffers.deadline()

    def _stream(self, name: str, chunks: list[Chunk]) -> list[StoredEvent]:
        payloads = flushed(self.record, name, chunks, self._max_bytes)
        return [self._logged(payload, "nodeExecuteStream") for payload in payloads]

    def node_finished(self, event: TaskFinished) -> list[StoredEvent]:
        """The node's last ``nodeExecuteStream`` (if it has unsent chunks), then
        ``nodeExecuteAfter`` and ``nodeExecuteAfterData`` (nothing for a silent task)."""
        task = self._tasks.pop(event.task_id)
        unsent = self._buffers.take(event.task_id)
        streamed = [] if task.silent else self._stream(task.name, unsent)
        self.record.streams.pop(task.name, None)
        node = self._node(task.name)
        finished_at = now_ms()
        status = "error" if event.error else "waiting" if event.interrupts else "success"
        result = m.TaskResultData(
            startTime=task.start.startTime,
            executionIndex=task.start.executionIndex,
            source=task.start.source,
            hints=[],
            executionTime=max(0, finished_at - task.start.startTime),
            executionStatus=status,
        )
        main = None if event.error else self._items(task.name, event.result, node)
        counts = {} if main is None else {"main": [len(items) for items in main]}
        self._remember(task, result, counts, main)
        if event.error is not None:
            result.error = node_operation_error(event.error, node, finished_at)
            self._fail_node(task.name, event.error, result.error["message"])
        if task.silent:
            return []
        graph_state = self._snapshot()
        after = m.NodeExecuteAfterMessageData(
            executionId=self.record.id,
            nodeName=task.name,
            sequenceNumber=self._node_sequence(),
            itemCountByConnectionType=counts,
            data=result,
            graph_state=graph_state,
        )
        after_data = m.NodeExecuteAfterDataMessageData(
            executionId=self.record.id,
            nodeName=task.name,
            itemCountByConnectionType=counts,
            # n8n sends a failed node's task data without ``data``.
            data=result if main is None else msgspec.structs.replace(result, data={"main": main}),
            graph_state=graph_state,
        )
        return [
            *streamed,
            self._event(m.NodeExecuteAfter(after), "nodeExecuteAfter"),
            self._event(m.NodeExecuteAfterData(after_data), "nodeExecuteAfterData"),
        ]

    def _items(self, name: str, result: Any, node: NodeInfo) -> list[list[m.JsonObject]]:
        """The node's output items, one list per output (n8n's ``data.main``)."""
        output, index = node_output(name, result)
        self._routes[name] = index
        main: list[list[m.JsonObject]] = [[] for _ in range(max(node.outputs, index + 1))]
        main[index] = [{"json": output, "pairedItem": {"item": 0}}]
        return main

    def _fail_node(self, name: str, error: BaseException, message: str) -> None:
        self.graph_state.mark_error(name, message, type(error).__name__)
        self.record.error = {"message": message, "node": name, "type": "NodeOperationError"}

    def execution_waiting(self) -> StoredEvent:
        self._forget_streams()
        data = m.ExecutionWaitingData(executionId=self.record.id, graph_state=self._snapshot())
        return self._event(m.ExecutionWaiting(data), "executionWaiting")

    def execution_finished(self, status: str) -> StoredEvent:
        """The run's terminal message; the record gets its final status and stop time.
        Nodes still running or waiting (a sibling of a failed branch, a run canceled or
        crashed mid-node) stop with the run and are shown ``canceled``."""
        record = self.record
        self._forget_streams()
        self.graph_state.mark_canceled()
        record.stopped_at = now_ms()
        data = m.ExecutionFinishedData(
            executionId=record.id,
            workflowId=record.workflow_id,
            status=status,
            graph_state=self._snapshot(),
        )
        return self._event(m.ExecutionFinished(data), "executionFinished")

    def fail_run(self, message: str, error_type: str) -> None:
        """Record a run-level error (no node to blame: timeout, recursion limit, crash)."""
        self.graph_state.mark_error(None, message, error_type)
        self.record.error = {"message": message, "node": None, "type": error_type}

    def time_out(self, message: str) -> None:
        """Record that the run timed out; the error names the node that was running, if
        one was."""
        running = [task.name for task in self._tasks.values() if not task.silent]
        self.fail_run(message, "timeout")
        if running:
            self.record.error = {**(self.record.error or {}), "node": running[0]}

    # ---- helpers ---------------------------------------------------------------------

    def _forget_streams(self) -> None:
        """Chunks of nodes stopped with the run are not sent: nothing follows its end."""
        self._buffers.clear()
        self.record.streams.clear()

    def _snapshot(self) -> dict[str, Any]:
        state = self.graph_state.to_frontend_format()
        self.record.graph_state = state
        return state

    def _node(self, name: str) -> NodeInfo:
        node = self.nodes.get(name)
        return node or NodeInfo(
            id=name, name=name, type="langgraph", position=(0, 0), parameters={}
        )

    def _source(self, name: str) -> list[m.SourceData]:
        predecessors = self.predecessors.get(name, [])
        fan_in = self._node(name).fan_in
        return sources(self.record, predecessors, self._routes, fan_in=fan_in)

    def _remember(
        self,
        task: _Task,
        result: m.TaskResultData,
        counts: dict[str, list[int]],
        main: list[list[m.JsonObject]] | None,
    ) -> None:
        """Keep the node run's metadata and output in the record, and its state."""
        remember(
            self.record,
            task.name,
            silent=task.silent,
            start=task.start,
            result=result,
            counts=counts,
            main=main,
        )
        if main is not None:  # a failed node is marked with its error by _fail_node
            self.graph_state.mark_node_finished(
                task.name, result.executionStatus, result.executionTime
            )
