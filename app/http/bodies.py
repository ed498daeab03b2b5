"""REST answers built from stored records: the ``AgentExecutionDto`` and the 202 of a run."""

from __future__ import annotations

from typing import Any

from app.clock import iso
from app.http.schemas import (
    ExecutionDto,
    ExecutionLinks,
    ExecutionSummary,
    NodeRunMeta,
    RunAccepted,
    WebhookAttempt,
    WebhookDeliveryDto,
)
from app.model.records import ExecutionRecord
from app.model.webhooks import Attempt, WebhookDelivery


def execution_links(execution_id: str, workflow_id: str) -> ExecutionLinks:
    base = f"/agents/executions/{execution_id}"
    return ExecutionLinks(
        self=base,
        events=f"{base}/events",
        stream=f"{base}/stream",
        cancel=f"{base}/cancel",
        resume=f"{base}/resume",
        retry=f"{base}/retry",
        workflow=f"/agents/workflows/{workflow_id}",
    )


def run_accepted(record: ExecutionRecord) -> RunAccepted:
    """The 202 body of ``POST /agents/workflows/{id}/run`` (and of a resume)."""
    links = execution_links(record.id, record.workflow_id)
    return RunAccepted(
        execution_id=record.id,
        status=record.status,
        status_url=links.self,
        polling_url=links.self,
        stream_url=links.stream,
        logs_url=links.events,
        push_ref=record.push_ref,
    )


def _duration(record: ExecutionRecord) -> int | None:
    if record.started_at is None or record.stopped_at is None:
        return None
    return record.stopped_at - record.started_at


def _summary(record: ExecutionRecord, duration: int | None) -> ExecutionSummary:
    runs = record.run_data
    # One pass over the node runs (a page builds 50 of these): the node that ran last,
    # and how many nodes failed.
    last, last_index, failed = None, -1, 0
    for name, node_runs in runs.items():
        node_failed = False
        for run in node_runs:
            if run["execution_index"] > last_index:
                last, last_index = name, run["execution_index"]
            node_failed = node_failed or run["status"] == "error"
        failed += node_failed
    return ExecutionSummary(
        nodes_total=len(record.graph_state.get("nodes", {})) or len(runs),
        nodes_completed=len(record.graph_state.get("completed_nodes", [])),
        nodes_failed=failed,
        duration_ms=duration,
        last_node_executed=last,
        events=record.last_seq,
    )


def execution_dto(record: ExecutionRecord, *, include_data: bool = False) -> ExecutionDto:
    """The ``AgentExecutionDto``; ``include_data`` adds every node's full output data."""
    duration = _duration(record)
    dto = ExecutionDto(
        execution_id=record.id,
        workflow_id=record.workflow_id,
        workflow_name=record.workflow_name,
        mode=record.mode,
        status=record.status,
        created_at=iso(record.created_at),
        started_at=iso(record.started_at) if record.started_at else None,
        stopped_at=iso(record.stopped_at) if record.stopped_at else None,
        duration_ms=duration,
        error=record.error,
        retry_of=record.retry_of,
        push_ref=record.push_ref,
        input=record.input,
        summary=_summary(record, duration),
        run_data_meta={name: [_run_meta(r) for r in rs] for name, rs in record.run_data.items()},
        graph_state=record.graph_state,
        streams=record.streams,
        links=execution_links(record.id, record.workflow_id),
    )
    if record.retry_of is not None:
        dto.links.retry_of = f"/agents/executions/{record.retry_of}"
    if include_data:
        dto.data = record.outputs
    return dto


def _run_meta(run: dict[str, Any]) -> NodeRunMeta:
    return NodeRunMeta(
        status=run["status"],
        start_time=iso(run["start_time"]),
        execution_time_ms=run["execution_time"],
        execution_index=run["execution_index"],
        item_count=run["item_count"],
    )


def webhook_dto(delivery: WebhookDelivery) -> WebhookDeliveryDto:
    """One item of ``GET /agents/executions/{id}/webhooks``."""
    due = delivery.next_attempt_at
    return WebhookDeliveryDto(
        id=delivery.id,
        event=delivery.event,
        url=delivery.url,
        status=delivery.status,
        attempts=[_attempt(a) for a in delivery.attempts],
        next_attempt_at=None if due is None else iso(due),
    )


def _attempt(attempt: Attempt) -> WebhookAttempt:
    return WebhookAttempt(iso(attempt.at), attempt.status_code, attempt.error)
