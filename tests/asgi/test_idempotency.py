"""``Idempotency-Key`` on ``POST /agents/workflows/{id}/run`` (SPEC §10): a retried request
replays the first answer and starts nothing, across restarts and API instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import msgspec
import pytest

from app.settings import Settings
from support.app import create_workflow, running_app, wait_for_status
from support.engine import chain, error_body, node
from support.scaleout import fresh_schema

pytestmark = pytest.mark.timeout(30)

FLOW = chain(node("Start"), node("B", "set", values={"b": 1}), name="idempotent")


def run_url(workflow_id: str) -> str:
    return f"/agents/workflows/{workflow_id}/run"


async def post_run(
    client: httpx.AsyncClient, workflow_id: str, key: str | None, body: Any = None, **headers: str
) -> httpx.Response:
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(run_url(workflow_id), json=body or {}, headers=headers)


async def run_count(client: httpx.AsyncClient, **headers: str) -> int:
    response = await client.get("/agents/executions", headers=headers)
    return int(response.json()["total"])


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as (_, client):
        yield client


async def test_the_same_key_and_body_replay_the_first_answer_and_start_nothing(
    client: httpx.AsyncClient,
) -> None:
    workflow_id = await create_workflow(client, FLOW)
    body = {"input": {"q": 1}, "push_ref": "tab-1"}

    first = await post_run(client, workflow_id, "order-42", body)
    again = await post_run(
        client, workflow_id, "order-42", {"push_ref": "tab-1", "input": {"q": 1}}
    )

    assert first.status_code == again.status_code == 202, again.text
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.json()["execution_id"] == first.json()["execution_id"]
    assert await run_count(client) == 1


async def test_a_key_reused_with_another_body_is_refused(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, FLOW)
    await post_run(client, workflow_id, "k", {"input": {"q": 1}})

    response = await post_run(client, workflow_id, "k", {"input": {"q": 2}})

    assert response.status_code == 422
    error = error_body(response)
    assert error["code"] == "idempotency_key_reused"
    assert error["details"][0]["path"] == "Idempotency-Key"
    assert await run_count(client) == 1


async def test_a_key_reused_on_another_workflow_is_refused(client: httpx.AsyncClient) -> None:
    first, second = [await create_workflow(client, FLOW) for _ in range(2)]
    await post_run(client, first, "k")
    response = await post_run(client, second, "k")
    assert error_body(response)["code"] == "idempotency_key_reused"


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\tkey", "caf\u00e9"], ids=repr)
async def test_a_key_that_is_not_1_to_255_visible_ascii_characters_is_refused(
    client: httpx.AsyncClient, key: str
) -> None:
    workflow_id = await create_workflow(client, FLOW)
    response = await client.post(
        run_url(workflow_id), json={}, headers={"Idempotency-Key": key.encode("latin-1")}
    )
    assert response.status_code == 422, response.text
    error = error_body(response)
    assert error["code"] == "invalid_idempotency_key"
    assert error["details"][0]["path"] == "Idempotency-Key"
    assert await run_count(client) == 0


async def test_the_longest_key_is_accepted(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, FLOW)
    key = "~" * 255
    first = await post_run(client, workflow_id, key)
    again = await post_run(client, workflow_id, key)
    assert again.json()["execution_id"] == first.json()["execution_id"]


async def test_requests_without_a_key_each_start_a_run(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, FLOW)
    ids = {(await post_run(client, workflow_id, None)).json()["execution_id"] for _ in range(2)}
    assert len(ids) == 2


async def test_keys_are_scoped_per_api_key(settings: Settings) -> None:
    keyed = msgspec.structs.replace(settings, api_keys=("alice", "bob"))
    async with running_app(keyed) as (_, client):
        alice = {"Authorization": "Bearer alice"}
        bob = {"Authorization": "Bearer bob"}
        workflow_id = _created(await client.post("/agents/workflows", json=FLOW, headers=alice))
        first = await post_run(client, workflow_id, "same", None, **alice)
        other = await post_run(client, workflow_id, "same", None, **bob)
        assert first.status_code == other.status_code == 202
        assert "idempotent-replayed" not in other.headers
        assert other.json()["execution_id"] != first.json()["execution_id"]


def _created(response: httpx.Response) -> str:
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_a_key_past_its_ttl_starts_a_new_run(settings: Settings) -> None:
    async with running_app(msgspec.structs.replace(settings, idempotency_ttl_s=0.2)) as (_, c):
        workflow_id = await create_workflow(c, FLOW)
        first = await post_run(c, workflow_id, "k")
        await asyncio.sleep(0.3)
        later = await post_run(c, workflow_id, "k", {"input": {"other": True}})
        assert later.status_code == 202, later.text
        assert "idempotent-replayed" not in later.headers
        assert later.json()["execution_id"] != first.json()["execution_id"]
        again = await post_run(c, workflow_id, "k", {"input": {"other": True}})
        assert again.json()["execution_id"] == later.json()["execution_id"]


async def test_concurrent_requests_with_one_key_start_one_run(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, FLOW)
    responses = await asyncio.gather(*(post_run(client, workflow_id, "burst") for _ in range(10)))
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["execution_id"] for r in responses}) == 1
    assert sum("idempotent-replayed" in r.headers for r in responses) == 9
    assert await run_count(client) == 1


async def test_a_key_survives_a_restart(settings: Settings) -> None:
    async with running_app(settings) as (_, client):
        workflow_id = await create_workflow(client, FLOW)
        first = await post_run(client, workflow_id, "durable")
    async with running_app(settings) as (_, client):
        again = await post_run(client, workflow_id, "durable")
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        assert await run_count(client) == 1


async def test_two_api_instances_on_postgresql_racing_one_key_start_one_run(
    settings: Settings,
) -> None:
    shared = msgspec.structs.replace(settings, database_url=fresh_schema())
    async with AsyncExitStack() as stack:
        clients = [(await stack.enter_async_context(running_app(shared)))[1] for _ in range(2)]
        workflow_id = await create_workflow(clients[0], FLOW)
        requests = [post_run(clients[i % 2], workflow_id, "race") for i in range(12)]
        responses = await asyncio.gather(*requests)

        assert {r.status_code for r in responses} == {202}, [r.text for r in responses]
        assert len({r.json()["execution_id"] for r in responses}) == 1
        assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
        assert await run_count(clients[1]) == 1


async def test_a_retry_with_a_key_is_replayed_like_a_run(client: httpx.AsyncClient) -> None:
    workflow_id = await create_workflow(client, FLOW)
    original = (await post_run(client, workflow_id, None)).json()["execution_id"]
    await wait_for_status(client, original, "success")
    url = f"/agents/executions/{original}/retry"

    first = await client.post(url, json={}, headers={"Idempotency-Key": "retry-1"})
    again = await client.post(url, json={}, headers={"Idempotency-Key": "retry-1"})
    other = await client.post(url, json={"input": {"x": 1}}, headers={"Idempotency-Key": "retry-1"})

    assert first.status_code == again.status_code == 202, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert error_body(other)["code"] == "idempotency_key_reused"
    retries = await client.get(f"/agents/executions?retry_of={original}")
    assert retries.json()["total"] == 1
