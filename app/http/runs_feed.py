"""The runs of a workflow as the push core asks for them (SPEC §11): the runs feed's
snapshots and AG-UI's runs, from the execution service."""

from __future__ import annotations

import msgspec

from app.executions.service import ExecutionService
from app.http.bodies import execution_dto
from app.model.records import ExecutionQuery, JsonObject
from app.push.feed import RunRef, RunsPage

#: Runs read per page by :meth:`RunsList.started_since`, and at most in all.
PAGE = 100
SCANNED = 2_000


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

    async def started_since(self, workflow_id: str, since_ms: int) -> list[RunRef]:
        """Read newest created first, down to the first page that reaches a run created
        before ``since_ms`` (a run created earlier and started later is found when it is
        among the :data:`PAGE` runs created before it), at most :data:`SCANNED` runs."""
        found: list[RunRef] = []
        for offset in range(0, SCANNED, PAGE):
            query = ExecutionQuery(
                workflow_id=workflow_id, limit=PAGE, offset=offset, snapshots=False
            )
            records = (await self._service.list_executions(query)).items
            found += [
                RunRef(r.id, r.push_ref, r.owner)
                for r in records
                if (r.started_at or r.stopped_at or 0) >= since_ms
            ]
            if len(records) < PAGE or records[-1].created_at < since_ms:
                break
        return found

    async def start_run(self, workflow_id: str, input: JsonObject, owner: str | None) -> str:
        record = await self._service.queue_manual_execution(workflow_id, input=input, owner=owner)
        return record.id
