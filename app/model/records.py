"""What is kept about a run: its record, its logged events, and the queries over them."""

from __future__ import annotations

import builtins
from typing import Any

import msgspec

from app.model.status import ExecutionStatus

JsonObject = dict[str, Any]


class StoredEvent(msgspec.Struct, frozen=True, gc=False):
    """One push message of an execution's log; ``seq`` counts from 1 per execution."""

    seq: int
    type: str
    payload: bytes


class RetryPlan(msgspec.Struct, frozen=True):
    """How a retry runs only part of its workflow (n8n's partial execution, SPEC §9).

    ``reused`` nodes do not run: their results, copied from the original run into the
    record's ``run_data`` and ``outputs``, seed the run state; the run starts at ``starts``
    (``from_node`` first, then the nodes the reused results trigger)."""

    from_node: str | None
    reused: builtins.list[str]
    starts: builtins.list[str]


class ExecutionRecord(msgspec.Struct, kw_only=True):
    """Everything kept about one run. Times are epoch milliseconds."""

    id: str
    workflow_id: str
    workflow_name: str
    status: ExecutionStatus = ExecutionStatus.NEW
    mode: str = "manual"
    push_ref: str | None = None
    owner: str | None = None
    created_at: int
    started_at: int | None = None
    stopped_at: int | None = None
    error: JsonObject | None = None
    retry_of: str | None = None
    #: The run's own webhook URL (SPEC §11); else the workflow's ``settings.webhook_url``.
    webhook: str | None = None
    #: Set on a retry that reuses results of the original run (None: it runs everything).
    retry: RetryPlan | None = None
    input: JsonObject = msgspec.field(default_factory=dict)
    #: The workflow as it was when the run was queued (``AgentWorkflowDto`` as JSON).
    workflow: JsonObject = msgspec.field(default_factory=dict)
    #: A digest of ``workflow``: runs of one version share one compiled graph.
    workflow_version: str = ""
    #: ``GraphState.to_frontend_format()`` as last stored.
    graph_state: JsonObject = msgspec.field(default_factory=dict)
    #: SPEC §8: running node -> message id -> the text it streamed so far (sent messages).
    streams: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    #: node name -> list of run metadata (status, start, execution time, item counts).
    run_data: dict[str, list[JsonObject]] = msgspec.field(default_factory=dict)
    #: node name -> list of that node's outputs, one per run (the full data, kept for REST).
    outputs: dict[str, list[Any]] = msgspec.field(default_factory=dict)
    last_seq: int = 0
    #: Sequence number of the next node event (``sequenceNumber``), kept across a resume.
    next_sequence_number: int = 0
    next_execution_index: int = 0
    #: Set while a resumed run waits in the queue: the value handed to ``interrupt()``.
    resume_value: Any = None
    resume_pending: bool = False
    #: Runs of one key (and owner) run one at a time, in order (SPEC §10).
    concurrency_key: str | None = None


class IdempotencyKey(msgspec.Struct, frozen=True, kw_only=True):
    """An ``Idempotency-Key`` and the first answer given to it (SPEC §10)."""

    #: The API key's owner id ("" when keys are off): keys are scoped per API key.
    owner: str
    key: str
    #: A digest of the first request (route and body): a different request may not reuse it.
    fingerprint: str
    execution_id: str
    created_at: int
    #: The body of the first answer, replayed as it was.
    answer: bytes


class ExecutionQuery(msgspec.Struct, frozen=True, kw_only=True):
    workflow_id: str | None = None
    status: ExecutionStatus | None = None
    owner: str | None = None
    retry_of: str | None = None
    limit: int = 20
    offset: int = 0
    #: With each run's workflow snapshot (what it needs to execute); a page shown to a
    #: client leaves it out (``workflow`` is then ``{}``): it is not in the DTO.
    snapshots: bool = True


class ExecutionPage(msgspec.Struct, frozen=True):
    items: builtins.list[ExecutionRecord]
    total: int
