"""The workflow routes (SPEC §3): store, list, read, replace and delete workflows, and
start a run of one. Reading needs a key or a token covering the workflow; every write and
a run need an API key."""

from __future__ import annotations

from typing import Final

from app.errors import (
    BackendUnavailable,
    ConcurrencyConflict,
    Conflict,
    NotFound,
    WebhookUrlRefused,
)
from app.http.idempotency import accepted_body, accepted_response, idempotency
from app.http.operation import (
    IDEMPOTENT_REPLAYED,
    RUN_START_ERRORS,
    RUN_START_HEADERS,
    Answer,
    Body,
    Call,
    Operation,
    Reply,
    operation,
)
from app.http.params import WORKFLOW_PATH
from app.http.schemas import RunAccepted, RunBody, StoredWorkflow, WorkflowList
from app.model.records import JsonObject
from app.runtime import runtime
from app.workflows.schema import Workflow

WORKFLOW: Final = WORKFLOW_PATH
WORKFLOW_BODY: Final = Body(Workflow, required=True, decode_as=JsonObject)
STORED: Final = Answer(200, "the stored workflow", StoredWorkflow)


@operation(
    "POST",
    "/agents/workflows",
    Answer(201, "the stored workflow", StoredWorkflow),
    body=WORKFLOW_BODY,
    errors=(Conflict, WebhookUrlRefused, BackendUnavailable),
    tag="workflows",
)
async def create_workflow(call: Call) -> JsonObject:
    """Store a workflow; its id is assigned if absent (409 if it exists)."""
    return await runtime(call.request).workflows.create(call.body)


@operation(
    "GET",
    "/agents/workflows",
    Answer(200, "the workflows", WorkflowList),
    access="caller",
    tag="workflows",
)
async def list_workflows(call: Call) -> JsonObject:
    """Every stored workflow and every graph registered from Python (a scoped token: those
    it covers)."""
    call.caller.require_action("read")
    items = await runtime(call.request).workflows.list_all()
    scope = call.caller.scope
    if scope is not None:
        items = [w for w in items if scope.covers_workflow(str(w.get("id")))]
    return {"items": items, "total": len(items)}


@operation("GET", WORKFLOW, STORED, errors=(NotFound,), access="workflow", tag="workflows")
async def get_workflow(call: Call) -> JsonObject:
    """One workflow."""
    return await runtime(call.request).workflows.get(call.path("workflow_id"))


@operation(
    "PUT",
    WORKFLOW,
    STORED,
    body=WORKFLOW_BODY,
    errors=(NotFound, WebhookUrlRefused, BackendUnavailable),
    tag="workflows",
)
async def update_workflow(call: Call) -> JsonObject:
    """Replace a workflow (its id stays the path's)."""
    workflows = runtime(call.request).workflows
    return await workflows.update(call.path("workflow_id"), call.body)


@operation(
    "DELETE",
    WORKFLOW,
    Answer(204, "deleted"),
    errors=(NotFound, BackendUnavailable),
    tag="workflows",
)
async def delete_workflow(call: Call) -> None:
    """Delete a workflow (its runs are kept)."""
    await runtime(call.request).workflows.delete(call.path("workflow_id"))


@operation(
    "POST",
    f"{WORKFLOW}/run",
    Answer(202, "the run is stored and queued", RunAccepted, headers=(IDEMPOTENT_REPLAYED,)),
    body=Body(RunBody),
    headers=RUN_START_HEADERS,
    errors=(*RUN_START_ERRORS, ConcurrencyConflict, WebhookUrlRefused),
)
async def run_workflow(call: Call) -> Reply:
    """Queue a run of a workflow.

    Its push messages go to the push connection of `push_ref` (docs/asyncapi.yaml); follow
    it there, on `stream_url`, or poll `status_url`. An `Idempotency-Key` makes a repeated
    request safe: it answers the first 202 again, marked `Idempotent-Replayed: true`.
    """
    run: RunBody = call.body or RunBody()
    push_ref = run.push_ref or call.request.headers.get("push-ref")
    answer, replayed = await runtime(call.request).service.run_workflow(
        call.path("workflow_id"),
        accepted_body(call.request, call.owner),
        idempotency=idempotency(call.request, run, push_ref),
        strategy=run.multitask_strategy,
        input=run.input,
        push_ref=push_ref,
        owner=call.owner,
        concurrency_key=run.concurrency_key,
        webhook=run.webhook,
    )
    return accepted_response(answer, replayed)


#: The workflow routes, in the order they are matched.
OPERATIONS: Final[tuple[Operation, ...]] = (
    create_workflow,
    list_workflows,
    get_workflow,
    update_workflow,
    delete_workflow,
    run_workflow,
)
