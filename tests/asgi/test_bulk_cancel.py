"""Bulk cancel (SPEC §9) through the real app: every run the filter matches ends with exactly
one ``executionFinished{canceled}``, runs that end meanwhile keep their own end, and a key
cancels only its own runs."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httpx
import msgspec
import pytest

from app.runtime import Runtime
from app.settings import Settings
from support.app import create_workflow, logged_messages, run, running_app, wait_for_status
from support.engine import chain, error_body, node

pytestmark = pytest.mark.timeout(30)
FINISHED = ("success", "error", "canceled", "crashed")
WAITING = chain(node("Start"), node("Hold", "wait"), name="waiting")
SLOW = chain(node("Start"), node("Sleep", "delay", ms=60_000), name="slow")
QUICK = chain(node("Start"), node("Set", "set", values={"x": 1}), name="quick")


def terminal(messages: list[dict[str, Any]]) -> list[str]:
    return [m["data"]["status"] for m in messages if m["type"] == "executionFinished"]


async def cancel(client: httpx.AsyncClient, body: Any, **kwargs: Any) -> httpx.Response:
    return await client.post("/agents/executions/cancel", json=body, **kwargs)


async def test_bulk_cancel_ends_queued_running_and_waiting_runs_once_each(
    client: httpx.AsyncClient,
) -> None:
    done = await run(client, await create_workflow(client, QUICK))
    await wait_for_status(client, done, *FINISHED)
    waiting = await run(client, await create_workflow(client, WAITING))
    await wait_for_status(client, waiting, "waiting")
    slow_id = await create_workflow(client, SLOW)
    running = await run(client, slow_id)
    await wait_for_status(client, running, "running")
    queued = [await run(client, slow_id) for _ in range(3)]  # one worker: they stay queued
    await wait_for_status(client, queued[0], "new")

    response = await cancel(client, {"status": ["new", "running", "waiting"]})

    assert response.status_code == 202 and response.json() == {"canceled": 5}
    for execution_id in (waiting, running, *queued):
        body = await wait_for_status(client, execution_id, *FINISHED)
        messages = await logged_messages(client, execution_id)
        assert body["status"] == "canceled"
        assert terminal(messages) == ["canceled"] and messages[-1]["type"] == "executionFinished"
    assert (await wait_for_status(client, done, *FINISHED))["status"] == "success"
    assert (await cancel(client, {"status": ["new"]})).json() == {"canceled": 0}


async def test_bulk_cancel_by_workflow_leaves_other_workflows_alone(
    client: httpx.AsyncClient,
) -> None:
    waiting_id = await create_workflow(client, WAITING)
    other = await run(client, await create_workflow(client, WAITING))
    mine = [await run(client, waiting_id) for _ in range(2)]
    for execution_id in (other, *mine):
        await wait_for_status(client, execution_id, "waiting")

    response = await cancel(client, {"workflow_id": waiting_id})

    assert response.json() == {"canceled": 2}
    for execution_id in mine:
        assert (await wait_for_status(client, execution_id, *FINISHED))["status"] == "canceled"
    assert (await client.get(f"/agents/executions/{other}")).json()["status"] == "waiting"


async def test_runs_ending_while_a_bulk_cancel_runs_are_ended_once(settings: Settings) -> None:
    async with running_app(msgspec.structs.replace(settings, workers=2)) as (_, client):
        workflow_id = await create_workflow(client, QUICK)
        runs = [await run(client, workflow_id) for _ in range(30)]

        response = await cancel(client, {"workflow_id": workflow_id})

        statuses = [(await wait_for_status(client, r, *FINISHED))["status"] for r in runs]
        assert response.json()["canceled"] == statuses.count("canceled")
        for execution_id, status in zip(runs, statuses, strict=True):
            assert terminal(await logged_messages(client, execution_id)) == [status]


async def test_a_run_canceled_as_a_worker_takes_it_ends_canceled_once(
    settings: Settings,
) -> None:
    async with running_app(settings) as (app, client):
        service = cast(Runtime, app.state.runtime).service
        workflow_id = await create_workflow(client, QUICK)
        record = await service.queue_manual_execution(workflow_id)
        await asyncio.sleep(0)  # the worker takes the run; the run's task has not begun
        assert service.manager.holds(record.id)

        await service.cancel_execution(record.id)

        body = await wait_for_status(client, record.id, *FINISHED)
        messages = await logged_messages(client, record.id)
        assert body["status"] == "canceled"
        assert [m["type"] for m in messages] == ["executionFinished"]
        assert terminal(messages) == ["canceled"]


async def test_a_key_bulk_cancels_only_its_own_runs(settings: Settings) -> None:
    keys = {name: {"authorization": f"Bearer {name}"} for name in ("k1", "k2")}
    async with running_app(msgspec.structs.replace(settings, api_keys=("k1", "k2"))) as (
        _,
        client,
    ):
        created = await client.post("/agents/workflows", json=WAITING, headers=keys["k1"])
        path = f"/agents/workflows/{created.json()['id']}/run"
        ids = {}
        for name, headers in keys.items():
            answer = await client.post(path, json={}, headers=headers)
            ids[name] = answer.json()["execution_id"]
        for name, execution_id in ids.items():
            url = f"/agents/executions/{execution_id}"
            await _until_status(client, url, keys[name], "waiting")

        response = await cancel(client, {"status": ["waiting"]}, headers=keys["k2"])

        assert response.json() == {"canceled": 1}
        await _until_status(client, f"/agents/executions/{ids['k2']}", keys["k2"], "canceled")
        mine = await client.get(f"/agents/executions/{ids['k1']}", headers=keys["k1"])
        assert mine.json()["status"] == "waiting"
        assert (await cancel(client, {"status": ["waiting"]})).status_code == 401


async def _until_status(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], status: str
) -> None:
    for _ in range(500):
        if (await client.get(url, headers=headers)).json()["status"] == status:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{url} never became {status}")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, ""),
        ({"status": []}, "status"),
        ({"status": ["success"]}, "status[0]"),
        ({"status": "new"}, "status"),
        ({"workflow_id": 3}, "workflow_id"),
        ({"workflow": "x"}, "workflow"),
    ],
)
async def test_a_bulk_cancel_without_a_usable_filter_is_refused(
    client: httpx.AsyncClient, body: Any, path: str
) -> None:
    response = await cancel(client, body)

    assert response.status_code == 422, response.text
    assert [p["path"] for p in error_body(response)["details"]] == [path]
