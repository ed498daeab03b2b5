"""REST bodies (SPEC §3) as msgspec Structs: what handlers decode and encode, and what
``/openapi.json`` describes (:mod:`app.http.openapi` reads them, never a copy).

Request bodies forbid unknown fields, so a typo is a 422 naming the field. Fields that a
body may lack are ``UNSET`` and left out of the JSON, never sent as ``null``; the fields
that are ``null`` until something happens (``stopped_at``) are typed ``... | None``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from app.executions.admission import Strategy
from app.model.cursor import Cursor
from app.model.ids import Identifier
from app.model.status import ExecutionStatus
from app.model.webhooks import DeliveryStatus, WebhookEvent
from app.workflows.schema import Workflow

JsonObject = dict[str, Any]
Iso = Annotated[str, Meta(description="ISO-8601 UTC with milliseconds and Z")]

# ---- requests ----------------------------------------------------------------------------


class RunBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /agents/workflows/{id}/run``: the run input and the pushRef to send it to."""

    input: JsonObject | None = None
    #: Also taken from the ``push-ref`` header.
    push_ref: Identifier | None = None
    #: Runs of one key (per API key) run one at a time; the strategy says what a new one
    #: does while an older one is unfinished (LangGraph's names).
    concurrency_key: Annotated[str, Meta(min_length=1, max_length=255)] | None = None
    multitask_strategy: Strategy = "enqueue"
    webhook: (
        Annotated[
            str,
            Meta(
                description="an http(s) URL for this run's completion webhooks (wins over the "
                "workflow's webhook_url); a literal private or metadata address is refused"
            ),
        ]
        | None
    ) = None


class RetryBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /agents/executions/{id}/retry``: where to start again, and what to change."""

    #: Default: the node that failed, or the first that did not finish.
    from_node: str | None = None
    #: ``original``: the workflow as the run had it; ``saved``: as it is stored now.
    workflow: Literal["original", "saved"] = "original"
    #: node name -> the result to use in place of its recorded one.
    state: dict[str, dict[str, Any]] | None = None
    #: Replaces the run input.
    input: JsonObject | None = None
    push_ref: Identifier | None = None


Unfinished = Literal["new", "running", "waiting"]


class CancelFilter(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /agents/executions/cancel``: which runs; at least one field."""

    workflow_id: str | None = None
    #: Default: all three unfinished statuses.
    status: Annotated[list[Unfinished], Meta(min_length=1)] | None = None


#: The body as sent: it must name a workflow or statuses (the service says so with a 422).
CancelFilterBody = Annotated[
    CancelFilter,
    Meta(
        extra_json_schema={
            "anyOf": [
                {"required": ["workflow_id"], "properties": {"workflow_id": {"type": "string"}}},
                {"required": ["status"], "properties": {"status": {"type": "array"}}},
            ]
        }
    ),
]


class PruneBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /agents/executions/prune``: ``dry_run`` only counts."""

    dry_run: bool = False


class ResumeBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /agents/executions/{id}/resume``: the value the ``wait`` node's interrupt returns."""

    value: Any = None


# ---- answers -----------------------------------------------------------------------------


class StoredWorkflow(Workflow, frozen=True, kw_only=True):
    """A workflow as stored; ``graph`` marks a graph registered from Python."""

    id: str  # assigned on create: required in an answer
    graph: bool | UnsetType = UNSET


class WorkflowList(msgspec.Struct):
    items: list[StoredWorkflow]
    total: int


class RunAccepted(msgspec.Struct):
    """The 202 of a run or a resume: the execution id and where to follow it."""

    execution_id: str
    status: ExecutionStatus
    status_url: str
    polling_url: str
    stream_url: str
    logs_url: str
    push_ref: str | None


class CancelAccepted(msgspec.Struct):
    execution_id: str
    status: Annotated[str, Meta(pattern="^canceling$")]
    status_url: str


