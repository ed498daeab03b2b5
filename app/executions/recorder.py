"""``RunRecorder``: turns one run's lifecycle and node events into the push messages of
SPEC §4, in order, each encoded once and numbered with the execution's log ``seq``.

It also keeps the run's :class:`GraphState`, its per-node run metadata and outputs in the
:class:`ExecutionRecord`, so the record always matches the last message built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from app import messages as m
from app.clock import iso, now_ms
from app.executions.flatted import stringify
from app.executions.graph_state import GraphState
from app.executions.node_errors import node_operation_error
from app.executions.runner import TaskFinished
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
    resume), then per task ``node_started`` / ``node_finished``, then exactly one of
    ``execution_waiting`` or ``execution_finished``."""

    def __init__(
        self,
        record: ExecutionRecord,
        nodes: dict[str, NodeInfo],
        predecessors: dict[str, list[tuple[str, int]]],
    ) -> None:
        self.record = record
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
        self.record.last_seq += 1
        return StoredEvent(self.record.last_seq, type_, m.encode(message))

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
            flattedRunData=stringify((record.outputs and _run_data(record)) or {}),
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

    def node_finished(self, event: TaskFinished) -> list[StoredEvent]:
        """``nodeExecuteAfter`` then ``nodeExecuteAfterData`` (nothing for a silent task)."""
        task = self._tasks.pop(event.task_id)
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
            self._event(m.NodeExecuteAfter(after), "nodeExecuteAfter"),
            self._event(m.NodeExecuteAfterData(after_data), "nodeExecuteAfterData"),
        ]

    def _items(self, name: str, result: Any, node: NodeInfo) -> list[list[m.JsonObject]]:
        """The node's output items, one list per output (n8n's ``data.main``)."""
        output, index = _output(name, result)
        self._routes[name] = index
        main: list[list[m.JsonObject]] = [[] for _ in range(max(node.outputs, index + 1))]
        main[index] = [{"json": output, "pairedItem": {"item": 0}}]
        return main

    def _fail_node(self, name: str, error: BaseException, message: str) -> None:
        self.graph_state.mark_error(name, message, type(error).__name__)
        self.record.error = {"message": message, "node": name, "type": "NodeOperationError"}

    def execution_waiting(self) -> StoredEvent:
        data = m.ExecutionWaitingData(executionId=self.record.id, graph_state=self._snapshot())
        return self._event(m.ExecutionWaiting(data), "executionWaiting")

    def execution_finished(self, status: str) -> StoredEvent:
        """The run's terminal message; the record gets its final status and stop time.
        Nodes still running or waiting (a sibling of a failed branch, a run canceled or
        crashed mid-node) stop with the run and are shown ``canceled``."""
        record = self.record
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

    # ---- helpers ---------------------------------------------------------------------

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
        runs = self.record.run_data
        done = [
            (src, out)
            for src, out in self.predecessors.get(name, ())
            if runs.get(src) and self._routes.get(src, 0) == out
        ]
        if not self._node(name).fan_in:
            done = sorted(done, key=lambda p: runs[p[0]][-1]["execution_index"])[-1:]
        return [m.SourceData(src, out, len(runs[src]) - 1) for src, out in done]

    def _remember(
        self,
        task: _Task,
        result: m.TaskResultData,
        counts: dict[str, list[int]],
        main: list[list[m.JsonObject]] | None,
    ) -> None:
        """Keep the node run's metadata and output in the record, and its state."""
        runs = self.record.run_data.setdefault(task.name, [])
        outputs = self.record.outputs.setdefault(task.name, [])
        if task.silent and runs:  # the resumed waiting node finishes the run it began
            runs.pop()
            outputs.pop()
        runs.append(
            {
                "status": result.executionStatus,
                "start_time": task.start.startTime,
                "execution_index": task.start.executionIndex,
                "execution_time": result.executionTime,
                "item_count": counts,
                "source": msgspec.to_builtins(task.start.source),
            }
        )
        outputs.append({"main": main or []})
        if main is not None:  # a failed node is marked with its error by _fail_node
            self.graph_state.mark_node_finished(
                task.name, result.executionStatus, result.executionTime
            )


def _output(name: str, result: Any) -> tuple[Any, int]:
    """The node's output JSON and the output index it took."""
    if isinstance(result, dict) and "agent_results" in result:
        output = result["agent_results"].get(name, {})
        index = int(result.get("routes", {}).get(name, 0))
    else:
        output, index = (result if result is not None else {}), 0
    if not isinstance(output, dict):
        output = {"value": output}
    return output, index


def _run_data(record: ExecutionRecord) -> dict[str, Any]:
    """Prior run data in n8n's ``IRunData`` shape, for ``flattedRunData``."""
    return {
        name: [
            {**_task_meta(meta), "data": output}
            for meta, output in zip(record.run_data[name], outputs, strict=False)
        ]
        for name, outputs in record.outputs.items()
    }


def _task_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "startTime": meta["start_time"],
        "executionIndex": meta["execution_index"],
        "source": meta.get("source", []),
        "hints": [],
        "executionTime": meta["execution_time"],
        "executionStatus": meta["status"],
    }


def output_index(output: dict[str, Any]) -> int:
    """The output a recorded node run took: the one holding its items (0 when none does)."""
    return next((i for i, items in enumerate(output.get("main", [])) if items), 0)
