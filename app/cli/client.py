"""A small client of graphpush's public API: the REST endpoints and the SSE stream of one
execution. The CLI is built on it; it draws nothing.

Errors::

    ClientError            anything that stopped a call
    ├── Unreachable        no answer from the server (refused, DNS, timeout, dropped)
    └── ApiError           the server answered with an error body (status, code, details)

:class:`app.cli.tracker.RunTracker` folds the messages it reads into per-node states.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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

    def retry(self, execution_id: str, body: JsonObject) -> JsonObject:
        """``POST /agents/executions/{id}/retry``: the 202 body of the new run."""
        answer: JsonObject = self.request(
            "POST", f"/agents/executions/{execution_id}/retry", json=body
        )
        return answer

    def resume(self, execution_id: str, value: Any = None) -> JsonObject:
        answer: JsonObject = self.request(
            "POST", f"/agents/executions/{execution_id}/resume", json={"value": value}
        )
        return answer

    def prune(self, *, dry_run: bool = False) -> JsonObject:
        answer: JsonObject = self.request(
            "POST", "/agents/executions/prune", json={"dry_run": dry_run}
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
