"""Concurrency (SPEC §10) across API instances and worker processes sharing PostgreSQL and
the Redis queue: a strategy sees the runs of its key started through any instance, a
``reject`` race has one winner, and held-back runs start in queue order whichever process
holds them.

Instance A runs workers; instance B (``workers=0``) only answers the API unless a test
says otherwise, so a run started through A is held by another process than B's.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import msgspec
import pytest

from app.settings import Settings
from support.app import create_workflow, logged_messages, run, running_app, wait_for_status
from support.engine import chain, error_body, node, wait_for_log
from support.scaleout import REDIS_URL, fresh_prefix, fresh_schema

pytestmark = pytest.mark.timeout(60)

ENDED = ("success", "error", "canceled", "crashed")
Clients = tuple[httpx.AsyncClient, httpx.AsyncClient]


def slow(ms: int, **settings: Any) -> dict[str, Any]:
    return chain(node("Start"), node("Sleep", "delay", ms=ms), name="slow", settings=settings)


def shared(settings: Settings, workers: int) -> Settings:
    return msgspec.structs.replace(settings, workers=workers, redis_url=REDIS_URL)


@pytest.fixture
async def pair(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[Clients]:
    """Instances A and B over one PostgreSQL schema and one Redis prefix; B runs
    ``request.param`` workers (none unless parametrized)."""
    base = msgspec.structs.replace(
        settings, database_url=fresh_schema(), redis_prefix=fresh_prefix()
    )
    b_workers = getattr(request, "param", 0)
    async with AsyncExitStack() as stack:
        a = (await stack.enter_async_context(running_app(shared(base, 3))))[1]
        b = (await stack.enter_async_context(running_app(shared(base, b_workers))))[1]
        yield a, b


async def ended(client: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    return [await wait_for_status(client, i, *ENDED, within=30) for i in ids]


async def finishes(client: httpx.AsyncClient, execution_id: str) -> list[str]:
    messages = await logged_messages(client, execution_id)
    return [m["data"]["status"] for m in messages if m["type"] == "executionFinished"]


# ---- strategies see the other instance's runs ----------------------------------------------


async def test_reject_on_one_instance_sees_the_run_of_its_key_started_on_another(
    pair: Clients,
) -> None:
    a, b = pair
    workflow_id = await create_workflow(a, slow(60_000))
    first = await run(a, workflow_id, concurrency_key="k")
    body = {"concurrency_key": "k", "multitask_strategy": "reject"}

    refused = await b.post(f"/agents/workflows/{workflow_id}/run", json=body)

    assert refused.status_code == 409, refused.text
    assert error_body(refused)["code"] == "concurrency_conflict"
    assert first in error_body(refused)["details"][0]["message"]
    assert (await b.get("/agents/executions")).json()["total"] == 1
    await b.post(f"/agents/executions/{first}/cancel")
    await wait_for_status(a, first, "canceled")
    assert (await b.post(f"/agents/workflows/{workflow_id}/run", json=body)).status_code == 202


async def test_simultaneous_rejects_on_two_instances_store_one_run(pair: Clients) -> None:
    a, b = pair
    workflow_id = await create_workflow(a, slow(60_000))
    body = {"concurrency_key": "race", "multitask_strategy": "reject"}
    url = f"/agents/workflows/{workflow_id}/run"

    for round_ in range(5):  # each round a fresh key, every request at once
        raced = {**body, "concurrency_key": f"race-{round_}"}
        answers = await asyncio.gather(*(c.post(url, json=raced) for c in (a, b, a, b)))

        assert sorted(r.status_code for r in answers) == [202, 409, 409, 409], [
            r.text for r in answers
        ]
    listed = (await a.get("/agents/executions", params={"limit": 50})).json()
    assert listed["total"] == 5


@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
async def test_interrupt_and_rollback_end_a_run_another_process_holds(
    pair: Clients, strategy: str
) -> None:
    a, b = pair
    workflow_id = await create_workflow(a, slow(60_000))
    older = await run(a, workflow_id, concurrency_key="k")
    await wait_for_log(b, older, "nodeExecuteBefore", "Sleep", within=15)
    quick = await create_workflow(a, slow(10))

    newer = await run(b, quick, concurrency_key="k", multitask_strategy=strategy)

    new_run = await wait_for_status(b, newer, "success", within=30)
    if strategy == "rollback":
        for client in (a, b):
            assert (await client.get(f"/agents/executions/{older}")).status_code == 404
            assert (await client.get(f"/agents/executions/{older}/events")).status_code == 404
        return
    old_run = await wait_for_status(b, older, "canceled")
    assert await finishes(b, older) == ["canceled"]
    assert new_run["started_at"] >= old_run["stopped_at"]


async def test_interrupt_ends_a_run_of_its_key_still_queued_on_another_process(
    pair: Clients,
) -> None:
    a, b = pair
    blocker = await run(a, await create_workflow(a, slow(60_000)), concurrency_key="k")
    await wait_for_log(a, blocker, "nodeExecuteBefore", "Sleep", within=15)
    queued = await run(a, await create_workflow(a, slow(10)), concurrency_key="k")

    newer = await run(
        b, await create_workflow(a, slow(10)), concurrency_key="k", multitask_strategy="interrupt"
    )

    await wait_for_status(b, newer, "success", within=30)
    for ended_run in (blocker, queued):
        assert (await wait_for_status(b, ended_run, "canceled"))["status"] == "canceled"
        assert await finishes(b, ended_run) == ["canceled"]


# ---- queue order across worker processes ---------------------------------------------------


@pytest.mark.parametrize("pair", [3], indirect=True)
async def test_held_back_runs_of_a_workflow_start_in_queue_order_across_processes(
    pair: Clients,
) -> None:
    a, b = pair
    workflow_id = await create_workflow(a, slow(100, max_concurrency=1))
    other = await create_workflow(a, slow(10))
    ids = [await run((a, b)[i % 2], workflow_id) for i in range(8)]
    unlimited = await run(b, other)

    runs = await ended(a, ids)

    starts = [r["started_at"] for r in runs]
    assert starts == sorted(starts), starts
    for before, after in itertools.pairwise(runs):
        assert after["started_at"] >= before["stopped_at"]
    assert (await wait_for_status(b, unlimited, *ENDED))["status"] == "success"


@pytest.mark.parametrize("pair", [3], indirect=True)
async def test_runs_of_a_key_start_in_queue_order_across_processes(pair: Clients) -> None:
    a, b = pair
    workflow_id = await create_workflow(a, slow(100))
    keyed = [await run((a, b)[i % 2], workflow_id, concurrency_key="k") for i in range(8)]
    free = await run(b, workflow_id, concurrency_key="other")

    runs = await ended(a, keyed)

    starts = [r["started_at"] for r in runs]
    assert starts == sorted(starts), starts
    for before, after in itertools.pairwise(runs):
        assert after["started_at"] >= before["stopped_at"]
    free_run = await wait_for_status(b, free, *ENDED)
    assert free_run["status"] == "success"
    assert free_run["stopped_at"] < runs[-1]["started_at"]  # not queued behind the key


@pytest.mark.parametrize("pair", [3], indirect=True)
async def test_a_run_held_by_its_key_does_not_hold_back_its_workflow(pair: Clients) -> None:
    a, b = pair
    waiting_flow = chain(node("Start"), node("Approve", "wait"), node("Done", "set", values={}))
    holder = await run(a, await create_workflow(a, waiting_flow), concurrency_key="k")
    await wait_for_status(a, holder, "waiting")
    workflow_id = await create_workflow(a, slow(10, max_concurrency=1))
    held = await run(a, workflow_id, concurrency_key="k")  # older, but its key is taken

    later = await run(b, workflow_id)

    assert (await wait_for_status(b, later, *ENDED))["status"] == "success"
    assert (await b.get(f"/agents/executions/{held}")).json()["status"] == "new"
    await a.post(f"/agents/executions/{holder}/resume", json={"value": 1})
    assert (await wait_for_status(b, held, *ENDED, within=30))["status"] == "success"
