"""Faults of the shared backends, end to end: an API instance and a worker process on a
Redis of the test's own that is killed and restarted empty (no persistence) with runs in
flight, queued and posted meanwhile; then PostgreSQL connections dropped under load
(``pg_terminate_backend``). Every run accepted ends, each with one terminal message, and
every client gets it. Then one API instance of two cut off from Redis while runs of a
workflow its client follows (SPEC §11) are queued through the other: once back, the
follower gets each run's lifecycle messages, in order and once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from websockets.asyncio.client import ClientConnection, connect

from support.app import create_workflow, logged_messages, run, wait_for_status
from support.cluster import Cluster
from support.engine import chain, node
from support.push import decode
from support.redis_server import redis_server
from support.scaleout import POSTGRES_URL, fresh_schema
from support.tcp_proxy import tcp_proxy
from support.wait import eventually

pytestmark = pytest.mark.timeout(150)
TERMINAL = "executionFinished"


async def finished_ids(ws: ClientConnection, wanted: set[str]) -> Counter[str]:
    """Every ``executionFinished`` on ``ws`` until each of ``wanted`` has come, then 0.5 s
    more (a duplicate would come then), by execution id."""
    got: Counter[str] = Counter()
    try:
        async with asyncio.timeout(20):
            while not wanted <= set(got):
                message = decode(await ws.recv())
                if message["type"] == TERMINAL:
                    got[message["data"]["executionId"]] += 1
    except TimeoutError:
        raise AssertionError(f"no executionFinished for {wanted - set(got)}") from None
    try:
        async with asyncio.timeout(0.5):
            while True:
                message = decode(await ws.recv())
                if message["type"] == TERMINAL:
                    got[message["data"]["executionId"]] += 1
    except TimeoutError:
        return got


async def ready(api: httpx.AsyncClient, status: int) -> dict[str, Any]:
    """The body of ``/readyz`` once it answers ``status``."""
    response = await eventually(
        lambda: api.get("/readyz"), until=lambda r: r.status_code == status, within=10
    )
    return dict(response.json())


async def one_terminal_each(api: httpx.AsyncClient, execution_ids: list[str]) -> None:
    for execution_id in execution_ids:
        types = [m["type"] for m in await logged_messages(api, execution_id)]
        assert types.count(TERMINAL) == 1 and types[-1] == TERMINAL, (execution_id, types)


async def test_redis_restarted_empty_with_runs_in_flight_loses_nothing(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        cluster = Cluster(tmp_path, redis_url=server.url)
        try:
            cluster.start_api()
            cluster.start_worker(workers=1)  # one at a time: the others wait in Redis
            cluster.wait_ready()
            url = cluster.urls[0]
            async with (
                httpx.AsyncClient(base_url=url, timeout=10) as api,
                connect(url.replace("http", "ws") + "/agents/push?pushRef=faulty") as ws,
            ):
                slow = await create_workflow(api, chain(node("Start"), node("W", "delay", ms=1500)))
                fast = await create_workflow(api, chain(node("Start"), node("S", "set", values={})))
                in_flight = await run(api, slow, push_ref="faulty")
                await wait_for_status(api, in_flight, "running")
                queued = [await run(api, fast, push_ref="faulty") for _ in range(3)]

                server.kill()
                down = await ready(api, 503)
                assert down["error"]["details"]["redis"] != "ok"
                during = await run(api, fast, push_ref="faulty")  # stored: runs once Redis is back
                await wait_for_status(api, in_flight, "success")  # its end is not pushed yet

                server.start()
                restarted = time.monotonic()
                after = await run(api, fast, push_ref="faulty")
                runs = [in_flight, *queued, during, after]
                for execution_id in runs:
                    await wait_for_status(api, execution_id, "success", within=30)
                recovered_s = time.monotonic() - restarted
                assert (await ready(api, 200))["checks"] == {"postgres": "ok", "redis": "ok"}
                pushed = await finished_ids(ws, set(runs))
                assert pushed == Counter(runs), pushed  # each once, the one ended meanwhile too
                await one_terminal_each(api, runs)
            print(f"\nall runs ended {recovered_s:.2f} s after Redis came back")
        finally:
            cluster.stop()


def terminate(application_name: str) -> int:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name=%s",
            (application_name,),
        ).fetchall()
    return len(rows)


async def test_postgres_connections_dropped_under_load_leave_no_run_behind(tmp_path: Path) -> None:
    name = f"gp-test-{secrets.token_hex(4)}"
    cluster = Cluster(tmp_path, database_url=f"{fresh_schema()}&application_name={name}")
    try:
        cluster.start_api()
        cluster.start_worker()
        cluster.wait_ready()
        async with httpx.AsyncClient(base_url=cluster.urls[0], timeout=20) as api:
            workflow = chain(node("Start"), node("W", "delay", ms=50), node("S", "set", values={}))
            workflow_id = await create_workflow(api, workflow)
            dropped = 0
            runs: list[str] = []
            for _ in range(30):
                dropped += await asyncio.to_thread(terminate, name)
                runs.append(await run(api, workflow_id))  # a 202 each, never a 500
                await asyncio.sleep(0.1)
            assert dropped >= 30
            statuses = Counter(
                [
                    (await wait_for_status(api, r, "success", "error", within=30))["status"]
                    for r in runs
                ]
            )
            await one_terminal_each(api, runs)
            assert statuses["success"] >= 25, (
                statuses
            )  # a node whose checkpoint write was cut fails
            await ready(api, 200)
        print(f"\n{dropped} connections dropped; runs ended {dict(statuses)}")
    finally:
        cluster.stop()


LIFECYCLE = {"executionStarted", "executionWaiting", "executionFinished"}


async def lifecycles(ws: ClientConnection, ended: set[str]) -> dict[str, list[str]]:
    """The lifecycle messages on ``ws`` by execution id, until each of ``ended`` has its
    ``executionFinished``, then 0.5 s more (a duplicate would come then)."""
    got: dict[str, list[str]] = {}

    def take(message: dict[str, Any]) -> None:
        if message["type"] in LIFECYCLE:
            got.setdefault(message["data"]["executionId"], []).append(message["type"])

    try:
        async with asyncio.timeout(20):
            while not all(TERMINAL in got.get(e, ()) for e in ended):
                take(decode(await ws.recv()))
    except TimeoutError:
        raise AssertionError(f"the feed did not end {ended}: {got}") from None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.5):
            while True:
                take(decode(await ws.recv()))
    return got


async def test_a_feed_follower_gets_the_runs_begun_elsewhere_while_its_instance_was_cut_off(
    tmp_path: Path,
) -> None:
    with redis_server(tmp_path) as server, tcp_proxy(("127.0.0.1", server.port)) as proxy:
        cluster = Cluster(tmp_path, redis_url=server.url)
        try:
            cluster.start_api()  # the one runs are queued through
            cluster.start_api(redis_url=f"redis://127.0.0.1:{proxy.port}/0")  # the follower's
            cluster.start_worker(workers=1)
            cluster.wait_ready()
            queuing, following = cluster.urls
            async with (
                httpx.AsyncClient(base_url=queuing, timeout=10) as api,
                httpx.AsyncClient(base_url=following, timeout=10) as cut_off,
                connect(following.replace("http", "ws") + "/agents/push?pushRef=follower") as ws,
            ):
                fast = await create_workflow(api, chain(node("Start"), node("S", "set", values={})))
                slow = chain(node("Start"), node("W", "delay", ms=1500))
                workflow_id = await create_workflow(api, slow)
                follow = {"type": "subscribe_workflow", "data": {"workflowId": workflow_id}}
                await ws.send(json.dumps(follow))
                assert decode(await ws.recv())["type"] == "runsSnapshot"
                assert decode(await ws.recv())["type"] == "ack"
                before = await run(api, workflow_id)
                assert (await lifecycles(ws, {before}))[before] == ["executionStarted", TERMINAL]

                proxy.cut()
                await ready(cut_off, 503)
                other = await run(api, fast)  # another workflow: not the follower's
                begun = await run(api, workflow_id)  # begins and ends while it is cut off
                await wait_for_status(api, begun, "success")
                await wait_for_status(api, other, "success")
                straddling = await run(api, workflow_id)  # begins now, ends after the restore
                await wait_for_status(api, straddling, "running")

                proxy.restore()
                await ready(cut_off, 200)
                got = await lifecycles(ws, {begun, straddling})
                assert got == {
                    begun: ["executionStarted", TERMINAL],
                    straddling: ["executionStarted", TERMINAL],
                }, got
        finally:
            cluster.stop()
