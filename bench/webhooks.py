"""Do webhook deliveries slow runs down? POST → ``executionFinished`` of 100 concurrent runs
of the same workflow, without a webhook and with one delivered to a receiver in another
process (each run's delivery is sent while the next runs execute).

    python -m bench.webhooks [--runs 100] [--rounds 5] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, NamedTuple

import httpx

from app.bus.base import PushEvent
from app.main import create_app
from app.settings import load_settings
from bench.harness import free_port, note, percentile, report, summary, table

#: A receiver that answers every POST with 204, in its own process (not this one's GIL).
RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as most receivers
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(204); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def workflow(webhook_url: str | None) -> dict[str, Any]:
    nodes = [{"name": "n0", "type": "trigger"}] + [
        {"name": f"n{i}", "type": "set", "parameters": {"values": {f"k{i}": i}}}
        for i in range(1, 5)
    ]
    connections = {
        f"n{i}": {"main": [[{"node": f"n{i + 1}", "type": "main", "index": 0}]]} for i in range(4)
    }
    settings = {"webhook_url": webhook_url} if webhook_url else {}
    return {"name": "bench", "nodes": nodes, "connections": connections, "settings": settings}


class Finishes:
    """When each run's ``executionFinished`` was published (a bus subscriber)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.changed = asyncio.Event()

    def __call__(self, event: PushEvent) -> None:
        if event.type == "executionFinished":
            self.at[event.execution_id] = time.perf_counter()
            self.changed.set()

    async def all_of(self, execution_ids: list[str]) -> None:
        while not all(eid in self.at for eid in execution_ids):
            self.changed.clear()
            await self.changed.wait()


async def one_round(
    client: httpx.AsyncClient, finishes: Finishes, workflow_id: str, runs: int
) -> list[float]:
    """Latencies (s) from each POST to its ``executionFinished``."""
    posted: dict[str, float] = {}

    async def post() -> None:
        start = time.perf_counter()
        response = await client.post(f"/agents/workflows/{workflow_id}/run", json={})
        posted[response.json()["execution_id"]] = start

    await asyncio.gather(*(post() for _ in range(runs)))
    await finishes.all_of(list(posted))
    return [finishes.at[eid] - start for eid, start in posted.items()]


class Sample(NamedTuple):
    totals: list[float]
    latencies: list[float]
    delivered: int


async def case(webhook_url: str | None, args: argparse.Namespace) -> Sample:
    """``args.rounds`` rounds of ``args.runs`` runs on a fresh app (SQLite, 4 workers)."""
    with tempfile.TemporaryDirectory() as folder:
        options = {
            "data_dir": folder,
            "load_examples": False,
            "workers": 4,
            "webhook_secret": SECRET,
            "webhook_allow_private": True,
        }
        app = create_app(load_settings(options, environ={}))
        async with app.router.lifespan_context(app):
            finishes = Finishes()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                unsubscribe = app.state.runtime.bus.subscribe(finishes)
                created = await client.post("/agents/workflows", json=workflow(webhook_url))
                workflow_id = created.json()["id"]
                await one_round(client, finishes, workflow_id, 10)  # warm-up
                totals, latencies = [], []
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    latencies += await one_round(client, finishes, workflow_id, args.runs)
                    totals.append(time.perf_counter() - start)
                unsubscribe()
                delivered = await _delivered(client, list(finishes.at))
    return Sample(totals, latencies, delivered)


async def _delivered(client: httpx.AsyncClient, execution_ids: list[str]) -> int:
    """How many of the runs' webhooks were delivered (within a few seconds of the end)."""
    await asyncio.sleep(3)
    count = 0
    for execution_id in execution_ids:
        items = (await client.get(f"/agents/executions/{execution_id}/webhooks")).json()["items"]
        count += sum(1 for item in items if item["status"] == "delivered")
    return count


async def main(args: argparse.Namespace, receiver_url: str) -> None:
    """The cases alternate, ``args.repeat`` times each, so a change of load hits both."""
    cases = {"no webhook": None, "webhook delivered": receiver_url}
    samples: dict[str, list[Sample]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, url in cases.items():
            samples[name].append(await case(url, args))
    rows = []
    for name, taken in samples.items():
        totals = [t for sample in taken for t in sample.totals]
        latencies = [v for sample in taken for v in sample.latencies]
        result = report(
            "webhooks",
            name,
            runs=args.runs,
            total_s=summary(totals),
            p50_ms=percentile(latencies, 0.5) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
            delivered=sum(sample.delivered for sample in taken),
            load=os.getloadavg(),
        )
        rows.append(
            [
                name,
                f"{result['total_s']['median'] * 1000:.0f}",
                f"{result['p50_ms']:.0f}",
                f"{result['p99_ms']:.0f}",
                str(result["delivered"]),
            ]
        )
    header = ["case", f"{args.runs} runs, median ms", "p50 ms", "p99 ms", "delivered"]
    note(table(rows, header))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20 runs, 1 round, once (CI smoke)")
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        time.sleep(0.5)
        args = parser.parse_args()
        if args.quick:
            args.runs, args.rounds, args.repeat = 20, 1, 1
        asyncio.run(main(args, f"http://127.0.0.1:{port}/"))
    finally:
        receiver.terminate()
        receiver.wait()
