"""REST bodies: those built from stored records (the ``AgentExecutionDto``, the 202 of a
run) and the request bodies of run control (retry, bulk cancel)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from app.clock import iso
from app.model.records import ExecutionRecord, JsonObject
from app.model.webhooks import Attempt, WebhookDelivery


def execution_links(execution_id: str, workflow_id: str) -> dict[str, str]:
    base = f"/agents/executions/{execution_id}"
    return {
        "self": base,
        "events": f"{base}/events",
        "stream": f"{base}/stream",
        "cancel": f"{base}/cancel",
        "resume": f"{base}/resume",
        "retry": f"{base}/retry",
        "workflow": f"/agents/workflows/{workflow_id}",
    }


def run_accepted(record: ExecutionRecord) -> JsonObject:
    """The 202 body of ``POST /agents/workflows/{id}/run`` (and of a resume)."""
    links = execution_links(record.id, record.workflow_id)
    return {
        "execution_id": record.id,
        "status": record.status.value,
        "status_url": links["self"],
        "polling_url": links["self"],
        "stream_url": links["stream"],
        "logs_url": links["events"],
        "push_ref": record.push_ref,
    }


def _duration(record: ExecutionRecord) -> int | None:
    if record.started_at is None or record.stopped_at is None:
        return None
    return record.stopped_at - record.started_at


def execution_dto(record: ExecutionRecord, *, include_data: bool = False) -> JsonObject:
    """The ``AgentExecutionDto``; ``include_data`` adds every node's full output data."""
    runs = record.run_data
    last = max(
        ((name, r["execution_index"]) for name, rs in runs.items() for r in rs),
        key=lambda p: p[1],
        default=(None, -1),
    )[0]
    duration = _duration(record)
    dto: JsonObject = {
        "execution_id": record.id,
        "workflow_id": record.workflow_id,
        "workflow_name": record.workflow_name,
        "mode": record.mode,
        "status": record.status.value,
        "created_at": iso(record.created_at),
        "started_at": iso(record.started_at) if record.started_at else None,
        "stopped_at": iso(record.stopped_at) if record.stopped_at else None,
        "duration_ms": duration,
        "error": record.error,
        "retry_of": record.retry_of,
        "push_ref": record.push_ref,
        "input": record.input,
        "summary": {
            "nodes_total": len(record.graph_state.get("nodes", {})) or len(runs),
            "nodes_completed": len(record.graph_state.get("completed_nodes", [])),
            "nodes_failed": sum(
                1 for rs in runs.values() if any(r["status"] == "error" for r in rs)
            ),
            "duration_ms": duration,
            "last_node_executed": last,
            "events": record.last_seq,
        },
        "run_data_meta": {name: [_run_meta(r) for r in rs] for name, rs in runs.items()},
        "graph_state": record.graph_state,
        "streams": record.streams,
        "links": execution_links(record.id, record.workflow_id),
    }
    if record.retry_of is not None:
        dto["links"]["retry_of"] = f"/agents/executions/{record.retry_of}"
    if include_data:
        dto["data"] = record.outputs
    return dto


def _run_meta(run: dict[str, Any]) -> JsonObject:
    return {
        "status": run["status"],
        "start_time": iso(run["start_time"]),
        "execution_time_ms": run["execution_time"],
        "execution_index": run["execution_index"],
        "item_count": run["item_count"],
    }


def webhook_dto(delivery: WebhookDelivery) -> JsonObject:
    """One item of ``GET /agents/executions/{id}/webhooks`` (SPEC §11); absent fields are
    left out (``next_attempt_at`` once delivered or failed)."""
    dto: JsonObject = {
        "id": delivery.id,
        "event": delivery.event,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": [_attempt(a) for a in delivery.attempts],
    }
    if delivery.next_attempt_at is not None:
        dto["next_attempt_at"] = iso(delivery.next_attempt_at)
    return dto


def _attempt(attempt: Attempt) -> JsonObject:
    dto: JsonObject = {"at": iso(attempt.at)}
    if attempt.status_code is not None:
        dto["status_code"] = attempt.status_code
    if attempt.error is not None:
        dto["error"] = attempt.error
    return dto


class RetryBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /agents/executions/{id}/retry`` (SPEC §9)."""

    from_node: str | None = None
    workflow: Literal["original", "saved"] = "original"
    state: dict[str, dict[str, Any]] | None = None
    input: dict[str, Any] | None = None
    push_ref: str | None = None


Unfinished = Literal["new", "running", "waiting"]


class CancelFilter(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /agents/executions/cancel``: at least one field (SPEC §9)."""

    workflow_id: str | None = None
    status: Annotated[list[Unfinished], msgspec.Meta(min_length=1)] | None = None
