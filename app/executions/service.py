"""``ExecutionService``: the one entry point for runs, used by the REST API, the push core's
inbound commands and the Python API (n8n's ``WorkflowExecutionService``). Workflows are
:attr:`ExecutionService.workflows` (:class:`app.workflows.service.WorkflowService`).

It queues, reads, cancels and resumes runs: new runs are made by
:mod:`app.executions.factory`, queued by :mod:`app.executions.admission` and canceled by
:mod:`app.executions.cancellation`; every run ends in the
:class:`~app.executions.workers.ExecutionManager`, the one producer of terminal messages.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Unpack

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel

from app.bus.base import EventBus
from app.errors import IllegalTransition, NotFound
from app.executions.admission import Admission, Idempotency, Strategy
from app.executions.cancellation import Cancellation
from app.executions.factory import RetryOptions, RunFactory, RunOptions, check_push_ref
from app.executions.recorder import RunRecorder
from app.executions.runner import GraphRunner
from app.executions.workers import ExecutionManager
from app.messages import ExecutionSnapshotData
from app.metrics import prometheus
from app.model.access import Action, Caller
from app.model.records import (
    ExecutionPage,
    ExecutionQuery,
    ExecutionRecord,
    JsonObject,
    StoredEvent,
)
from app.model.status import ExecutionStatus
from app.model.webhooks import Outbox, WebhookDelivery
from app.queue.base import EVERYTHING, ExecutionQueue
from app.settings import Settings
from app.storage.base import ExecutionStore
from app.workflows.node_types import NodeType
from app.workflows.service import WorkflowService

S = ExecutionStatus


class ExecutionService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: ExecutionStore,
        workflows: WorkflowService,
        bus: EventBus,
        queue: ExecutionQueue,
        runner: GraphRunner,
        outbox: Outbox | None = None,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.workflows = workflows
        self.bus = bus
        self.queue = queue
        self.checkpointer = checkpointer
        #: The workers: they run what ``workflows`` compiles, and end every run.
        self.manager = ExecutionManager(
            store=store,
            bus=bus,
            queue=queue,
            compile=workflows.compile,
            runner=runner,
            workers=settings.workers,
            outbox=outbox,
            timeout_s=settings.execution_timeout_s,
            recorder=functools.partial(
                RunRecorder,
                stream_flush_ms=settings.stream_flush_ms,
                max_message_bytes=settings.max_message_bytes,
            ),
        )
        self._factory = RunFactory(workflows, allow_private=settings.webhook_allow_private)
        self._cancellation = Cancellation(
            store=store,
            queue=queue,
            manager=self.manager,
            checkpointer=checkpointer,
            get=self.get_execution,
            replace_wait_s=2 * settings.claim_idle_s + settings.shutdown_timeout_s,
        )
        self._admission = Admission(
            settings=settings,
            store=store,
            queue=queue,
            gate=self.manager.gate,
            replace=self._cancellation.replace,
        )

    # ---- Python API --------------------------------------------------------------------

    def register_node_type(self, type_name: str, node_type: NodeType) -> None:
        """Make ``type_name`` usable in workflows (validation and runs)."""
        self.workflows.register_node_type(type_name, node_type)

    def register_graph(
        self, workflow_id: str, graph: Pregel[Any, Any, Any, Any], name: str = ""
    ) -> None:
        """Expose a compiled LangGraph graph as workflow ``workflow_id``; its runs emit the
        same push messages as built-in workflows."""
        self.workflows.register_graph(workflow_id, graph, name)

    # ---- executions --------------------------------------------------------------------

    async def queue_manual_execution(
        self,
        workflow_id: str,
        *,
        input: JsonObject | None = None,
        push_ref: str | None = None,
        owner: str | None = None,
        webhook: str | None = None,
    ) -> ExecutionRecord:
        """Create a ``new`` run of ``workflow_id`` and queue it (n8n's manual run)."""
        record = await self.new_run(
            workflow_id, input=input, push_ref=push_ref, owner=owner, webhook=webhook
        )
        await self._admission.enqueue(record)
        return record

    async def run_workflow(
        self,
        workflow_id: str,
        answer: Callable[[ExecutionRecord], bytes],
        *,
        idempotency: Idempotency | None = None,
        strategy: Strategy = "enqueue",
        **options: Unpack[RunOptions],
    ) -> tuple[bytes, bool]:
        """Queue a new run of ``workflow_id`` (:meth:`new_run`) under SPEC §10's run control:
        ``answer`` of it and False, or the first answer and True for a repeated
        ``idempotency`` key (nothing starts); see :meth:`Admission.accept
        <app.executions.admission.Admission.accept>` for what it raises."""
        return await self._admission.accept(
            functools.partial(self.new_run, workflow_id, **options),
            answer,
            owner=options.get("owner"),
            idempotency=idempotency,
            strategy=strategy,
        )

    async def new_run(self, workflow_id: str, **options: Unpack[RunOptions]) -> ExecutionRecord:
        """A ``new`` run of ``workflow_id``, neither stored nor queued; its ``webhook`` URL,
        if given, gets its completion webhooks (SPEC §11)."""
        return await self._factory.run(workflow_id, **options)

    async def retry_execution(
        self,
        execution_id: str,
        answer: Callable[[ExecutionRecord], bytes],
        *,
        idempotency: Idempotency | None = None,
        **options: Unpack[RetryOptions],
    ) -> tuple[bytes, bool]:
        """Queue a retry of a finished run (:meth:`new_retry`), as :meth:`run_workflow`
        queues a run."""
        return await self._admission.accept(
            functools.partial(self.new_retry, execution_id, **options),
            answer,
            owner=options.get("owner"),
            idempotency=idempotency,
        )

    async def new_retry(
        self, execution_id: str, **options: Unpack[RetryOptions]
    ) -> ExecutionRecord:
        """A retry of a finished run (SPEC §9), neither stored nor queued: a new run whose
        ``retry_of`` is ``execution_id``, on the run's workflow snapshot (or the workflow as
        ``saved`` now), that reuses the original's results of the nodes before ``from_node``
        (:mod:`app.executions.retry`), ``state`` replacing some of them and ``input`` the
        run input. Raises :class:`IllegalTransition` (409) for a run not finished and
        :class:`ValidationFailed` (422) for what the retry cannot use."""
        check_push_ref(options.get("push_ref"))
        original = await self.get_execution(execution_id, options.get("owner"))
        return await self._factory.retry(original, **options)

    async def get_execution(self, execution_id: str, owner: str | None = None) -> ExecutionRecord:
        """The freshest view of a run: a copy of the live one while it runs here, else the
        stored one. Raises :class:`NotFound` (also for a run of another owner)."""
        record = self.manager.snapshot(execution_id) or await self.store.get(execution_id)
        if record is None or (owner is not None and record.owner != owner):
            raise NotFound(f"execution {execution_id!r} not found")
        return record

    async def authorize(self, execution_id: str, caller: Caller, action: Action) -> None:
        """Raise unless ``caller`` may do ``action`` on the run: :class:`NotFound` for an
        unknown run or another owner's, :class:`Forbidden` outside a token's scope. An API
        key is checked by the call itself (it passes its owner), so only tokens read here."""
        if caller.scope is None:
            return
        caller.require_action(action)
        record = await self.get_execution(execution_id, caller.owner)
        caller.require(action, record.id, record.workflow_id)

    async def list_executions(self, query: ExecutionQuery) -> ExecutionPage:
        return await self.store.list(query)

    async def cancel_execution(
        self, execution_id: str, owner: str | None = None
    ) -> ExecutionRecord:
        """Cancel a queued, running or waiting run; it ends with ``executionFinished{canceled}``.
        Raises :class:`IllegalTransition` (409) for a finished run."""
        return await self._cancellation.cancel(execution_id, owner)

    async def cancel_executions(
        self,
        *,
        workflow_id: str | None = None,
        statuses: Sequence[ExecutionStatus] | None = None,
        owner: str | None = None,
    ) -> int:
        """Cancel every run of ``owner`` (of ``workflow_id``, if given) whose status is one of
        ``statuses`` (of ``new``, ``running``, ``waiting``; all three when None), each as
        :meth:`cancel_execution` does; returns how many it canceled. A run that ends while
        this goes on keeps its own end: it is neither canceled nor counted. Raises
        :class:`ValidationFailed` when neither ``workflow_id`` nor ``statuses`` is given."""
        return await self._cancellation.cancel_many(
            workflow_id=workflow_id, statuses=statuses, owner=owner
        )

    async def resume_execution(
        self, execution_id: str, value: Any, owner: str | None = None
    ) -> ExecutionRecord:
        """Queue a ``waiting`` run to continue with ``value`` as its ``interrupt()`` result."""
        record = await self.get_execution(execution_id, owner)
        if record.status is not S.WAITING or self.manager.holds(execution_id):
            raise IllegalTransition(f"execution is {record.status.value}; only waiting runs resume")
        record.status, record.resume_value, record.resume_pending = S.NEW, value, True
        await self._admission.enqueue(record)
        return record

    async def read_events(
        self, execution_id: str, after: int = 0, owner: str | None = None
    ) -> list[StoredEvent]:
        await self.get_execution(execution_id, owner)
        return await self.store.read_events(execution_id, after)

    async def list_webhooks(self, execution_id: str, owner: str | None) -> list[WebhookDelivery]:
        """The run's webhook deliveries, oldest first (SPEC §11)."""
        await self.get_execution(execution_id, owner)
        return await self.store.list_webhooks(execution_id)

    async def snapshot(self, execution_id: str, owner: str | None = None) -> ExecutionSnapshotData:
        record = await self.get_execution(execution_id, owner)
        return ExecutionSnapshotData(
            record.id, record.status.value, record.graph_state, record.streams
        )

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Restore what the queue lost since the previous process (see
        :meth:`ExecutionQueue.restore <app.queue.base.ExecutionQueue.restore>`), then start
        the workers: runs left ``running`` by a dead process end ``crashed``
        (:meth:`ExecutionManager.recover`), ``new`` ones run, ``waiting`` ones wait on."""
        await self.queue.restore()
        # Concurrency keys are taken in the order the runs came (waiting ones hold theirs).
        unfinished = []
        for status in (S.WAITING, S.NEW):
            page = await self.store.list(ExecutionQuery(status=status, limit=EVERYTHING))
            unfinished += page.items
        for record in sorted(unfinished, key=lambda r: r.created_at):
            self.manager.gate.queued(record)
        self.manager.start()

    def busy(self) -> bool:
        """Are runs executing or queued in this process?"""
        return self.manager.active_count > 0 or self.queue.qsize() > 0

    def metrics_text(self) -> str:
        manager = self.manager
        gauges = {"queue_depth": self.queue.qsize(), "executions_active": manager.active_count}
        counters = {
            f'executions_finished_total{{status="{k}"}}': v for k, v in manager.finished.items()
        }
        return prometheus(gauges, counters)

    async def shutdown(self) -> None:
        await self.manager.shutdown(self.settings.shutdown_timeout_s)
