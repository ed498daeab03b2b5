"""Concurrency (SPEC §10): a workflow's ``max_concurrency``, a run's ``concurrency_key`` and
its ``multitask_strategy``; held-back runs keep their place and block no one else.

Limits are checked on the runs' own times (``started_at``/``stopped_at``), never by sleeps.
"""

from __future__ import annotations

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
from support.wait import eventually

pytestmark = pytest.mark.timeout(40)

ENDED = ("success", "error", "canceled", "crashed")


def slow(ms: int, **settings: Any) -> dict[str, Any]:
    return chain(node("Start"), node("Sleep", "delay", ms=ms), name="slow", settings=settings)


WAITING = chain(node("Start"), node("Approve", "wait"), node("Done", "set", values={}))


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(msgspec.structs.replace(settings, workers=4)) as (_, client):
        yield client


async def ended(client: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    return [await wait_for_status(client, i, *ENDED, within=20) for i in ids]


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most runs whose [started_at, stopped_at) intervals overlap at one moment."""
    spans = [(r["started_at"], r["stopped_at"]) for r in runs]
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


async def status(client: httpx.AsyncClient, execution_id: str) -> str:
    return str((await client.get(f"/agents/executions/{execution_id}")).json()["status"])


# ---- max_concurrency -----------------------------------------------------------------------


async def test_a_workflow_never_runs_more_than_its_max_concurrency(
    client: httpx.AsyncClient,
) -> None:
    workflow_id = await create_workflow(client, slow(150, max_concurrency=2))
    runs = await ended(client, [await run(client, workflow_id) for _ in range(6)])
    assert {r["status"] for r in runs} == {"success"}
    assert most_at_once(runs) == 2


async def test_a_run_held_back_blocks_no_other_workflow(client: httpx.AsyncClient) -> None:
    limited = await create_workflow(client, slow(60_000, max_concurrency=1))
    first = await run(client, limited)
    await wait_for_log(client, first, "nodeExecuteBefore", "Sleep")
    held = await run(client, limited)

    other = await run(client, await create_workflow(client, slow(10)))

    await wait_for_status(client, other, "success")
    body = (await client.get(f"/agents/executions/{held}")).json()
    assert body["status"] == "new"
    assert body["started_at"] is None


async def test_a_held_back_run_keeps_its_place_in_the_queue(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, slow(300, max_concurrency=1))
    ids = [await run(client, workflow_id) for _ in range(3)]
    runs = await ended(client, ids)
    starts = [r["started_at"] for r in runs]
    assert starts == sorted(starts)
    for before, after in itertools.pairwise(runs):
        assert after["started_at"] >= before["stopped_at"]  # started when it ran, not queued


# ---- concurrency_key -----------------------------------------------------------------------


async def test_runs_of_one_key_run_one_after_the_other(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, slow(200))
    keyed = [await run(client, workflow_id, concurrency_key="user-1") for _ in range(3)]
    free = await run(client, workflow_id, concurrency_key="user-2")
    runs = await ended(client, [*keyed, free])
    assert most_at_once(runs[:3]) == 1
    assert most_at_once(runs) == 2  # another key is not held back


async def test_a_waiting_run_holds_its_key_until_it_ends(client: httpx.AsyncClient) -> None:
    waiting = await run(client, await create_workflow(client, WAITING), concurrency_key="k")
    await wait_for_status(client, waiting, "waiting")
    later = await run(client, await create_workflow(client, slow(10)), concurrency_key="k")
    unkeyed = await run(client, await create_workflow(client, slow(10)))
    await wait_for_status(client, unkeyed, "success")
    assert await status(client, later) == "new"

    await client.post(f"/agents/executions/{waiting}/resume", json={"value": 1})

    await wait_for_status(client, later, "success")


async def test_reject_refuses_a_run_while_its_key_is_taken_and_stores_nothing(
    client: httpx.AsyncClient,
) -> None:
    workflow_id = await create_workflow(client, slow(60_000))
    first = await run(client, workflow_id, concurrency_key="k")
    body = {"concurrency_key": "k", "multitask_strategy": "reject"}

    refused = await client.post(f"/agents/workflows/{workflow_id}/run", json=body)

    assert refused.status_code == 409
    assert error_body(refused)["code"] == "concurrency_conflict"
    assert (await client.get("/agents/executions")).json()["total"] == 1
    other = {"concurrency_key": "other", "multitask_strategy": "reject"}
    assert (
        await client.post(f"/agents/workflows/{workflow_id}/run", json=other)
    ).status_code == 202
    await client.post(f"/agents/executions/{first}/cancel")
    await wait_for_status(client, first, "canceled")
    after = await client.post(f"/agents/workflows/{workflow_id}/run", json=body)
    assert after.status_code == 202, after.text


@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
async def test_interrupt_and_rollback_end_the_older_run_then_start_the_new_one(
    client: httpx.AsyncClient, strategy: str
) -> None:
    workflow_id = await create_workflow(client, slow(60_000))
    older = await run(client, workflow_id, concurrency_key="k")
    await wait_for_log(client, older, "nodeExecuteBefore", "Sleep")
    quick = await create_workflow(client, slow(10))

    newer = await run(client, quick, concurrency_key="k", multitask_strategy=strategy)

    new_run = await wait_for_status(client, newer, "success")
    if strategy == "rollback":
        assert (await client.get(f"/agents/executions/{older}")).status_code == 404
        assert (await client.get(f"/agents/executions/{older}/events")).status_code == 404
        return
    old_run = await wait_for_status(client, older, "canceled")
    finishes = [m for m in await logged_messages(client, older) if m["type"] == "executionFinished"]
    assert [m["data"]["status"] for m in finishes] == ["canceled"]
    assert new_run["started_at"] >= old_run["stopped_at"]


async def test_keys_are_scoped_per_api_key(settings: Settings) -> None:
    keyed = msgspec.structs.replace(settings, workers=2, api_keys=("alice", "bob"))
    async with running_app(keyed) as (_, client):
        headers = [{"Authorization": f"Bearer {who}"} for who in ("alice", "bob")]
        response = await client.post("/agents/workflows", json=slow(300), headers=headers[0])
        workflow_id = response.json()["id"]
        ids = []
        for auth in headers:
            answer = await client.post(
                f"/agents/workflows/{workflow_id}/run", json={"concurrency_key": "k"}, headers=auth
            )
            ids.append(answer.json()["execution_id"])
        runs = []
        for execution_id, auth in zip(ids, headers, strict=True):
            runs.append(await _ended_as(client, execution_id, auth))
        assert most_at_once(runs) == 2


async def _ended_as(client: httpx.AsyncClient, execution_id: str, auth: dict[str, str]) -> Any:
    async def body() -> Any:
        return (await client.get(f"/agents/executions/{execution_id}", headers=auth)).json()

    return await eventually(body, until=lambda b: b["status"] in ENDED, within=10, what="end")


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"multitask_strategy": "later"}, "multitask_strategy"),
        ({"concurrency_key": ""}, "concurrency_key"),
        ({"concurrency_key": "k" * 256}, "concurrency_key"),
        ({"concurrency_key": 7}, "concurrency_key"),
    ],
)
async def test_bad_run_control_fields_are_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], path: str
) -> None:
    workflow_id = await create_workflow(client, slow(10))
    response = await client.post(f"/agents/workflows/{workflow_id}/run", json=body)
    assert response.status_code == 422
    assert [p["path"] for p in error_body(response)["details"]] == [path]
    assert (await client.get("/agents/executions")).json()["total"] == 0


@pytest.mark.parametrize(
    ("settings_", "path"),
    [
        ({"max_concurrency": 0}, "settings.max_concurrency"),
        ({"max_concurrency": -1}, "settings.max_concurrency"),
        ({"max_concurrency": "two"}, "settings.max_concurrency"),
        ({"timeout_s": -5}, "settings.timeout_s"),
    ],
)
async def test_bad_workflow_limits_are_422_naming_the_setting(
    client: httpx.AsyncClient, settings_: dict[str, Any], path: str
) -> None:
    response = await client.post("/agents/workflows", json={**slow(10), "settings": settings_})
    assert response.status_code == 422
    assert path in [p["path"] for p in error_body(response)["details"]]


# ---- across processes: PostgreSQL claims, the Redis queue ----------------------------------


async def test_max_concurrency_holds_across_instances_on_the_redis_queue(
    settings: Settings,
) -> None:
    shared = msgspec.structs.replace(
        settings,
        workers=3,
        database_url=fresh_schema(),
        redis_url=REDIS_URL,
        redis_prefix=fresh_prefix(),
    )
    async with AsyncExitStack() as stack:
        clients = [(await stack.enter_async_context(running_app(shared)))[1] for _ in range(2)]
        workflow_id = await create_workflow(clients[0], slow(150, max_concurrency=2))
        other = await create_workflow(clients[0], slow(10))
        ids = [await run(clients[i % 2], workflow_id) for i in range(6)]
        unlimited = await run(clients[1], other)

        runs = await ended(clients[0], ids)

        assert {r["status"] for r in runs} == {"success"}
        assert most_at_once(runs) == 2
        await wait_for_status(clients[1], unlimited, "success")
