"""Recovery from a Redis restarted without persistence: how long after Redis accepts
connections again every run ends and every client has its ``executionFinished``.

    python -m bench.redis_restart [--queued 20] [--rounds 3] [--quick]

Method (needs PostgreSQL, as the tests do: GRAPHPUSH_TEST_DATABASE_URL; ``redis-server``
on the PATH): a redis-server of its own on a free port with no RDB and no AOF, one
``graphpush serve --workers 0`` and one ``graphpush worker --workers 2`` on a fresh schema,
and a WebSocket client on one pushRef. Each round starts one 1 s run and queues
``--queued`` quick ones behind it (all on the client's pushRef), kills Redis (SIGKILL),
posts ``--queued`` more while it is down, starts it again empty, posts one more, and
measures from the moment Redis accepts connections: the first run posted after it ends
(``first_new_run_s``), and every run of the round has ended with its ``executionFinished``
pushed to the client (``all_runs_s``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
from websockets.asyncio.client import ClientConnection, connect

from bench.harness import note, report, summary, table

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = os.environ.get("GRAPHPUSH_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(folder: Path, port: int) -> subprocess.Popen[bytes]:
    args = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    with (folder / "redis.log").open("ab") as log:
        process = subprocess.Popen([*args, "--dir", str(folder)], stdout=log, stderr=log)
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            return process
        time.sleep(0.005)


@contextlib.asynccontextmanager
async def deployment(folder: Path, redis_port: int) -> AsyncIterator[str]:
    """An API instance and a worker process on a fresh schema; yields the API's URL."""
    schema = f"gp_bench_restart_{os.getpid()}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"')
    env = {
        **os.environ,
        "GRAPHPUSH_DATABASE_URL": f"{POSTGRES}?options=-csearch_path%3D{schema}",
        "GRAPHPUSH_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "GRAPHPUSH_LOAD_EXAMPLES": "false",
        "GRAPHPUSH_DATA_DIR": str(folder),
    }
    port = free_port()
    commands = [
        ["serve", "--port", str(port), "--workers", "0"],
        ["worker", "--workers", "2"],
    ]
    processes = []
    for i, command in enumerate(commands):
        with (folder / f"process-{i}.log").open("wb") as log:
            processes.append(  # started before any loop work: nothing waits on them here
                subprocess.Popen(  # noqa: ASYNC220
                    [sys.executable, "-m", "app", *command],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=log,
                )
            )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            while True:
                worker = "worker ready" in (folder / "process-1.log").read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if worker and (await client.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield url
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def chain(*steps: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    nodes = [{"name": "Start", "type": "trigger"}]
    nodes += [{"name": f"N{i}", "type": t, "parameters": p} for i, (t, p) in enumerate(steps)]
    connections = {
        a["name"]: {"main": [[{"node": b["name"], "type": "main", "index": 0}]]}
        for a, b in itertools.pairwise(nodes)
    }
    return {"name": "bench", "nodes": nodes, "connections": connections}


async def post(client: httpx.AsyncClient, workflow_id: str) -> str:
    response = await client.post(f"/agents/workflows/{workflow_id}/run", json={"push_ref": "bench"})
    response.raise_for_status()
    return str(response.json()["execution_id"])


async def finished(ws: ClientConnection, ids: set[str], done: dict[str, float]) -> None:
    while not ids <= done.keys():
        message = msgspec.json.decode(await ws.recv())
        if message["type"] == "executionFinished":
            done.setdefault(message["data"]["executionId"], time.monotonic())


async def one_round(url: str, folder: Path, port: int, redis: Any, queued: int) -> dict[str, Any]:
    ws_url = url.replace("http", "ws") + "/agents/push?pushRef=bench"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client, connect(ws_url) as ws:
        slow = (await client.post("/agents/workflows", json=chain(("delay", {"ms": 1000})))).json()
        fast = (await client.post("/agents/workflows", json=chain(("set", {"values": {}})))).json()
        runs = [await post(client, slow["id"])]
        runs += [await post(client, fast["id"]) for _ in range(queued)]
        redis.kill()
        redis.wait()
        runs += [await post(client, fast["id"]) for _ in range(queued)]  # stored; queued later
        redis = start_redis(folder, port)
        back = time.monotonic()
        first = await post(client, fast["id"])
        done: dict[str, float] = {}
        await asyncio.wait_for(finished(ws, {*runs, first}, done), 120)
    result = {"first_new_run_s": done[first] - back, "all_runs_s": max(done.values()) - back}
    return {"result": result, "redis": redis, "runs": len(runs) + 1}


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder, port = Path(name), free_port()
        redis = start_redis(folder, port)
        firsts, alls = [], []
        try:
            async with deployment(folder, port) as url:
                for _ in range(args.rounds):
                    got = await one_round(url, folder, port, redis, args.queued)
                    redis = got["redis"]
                    firsts.append(got["result"]["first_new_run_s"])
                    alls.append(got["result"]["all_runs_s"])
                    await asyncio.sleep(1)
        finally:
            redis.kill()
    first, every = summary(firsts), summary(alls)
    report(
        "redis_restart",
        f"{args.queued} queued + {args.queued} posted while down",
        runs=got["runs"],
        first_new_run_s=first,
        all_runs_s=every,
        load=os.getloadavg(),
    )
    rows = [[str(got["runs"]), f"{first['median']:.2f}", f"{every['median']:.2f}"]]
    note(table(rows, ["runs per round", "first new run ended (s)", "every run ended + pushed (s)"]))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--queued", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run in seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.queued, args.rounds = 3, 1
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
