"""Folding the push messages of one execution into per-node states, the way a canvas
would: :class:`RunTracker` is pure and shared by the live view and ``executions show``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from app.cli.client import JsonObject
from app.model.status import FINISHED


@dataclass
class NodeState:
    """One node as a canvas shows it; ``status`` as in ``graph_state`` (``pending``,
    ``running``, ``success``, ``error``, ``waiting``, ``canceled``) plus ``skipped``."""

    name: str
    status: str = "pending"
    runs: int = 0
    started_at_ms: int | None = None
    execution_time_ms: int | None = None


NODE_DONE: Final = frozenset({"success", "error"})


@dataclass
class RunTracker:
    """The state of one execution, updated message by message (:meth:`apply`)."""

    execution_id: str
    status: str = "new"
    nodes: dict[str, NodeState] = field(default_factory=dict)
    last_seq: int = 0
    error: JsonObject | None = None

    @classmethod
    def for_workflow(cls, execution_id: str, workflow: JsonObject) -> RunTracker:
        """Every node of ``workflow`` pending, in the workflow's order."""
        names = [str(node["name"]) for node in workflow.get("nodes", [])]
        return cls(execution_id, nodes={name: NodeState(name) for name in names})

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def done(self) -> int:
        return sum(1 for node in self.nodes.values() if node.status in NODE_DONE)

    def apply(self, message: JsonObject, seq: int | None = None) -> NodeState | None:
        """Fold one push message in; returns the node it changed, if any."""
        if seq is not None:
            self.last_seq = max(self.last_seq, seq)
        data = message.get("data") or {}
        match message.get("type"):
            case "nodeExecuteBefore":
                return self._node_started(data)
            case "nodeExecuteAfter":
                return self._node_finished(data)
            case "executionSnapshot" | "executionFinished":
                self.load_graph_state(data.get("graph_state") or {})
                self.status = str(data.get("status", self.status))
                if self.status == "canceled":
                    self._cancel_open_nodes()
            case "executionStarted":
                self.load_graph_state(data.get("graph_state") or {})
                self.status = "running"
            case "executionWaiting":
                self.status = "waiting"
        return None

    def _node_started(self, data: JsonObject) -> NodeState:
        node = self._node(data["nodeName"])
        node.status, node.started_at_ms = "running", data["data"].get("startTime")
        self.status = "running"
        return node

    def _node_finished(self, data: JsonObject) -> NodeState:
        node = self._node(data["nodeName"])
        task = data["data"]
        node.status = str(task.get("executionStatus", "success"))
        node.execution_time_ms = task.get("executionTime")
        node.runs += 1
        if "error" in task:
            self.error = task["error"]
        return node

    def load_graph_state(self, graph_state: JsonObject) -> None:
        """Take per-node states from a ``graph_state`` (the snapshot or a stored run)."""
        for name, state in (graph_state.get("nodes") or {}).items():
            node = self._node(name)
            node.status = str(state.get("status", node.status))
            node.runs = int(state.get("runs", node.runs))
            node.started_at_ms = state.get("started_at", node.started_at_ms)
            node.execution_time_ms = state.get("execution_time_ms", node.execution_time_ms)

    def mark_skipped(self) -> None:
        """After the run: nodes that never ran (a branch not taken) become ``skipped``."""
        for node in self.nodes.values():
            if node.status == "pending":
                node.status = "skipped"

    def _cancel_open_nodes(self) -> None:
        for node in self.nodes.values():
            if node.status in ("running", "waiting"):
                node.status = "canceled"

    def _node(self, name: str) -> NodeState:
        # A registered LangGraph graph may run nodes its listing did not show.
        return self.nodes.setdefault(name, NodeState(name))
