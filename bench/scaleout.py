"""Scale-out: runs/s of the same 3-node workflow on the embedded default (one process,
SQLite, in-process queue and bus) and on PostgreSQL + Redis with 1 and 2 worker processes;
and push fan-out of the same run's messages through the in-process bus vs through Redis.

    python -m bench.scaleout [--runs 1000] [--rounds 3] [--quick]

Method (needs PostgreSQL and Redis, as the tests do: GRAPHPUSH_TEST_DATABASE_URL and
GRAPHPUSH_TEST_REDIS_URL, defaults on 127.0.0.1):

- Throughput: this process is the API instance (``workers=0`` when scaled out). It queues
  ``runs`` runs through ``ExecutionService`` and counts ``executionFinished`` messages as
  its bus delivers them (through Redis when scaled out); runs/s = runs / (last terminal
  message - first queued). Each worker process runs ``--concurrency`` workers; the embedded
  process runs as many. Each configuration gets a fresh schema and Redis prefix.
- Fan-out: one run's 11 messages, published ``runs`` times, delivered by a push hub to
  ``--connections`` live pushRef sessions subscribed to it. Delivered messages/s and
  publish-to-delivery latency per message; Redis adds the hop (another bus instance
  publishes, as a worker does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from redis.asyncio import Redis

from app.backends import open_backends
from app.bus.base import EventBus, LocalEventBus, PushEvent
from app.bus.pubsub import PubSub
from app.bus.redis import RedisBus
from app.push.hub import PushHub
from app.push.size import fit
from app.settings import Settings, load_settings
from bench.engine import chain
from bench.harness import note, percentile, report, summary, table

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = os.environ.get("GRAPHPUSH_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
REDIS = os.environ.get("GRAPHPUSH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


# ---- throughput ----------------------------------------------------------------------------


def start_workers(
    logs: list[Path], env: dict[str, str], concurrency: int
) -> list[subprocess.Popen[bytes]]:
    """A ``graphpush worker`` process per log file. Called before any loop work, so the
    blocking spawn delays nothing."""
    command = [sys.executable, "-m", "app", "worker", "--workers", str(concurrency)]
    workers = []
    for log in logs:
        with log.open("wb") as out:
            workers.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out))
    return workers


@contextlib.asynccontextmanager
async def scaled_out(folder: Path, processes: int, concurrency: int) -> AsyncIterator[Settings]:
    """Settings of an API-only process on a fresh schema and prefix, with ``processes``
    worker processes running; everything is removed afterwards."""
    tag = f"gp_bench_{os.getpid()}_{processes}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE; CREATE SCHEMA "{tag}"')
    url = f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}options=-csearch_path%3D{tag}"
    overrides = {"database_url": url, "redis_url": REDIS, "redis_prefix": tag}
    env = {**os.environ, **{f"GRAPHPUSH_{k.upper()}": v for k, v in overrides.items()}}
    logs = [folder / f"{tag}-{i}.log" for i in range(processes)]
    workers = start_workers(logs, env, concurrency)
    try:
        while not all("worker ready" in log.read_text() for log in logs):
            if any(w.poll() is not None for w in workers):
                raise RuntimeError("a worker did not start: " + logs[0].read_text()[-1000:])
            await asyncio.sleep(0.1)
        yield load_settings(
            {
                **overrides,
                "data_dir": folder,
                "workers": 0,
                "load_examples": False,
                "queue_bound": 1_000_000,
            },
            environ={},
        )
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        redis = Redis.from_url(REDIS)
        keys = [key async for key in redis.scan_iter(f"{tag}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{tag}" CASCADE')


async def runs_per_second(settings: Settings, runs: int, rounds: int) -> dict[str, float]:
    async with AsyncExitStack() as stack:
        backends = await open_backends(stack, settings, push=True)
        service = await backends.service(settings)
        finished: asyncio.Queue[str] = asyncio.Queue()

        def on_event(event: PushEvent) -> None:
            if event.type == "executionFinished":
                finished.put_nowait(event.execution_id)

        backends.bus.subscribe(on_event)
        await service.start()
        stack.push_async_callback(service.shutdown)
        workflow = await service.workflows.create(chain(3))

        async def batch(count: int) -> float:
            start = time.perf_counter()
            for first in range(0, count, 200):
                size = min(200, count - first)
                await asyncio.gather(
                    *(service.queue_manual_execution(workflow["id"]) for _ in range(size))
                )
            for _ in range(count):
                await finished.get()
            return count / (time.perf_counter() - start)

        await batch(max(20, runs // 10))  # compile, connect, warm up
        return summary([await batch(runs) for _ in range(rounds)])


async def throughput(args: argparse.Namespace, folder: Path) -> list[list[str]]:
    configs: list[tuple[str, int]] = [("embedded", 0), ("1 worker process", 1)]
    configs.append(("2 worker processes", 2))
    rows, base = [], 0.0
    for name, processes in configs:
        if processes == 0:
            settings = load_settings(
                {
                    "data_dir": folder,
                    "workers": args.concurrency,
                    "load_examples": False,
                    "queue_bound": 1_000_000,
                },
                environ={},
            )
            result = await runs_per_second(settings, args.runs, args.rounds)
        else:
            async with scaled_out(folder, processes, args.concurrency) as settings:
                result = await runs_per_second(settings, args.runs, args.rounds)
        base = base or result["median"]
        report(
            "scaleout",
            f"runs/s {name}",
            runs=args.runs,
            concurrency=args.concurrency,
            runs_per_s=result,
            vs_embedded=result["median"] / base,
            load=os.getloadavg(),
        )
        rows.append([name, f"{result['median']:.0f}", f"{result['median'] / base:.2f}"])
    return rows


# ---- fan-out -------------------------------------------------------------------------------


class _NoService:
    """The hub's service, never called here (no subscriptions, no commands)."""

    async def snapshot(self, execution_id: str, owner: str | None) -> Any:
        raise NotImplementedError

    async def read_events(self, execution_id: str, after: int, owner: str | None) -> list[Any]:
        raise NotImplementedError

    async def cancel_execution(self, execution_id: str, owner: str | None) -> None:
        raise NotImplementedError


