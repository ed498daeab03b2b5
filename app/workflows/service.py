"""``WorkflowService``: stored workflows (create, read, update, delete), graphs registered
from Python, the node types both may use, and compiling a run's workflow for the engine.
"""

from __future__ import annotations

import hashlib
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel

from app.clock import new_id
from app.errors import Conflict, NotFound, ValidationFailed, problem
from app.messages import encoder
from app.model.ids import ID_PATTERN, is_identifier
from app.model.records import ExecutionRecord, JsonObject
from app.model.webhooks import check_webhook_url
from app.storage.base import WorkflowStore
from app.workflows.builtin_nodes import builtin_registry
from app.workflows.compiler import CompiledWorkflow, Partial, compile_graph, compile_workflow
from app.workflows.node_types import NodeRegistry, NodeType
from app.workflows.schema import parse_workflow, workflow_to_json

#: The version of a registered graph's workflow (it has no JSON to digest).
GRAPH_VERSION = "graph"


class WorkflowService:
    """Workflows by id: the stored ones and the graphs registered in this process."""

    def __init__(
        self,
        *,
        store: WorkflowStore,
        checkpointer: BaseCheckpointSaver[Any] | None,
        python_modules: tuple[str, ...],
        default_recursion_limit: int,
        registry: NodeRegistry | None = None,
        webhook_allow_private: bool = False,
    ) -> None:
        self.store = store
        self.registry = registry or builtin_registry()
        self._checkpointer = checkpointer
        self._python_modules = python_modules
        self._default_recursion_limit = default_recursion_limit
        self._webhook_allow_private = webhook_allow_private
        self._graphs: dict[str, CompiledWorkflow] = {}
        #: Stored workflows by id with their version, read once, dropped on update or delete.
        self._cached: dict[str, tuple[JsonObject, str]] = {}
        self._compiled: dict[tuple[str, str, Partial | None], CompiledWorkflow] = {}

    # ---- Python API --------------------------------------------------------------------

    def register_node_type(self, type_name: str, node_type: NodeType) -> None:
        """Make ``type_name`` usable in workflows (validation and runs)."""
        self.registry.register(type_name, node_type)

    def register_graph(
        self, workflow_id: str, graph: Pregel[Any, Any, Any, Any], name: str = ""
    ) -> None:
        """Expose a compiled LangGraph graph as workflow ``workflow_id``; its runs emit the
        same push messages as built-in workflows."""
        if not is_identifier(workflow_id):
            raise ValidationFailed("bad workflow id", [problem("id", f"expected {ID_PATTERN}")])
        self._graphs[workflow_id] = compile_graph(workflow_id, name or workflow_id, graph)

    # ---- stored workflows ----------------------------------------------------------------

    def _parse(self, body: bytes | JsonObject) -> JsonObject:
        workflow = parse_workflow(body, self.registry, python_modules=self._python_modules)
        if workflow.settings.webhook_url is not None:
            check_webhook_url(
                workflow.settings.webhook_url,
                allow_private=self._webhook_allow_private,
                path="settings.webhook_url",
            )
        return workflow_to_json(workflow)

    async def create(self, body: bytes | JsonObject) -> JsonObject:
        """Validate and store a new workflow (its id assigned if absent); 409 if it exists."""
        workflow = self._parse(body)
        workflow["id"] = workflow.get("id") or new_id()
        if workflow["id"] in self._graphs:
            raise Conflict(f"workflow {workflow['id']!r} already exists")
        await self.store.create_workflow(workflow["id"], workflow)
        return workflow

    async def update(self, workflow_id: str, body: bytes | JsonObject) -> JsonObject:
        await self.get(workflow_id)
        workflow = self._parse(body)
        if workflow.get("id", workflow_id) != workflow_id:
            raise ValidationFailed("id mismatch", [problem("id", f"must be {workflow_id!r}")])
        workflow["id"] = workflow_id
        await self.store.put_workflow(workflow_id, workflow)
        self._cached.pop(workflow_id, None)
        return workflow

    async def get(self, workflow_id: str) -> JsonObject:
        return (await self.get_versioned(workflow_id))[0]

    async def get_versioned(self, workflow_id: str) -> tuple[JsonObject, str]:
        """The workflow and its version (a digest of its JSON); raises :class:`NotFound`."""
        if workflow_id in self._graphs:
            return _graph_workflow(self._graphs[workflow_id]), GRAPH_VERSION
        cached = self._cached.get(workflow_id)
        if cached is None:
            workflow = await self.store.get_workflow(workflow_id)
            if workflow is None:
                raise NotFound(f"workflow {workflow_id!r} not found")
            cached = self._cached[workflow_id] = (workflow, _version(workflow))
        return cached

    async def list_all(self) -> list[JsonObject]:
        """The stored workflows, then the registered graphs."""
        graphs = [_graph_workflow(g) for g in self._graphs.values()]
        return [*await self.store.list_workflows(), *graphs]

    async def delete(self, workflow_id: str) -> None:
        self._cached.pop(workflow_id, None)
        if self._graphs.pop(workflow_id, None) is None and not await self.store.delete_workflow(
            workflow_id
        ):
            raise NotFound(f"workflow {workflow_id!r} not found")

    # ---- for the engine ----------------------------------------------------------------

    async def compile(self, record: ExecutionRecord) -> CompiledWorkflow:
        """The graph a run executes: its registered graph, or its workflow snapshot compiled
        (once per workflow version). Raises :class:`NotFound` for a graph not registered in
        this process. A retry's graph starts where its :class:`RetryPlan` says."""
        if record.workflow.get("graph"):
            if record.workflow_id not in self._graphs:
                raise NotFound(f"graph {record.workflow_id!r} is not registered in this process")
            return self._graphs[record.workflow_id]
        plan = record.retry
        partial = Partial(tuple(plan.starts), frozenset(plan.reused)) if plan else None
        key = (record.workflow_id, record.workflow_version or _version(record.workflow), partial)
        compiled = self._compiled.get(key)
        if compiled is None:
            workflow = parse_workflow(
                record.workflow, self.registry, python_modules=self._python_modules
            )
            compiled = self._compiled[key] = compile_workflow(
                workflow,
                self.registry,
                checkpointer=self._checkpointer,
                default_recursion_limit=self._default_recursion_limit,
                workflow_id=record.workflow_id,
                partial=partial,
            )
        return compiled


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
