"""A cancel at any moment of a run's start ends it with exactly one terminal message: the
workers on an in-memory store, with a bus whose ``publish`` yields to the loop as the Redis
bus's does (so a cancel can land while ``executionStarted`` is being published)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.bus.base import LocalEventBus, PushEvent
from app.executions.runner import LangGraphRunner
from app.executions.service import ExecutionService
from app.model.status import ExecutionStatus
from app.queue.base import LocalQueue
from app.settings import load_settings
from app.storage.memory import MemoryStore
from app.workflows.service import WorkflowService
from support.engine import chain, node

pytestmark = pytest.mark.timeout(30)


class YieldingBus(LocalEventBus):
    """Delivers like the in-process bus, after giving the loop a turn."""

    async def publish(self, event: PushEvent) -> None:
        await asyncio.sleep(0)
        await super().publish(event)


async def test_a_run_canceled_while_its_start_is_published_ends_canceled_once(
    tmp_path: Path,
) -> None:
    settings = load_settings({"data_dir": tmp_path, "load_examples": False}, environ={})
    store, bus = MemoryStore(), YieldingBus()
    seen: list[PushEvent] = []
    bus.subscribe(seen.append)
    workflows = WorkflowService(
        store=store, checkpointer=None, python_modules=(), default_recursion_limit=25
    )
    queue = LocalQueue(10, store=store)
    service = ExecutionService(
        settings=settings,
        store=store,
        workflows=workflows,
        bus=bus,
        queue=queue,
        runner=LangGraphRunner(),
    )
    await service.start()
    created = await workflows.create(chain(node("Start"), node("Set", "set", values={"x": 1})))
    record = await service.queue_manual_execution(created["id"])
    for _ in range(100):  # until the run is running and its executionStarted not yet out
        live = service.manager.snapshot(record.id)
        if live is not None and live.status is ExecutionStatus.RUNNING:
            break
        await asyncio.sleep(0)
    assert not seen

    await service.cancel_execution(record.id)
    for _ in range(500):
        if any(e.type == "executionFinished" for e in seen):
            break
        await asyncio.sleep(0.01)
    await service.shutdown()

    assert [e.type for e in seen] == ["executionStarted", "executionFinished"]
    stored = await store.get(record.id)
    assert stored is not None and stored.status is ExecutionStatus.CANCELED
