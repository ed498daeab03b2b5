"""Run control (SPEC §10): time limits, and liveness of the event loop while nodes run."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, cast

import msgspec
import pytest
from starlette.applications import Starlette

from app.bus.base import PushEvent
from app.executions.executor import time_limit
from app.metrics import LoopLag
from app.runtime import Runtime
from app.settings import Settings
from support.app import create_workflow, logged_messages, run, running_app, wait_for_status
from support.engine import chain, kinds, node, wait_for_log
from support.nodes import BLOCK_S

pytestmark = pytest.mark.timeout(30)

SLOW = chain(node("Start"), node("Sleep", "delay", ms=60_000), node("After", "set", values={}))


def finished(messages: list[dict[str, Any]]) -> list[str]:
    return [m["data"]["status"] for m in messages if m["type"] == "executionFinished"]


@pytest.mark.parametrize(
    ("workflow_s", "server_s", "expected"),
    [(None, 0, None), (None, 5, 5), (2, 0, 2), (2, 5, 2), (9, 5, 5)],
)
def test_the_smaller_of_the_workflow_and_server_limits_applies(
    workflow_s: float | None, server_s: float, expected: float | None
) -> None:
    assert time_limit(workflow_s, server_s) == expected


@pytest.mark.parametrize(
    ("workflow_settings", "server_s"),
    [({"timeout_s": 0.3}, 0.0), ({}, 0.3), ({"timeout_s": 30}, 0.3), ({"timeout_s": 0.3}, 30.0)],
    ids=["workflow", "server", "server-smaller", "workflow-smaller"],
)
async def test_a_run_over_its_time_limit_ends_canceled_with_a_timeout_error(
    settings: Settings, workflow_settings: dict[str, Any], server_s: float
) -> None:
    limited = msgspec.structs.replace(settings, execution_timeout_s=server_s)
    async with running_app(limited) as (_, client):
        workflow_id = await create_workflow(client, {**SLOW, "settings": workflow_settings})
        began = time.monotonic()
        execution_id = await run(client, workflow_id)

        body = await wait_for_status(client, execution_id, "canceled", "error", within=5)

        assert time.monotonic() - began < 5
        assert body["status"] == "canceled"
        error = body["error"]
        assert error["type"] == "timeout"
        assert "timed out" in error["message"]
        assert error["node"] == "Sleep"
        messages = await logged_messages(client, execution_id)
        assert finished(messages) == ["canceled"]
        assert messages[-1]["type"] == "executionFinished"
        assert ("nodeExecuteBefore", "After") not in kinds(messages)


async def test_a_run_within_its_time_limit_is_not_cut_short(settings: Settings) -> None:
    limited = msgspec.structs.replace(settings, execution_timeout_s=5.0)
    async with running_app(limited) as (_, client):
        flow = chain(node("Start"), node("Sleep", "delay", ms=200), name="short")
        execution_id = await run(client, await create_workflow(client, flow))
        body = await wait_for_status(client, execution_id, "success", "canceled", "error")
        assert body["status"] == "success"
        assert body["error"] is None


async def test_a_node_raising_timeout_error_fails_the_run_as_its_own_error(
    settings: Settings,
) -> None:
    flow = chain(node("Start"), node("Call", "python", function="support.nodes:time_out"))
    modules = msgspec.structs.replace(settings, python_modules=("support.nodes",))
    async with running_app(modules) as (_, client):
        execution_id = await run(client, await create_workflow(client, flow))
        body = await wait_for_status(client, execution_id, "success", "canceled", "error")
        assert body["status"] == "error"
        assert body["error"]["type"] != "timeout"


# ---- liveness ---------------------------------------------------------------------------


def runtime_of(app: Starlette) -> Runtime:
    return cast(Runtime, app.state.runtime)


async def test_a_node_blocking_in_python_does_not_delay_another_runs_messages(
    settings: Settings,
) -> None:
    """While one run's synchronous ``python`` node holds its thread for 2 s, another run's
    push messages keep flowing: no gap between two of them comes near the block."""
    two = msgspec.structs.replace(settings, workers=2, python_modules=("support.nodes",))
    blocking = chain(node("Start"), node("Block", "python", function="support.nodes:block"))
    steps = [node(f"Step{i}", "delay", ms=100) for i in range(8)]
    ticking = chain(node("Start"), *steps, name="ticking")
    arrivals: dict[str, list[tuple[float, str, str | None]]] = {}

    def record(event: PushEvent) -> None:
        arrivals.setdefault(event.execution_id, []).append(
            (time.monotonic(), event.type, _node_name(event))
        )

    async with running_app(two) as (app, client):
        runtime_of(app).bus.subscribe(record)
        blocked = await run(client, await create_workflow(client, blocking))
        await wait_for_log(client, blocked, "nodeExecuteBefore", "Block")
        ticker = await run(client, await create_workflow(client, ticking))
        await wait_for_status(client, ticker, "success", within=10)
        await wait_for_status(client, blocked, "success", within=10)

    block_began = _arrival(arrivals[blocked], "nodeExecuteBefore", "Block")
    block_ended = _arrival(arrivals[blocked], "nodeExecuteAfter", "Block")
    times = [at for at, _, _ in arrivals[ticker]]
    # The other run ran from start to end while the node blocked ...
    assert block_began < times[0] and times[-1] < block_ended
    # ... and its messages came at the pace of its 100 ms steps, never held back by the block.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < BLOCK_S / 4, gaps


def _node_name(event: PushEvent) -> str | None:
    data = msgspec.json.decode(event.payload)["data"]
    return cast(str | None, data.get("nodeName"))


def _arrival(events: list[tuple[float, str, str | None]], type_: str, name: str) -> float:
    return next(at for at, kind, node_name in events if kind == type_ and node_name == name)


def _stall(seconds: float) -> None:
    """Hold the event loop's thread, as a blocking call on the loop would."""
    time.sleep(seconds)


async def test_the_loop_lag_gauge_shows_a_stalled_loop() -> None:
    async with LoopLag(interval_s=0.02) as lag:
        await asyncio.sleep(0.05)
        _stall(0.3)
        await asyncio.sleep(0.05)
        gauges = lag.gauges()
    assert gauges["event_loop_lag_max_seconds"] >= 0.2
    assert lag.gauges()["event_loop_lag_max_seconds"] < 0.2  # the worst is per scrape


async def test_metrics_export_the_event_loop_lag(settings: Settings) -> None:
    async with running_app(settings) as (_, client):
        text = (await client.get("/metrics")).text
    lines = dict(line.split(" ") for line in text.splitlines() if not line.startswith("#"))
    assert float(lines["graphpush_event_loop_lag_seconds"]) >= 0
    assert "# TYPE graphpush_event_loop_lag_max_seconds gauge" in text
