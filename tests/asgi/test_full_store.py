"""A full disk under the embedded SQLite store (issue 10): runs accepted before it filled end
once space returns, each with one terminal message; while it is full ``POST .../run``
answers 503 and keeps nothing; ``/healthz`` and ``/metrics`` say so; the WAL checkpoint
survives it.

The disk fills two ways: ``PRAGMA max_page_count`` on the store's connection (its writes
fail with SQLITE_FULL), and the process's own file-size limit (``RLIMIT_FSIZE``: every write
past it fails, the checkpoint's too, as on a full disk; Python ignores SIGXFSZ).
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter
from typing import Any

import httpx
import msgspec
import pytest

from app.bus.base import PushEvent
from app.errors import BackendUnavailable
from app.model.records import ExecutionRecord
from app.runtime import Runtime
from app.settings import Settings
from app.storage.sqlite import SqliteStore
from app.storage.wal import CHECKPOINT_INTERVAL_S
from support.app import create_workflow, logged_messages, run, running_app, wait_for_status
from support.engine import chain, node
from support.wait import eventually

pytestmark = pytest.mark.timeout(60)

#: Long enough that every run is still going when the store fills.
SLOW = chain(node("Start"), node("Nap", "delay", ms=600), node("Set", "set", values={"x": 1}))


#: Over a page: every write of such a run's record needs new pages.
BIG = {"pad": "x" * 10_000}


def fill(store: SqliteStore) -> None:
    """Let the database grow no more: the next write that needs a page fails, as on a full
    disk (SQLITE_FULL, "database or disk is full")."""
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count={pages}")


def free(store: SqliteStore) -> None:
    store.db.execute("PRAGMA max_page_count=1073741823")


async def metric(client: httpx.AsyncClient, name: str) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(f"graphpush_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def test_runs_accepted_before_the_store_filled_end_once_space_returns(
    settings: Settings,
) -> None:
    async with running_app(settings) as (app, client):
        rt: Runtime = app.state.runtime
        store = rt.store
        assert isinstance(store, SqliteStore)
        published: Counter[str] = Counter()

        def on_event(event: PushEvent) -> None:
            if event.type == "executionFinished":
                published[event.execution_id] += 1

        rt.bus.subscribe(on_event)
        workflow_id = await create_workflow(client, SLOW)
        accepted = [await run(client, workflow_id, input={"n": n, **BIG}) for n in range(4)]
        fill(store)

        refused = await client.post(f"/agents/workflows/{workflow_id}/run", json={"input": BIG})
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"].isdigit()
        assert refused.json()["error"]["code"] == "backend_unavailable"
        big_workflow = chain(node("Start"), node("Set", "set", values=BIG), name="big")
        refused = await client.post("/agents/workflows", json=big_workflow)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "backend_unavailable"
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["store"]["writable"] is False
        assert await metric(client, "store_writable") == 0
        assert await metric(client, "store_write_failures_total") >= 1
        # the first run ends; its final write cannot be stored, the next runs wait
        await eventually(lambda: rt.service.manager.holds(accepted[0]), until=lambda h: not h)
        await asyncio.sleep(0.2)
        assert not published

        free(store)
        for execution_id in accepted:
            body = await wait_for_status(client, execution_id, "success", "error", within=15)
            assert body["status"] == "success", body
            messages = await logged_messages(client, execution_id)
            assert [m["type"] for m in messages].count("executionFinished") == 1
            assert messages[-1]["type"] == "executionFinished"
            assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
        await eventually(lambda: all(published[i] for i in accepted), within=10)
        assert published == Counter(dict.fromkeys(accepted, 1))
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert await metric(client, "store_writable") == 1
        listed = (await client.get("/agents/executions")).json()
        assert sorted(item["execution_id"] for item in listed["items"]) == sorted(accepted)
        assert (await client.post(f"/agents/workflows/{workflow_id}/run", json={})).status_code == (
            202
        )


def _record(n: int) -> ExecutionRecord:
    return ExecutionRecord(
        id=f"run-{n}", workflow_id="w", workflow_name="w", created_at=n, input=BIG, workflow={}
    )


async def test_the_wal_checkpoint_fails_while_the_disk_is_full_and_resumes_after(
    tmp_path: Any,
) -> None:
    path = tmp_path / "graphpush.sqlite"
    async with SqliteStore(path) as store:
        for n in range(40):  # ~1.7 MB in the WAL before the first checkpoint
            await store.save(_record(n))
        assert path.stat().st_size < 64 * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
        try:
            await eventually(lambda: store.health.checkpoint_failures, until=lambda n: n >= 2)
            assert store.health.checkpointing is False
            with pytest.raises(BackendUnavailable):
                await store.save(_record(40))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

        await eventually(lambda: store.health.checkpointing)
        assert path.stat().st_size > 40 * len(BIG["pad"])  # the WAL's rows reached the file
        await store.save(_record(41))
        assert store.health.writable
        assert await store.get("run-40") is None  # the refused run was not kept
        await asyncio.sleep(3 * CHECKPOINT_INTERVAL_S)
        assert store.health.checkpointing


async def test_a_server_stopped_while_its_store_is_full_loses_no_accepted_run(
    settings: Settings,
) -> None:
    settings = msgspec.structs.replace(settings, shutdown_timeout_s=0.5)
    async with running_app(settings) as (app, client):
        store = app.state.runtime.store
        workflow_id = await create_workflow(client, SLOW)
        accepted = [await run(client, workflow_id, input=BIG) for _ in range(3)]
        await wait_for_status(client, accepted[0], "running")
        fill(store)
        await asyncio.sleep(0.5)  # the first run ends; its final write cannot be stored
        started = time.monotonic()
    assert time.monotonic() - started < 5  # the shutdown's grace, not forever

    async with running_app(settings) as (_, client):  # a new connection: space again
        finals = [await wait_for_status(client, i, "success", "crashed") for i in accepted]
        assert finals[0]["status"] == "crashed"  # it was running when its write was lost
        assert [f["status"] for f in finals[1:]] == ["success", "success"]  # queued: run now
        for execution_id in accepted:
            messages = await logged_messages(client, execution_id)
            assert [m["type"] for m in messages].count("executionFinished") == 1
            assert messages[-1]["type"] == "executionFinished"
