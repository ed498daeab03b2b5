"""The runs of a workflow as the push core asks for them (SPEC §11): the runs feed's
snapshots and AG-UI's runs, from the execution service."""

from __future__ import annotations

import msgspec

from app.executions.service import ExecutionService
from app.http.bodies import execution_dto
from app.model.records import ExecutionQuery, JsonObject
from app.push.feed import RunsPage


class RunsList:
    """:class:`app.push.feed.WorkflowRuns` over ``service``: the items are the list DTOs of
    ``GET /agents/workflows/{id}/executions``."""

    def __init__(self, service: ExecutionService) -> None:
        self._service = service

    async def latest_runs(self, workflow_id: str, limit: int, owner: str | None) -> RunsPage:
        await self._service.workflows.get(workflow_id)  # NotFound for an unknown workflow
        query = ExecutionQuery(workflow_id=workflow_id, owner=owner, limit=limit, snapshots=False)
        page = await self._service.list_executions(query)
        items = [msgspec.to_builtins(execution_dto(record)) for record in page.items]
        return RunsPage(items, {record.id: record.last_seq for record in page.items})

    async def start_run(self, workflow_id: str, input: JsonObject, owner: str | None) -> str:
        record = await self._service.queue_manual_execution(workflow_id, input=input, owner=owner)
        return record.id
