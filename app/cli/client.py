"""A small client of graphpush's public API: the REST endpoints and the SSE stream of one
execution. The CLI is built on it; it draws nothing.

Errors::

    ClientError            anything that stopped a call
    ├── Unreachable        no answer from the server (refused, DNS, timeout, dropped)
    └── ApiError           the server answered with an error body (status, code, details)

:class:`RunTracker` folds the push messages of one execution into per-node states, the way
a canvas would; it is pure and shared by the live view and ``executions show``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import httpx

from app.model.status import FINISHED

DEFAULT_URL: Final = "http://127.0.0.1:8000"
#: The server pings an SSE stream every ``ping_interval_s`` (25 s by default); a stream
#: silent for longer than this is treated as dropped and reopened.
STREAM_READ_TIMEOUT_S: Final = 90.0

JsonObject = dict[str, Any]


class ClientError(Exception):
    """Base of the client's errors; ``str()`` is a one-line explanation."""


class Unreachable(ClientError):
    def __init__(self, url: str, reason: str = "") -> None:
        self.url = url
        hint = f" ({reason})" if reason else ""
        super().__init__(f"cannot reach graphpush at {url}{hint}: is `graphpush serve` running?")


class ApiError(ClientError):
    """An error answer: ``{"error": {"code", "message", "details"}}`` and its status."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        super().__init__(f"{status} {code}: {message}")


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event: its ``id:`` (the execution ``seq``; None for the snapshot)
    and its decoded ``data:`` message."""

    id: int | None
    message: JsonObject

    @property
    def type(self) -> str:
        return str(self.message.get("type", ""))


def parse_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Events of an SSE body given line by line; comments (``:ok``, pings) are skipped."""
    event_id: int | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield SseEvent(event_id, _decode("\n".join(data)))
            event_id, data = None, []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "id" and value.isdigit():
            event_id = int(value)


def _decode(text: str) -> JsonObject:
    message = json.loads(text)
    return message if isinstance(message, dict) else {"type": "", "data": message}


class GraphpushClient:
    """Blocking client of one graphpush server. Use as a context manager (or :meth:`close`)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- plumbing -------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer (None for 204); raises :class:`ApiError`/:class:`Unreachable`."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(self.url, _reason(exc)) from None
        _raise_for_error(response)
        return None if response.status_code == 204 else response.json()

    # ---- workflows ------------------------------------------------------------------------

    def list_workflows(self) -> list[JsonObject]:
        items: list[JsonObject] = self.request("GET", "/agents/workflows")["items"]
        return items

    def get_workflow(self, workflow_id: str) -> JsonObject:
        workflow: JsonObject = self.request("GET", f"/agents/workflows/{workflow_id}")
        return workflow

    def import_workflow(self, workflow: JsonObject) -> tuple[JsonObject, bool]:
        """Create ``workflow``, or replace the stored one with its id; returns it and whether
        it was created."""
        try:
            return self.request("POST", "/agents/workflows", json=workflow), True
        except ApiError as exc:
            if exc.status != 409 or not workflow.get("id"):
                raise
        updated = self.request("PUT", f"/agents/workflows/{workflow['id']}", json=workflow)
        return updated, False

    # ---- executions -----------------------------------------------------------------------

    def run(self, workflow_id: str, input: JsonObject | None = None) -> JsonObject:
        """``POST /agents/workflows/{id}/run``: the 202 body (``execution_id``, ``status``...)."""
        accepted: JsonObject = self.request(
            "POST", f"/agents/workflows/{workflow_id}/run", json={"input": input or {}}
        )
        return accepted

    def get_execution(self, execution_id: str) -> JsonObject:
        execution: JsonObject = self.request("GET", f"/agents/executions/{execution_id}")
        return execution

    def list_executions(
        self,
        *,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> JsonObject:
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        if workflow_id:
            params["workflow_id"] = workflow_id
        if status:
            params["status"] = status
        page: JsonObject = self.request("GET", "/agents/executions", params=params)
        return page

    def cancel(self, execution_id: str) -> JsonObject:
        answer: JsonObject = self.request("POST", f"/agents/executions/{execution_id}/cancel")
        return answer

    def resume(self, execution_id: str, value: Any = None) -> JsonObject:
        answer: JsonObject = self.request(
            "POST", f"/agents/executions/{execution_id}/resume", json={"value": value}
        )
        return answer

    # ---- the execution stream (SSE) -------------------------------------------------------

    def stream(self, execution_id: str, after: int = 0) -> Iterator[SseEvent]:
        """One connection to ``GET /agents/executions/{id}/stream``: the snapshot, the logged
        events after ``after``, then live ones, until the server ends the stream."""
        headers = {"Accept": "text/event-stream"}
        if after:
            headers["Last-Event-ID"] = str(after)
        timeout = httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT_S)
        path = f"/agents/executions/{execution_id}/stream"
        try:
            with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    _raise_for_error(response)
                yield from parse_sse(response.iter_lines())
        except httpx.TransportError as exc:
            raise Unreachable(self.url, _reason(exc)) from None

    def follow(self, execution_id: str, after: int = 0, *, retries: int = 5) -> Iterator[SseEvent]:
        """Every event of the execution after ``after`` until ``executionFinished``, reopening
        the stream with ``Last-Event-ID`` when it drops (nothing lost, nothing twice).

        Raises :class:`Unreachable` after ``retries`` reconnects in a row that brought nothing.
        """
        failures = 0
        while True:
            progressed = finished = False
            error: Unreachable | None = None
            try:
                for event in self.stream(execution_id, after):
                    if event.id is not None:
                        after, progressed = event.id, True
                    if event.type == "executionSnapshot":
                        finished = event.message["data"].get("status") in FINISHED
                    yield event
                    if event.type == "executionFinished":
                        return
                if finished:  # its end was before ``after``: the stream had nothing more
                    return
            except Unreachable as exc:
                error = exc
            failures = 0 if progressed else failures + 1
            if failures > retries:
                raise error or Unreachable(self.url, "the stream keeps ending early")
            time.sleep(min(0.25 * 2**failures, 5.0) if failures else 0)


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else "cannot connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__


def _raise_for_error(response: httpx.Response) -> None:
    if not response.is_error:
        return
    try:
        error = response.json()["error"]
        raise ApiError(response.status_code, error["code"], error["message"], error.get("details"))
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        raise ApiError(response.status_code, "http_error", text) from None


# ---- folding push messages into node states ------------------------------------------------


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
