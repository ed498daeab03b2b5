"""``GraphState``: what a canvas needs to paint a run, node by node (SPEC §4 extension).

Node statuses: ``pending``, ``running``, ``success``, ``error``, ``waiting``, ``canceled``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PENDING = "pending"
RUNNING = "running"


class GraphState:
    """Per-node status of one execution, updated as its node events happen.

    A node's entry is never changed in place: each update puts a new dict in its slot. So
    :meth:`to_frontend_format` shares the entries between views instead of copying them,
    which matters as every push message of a run carries one view.
    """

    __slots__ = ("_completed", "_errors", "_nodes", "_running")

    def __init__(self, node_names: Iterable[str]) -> None:
        self._nodes: dict[str, dict[str, Any]] = {
            name: {"status": PENDING, "runs": 0} for name in node_names
        }
        self._completed: list[str] = []
        self._errors: list[dict[str, Any]] = []
        self._running: dict[str, None] = {}

    def _update(self, name: str, **changes: Any) -> dict[str, Any]:
        # A registered LangGraph graph may run nodes its drawing did not show.
        node = {**self._nodes.get(name, {"status": PENDING, "runs": 0}), **changes}
        self._nodes[name] = node
        return node

    def status_of(self, name: str) -> str:
        node = self._nodes.get(name)
        return PENDING if node is None else str(node["status"])

    def mark_node_started(self, name: str, started_at_ms: int) -> None:
        self._update(name, status=RUNNING, started_at=started_at_ms)
        self._running[name] = None

    def mark_node_finished(self, name: str, status: str, execution_time_ms: int) -> None:
        """``status`` is the node's outcome: ``success``, ``waiting`` or ``error``."""
        runs = self._nodes[name]["runs"] + 1 if name in self._nodes else 1
        self._update(name, status=status, runs=runs, execution_time_ms=execution_time_ms)
        self._running.pop(name, None)
        if status == "success" and name not in self._completed:
            self._completed.append(name)

    def mark_error(self, name: str | None, message: str, error_type: str) -> None:
        self._errors.append({"node": name, "message": message, "type": error_type})
        if name is not None:
            runs = self._nodes[name]["runs"] + 1 if name in self._nodes else 1
            self._update(name, status="error", runs=runs)
            self._running.pop(name, None)

    def mark_canceled(self) -> None:
        """Every node still running or waiting becomes ``canceled``."""
        for name, node in list(self._nodes.items()):
            if node["status"] in (RUNNING, "waiting"):
                self._update(name, status="canceled")
        self._running.clear()

    def to_frontend_format(self) -> dict[str, Any]:
        return {
            "nodes": dict(self._nodes),
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
