"""A full disk under the embedded SQLite store: how long runs wait after space returns, and
how many were delayed.

    python -m bench.full_disk [--rounds 3] [--runs 200] [--workers 8] [--full-s 3] [--quick]

Method (also in bench/README.md): the app in-process (its lifespan, real SQLite on a temp
dir), a 3-node workflow with a 100 ms ``delay``. Each round accepts ``runs`` runs, waits
until ``workers`` of them are running, then fills the store (``PRAGMA max_page_count`` =
its page count: every write that needs a page fails with SQLITE_FULL), keeps it full for
``full_s`` seconds while posting one run every 50 ms (each must be refused with 503), then
frees it. Reported per round: runs delayed (accepted, not ended when space returned),
refused posts, seconds from freeing to the first and to the last delayed run ending, and
whether each run ended with exactly one ``executionFinished`` (counted on the bus).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from app.bus.base import PushEvent
from app.main import create_app
from app.settings import load_settings
from bench.harness import note, report, summary, table

WORKFLOW = {
    "name": "full-disk",
    "nodes": [
        {"name": "Start", "type": "trigger"},
        {"name": "Nap", "type": "delay", "parameters": {"ms": 100}},
        {"name": "Set", "type": "set", "parameters": {"values": {"x": "y" * 2000}}},
    ],
    "connections": {
        "Start": {"main": [[{"node": "Nap", "type": "main", "index": 0}]]},
        "Nap": {"main": [[{"node": "Set", "type": "main", "index": 0}]]},
    },
}


class Round:
    def __init__(self, client: httpx.AsyncClient, runtime: Any, workflow_id: str) -> None:
        self.client, self.runtime, self.workflow_id = client, runtime, workflow_id
        self.ended: dict[str, float] = {}
        self.finished: Counter[str] = Counter()
        self.started = 0
        self.busy, self.done = asyncio.Event(), asyncio.Event()
        self.accepted: set[str] = set()
        self.workers = 0

    def on_event(self, event: PushEvent) -> None:
        if event.type == "executionStarted":
            self.started += 1
            if self.started >= self.workers:
                self.busy.set()
        elif event.type == "executionFinished":
            self.finished[event.execution_id] += 1
            self.ended.setdefault(event.execution_id, time.monotonic())
            if self.accepted and self.accepted <= self.ended.keys():
                self.done.set()

    async def post(self) -> httpx.Response:
        return await self.client.post(f"/agents/workflows/{self.workflow_id}/run", json={})

    async def measure(self, runs: int, workers: int, full_s: float) -> dict[str, Any]:
        self.workers = min(workers, runs)
        accepted = [(await self.post()).json()["execution_id"] for _ in range(runs)]
        await self.busy.wait()
        db = self.runtime.store.db
        db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
        refused, deadline = 0, time.monotonic() + full_s
        while time.monotonic() < deadline:
            refused += (await self.post()).status_code == 503
            await asyncio.sleep(0.05)
        delayed = [i for i in accepted if i not in self.ended]
        freed = time.monotonic()
        db.execute("PRAGMA max_page_count=1073741823")
        self.accepted = set(accepted)
        if not self.accepted <= self.ended.keys():
            await self.done.wait()
        ends = [self.ended[i] - freed for i in delayed]
        return {
            "runs": runs,
            "delayed": len(delayed),
            "refused_posts": refused,
            "first_end_s": round(min(ends), 3) if ends else None,
            "last_end_s": round(max(ends), 3) if ends else None,
            "one_terminal_each": all(self.finished[i] == 1 for i in accepted),
        }


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings(
            {"data_dir": Path(data_dir), "load_examples": False, "workers": args.workers},
            environ={},
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                workflow_id = (await client.post("/agents/workflows", json=WORKFLOW)).json()["id"]
                results = []
                for _ in range(args.rounds):
                    round_ = Round(client, app.state.runtime, workflow_id)
                    unsubscribe = app.state.runtime.bus.subscribe(round_.on_event)
                    results.append(await round_.measure(args.runs, args.workers, args.full_s))
                    unsubscribe()
    for n, result in enumerate(results):
        report("full_disk", f"round-{n}", workers=args.workers, full_s=args.full_s, **result)
    last = [r["last_end_s"] for r in results if r["last_end_s"] is not None]
    first = [r["first_end_s"] for r in results if r["first_end_s"] is not None]
    report("full_disk", "summary", first_end_s=summary(first), last_end_s=summary(last))
    rows = [
        [str(r["delayed"]), str(r["refused_posts"]), f"{r['first_end_s']}", f"{r['last_end_s']}"]
        for r in results
    ]
    note(table(rows, ["runs delayed", "POSTs refused (503)", "first ends (s)", "last ends (s)"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--full-s", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="CI smoke: 1 round, 20 runs, 1 s")
    parsed = parser.parse_args()
    if parsed.quick:
        parsed.rounds, parsed.runs, parsed.full_s = 1, 20, 1.0
    asyncio.run(main(parsed))
