"""Retention (SPEC §10): finished runs past the age or count limit are pruned, oldest first,
with their logs; unfinished runs never are; a pruned run is gone (404)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import msgspec
import pytest
from starlette.applications import Starlette

from app.clock import now_ms
from app.executions.retention import Pruner
from app.runtime import Runtime
from app.settings import Settings
from support.app import create_workflow, run, running_app, wait_for_status
from support.engine import chain, node
from support.wait import eventually

pytestmark = pytest.mark.timeout(30)

QUICK = chain(node("Start"), node("B", "set", values={"b": 1}), name="quick")
WAITING = chain(node("Start"), node("Approve", "wait"), node("Done", "set", values={}))
HOUR_MS = 3_600_000


def pruner_of(app: Starlette) -> Pruner:
    pruner = cast(Runtime, app.state.runtime).pruner
    assert pruner is not None
    return pruner


async def finished_runs(client: httpx.AsyncClient, workflow_id: str, count: int) -> list[str]:
    """Start ``count`` runs one after the other and wait until each has ended."""
    ids = []
    for _ in range(count):
        ids.append(await run(client, workflow_id))
        await wait_for_status(client, ids[-1], "success")
    return ids


async def prune(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/agents/executions/prune", json=body)
    assert response.status_code == 200, response.text
    return cast(dict[str, Any], response.json())


async def gone(client: httpx.AsyncClient, execution_id: str) -> bool:
    record = await client.get(f"/agents/executions/{execution_id}")
    log = await client.get(f"/agents/executions/{execution_id}/events")
    return record.status_code == log.status_code == 404


@pytest.fixture
def quiet(settings: Settings) -> Settings:
    """No pruning by the timer during the test (its first turn is at start: nothing yet)."""
    return msgspec.structs.replace(settings, prune_interval_s=3600.0)


@pytest.fixture
async def app_client(quiet: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    limited = msgspec.structs.replace(quiet, history_max_count=2)
    async with running_app(limited) as pair:
        yield pair


async def test_past_the_count_limit_the_oldest_finished_runs_are_pruned(
    app_client: tuple[Starlette, httpx.AsyncClient],
) -> None:
    _, client = app_client
    ids = await finished_runs(client, await create_workflow(client, QUICK), 4)
    waiting = await run(client, await create_workflow(client, WAITING))
    await wait_for_status(client, waiting, "waiting")

    assert await prune(client, dry_run=True) == {"pruned": 2, "dry_run": True}
    assert not await gone(client, ids[0])

    assert await prune(client) == {"pruned": 2, "dry_run": False}

    assert [await gone(client, i) for i in ids] == [True, True, False, False]
    assert not await gone(client, waiting)
    listed = (await client.get("/agents/executions")).json()
    assert {item["execution_id"] for item in listed["items"]} == {ids[2], ids[3], waiting}
    metrics = (await client.get("/metrics")).text
    assert "graphpush_executions_pruned_total 2" in metrics.splitlines()
    assert await prune(client) == {"pruned": 0, "dry_run": False}


async def test_past_the_age_limit_finished_runs_are_pruned_and_waiting_ones_survive(
    quiet: Settings,
) -> None:
    aged = msgspec.structs.replace(quiet, history_max_age_s=3600.0, history_max_count=0)
    async with running_app(aged) as (app, client):
        ids = await finished_runs(client, await create_workflow(client, QUICK), 3)
        waiting = await run(client, await create_workflow(client, WAITING))
        await wait_for_status(client, waiting, "waiting")
        assert await prune(client) == {"pruned": 0, "dry_run": False}

        pruner_of(app).clock = lambda: now_ms() + 2 * HOUR_MS  # two hours later

        assert await prune(client) == {"pruned": 3, "dry_run": False}
        assert all([await gone(client, i) for i in ids])
        resumed = await client.post(f"/agents/executions/{waiting}/resume", json={"value": 1})
        assert resumed.status_code == 202, resumed.text
        await wait_for_status(client, waiting, "success")

        # Once finished and old, the run that paused goes too, with its checkpoints.
        thread = {"configurable": {"thread_id": waiting}}
        checkpointer = pruner_of(app).checkpointer
        assert await checkpointer.aget_tuple(thread) is not None
        assert await prune(client) == {"pruned": 1, "dry_run": False}
        assert await gone(client, waiting)
        assert await checkpointer.aget_tuple(thread) is None


async def test_the_pruner_runs_on_its_timer(settings: Settings) -> None:
    timed = msgspec.structs.replace(settings, history_max_count=1, prune_interval_s=0.1)
    async with running_app(timed) as (_, client):
        ids = await finished_runs(client, await create_workflow(client, QUICK), 3)

        async def remaining() -> int:
            return int((await client.get("/agents/executions")).json()["total"])

        await eventually(remaining, until=lambda n: n == 1, within=5, what="pruned to 1 run")
        assert [await gone(client, i) for i in ids] == [True, True, False]


async def test_a_failing_prune_is_logged_and_the_timer_goes_on(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    timed = msgspec.structs.replace(settings, history_max_count=1, prune_interval_s=0.05)
    async with running_app(timed) as (app, _):
        pruner = pruner_of(app)
        calls = []
        real = pruner.prune

        async def flaky(*, dry_run: bool = False) -> int:
            calls.append(dry_run)
            if len(calls) == 1:
                raise OSError("disk unplugged")
            return await real(dry_run=dry_run)

        pruner.prune = flaky  # type: ignore[method-assign]
        await eventually(lambda: len(calls), until=lambda n: n >= 3, what="3 turns of the timer")
    assert "pruning the history failed" in caplog.text
