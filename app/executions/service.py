"""``ExecutionService``: the one entry point for workflows and runs, used by the REST API,
the push core's inbound commands and the Python API (n8n's ``WorkflowExecutionService``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import msgspec
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel

from app.bus.base import EventBus, PushEvent
from app.clock import now_ms
from app.errors import Conflict, IllegalTransition, NotFound, QueueFull, ValidationFailed, problem
from app.executions.recorder import RunRecorder
from app.executions.workers import ExecutionManager
from app.messages import (
    ExecutionRecovered,
    ExecutionRecoveredData,
    ExecutionSnapshotData,
    encode,
    encoder,
)
from app.metrics import prometheus
from app.model.records import (
    PUSH_REF_PATTERN,
    ExecutionPage,
    ExecutionQuery,
    ExecutionRecord,
    JsonObject,
    StoredEvent,
    is_push_ref,
)
from app.model.status import ExecutionStatus, check_transition
from app.queue.base import ExecutionQueue
from app.settings import Settings
from app.storage.base import ExecutionStore, WorkflowStore
from app.workflows.compiled import CompiledWorkflow
from app.workflows.compiler import compile_graph, compile_workflow
from app.workflows.node_types import NodeRegistry, NodeType
from app.workflows.schema import parse_workflow, workflow_to_json

S = ExecutionStatus


def new_id() -> str:
    """Time-ordered, URL-safe execution or workflow id."""
    return f"{time.time_ns() // 1000:x}{secrets.token_hex(3)}"


class ExecutionService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: ExecutionStore,
        workflows: WorkflowStore,
        bus: EventBus,
        queue: ExecutionQueue,
        checkpointer: BaseCheckpointSaver[Any] | None,
        registry: NodeRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.workflows = workflows
        self.bus = bus
        self.queue = queue
        self.registry = registry or NodeRegistry.with_builtins()
        self._checkpointer = checkpointer
        self._graphs: dict[str, CompiledWorkflow] = {}
        #: Stored workflows by id with their version, read once, dropped on update or delete.
        self._workflows: dict[str, tuple[JsonObject, str]] = {}
        self._compiled: dict[tuple[str, str], CompiledWorkflow] = {}
        self._reserved = 0
        self.manager = ExecutionManager(
            store=store, bus=bus, queue=queue, compile=self._compile, workers=settings.workers
        )

    # ---- Python API --------------------------------------------------------------------

    def register_node_type(self, type_name: str, node_type: NodeType) -> None:
        """Make ``type_name`` usable in workflows (validation and runs)."""
        self.registry.register(type_name, node_type)

    def register_graph(
        self, workflow_id: str, graph: Pregel[Any, Any, Any, Any], name: str = ""
    ) -> None:
        """Expose a compiled LangGraph graph as workflow ``workflow_id``; its runs emit the
        same push messages as built-in workflows."""
        if not is_push_ref(workflow_id):
            raise ValidationFailed(
                "bad workflow id", [problem("id", f"expected {PUSH_REF_PATTERN}")]
            )
        self._graphs[workflow_id] = compile_graph(workflow_id, name or workflow_id, graph)

    # ---- workflows ---------------------------------------------------------------------

    def _parse(self, body: bytes | JsonObject) -> JsonObject:
        workflow = parse_workflow(body, self.registry, python_modules=self.settings.python_modules)
        return workflow_to_json(workflow)

    async def create_workflow(self, body: bytes | JsonObject) -> JsonObject:
        workflow = self._parse(body)
        workflow["id"] = workflow.get("id") or new_id()
        if workflow["id"] in self._graphs:
            raise Conflict(f"workflow {workflow['id']!r} already exists")
        await self.workflows.create_workflow(workflow["id"], workflow)
        return workflow

    async def update_workflow(self, workflow_id: str, body: bytes | JsonObject) -> JsonObject:
        await self.get_workflow(workflow_id)
        workflow = self._parse(body)
        if workflow.get("id", workflow_id) != workflow_id:
            raise ValidationFailed("id mismatch", [problem("id", f"must be {workflow_id!r}")])
        workflow["id"] = workflow_id
        await self.workflows.put_workflow(workflow_id, workflow)
        self._workflows.pop(workflow_id, None)
        return workflow

    async def get_workflow(self, workflow_id: str) -> JsonObject:
        return (await self._workflow(workflow_id))[0]

    async def _workflow(self, workflow_id: str) -> tuple[JsonObject, str]:
        """The workflow and its version (a digest of its JSON)."""
        if workflow_id in self._graphs:
            return _graph_workflow(self._graphs[workflow_id]), "graph"
        cached = self._workflows.get(workflow_id)
        if cached is None:
            workflow = await self.workflows.get_workflow(workflow_id)
            if workflow is None:
                raise NotFound(f"workflow {workflow_id!r} not found")
            cached = self._workflows[workflow_id] = (workflow, _version(workflow))
        return cached

    async def list_workflows(self) -> list[JsonObject]:
        graphs = [_graph_workflow(g) for g in self._graphs.values()]
        return [*await self.workflows.list_workflows(), *graphs]

    async def delete_workflow(self, workflow_id: str) -> None:
        self._workflows.pop(workflow_id, None)
        if self._graphs.pop(workflow_id, None) is None and not await self.workflows.delete_workflow(
            workflow_id
        ):
            raise NotFound(f"workflow {workflow_id!r} not found")

    async def _compile(self, record: ExecutionRecord) -> CompiledWorkflow:
        if record.workflow.get("graph"):
            if record.workflow_id not in self._graphs:
                raise NotFound(f"graph {record.workflow_id!r} is not registered in this process")
            return self._graphs[record.workflow_id]
        key = (record.workflow_id, record.workflow_version or _version(record.workflow))
        compiled = self._compiled.get(key)
        if compiled is None:
            workflow = parse_workflow(
                record.workflow, self.registry, python_modules=self.settings.python_modules
            )
            compiled = compile_workflow(
                workflow,
                self.registry,
                checkpointer=self._checkpointer,
                default_recursion_limit=self.settings.default_recursion_limit,
                workflow_id=record.workflow_id,
            )
            self._compiled[key] = compiled
        return compiled

    # ---- executions --------------------------------------------------------------------

    def _reserve(self) -> None:
        if self.queue.qsize() + self._reserved >= self.settings.queue_bound:
            raise QueueFull(f"{self.settings.queue_bound} runs are already queued; retry later")
        self._reserved += 1

    async def _enqueue(self, record: ExecutionRecord) -> None:
        """Store ``record`` durably, then queue it; the queue slot is reserved first so a
        stored run is never refused by the queue."""
        self._reserve()
        try:
            await self.store.save(record)
        finally:
            self._reserved -= 1
        await self.queue.put(record)

    async def queue_manual_execution(
        self,
        workflow_id: str,
        *,
        input: JsonObject | None = None,
        push_ref: str | None = None,
        owner: str | None = None,
    ) -> ExecutionRecord:
        """Create a ``new`` run of ``workflow_id`` and queue it (n8n's manual run)."""
        if push_ref is not None and not is_push_ref(push_ref):
            raise ValidationFailed(
                "bad push_ref", [problem("push_ref", f"expected {PUSH_REF_PATTERN}")]
            )
        workflow, version = await self._workflow(workflow_id)
        record = ExecutionRecord(
            id=new_id(),
            workflow_id=workflow_id,
            workflow_name=str(workflow.get("name", workflow_id)),
            push_ref=push_ref,
            owner=owner,
            created_at=now_ms(),
            input=input or {},
            workflow=workflow,
            workflow_version=version,
        )
        await self._enqueue(record)
        return record

    async def get_execution(self, execution_id: str, owner: str | None = None) -> ExecutionRecord:
        """The freshest view of a run: the live one while it runs here, else the stored one."""
        active = self.manager.active.get(execution_id)
        record = active.record if active else await self.store.get(execution_id)
        if record is None or (owner is not None and record.owner != owner):
            raise NotFound(f"execution {execution_id!r} not found")
        return record

    async def list_executions(self, query: ExecutionQuery) -> ExecutionPage:
        return await self.store.list(query)

    async def cancel_execution(
        self, execution_id: str, owner: str | None = None
    ) -> ExecutionRecord:
        """Cancel a queued, running or waiting run; it ends with ``executionFinished{canceled}``.
        Raises :class:`IllegalTransition` (409) for a finished run."""
        record = await self.get_execution(execution_id, owner)
        if self.manager.cancel(execution_id):
            return record
        check_transition(record.status, S.CANCELED)
        if not await self.queue.cancel(record):  # held by another process: it ends it there
            return record
        if record.status is S.NEW and not self.queue.shared:
            self.manager.dropped.add(execution_id)
        await self.manager.finish(RunRecorder(record, {}, {}), S.CANCELED)
        return record

    async def resume_execution(
        self, execution_id: str, value: Any, owner: str | None = None
    ) -> ExecutionRecord:
        """Queue a ``waiting`` run to continue with ``value`` as its ``interrupt()`` result."""
        record = await self.get_execution(execution_id, owner)
        if record.status is not S.WAITING or execution_id in self.manager.active:
            raise IllegalTransition(f"execution is {record.status.value}; only waiting runs resume")
        record.status, record.resume_value, record.resume_pending = S.NEW, value, True
        await self._enqueue(record)
        return record

    async def read_events(
        self, execution_id: str, after: int = 0, owner: str | None = None
    ) -> list[StoredEvent]:
        await self.get_execution(execution_id, owner)
        return await self.store.read_events(execution_id, after)

    async def snapshot(self, execution_id: str, owner: str | None = None) -> ExecutionSnapshotData:
        record = await self.get_execution(execution_id, owner)
        return ExecutionSnapshotData(record.id, record.status.value, record.graph_state)

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Recover from the previous process, then start the workers.

        Runs left ``running`` by a dead process become ``crashed`` (see :meth:`recover`);
        runs left ``new`` are queued again, oldest first; ``waiting`` runs wait on. A shared
        queue recovers nothing here: other processes may be running those runs, and the
        queue hands over the ones whose holder died (:mod:`app.redis_queue`)."""
        if not self.queue.shared:
            everything = 1 << 62
            crashed = await self.store.list(ExecutionQuery(status=S.RUNNING, limit=everything))
            await self.recover(crashed.items)
            queued = await self.store.list(ExecutionQuery(status=S.NEW, limit=everything))
            for record in reversed(queued.items):
                await self.queue.put(record)
        self.manager.start()

    async def recover(self, records: list[ExecutionRecord]) -> None:
        """End ``running`` runs whose process died: each becomes ``crashed``, its log ends
        with ``executionFinished{crashed}``, then ``executionRecovered`` is broadcast."""
        for record in records:
            await self._catch_up(record)
            recorder = RunRecorder(record, {}, {})
            recorder.fail_run("the process running this execution stopped", "crashed")
            await self.manager.finish(recorder, S.CRASHED)
        await self.manager.drain()
        for record in records:
            message = encode(ExecutionRecovered(ExecutionRecoveredData(record.id)))
            await self.bus.publish(
                PushEvent(record.id, 0, "executionRecovered", message, broadcast=True)
            )

    async def _catch_up(self, record: ExecutionRecord) -> None:
        """Bring a run left ``running`` up to its log: node events are logged without
        rewriting the record, so its ``last_seq`` and ``graph_state`` may lag behind (the
        terminal message must follow the log, not overwrite its entries)."""
        logged = await self.store.read_events(record.id, record.last_seq)
        if logged:
            record.last_seq = logged[-1].seq
            data = _event_data.decode(logged[-1].payload).data
            record.graph_state = data.get("graph_state", record.graph_state)

    def metrics_text(self) -> str:
        manager = self.manager
        gauges = {"queue_depth": self.queue.qsize(), "executions_active": len(manager.active)}
        counters = {
            f'executions_finished_total{{status="{k}"}}': v for k, v in manager.finished.items()
        }
        return prometheus(gauges, counters)

    async def shutdown(self) -> None:
        await self.manager.shutdown(self.settings.shutdown_timeout_s)


class _EventData(msgspec.Struct):
    data: JsonObject


_event_data = msgspec.json.Decoder(_EventData)


def _version(workflow: JsonObject) -> str:
    return hashlib.sha1(encoder.encode(workflow), usedforsecurity=False).hexdigest()


def _graph_workflow(compiled: CompiledWorkflow) -> JsonObject:
    """A registered graph as a workflow listing: its nodes, and ``graph: true``."""
    connections: dict[str, JsonObject] = {}
    for target, preds in compiled.predecessors.items():
        for source, _ in preds:
            outputs = connections.setdefault(source, {"main": [[]]})["main"][0]
            outputs.append({"node": target, "type": "main", "index": 0})
    return {
        "id": compiled.workflow_id,
        "name": compiled.name,
        "graph": True,
        "nodes": [
            {"name": n.name, "type": n.type, "parameters": {}, "position": list(n.position)}
            for n in compiled.nodes.values()
        ],
        "connections": connections,
    }