def one_run() -> list[PushEvent]:
    """The 11 messages of a 3-node run, of typical sizes, each for every connection."""
    types = ["executionStarted"]
    types += ["nodeExecuteBefore", "nodeExecuteAfter", "nodeExecuteAfterData"] * 3
    types += ["executionFinished"]
    sizes = [900] + [700, 750, 1100] * 3 + [600]
    return [
        PushEvent(
            "run", 0, t, msgspec.json.encode({"type": t, "data": {"pad": "x" * n}}), broadcast=True
        )
        for t, n in zip(types, sizes, strict=True)
    ]


async def fan_out(
    publisher: EventBus, listener: EventBus, connections: int, runs: int
) -> dict[str, Any]:
    """Publish ``runs`` runs' messages; the listener's hub routes each to every connection."""
    hub = PushHub(settings=Settings(connection_buffer_bytes=1 << 30), service=_NoService())
    arrived: dict[int, float] = {}
    listener.subscribe(hub.on_event)
    listener.subscribe(lambda event: arrived.__setitem__(event.seq, time.perf_counter()))
    conns = [hub.connect(f"c{i}", None, None, lambda: None) for i in range(connections)]
    sent: dict[int, float] = {}
    start = time.perf_counter()
    for _ in range(runs):
        for event in one_run():
            seq = len(sent) + 1
            sent[seq] = time.perf_counter()
            await publisher.publish(msgspec.structs.replace(event, seq=seq))
        await asyncio.sleep(0)  # a worker yields between runs
    async with asyncio.timeout(120):
        while True:
            if len(arrived) == len(sent):
                break
            await asyncio.sleep(0.005)
    elapsed = max(arrived.values()) - start
    delivered = sum(len(conn.data_to_send()) for conn in conns)
    assert delivered == len(sent) * connections, (delivered, len(sent), connections)
    for conn in conns:
        hub.disconnect(conn)
    await hub.aclose()
    latencies = [(arrived[seq] - at) * 1000 for seq, at in sent.items()]
    return {
        "messages": len(sent),
        "connections": connections,
        "delivered_per_s": delivered / elapsed,
        "latency_ms": {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99)},
    }


async def fan_outs(args: argparse.Namespace) -> list[list[str]]:
    local = LocalEventBus()
    embedded = await fan_out(local, local, args.connections, args.runs)
    redis = Redis.from_url(REDIS)
    channel = f"gp_bench_{os.getpid()}:events"

    async def durable() -> None:
        return None

    trim = partial(fit, limit=5 << 20)
    async with AsyncExitStack() as stack:
        pubsub = await stack.enter_async_context(PubSub(redis))
        api = RedisBus(redis, channel=channel, trim=trim, durable=durable, listen=pubsub)
        worker = RedisBus(redis, channel=channel, trim=trim, durable=durable)
        await stack.enter_async_context(api)
        await stack.enter_async_context(worker)
        relayed = await fan_out(worker, api, args.connections, args.runs)
    await redis.aclose()
    rows = []
    for name, result in (("in-process bus", embedded), ("Redis pub/sub", relayed)):
        ratio = result["delivered_per_s"] / embedded["delivered_per_s"]
        report("scaleout", f"fan-out {name}", **result, vs_embedded=ratio, load=os.getloadavg())
        latency = result["latency_ms"]
        rows.append(
            [
                name,
                f"{result['delivered_per_s']:,.0f}",
                f"{latency['p50']:.2f} / {latency['p99']:.2f}",
                f"{ratio:.2f}",
            ]
        )
    return rows


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        runs = await throughput(args, Path(folder))
    fans = await fan_outs(args)
    note(table(runs, ["configuration", "runs/s", "vs embedded"]))
    note("")
    note(
        table(
            fans,
            [
                f"fan-out to {args.connections} connections",
                "messages/s delivered",
                "latency p50 / p99 ms",
                "vs in-process",
            ],
        )
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4, help="workers per process")
    parser.add_argument("--connections", type=int, default=50, help="fan-out connections")
    parser.add_argument("--quick", action="store_true", help="a smoke run in seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.rounds, args.connections = 100, 1, 10
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
