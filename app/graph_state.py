"""``GraphState``: what a canvas needs to paint a run, node by node (SPEC §4 extension).

Node statuses: ``pending``, ``running``, ``success``, ``error``, ``waiting``, ``canceled``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PENDING = "pending"
RUNNING = "running"


class GraphState:
    """Per-node status of one execution, updated as its node events happen."""

    __slots__ = ("_completed", "_errors", "_nodes", "_running")

    def __init__(self, node_names: Iterable[str]) -> None:
        self._nodes: dict[str, dict[str, Any]] = {
            name: {"status": PENDING, "runs": 0} for name in node_names
        }
        self._completed: list[str] = []
        self._errors: list[dict[str, Any]] = []
        self._running: dict[str, None] = {}

    def _node(self, name: str) -> dict[str, Any]:
        # A registered LangGraph graph may run nodes its drawing did not show.
        return self._nodes.setdefault(name, {"status": PENDING, "runs": 0})

    def status_of(self, name: str) -> str:
        node = self._nodes.get(name)
        return PENDING if node is None else str(node["status"])

    def mark_node_started(self, name: str, started_at_ms: int) -> None:
        node = self._node(name)
        node["status"] = RUNNING
        node["started_at"] = started_at_ms
        self._running[name] = None

    def mark_node_finished(self, name: str, status: str, execution_time_ms: int) -> None:
        """``status`` is the node's outcome: ``success``, ``waiting`` or ``error``."""
        node = self._node(name)
        node["status"] = status
        node["runs"] += 1
        node["execution_time_ms"] = execution_time_ms
        self._running.pop(name, None)
        if status == "success" and name not in self._completed:
            self._completed.append(name)

    def mark_error(self, name: str | None, message: str, error_type: str) -> None:
        self._errors.append({"node": name, "message": message, "type": error_type})
        if name is not None:
            node = self._node(name)
            node["status"] = "error"
            node["runs"] += 1
            self._running.pop(name, None)

    def mark_canceled(self) -> None:
        """Every node still running or waiting becomes ``canceled``."""
        for node in self._nodes.values():
            if node["status"] in (RUNNING, "waiting"):
                node["status"] = "canceled"
        self._running.clear()

    def to_frontend_format(self) -> dict[str, Any]:
        return {
            "nodes": {name: dict(node) for name, node in self._nodes.items()},
            "completed_nodes": list(self._completed),
            "running_nodes": list(self._running),
            "errors": list(self._errors),
        }

    @classmethod
    def from_frontend_format(cls, data: dict[str, Any]) -> GraphState:
        """Rebuild the state stored with a run (to continue it after a resume)."""
        state = cls(())
        state._nodes = {name: dict(node) for name, node in data.get("nodes", {}).items()}
        state._completed = list(data.get("completed_nodes", []))
        state._errors = list(data.get("errors", []))
        state._running = dict.fromkeys(data.get("running_nodes", []))
        return state
