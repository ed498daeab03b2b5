"""``RunFactory``: makes new runs, neither stored nor queued: a run of a saved workflow, and
a retry of a finished run (SPEC §9)."""

from __future__ import annotations

from typing import TypedDict

from app.clock import new_id, now_ms
from app.errors import IllegalTransition, NotFound, ValidationFailed, problem
from app.executions import retry
from app.model.ids import ID_PATTERN, is_identifier
from app.model.records import ExecutionRecord, JsonObject
from app.model.webhooks import check_webhook_url
from app.workflows.service import WorkflowService


class RunOptions(TypedDict, total=False):
    """A new run's options besides its workflow (:meth:`RunFactory.run`)."""

    input: JsonObject | None
    push_ref: str | None
    owner: str | None
    concurrency_key: str | None
    webhook: str | None


class RetryOptions(TypedDict, total=False):
    """How a retry differs from its original run (:meth:`RunFactory.retry`)."""

    from_node: str | None
    saved: bool
    state: dict[str, JsonObject] | None
    input: JsonObject | None
    push_ref: str | None
    owner: str | None


class RunFactory:
    def __init__(self, workflows: WorkflowService, *, allow_private: bool = False) -> None:
        """``allow_private``: a run's webhook may be a private address (SPEC §11)."""
        self._workflows = workflows
        self._allow_private = allow_private

    async def run(
        self,
        workflow_id: str,
        *,
        input: JsonObject | None = None,
        push_ref: str | None = None,
        owner: str | None = None,
        concurrency_key: str | None = None,
        webhook: str | None = None,
    ) -> ExecutionRecord:
        """A ``new`` run of the saved workflow ``workflow_id``."""
        check_push_ref(push_ref)
        if webhook is not None:
            check_webhook_url(webhook, allow_private=self._allow_private, path="webhook")
        workflow, version = await self._workflows.get_versioned(workflow_id)
        record = _new_record(workflow_id, workflow, version, input, push_ref, owner)
        record.webhook = webhook
        record.concurrency_key = concurrency_key
        return record

    async def retry(
        self,
        original: ExecutionRecord,
        *,
        from_node: str | None = None,
        saved: bool = False,
        state: dict[str, JsonObject] | None = None,
        input: JsonObject | None = None,
        push_ref: str | None = None,
        owner: str | None = None,
    ) -> ExecutionRecord:
        """A retry of ``original`` (see :meth:`ExecutionService.new_retry
        <app.executions.service.ExecutionService.new_retry>`); ``push_ref`` is checked by
        the caller."""
        if not original.status.finished:
            raise IllegalTransition(
                f"execution is {original.status.value}; only a finished run can be retried"
            )
        workflow, version = original.workflow, original.workflow_version
        if saved:
            workflow, version = await self._saved_workflow(original.workflow_id)
        run_input = original.input if input is None else input
        record = _new_record(original.workflow_id, workflow, version, run_input, push_ref, owner)
        compiled = None if workflow.get("graph") else await self._workflows.compile(record)
        retry.prepare(record, original, compiled, from_node=from_node, state=state or {})
        return record

    async def _saved_workflow(self, workflow_id: str) -> tuple[JsonObject, str]:
        try:
            return await self._workflows.get_versioned(workflow_id)
        except NotFound:
            raise ValidationFailed(
                "the workflow is no longer saved",
                [problem("workflow", f"workflow {workflow_id!r} is no longer saved")],
            ) from None


def check_push_ref(push_ref: str | None) -> None:
    """Raises :class:`ValidationFailed` (422) for a ``push_ref`` that is not an identifier."""
    if push_ref is not None and not is_identifier(push_ref):
        raise ValidationFailed("bad push_ref", [problem("push_ref", f"expected {ID_PATTERN}")])


def _new_record(
    workflow_id: str,
    workflow: JsonObject,
    version: str,
    input: JsonObject | None,
    push_ref: str | None,
    owner: str | None,
) -> ExecutionRecord:
    """A ``new`` run of ``workflow`` (a snapshot of workflow ``workflow_id``)."""
    return ExecutionRecord(
        id=new_id(),
        workflow_id=workflow_id,
        workflow_name=str(workflow.get("name", workflow_id)),
        push_ref=push_ref,
        owner=owner,
        created_at=now_ms(),
        input=input or {},
        workflow=workflow,
        workflow_version=version,
    )
