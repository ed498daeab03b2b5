"""What a retry costs: ms from the POST to the first event of the node it starts from, for a
retry from the last node of a chain (``/retry`` with ``from_node``) vs a plain run of the same
workflow reaching that node (``/run``), through the real app (REST in-process, SQLite).

    python -m bench.retry [--rounds 30] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec

from app.bus.base import PushEvent
from app.main import create_app
from app.runtime import Runtime
from app.settings import load_settings
from bench.engine import chain
from bench.harness import note, report, summary, table


class Arrivals:
    """When each execution's first message of ``type_`` (about node ``node``, if given) was
    published, taken from the bus as it happens."""

    def __init__(self, type_: str, node: str | None = None) -> None:
        self._type, self._node = type_, node
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._early: dict[str, float] = {}

    def on_event(self, event: PushEvent) -> None:
        if event.type != self._type:
            return
        if self._node and msgspec.json.decode(event.payload)["data"]["nodeName"] != self._node:
            return
        now = time.perf_counter()
        future = self._waiting.pop(event.execution_id, None)
        if future is None:
            self._early.setdefault(event.execution_id, now)
        elif not future.done():
            future.set_result(now)

    async def at(self, execution_id: str) -> float:
        if execution_id in self._early:
            return self._early.pop(execution_id)
        future = self._waiting[execution_id] = asyncio.get_running_loop().create_future()
        arrived: float = await future
        return arrived


def timed(
    client: httpx.AsyncClient, node: Arrivals, ends: Arrivals, path: str, body: dict[str, Any]
) -> Callable[[], Awaitable[float]]:
    """One measurement: POST ``path``, ms until the node's first event; then the run's end."""

    async def once() -> float:
        start = time.perf_counter()
        answer = await client.post(path, json=body)
        execution_id = answer.json()["execution_id"]
        first = await node.at(execution_id)
        await ends.at(execution_id)
        return (first - start) * 1000

    return once


async def measure(size: int, args: argparse.Namespace) -> list[str]:
    last = f"n{size - 1}"
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings({"data_dir": folder, "load_examples": False}, environ={})
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            runtime: Runtime = app.state.runtime
            node, ends = Arrivals("nodeExecuteBefore", last), Arrivals("executionFinished")
            unsubscribe = [runtime.bus.subscribe(a.on_event) for a in (node, ends)]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                created = await client.post("/agents/workflows", json=chain(size))
                path = f"/agents/workflows/{created.json()['id']}/run"
                plain = timed(client, node, ends, path, {})
                original = (await client.post(path, json={})).json()["execution_id"]
                await ends.at(original)
                retry_path = f"/agents/executions/{original}/retry"
                retry = timed(client, node, ends, retry_path, {"from_node": last})
                # Interleaved rounds, after one of each to warm up: both see the same load.
                await plain()
                await retry()
                plain_ms, retry_ms = [], []
                for _ in range(args.rounds):
                    plain_ms.append(await plain())
                    retry_ms.append(await retry())
            for stop in unsubscribe:
                stop()
    plain_summary, retry_summary = summary(plain_ms), summary(retry_ms)
    ratio = retry_summary["median"] / plain_summary["median"]
    report(
        "retry",
        f"{size}-node chain, from {last}",
        post_to_node_ms_run=plain_summary,
        post_to_node_ms_retry=retry_summary,
        ratio=ratio,
    )
    return [
        f"{size}-node, node {last}",
        f"{plain_summary['median']:.2f}",
        f"{retry_summary['median']:.2f}",
        f"{ratio:.2f}",
    ]


async def main(args: argparse.Namespace) -> None:
    rows = [await measure(size, args) for size in (3, 20)]
    header = ["workflow", "POST /run → node ms", "POST /retry → node ms", "ratio"]
    note(table(rows, header))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="a smoke run in a few seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 3
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
