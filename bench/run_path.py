"""The server's CPU per run on the end-to-end path, without sockets: ``POST
/agents/workflows/{id}/run`` sent straight to the real ASGI app (its lifespan, SQLite, the
bus, the push hub) until the run's ``executionFinished`` is published, in CPU time per run
or in CPU instructions per run (valgrind's callgrind, which the machine's load does not
move).

    python -m bench.run_path [--runs 2000] [--clients 1 8] [--rounds 5] [--quick]
    python -m bench.run_path --instructions [--runs 300] [--clients 1 8]

What ``bench.e2e`` measures around it (uvicorn's parsing, the push writes, the client) is
left out: this is the share of a run that the HTTP handler and the engine spend, on uvloop
as ``graphpush serve`` runs them.
``--instructions`` runs itself under ``valgrind --tool=callgrind``, counting only the
measured runs on the main thread (inside ``functools.reduce``), with the store's
group-commit delays scaled by ``--slowdown``: the SQLite WAL checkpoints, on a thread of
their own, are left out (``bench.engine_instructions`` counts every thread).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import uvloop
from starlette.types import Message

from app.bus.base import PushEvent
from app.executions import workers
from app.main import create_app
from app.runtime import Runtime
from app.settings import load_settings
from app.storage import sqlite
from bench.engine import chain
from bench.harness import callgrind, note, report, summary, table


class Driver:
    """The app with its lifespan entered; :meth:`runs` POSTs runs as ``clients`` would."""

    def __init__(self, app: Any, state: dict[str, Any], workflow_id: str) -> None:
        self.app = app
        self.state = state
        self.workflow_id = workflow_id
        self.finished: dict[str, asyncio.Future[None]] = {}
        self.body = msgspec.json.encode({"push_ref": "run-path"})

    def on_event(self, event: PushEvent) -> None:
        if event.type == "executionFinished":
            done = self.finished.pop(event.execution_id, None)
            if done is not None:
                done.set_result(None)
            else:  # finished before its POST's answer was read
                self.finished[event.execution_id] = _done()

    async def post(self) -> str:
        """One POST of a run; its execution id."""
        path = f"/agents/workflows/{self.workflow_id}/run"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self.body)).encode()),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": dict(self.state),
        }
        chunks: list[bytes] = []
        status = 0

        async def receive() -> Message:
            return {"type": "http.request", "body": self.body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        if status != 202:
            raise RuntimeError(f"POST run answered {status}: {b''.join(chunks)[:300]!r}")
        return str(msgspec.json.decode(b"".join(chunks))["execution_id"])

    async def client(self, runs: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(runs):
            execution_id = await self.post()
            done = self.finished.setdefault(execution_id, loop.create_future())
            await done
            self.finished.pop(execution_id, None)

    async def runs(self, runs: int, clients: int) -> tuple[float, float]:
        """runs/s and server CPU µs per run of ``runs`` runs over ``clients`` clients."""
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(self.client(runs // clients) for _ in range(clients)))
        done = runs // clients * clients
        return done / (time.perf_counter() - start), 1e6 * (time.process_time() - cpu) / done


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


@contextlib.asynccontextmanager
async def driver() -> AsyncIterator[Driver]:
    """The app on a fresh SQLite data folder, its lifespan entered, ``chain(3)`` stored."""
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            {"data_dir": folder, "load_examples": False, "queue_bound": 1_000_000}, environ={}
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app) as state:
            runtime: Runtime = app.state.runtime
            workflow = await runtime.workflows.create(chain(3))
            ours = Driver(app, dict(state or {}), workflow["id"])
            runtime.bus.subscribe(ours.on_event)
            await ours.runs(20, 1)
            yield ours


def measured(runs: int, clients: int) -> None:
    """Warm up, then ``runs`` runs inside ``functools.reduce`` (callgrind's window)."""
    loop = uvloop.new_event_loop()
    stack = contextlib.AsyncExitStack()
    try:
        ours = loop.run_until_complete(stack.enter_async_context(driver()))
        loop.run_until_complete(ours.runs(50, clients))
        functools.reduce(lambda _, __: loop.run_until_complete(ours.runs(runs, clients)), [0, 0])
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


def instructions(runs: int, clients: int, slowdown: float) -> float:
    """Instructions per run (a child process under callgrind)."""
    args = ["--child", "--runs", str(runs), "--clients", str(clients), "--slowdown", str(slowdown)]
    window = ("--collect-atstart=no", "--toggle-collect=functools_reduce")
    return callgrind("bench.run_path", args, valgrind=window) / (runs // clients * clients)


async def cpu(args: argparse.Namespace) -> list[list[str]]:
    rows = []
    async with driver() as ours:
        for clients in args.clients:
            rounds = [await ours.runs(args.runs, clients) for _ in range(args.rounds)]
            found = {
                "runs_per_s": summary([r[0] for r in rounds]),
                "cpu_us_per_run": summary([r[1] for r in rounds]),
            }
            report("run_path", f"clients-x{clients}", runs=args.runs, load=os.getloadavg(), **found)
            med = {k: v["median"] for k, v in found.items()}
            rows.append([str(clients), f"{med['runs_per_s']:.0f}", f"{med['cpu_us_per_run']:.0f}"])
    return rows


def main(args: argparse.Namespace) -> None:
    if args.child:
        sqlite.FLUSH_DELAY_S *= args.slowdown
        workers.LINGER_S *= args.slowdown
        measured(args.runs, args.clients[0])
        return
    if not args.instructions:
        note(table(uvloop.run(cpu(args)), ["clients", "runs/s", "CPU µs/run"]))
        return
    rows = []
    for clients in args.clients:
        per_run = instructions(args.runs, clients, args.slowdown)
        report("run_path_instructions", f"clients-x{clients}", runs=args.runs, per_run=per_run)
        rows.append([str(clients), f"{per_run / 1e6:.2f} M"])
    note(table(rows, ["clients", "instructions / run"]))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--slowdown", type=float, default=50.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="CPU time, 1 short round")
    args = parser.parse_args(argv)
    if args.quick:
        args.instructions, args.runs, args.rounds = False, 200, 1
    if args.runs is None:
        args.runs = 300 if args.instructions or args.child else 2000
    return args


if __name__ == "__main__":
    main(parse())
