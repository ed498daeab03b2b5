"""The REST API (SPEC §3): every route declared once, by :func:`operation` on its handler.

Each declaration names the body it decodes, its query parameters with their limits, its
answer and its errors; :func:`api_routes` serves them and ``/openapi.json`` documents them.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.errors import (
    BackendUnavailable,
    Conflict,
    Forbidden,
    NotFound,
    QueueFull,
)
from app.http import control, hooks, operations, workflows
from app.http.bodies import execution_dto, run_accepted
from app.http.operation import (
    Answer,
    Body,
    Call,
    Operation,
    Query,
    operation,
)
from app.http.params import EXECUTION_PATH, WORKFLOW_PATH
from app.http.schemas import (
    CancelAccepted,
    EventLog,
    ExecutionDto,
    ExecutionList,
    LoggedEvent,
    PruneBody,
    Pruned,
    ResumeBody,
    RunAccepted,
)
from app.messages import encoder
from app.model.access import Caller
from app.model.records import ExecutionQuery
from app.model.status import ExecutionStatus
from app.runtime import runtime


class JSONResponse(Response):
    """A JSON answer the error handlers render (the operations encode their own)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encoder.encode(content)


WORKFLOW: Final = WORKFLOW_PATH
EXECUTION: Final = EXECUTION_PATH

STATUS: Final = Query("status", "only runs with this status", "choice", choices=(*ExecutionStatus,))
PAGE: Final = (
    Query("limit", "page size", "integer", default=20, low=1, high=200),
    Query("offset", "runs to skip, newest first", "integer"),
)


@operation(
    "GET",
    f"{WORKFLOW}/executions",
    Answer(200, "one page, newest first", ExecutionList),
    query=(Query("retry_of", "only the retries of this run", "identifier"), STATUS, *PAGE),
    errors=(NotFound,),
    access="caller",
)
async def list_workflow_executions(call: Call) -> ExecutionList:
    """A workflow's runs, newest first."""
    workflow_id = call.path("workflow_id")
    query = _page_query(call, workflow_id)
    await runtime(call.request).workflows.get(workflow_id)
    return await _page(call, query)


# ---- executions -----------------------------------------------------------------------


def _listed_workflow(caller: Caller, workflow_id: str | None) -> str | None:
    """The workflow a listing of runs is limited to: a token limited to some runs lists
    only its workflow's (and cannot list when it names executions only)."""
    scope = caller.scope
    caller.require_action("read")
    if scope is None or scope.unlimited:
        return workflow_id
    if scope.workflow_id is None:
        raise Forbidden("a token limited to execution ids cannot list runs")
    caller.require_workflow(workflow_id or scope.workflow_id)
    return scope.workflow_id


def _page_query(call: Call, workflow_id: str | None) -> ExecutionQuery:
    status = call.query["status"]
    return ExecutionQuery(
        workflow_id=_listed_workflow(call.caller, workflow_id),
        status=ExecutionStatus(status) if status else None,
        owner=call.owner,
        retry_of=call.query["retry_of"],
        limit=call.query["limit"],
        offset=call.query["offset"],
        snapshots=False,
    )


async def _page(call: Call, query: ExecutionQuery) -> ExecutionList:
    page = await runtime(call.request).service.list_executions(query)
    items = [execution_dto(r) for r in page.items]
    return ExecutionList(items=items, total=page.total, limit=query.limit, offset=query.offset)


@operation(
    "GET",
    "/agents/executions",
    Answer(200, "one page, newest first", ExecutionList),
    query=(
        Query("workflow_id", "only this workflow's runs", "identifier"),
        Query("retry_of", "only the retries of this run", "identifier"),
        STATUS,
        *PAGE,
    ),
    access="caller",
)
async def list_executions(call: Call) -> ExecutionList:
    """Runs across workflows, newest first."""
    return await _page(call, _page_query(call, call.query["workflow_id"]))


@operation(
    "GET",
    EXECUTION,
    Answer(200, "the run", ExecutionDto),
    errors=(NotFound,),
    query=(Query("include_data", "add every node's output data", "flag"),),
    access="read",
)
async def get_execution(call: Call) -> ExecutionDto:
    """One run: the AgentExecutionDto."""
    service = runtime(call.request).service
    record = await service.get_execution(call.path("execution_id"), call.owner)
    return execution_dto(record, include_data=call.query["include_data"])


@operation(
    "POST",
    f"{EXECUTION}/cancel",
    Answer(202, "the run is being canceled", CancelAccepted),
    errors=(NotFound, Conflict, BackendUnavailable),
    access="cancel",
)
async def cancel_execution(call: Call) -> CancelAccepted:
    """Cancel a new, running or waiting run (409 once it has finished)."""
    service = runtime(call.request).service
    record = await service.cancel_execution(call.path("execution_id"), call.owner)
    links = execution_dto(record).links
    return CancelAccepted(execution_id=record.id, status="canceling", status_url=links.self)


@operation(
    "POST",
    f"{EXECUTION}/resume",
    Answer(202, "the run is queued again", RunAccepted),
    body=Body(ResumeBody),
    errors=(NotFound, Conflict, QueueFull, BackendUnavailable),
    access="resume",
)
async def resume_execution(call: Call) -> RunAccepted:
    """Resume a waiting run with a value (409 unless it is waiting)."""
    value = call.body.value if call.body is not None else None
    service = runtime(call.request).service
    return run_accepted(
        await service.resume_execution(call.path("execution_id"), value, call.owner)
    )


@operation(
    "GET",
    f"{EXECUTION}/events",
    Answer(200, "the logged messages after `after`", EventLog),
    query=(Query("after", "return the events after this seq", "integer"),),
    errors=(NotFound,),
    access="read",
)
async def get_execution_events(call: Call) -> EventLog:
    """A run's stored event log (its `logs_url`): the push messages with their seq."""
    execution_id, after = call.path("execution_id"), call.query["after"]
    events = await runtime(call.request).service.read_events(execution_id, after, call.owner)
    items = [LoggedEvent(seq=e.seq, type=e.type, message=msgspec.Raw(e.payload)) for e in events]
    last_seq = events[-1].seq if events else after
    return EventLog(execution_id=execution_id, items=items, last_seq=last_seq)


@operation(
    "POST",
    "/agents/executions/prune",
    Answer(200, "what was pruned", Pruned),
    body=Body(PruneBody),
    errors=(BackendUnavailable,),
)
async def prune_executions(call: Call) -> Pruned:
    """Prune the history now, as the timer does: finished runs past retention, oldest first.

    With `dry_run` only counts them.
    """
    prune: PruneBody = call.body or PruneBody()
    pruner = runtime(call.request).pruner
    assert pruner is not None, "the lifespan owns a pruner"
    return Pruned(pruned=await pruner.prune(dry_run=prune.dry_run), dry_run=prune.dry_run)


#: Every REST route, in the order they are matched (run control after the routes above).
OPERATIONS: Final[tuple[Operation, ...]] = (
    *workflows.OPERATIONS,
    list_workflow_executions,
    list_executions,
    prune_executions,
    get_execution,
    cancel_execution,
    resume_execution,
    get_execution_events,
    *hooks.OPERATIONS,
    *operations.OPERATIONS,
    *control.OPERATIONS,
)


def api_routes() -> list[BaseRoute]:
    return [op.route() for op in OPERATIONS]