class ExecutionLinks(msgspec.Struct):
    self: str
    events: str
    stream: str
    cancel: str
    resume: str
    retry: str
    workflow: str
    #: The run this one retries, when it is a retry.
    retry_of: str | UnsetType = UNSET


class ExecutionSummary(msgspec.Struct):
    nodes_total: int
    nodes_completed: int
    nodes_failed: int
    duration_ms: int | None
    last_node_executed: str | None
    #: The execution's last ``seq``: how many messages its log holds.
    events: int


class NodeRunMeta(msgspec.Struct):
    """One run of one node."""

    status: str
    start_time: Iso
    execution_time_ms: int
    execution_index: int
    #: Items per output (``main``), e.g. ``[1, 0]`` for an ``if`` that took its first output.
    item_count: Any


class ExecutionDto(msgspec.Struct):
    """The ``AgentExecutionDto``."""

    execution_id: str
    workflow_id: str
    workflow_name: str
    mode: str
    status: ExecutionStatus
    created_at: Iso
    started_at: Iso | None
    stopped_at: Iso | None
    duration_ms: int | None
    #: ``{message, node, type}`` once the run failed, timed out or crashed.
    error: JsonObject | None
    retry_of: str | None
    push_ref: str | None
    input: JsonObject
    summary: ExecutionSummary
    run_data_meta: dict[str, list[NodeRunMeta]]
    #: ``GraphState.to_frontend_format()``: per-node status, completed, running, errors.
    graph_state: JsonObject
    #: node name -> message id -> the text it streamed so far, for running nodes.
    streams: dict[str, dict[str, str]]
    links: ExecutionLinks
    #: With ``include_data=true``: every node's output data, one entry per run.
    data: dict[str, list[Any]] | UnsetType = UNSET


class BulkCanceled(msgspec.Struct):
    """How many runs the filter matched; each gets its ``executionFinished{canceled}``."""

    canceled: int


class ExecutionList(msgspec.Struct):
    """One page, newest first."""

    items: list[ExecutionDto]
    total: int
    limit: int
    offset: int


class LoggedEvent(msgspec.Struct):
    seq: Cursor
    type: str
    #: The push message as it was sent (SPEC §4; docs/asyncapi.yaml has its schema).
    message: Annotated[msgspec.Raw, Meta(extra_json_schema={"type": "object"})]


class EventLog(msgspec.Struct):
    execution_id: str
    items: list[LoggedEvent]
    #: The last ``seq`` returned (``after`` when there is none): the next ``after``.
    last_seq: Cursor


class Health(msgspec.Struct):
    """``ok``, or ``degraded`` with ``store`` saying why (the process still answers)."""

    status: Literal["ok", "degraded"]
    store: JsonObject | UnsetType = UNSET


class Pruned(msgspec.Struct):
    #: The finished runs deleted (with ``dry_run``: that would be).
    pruned: int
    dry_run: bool


class Readiness(msgspec.Struct):
    status: Annotated[str, Meta(pattern="^ready$")]
    #: backend name -> "ok" (or what is wrong with it, in a 503's ``details``).
    checks: dict[str, str]


class TokenIssued(msgspec.Struct):
    """``POST /agents/tokens``: the scoped token and when it expires."""

    token: str
    expires_at: str


class WebhookAttempt(msgspec.Struct, omit_defaults=True):
    """One try of a delivery: the receiver's status code, or why there was none."""

    at: str
    status_code: int | None = None
    error: str | None = None


class WebhookDeliveryDto(msgspec.Struct, omit_defaults=True):
    """One webhook message of a run (its ``webhook-id``) and its attempts so far."""

    id: str
    event: WebhookEvent
    url: str
    status: DeliveryStatus
    attempts: list[WebhookAttempt]
    #: When the next attempt is due; absent once delivered or failed.
    next_attempt_at: str | None = None


class WebhookList(msgspec.Struct):
    """``GET /agents/executions/{id}/webhooks``."""

    items: list[WebhookDeliveryDto]
