"""Run control over REST beyond one run's cancel and resume (SPEC §9): retry (and fork) a
finished run, and cancel many runs at once. Declared like every route
(:mod:`app.http.operation`); :mod:`app.http.api` serves them after its own."""

from __future__ import annotations

from typing import Final

from app.errors import (
    BackendUnavailable,
    Conflict,
    RetryFromNodeUnsupported,
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
from app.http.params import EXECUTION_PATH
from app.http.schemas import (
    BulkCanceled,
    CancelFilter,
    CancelFilterBody,
    RetryBody,
    RunAccepted,
)
from app.model.status import ExecutionStatus
from app.runtime import runtime


@operation(
    "POST",
    f"{EXECUTION_PATH}/retry",
    Answer(202, "the new run is stored and queued", RunAccepted, headers=(IDEMPOTENT_REPLAYED,)),
    body=Body(RetryBody),
    headers=RUN_START_HEADERS,
    errors=(*RUN_START_ERRORS, Conflict, RetryFromNodeUnsupported),
)
async def retry_execution(call: Call) -> Reply:
    """Retry a finished run as a new one (409 while it is new, running or waiting).

    It reuses the recorded results of the nodes before `from_node` and starts there;
    `state` replaces some of those results and `input` the run input (a fork). An
    `Idempotency-Key` makes a repeated retry safe, as on a run.
    """
    retry: RetryBody = call.body or RetryBody()
    push_ref = retry.push_ref or call.request.headers.get("push-ref")
    answer, replayed = await runtime(call.request).service.retry_execution(
        call.path("execution_id"),
        accepted_body(call.request, call.owner),
        idempotency=idempotency(call.request, retry, push_ref),
        from_node=retry.from_node,
        saved=retry.workflow == "saved",
        state=retry.state,
        input=retry.input,
        push_ref=push_ref,
        owner=call.owner,
    )
    return accepted_response(answer, replayed)


@operation(
    "POST",
    "/agents/executions/cancel",
    Answer(202, "the runs the filter matched are being canceled", BulkCanceled),
    body=Body(CancelFilterBody, required=True),
    errors=(BackendUnavailable,),
)
async def cancel_executions(call: Call) -> BulkCanceled:
    """Cancel every new, running or waiting run the filter matches."""
    cancel: CancelFilter = call.body
    canceled = await runtime(call.request).service.cancel_executions(
        workflow_id=cancel.workflow_id,
        statuses=None if cancel.status is None else [ExecutionStatus(s) for s in cancel.status],
        owner=call.owner,
    )
    return BulkCanceled(canceled=canceled)


#: Matched after the routes of :mod:`app.http.api`: ``POST /agents/executions/cancel`` is
#: served here, the execution route there taking GET only.
OPERATIONS: Final[tuple[Operation, ...]] = (cancel_executions, retry_execution)
