"""History size vs run latency (SPEC §10 retention): runs/s, POST→``executionFinished``
latency and ``GET /agents/executions?limit=50`` latency (and one workflow's page) on SQLite
with an empty history, with 100,000 finished runs kept, and after a prune down to
``history_max_count``.

    python -m bench.history [--history 100000] [--keep 10000] [--quick]

The app runs in-process with its lifespan (requests through httpx's ASGI transport, no
socket). A list request is timed twice: by the client (with httpx's own work) and inside
the server (from the ASGI call to the last body byte sent), and the garbage collector's
pauses during the listing are counted. The history is seeded straight into the store:
copies of one real finished run (record, workflow snapshot and event log).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.bus.base import PushEvent
from app.main import create_app
from app.model.records import ExecutionRecord
from app.runtime import Runtime
from app.settings import Settings, load_settings
from bench.harness import note, percentile, report, table

WORKFLOW = {
    "id": "bench-history",
    "name": "history bench",
    "nodes": [
        {"name": "Start", "type": "trigger"},
        {"name": "Classify", "type": "set", "parameters": {"values": {"topic": "billing"}}},
        {"name": "Done", "type": "set", "parameters": {"values": {"done": True}}},
    ],
    "connections": {
        "Start": {"main": [[{"node": "Classify", "type": "main", "index": 0}]]},
        "Classify": {"main": [[{"node": "Done", "type": "main", "index": 0}]]},
    },
}
SEED_BATCH = 5_000


class ServerTime:
    """The app, timing each HTTP request from its call to its last body byte sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.samples: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        began = time.perf_counter()

        async def timed(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.samples.append((time.perf_counter() - began) * 1000)

        await self.app(scope, receive, timed)


class Pauses:
    """The garbage collector's pauses while ``with`` it: count and longest, per generation."""

    def __init__(self) -> None:
        self.longest: dict[int, float] = {}
        self.count: dict[int, int] = {}
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        generation, ms = info["generation"], (time.perf_counter() - self._began) * 1000
        self.count[generation] = self.count.get(generation, 0) + 1
        self.longest[generation] = max(self.longest.get(generation, 0.0), ms)

    def __enter__(self) -> Pauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


class Bench:
    def __init__(self, runtime: Runtime, client: httpx.AsyncClient, server: ServerTime) -> None:
        self.runtime = runtime
        self.client = client
        self.server = server
        #: When each run's ``executionFinished`` was published (it may come before the 202).
        self.finished: dict[str, asyncio.Future[float]] = {}
        runtime.bus.subscribe(self._on_event)

    def _future(self, execution_id: str) -> asyncio.Future[float]:
        if execution_id not in self.finished:
            self.finished[execution_id] = asyncio.get_running_loop().create_future()
        return self.finished[execution_id]

    def _on_event(self, event: PushEvent) -> None:
        if event.type == "executionFinished":
            self._future(event.execution_id).set_result(time.perf_counter())

    async def _ended(self, execution_id: str) -> float:
        ended_at = await self._future(execution_id)
        del self.finished[execution_id]
        return ended_at

    async def _post(self) -> tuple[str, float]:
        began = time.perf_counter()
        response = await self.client.post(f"/agents/workflows/{WORKFLOW['id']}/run", json={})
        execution_id = str(response.json()["execution_id"])
        self._future(execution_id)
        return execution_id, began

    async def latency_ms(self, runs: int) -> list[float]:
        """POST→executionFinished of ``runs`` runs, one at a time."""
        samples = []
        for _ in range(runs):
            execution_id, began = await self._post()
            samples.append((await self._ended(execution_id) - began) * 1000)
        return samples

    async def runs_per_s(self, runs: int) -> float:
        began = time.perf_counter()
        posted = await asyncio.gather(*(self._post() for _ in range(runs)))
        await asyncio.gather(*(self._ended(execution_id) for execution_id, _ in posted))
        return runs / (time.perf_counter() - began)

    async def list_ms(
        self, requests: int, path: str = "/agents/executions"
    ) -> tuple[list[float], list[float], Pauses]:
        """Client and server times of ``requests`` list requests, and the GC pauses."""
        samples = []
        self.server.samples.clear()
        with Pauses() as pauses:
            for _ in range(requests):
                began = time.perf_counter()
                response = await self.client.get(f"{path}?limit=50")
                samples.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, response.text
        return samples, list(self.server.samples), pauses

    async def seed(self, count: int) -> None:
        """Add ``count`` finished runs, older than any run so far, as copies of a real one."""
        execution_id, _ = await self._post()
        await self._ended(execution_id)
        store = self.runtime.store
        template = await store.get(execution_id)
        assert template is not None
        events = await store.read_events(execution_id)
        oldest = template.created_at - 1_000 * (count + 1)
        for start in range(0, count, SEED_BATCH):
            for n in range(start, min(start + SEED_BATCH, count)):
                copy = _copy(template, f"seed{n:08d}", oldest + 1_000 * n)
                store.stage(msgspec.structs.replace(copy, last_seq=0))  # with its snapshot
                store.stage(copy, events)
            await store.commit()


def _file_mib(path: Path) -> float:
    return path.stat().st_size / 2**20


def _copy(record: ExecutionRecord, execution_id: str, created_at: int) -> ExecutionRecord:
    shift = created_at - record.created_at
    return msgspec.structs.replace(
        record,
        id=execution_id,
        created_at=created_at,
        started_at=(record.started_at or record.created_at) + shift,
        stopped_at=(record.stopped_at or record.created_at) + shift,
    )


async def measure(bench: Bench, case: str, args: argparse.Namespace) -> list[str]:
    await bench.latency_ms(10)  # warm up: compile, caches
    latency = await bench.latency_ms(args.runs)
    rate = await bench.runs_per_s(args.burst)
    load = os.getloadavg()[0]
    # full pages of 50, even with no history
    listing, server, pauses = await bench.list_ms(args.lists)
    # one workflow's runs: a filtered total (as with API keys: one owner's runs)
    _, of_workflow, _ = await bench.list_ms(
        args.lists, f"/agents/workflows/{WORKFLOW['id']}/executions"
    )
    total = (await bench.client.get("/agents/executions?limit=1")).json()["total"]
    size_mib = _file_mib(bench.runtime.settings.sqlite_path)
    fields: dict[str, Any] = {
        "runs_kept": total,
        "database_mib": round(size_mib, 1),
        "load_1min": [load, os.getloadavg()[0]],
        "list_ms": {"p50": percentile(listing, 0.5), "p99": percentile(listing, 0.99)},
        "list_server_ms": {"p50": percentile(server, 0.5), "p99": percentile(server, 0.99)},
        "workflow_list_server_ms": {
            "p50": percentile(of_workflow, 0.5),
            "p99": percentile(of_workflow, 0.99),
        },
        "gc_pauses_while_listing": {"count": pauses.count, "longest_ms": pauses.longest},
        "post_to_finished_ms": {"p50": percentile(latency, 0.5), "p99": percentile(latency, 0.99)},
        "runs_per_s": rate,
    }
    report("history", case, **fields)
    return [
        f"{case} (load {load:.1f})",
        f"{total:,}",
        f"{size_mib:.1f}",
        f"{fields['list_ms']['p50']:.2f} / {fields['list_ms']['p99']:.2f}",
        f"{fields['list_server_ms']['p50']:.2f} / {fields['list_server_ms']['p99']:.2f}",
        f"{percentile(of_workflow, 0.5):.2f} / {percentile(of_workflow, 0.99):.2f}",
        f"{fields['post_to_finished_ms']['p50']:.2f} / {fields['post_to_finished_ms']['p99']:.2f}",
        f"{rate:.0f}",
    ]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = _settings(folder, args)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            server = ServerTime(app)
            transport = httpx.ASGITransport(app=server)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                await client.post("/agents/workflows", json=WORKFLOW)
                runtime = cast(Runtime, app.state.runtime)
                bench = Bench(runtime, client, server)
                rows = [await measure(bench, "empty history", args)]
                began = time.perf_counter()
                await bench.seed(args.history)
                note(f"seeded {args.history:,} runs in {time.perf_counter() - began:.1f} s")
                rows.append(await measure(bench, f"{args.history:,} runs kept", args))
                rows.append(await _pruned(runtime, bench, args))
    header = [
        "history (load 1 min)",
        "runs",
        "file MiB",
        "list p50 / p99 ms",
        "in the server",
        "one workflow's, in the server",
        "POST→finished p50 / p99 ms",
    ]
    note(table(rows, [*header, "runs/s"]))


async def _pruned(runtime: Runtime, bench: Bench, args: argparse.Namespace) -> list[str]:
    pruner = runtime.pruner
    assert pruner is not None
    pruner.settings = msgspec.structs.replace(pruner.settings, history_max_count=args.keep)
    began = time.perf_counter()
    pruned = await pruner.prune()
    seconds = time.perf_counter() - began
    await asyncio.sleep(1.0)  # the WAL checkpoint that shrinks the file
    report("history", "prune", pruned=pruned, seconds=seconds, runs_per_s=pruned / seconds)
    note(f"pruned {pruned:,} runs in {seconds:.1f} s ({pruned / seconds:,.0f} runs/s)")
    return await measure(bench, f"pruned to {args.keep:,}", args)


def _settings(folder: str, args: argparse.Namespace) -> Settings:
    return load_settings(
        {
            "data_dir": folder,
            "load_examples": False,
            "queue_bound": 1_000_000,
            # Retention only when the bench asks for it.
            "history_max_count": 0,
            "history_max_age_s": 0,
            "prune_interval_s": 1e9,
        },
        environ={},
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--keep", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200, help="runs timed one by one")
    parser.add_argument("--burst", type=int, default=500, help="runs started at once")
    parser.add_argument("--lists", type=int, default=500, help="list requests timed")
    parser.add_argument("--quick", action="store_true", help="a smoke run in a few seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.history, args.keep, args.runs, args.burst, args.lists = 2_000, 500, 20, 50, 20
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
